"""Helpers for the operator-surface tests: the starter in-process, unique workflow ids, scraping, and
the `op`/`worker` fixtures (import `op_fixture, worker_fixture` into a test module to use them)."""

from __future__ import annotations

import asyncio
import io
import json
import random
import socket
import urllib.request
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from dataclasses import dataclass

import asyncpg
import pytest_asyncio
from prometheus_client.parser import text_string_to_metric_families
from temporalio.client import Client
from temporalio.service import RPCError
from temporalio.testing import WorkflowEnvironment

from activities.send import SendActivities
from devstack.smtp_sink import SmtpSink
from starter import cli
from tests.helpers.worker_procs import worker_env
from warmup.config import Settings
from warmup.secrets import SecretBox
from workers.worker import build_worker

PASSWORD = "Op-pa55-9c1e77"


@dataclass
class Run:
    code: int
    out: str
    err: str

    def json(self) -> object:
        return json.loads(self.out)


async def starter(env: Mapping[str, str], *argv: str, stdin: str = "") -> Run:
    out, err = io.StringIO(), io.StringIO()
    code = await cli.run(list(argv), env=dict(env), stdin=io.StringIO(stdin), stdout=out, stderr=err)
    return Run(code, out.getvalue(), err.getvalue())


async def unique_mailbox_ids(dsn: str) -> int:
    """Every test database numbers mailboxes from 1, but the dev server is shared by the session:
    start this database's ids in a range of its own so `mailbox-<id>` never meets another test's."""
    first = random.randrange(10**9, 10**12)
    conn = await asyncpg.connect(dsn)
    try:
        await conn.execute(f"ALTER TABLE mailboxes ALTER COLUMN id RESTART WITH {first}")
    finally:
        await conn.close()
    return first


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def enroll_argv(address: str, user: str, smtp_port: int, *extra: str) -> list[str]:
    return [
        "enroll",
        "--mailbox",
        address,
        "--user",
        user,
        "--smtp-host",
        "127.0.0.1",
        "--smtp-port",
        str(smtp_port),
        "--smtp-security",
        "none",
        "--username",
        address,
        "--secret-env",
        "SMTP_PASSWORD",
        "--timezone",
        "Europe/Lisbon",
        *extra,
    ]


Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


def scrape(port: int) -> Samples:
    """Every sample of a /metrics endpoint on loopback: (name, sorted labels) -> value."""
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as resp:
        text = resp.read().decode()
    samples: Samples = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            samples[(s.name, tuple(sorted(s.labels.items())))] = float(s.value)
    return samples


def value(samples: Samples, name: str, **labels: str) -> float | None:
    return samples.get((name, tuple(sorted(labels.items()))))


def total(samples: Samples, name: str, **labels: str) -> float:
    """Sum over every series of `name` whose labels include `labels`."""
    want = set(labels.items())
    return sum(v for (n, ls), v in samples.items() if n == name and want <= set(ls))


# --- the stack every operator test runs on ------------------------------------------------------

FAST = {
    "SAME_MAILBOX_DELAY_MIN": "0.01",  # 0.6 s between one mailbox's sends
    "SAME_MAILBOX_DELAY_MAX": "0.02",
    "SEND_WINDOW_START_HOUR": "0",
    "SEND_WINDOW_END_HOUR": "24",
    "SPREAD_OVER_WINDOW": "false",
    "SEND_RETRY_INITIAL_SECONDS": "0.5",
    "SMTP_TIMEOUT_SECONDS": "5",
}
NO_SENDS = ("--ramp-start", "0", "--ramp-increment", "0", "--ramp-ceiling", "0")


@dataclass
class Op:
    env: dict[str, str]
    settings: Settings
    client: Client
    dsn: str
    sink: SmtpSink

    async def run(self, *argv: str, stdin: str = "") -> Run:
        return await starter(self.env, *argv, stdin=stdin)

    async def ok(self, *argv: str) -> Run:
        run = await self.run(*argv)
        assert run.code == 0, run.err
        return run

    async def enroll(self, address: str, user: str, *extra: str) -> int:
        run = await self.ok(*enroll_argv(address, user, self.sink.port, *extra), "--json")
        data = run.json()
        assert isinstance(data, dict)
        return int(data["mailbox_id"])

    async def fetch(self, sql: str, *args: object) -> list[asyncpg.Record]:
        conn = await asyncpg.connect(self.dsn)
        try:
            return await conn.fetch(sql, *args)
        finally:
            await conn.close()

    async def states(self) -> dict[str, str]:
        rows = await self.fetch("SELECT address, state::text FROM mailboxes")
        return {r["address"]: r["state"] for r in rows}

    async def delivered(self) -> dict[str, int]:
        rows = await self.fetch(
            "SELECT m.address, count(*) AS n FROM send_ledger l JOIN mailboxes m ON m.id = l.sender_id"
            " WHERE l.status = 'SENT' GROUP BY m.address"
        )
        return {r["address"]: int(r["n"]) for r in rows}

    async def status(self, address: str) -> dict[str, object]:
        data = (await self.ok("status", "--mailbox", address, "--json")).json()
        assert isinstance(data, dict)
        return data


async def eventually(check: Callable[[], Awaitable[bool]], seconds: float = 20) -> None:
    for _ in range(int(seconds * 10)):
        if await check():
            return
        await asyncio.sleep(0.1)
    raise AssertionError(f"condition not met within {seconds} s")


@pytest_asyncio.fixture(name="op")
async def op_fixture(
    temporal_env: WorkflowEnvironment,
    smtp_sink: SmtpSink,
    make_settings: Callable[..., Settings],
    db_dsn: str,
) -> AsyncIterator[Op]:
    settings = make_settings(**FAST)
    await unique_mailbox_ids(db_dsn)
    client = temporal_env.client
    env = {
        **worker_env(settings, client.service_client.config.target_host, **FAST),
        "SMTP_PASSWORD": PASSWORD,
    }
    env["TEMPORAL_NAMESPACE"] = client.namespace
    o = Op(env, settings, client, db_dsn, smtp_sink)
    try:
        yield o
    finally:
        # The user workflows too: a later test naming the same user must not meet one polling
        # this test's task queue, where no worker answers its enroll_mailbox Update any more.
        rows = await o.fetch("SELECT id, user_id FROM mailboxes")
        ids = [f"mailbox-{r['id']}" for r in rows] + sorted({f"user-{r['user_id']}" for r in rows})
        for workflow_id in ids:
            try:
                await client.get_workflow_handle(workflow_id).terminate("test over")
            except RPCError:
                pass  # finished already


@pytest_asyncio.fixture(name="worker")
async def worker_fixture(op: Op) -> AsyncIterator[None]:
    pool = await asyncpg.create_pool(op.dsn, min_size=1, max_size=4)
    try:
        activities = SendActivities(pool, SecretBox(op.settings.secret_keys()), op.settings)
        async with build_worker(op.client, op.settings, activities):
            yield
    finally:
        await pool.close()
