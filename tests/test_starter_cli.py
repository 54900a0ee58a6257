"""The `starter` command against real PostgreSQL, a real Temporal dev server and a real SMTP sink.

Each test runs the CLI in-process (`starter.cli.run`) with its own environment and stdin.
"""

from __future__ import annotations

import asyncio
import io
import itertools
import json
import random
import socket
import sys
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from dataclasses import dataclass
from pathlib import Path

import asyncpg
import pytest
import pytest_asyncio
from temporalio.api.enums.v1 import EventType
from temporalio.client import Client, WorkflowExecutionStatus
from temporalio.service import RPCError, RPCStatusCode
from temporalio.testing import WorkflowEnvironment

from devstack.smtp_sink import SmtpSink
from devstack.tls import self_signed_server_context
from starter import cli
from warmup.config import Settings
from warmup.secrets import SecretBox
from warmup.workflow_ids import mailbox_workflow_id

PASSWORD = "Sm7p-pa55-4f1d9c0a"
ADDRESS = "alice@demo.test"

# Every test database starts its mailbox ids at 1, but the dev server is shared by the whole session:
# give each test its own id range so "mailbox-<id>" workflow ids never collide across tests.
_ID_BASES = itertools.count(random.randrange(10**6, 10**9, 10**4), 10**4)


@dataclass
class Run:
    code: int
    out: str
    err: str


@dataclass
class Ctx:
    settings: Settings
    env: dict[str, str]
    client: Client
    dsn: str
    first_id: int  # the id the next mailbox will get in this test's database
    started: list[str]  # workflow ids to terminate after the test

    async def starter(self, *argv: str, env: dict[str, str] | None = None, stdin: str = "") -> Run:
        out, err = io.StringIO(), io.StringIO()
        code = await cli.run(
            list(argv), env=self.env if env is None else env, stdin=io.StringIO(stdin), stdout=out, stderr=err
        )
        return Run(code, out.getvalue(), err.getvalue())

    async def fetch(self, sql: str, *args: object) -> list[asyncpg.Record]:
        conn = await asyncpg.connect(self.dsn)
        try:
            return await conn.fetch(sql, *args)
        finally:
            await conn.close()

    async def assert_nothing_written(self) -> None:
        assert await self.fetch("SELECT * FROM users") == []
        assert await self.fetch("SELECT * FROM mailboxes") == []
        with pytest.raises(RPCError) as info:
            await self.client.get_workflow_handle(mailbox_workflow_id(self.first_id)).describe()
        assert info.value.status is RPCStatusCode.NOT_FOUND


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest_asyncio.fixture
async def ctx(
    make_settings: Callable[..., Settings], temporal_env: WorkflowEnvironment, db_dsn: str
) -> AsyncIterator[Ctx]:
    settings = make_settings()
    first_id = next(_ID_BASES)
    conn = await asyncpg.connect(db_dsn)
    try:
        await conn.execute(f"ALTER TABLE mailboxes ALTER COLUMN id RESTART WITH {first_id}")
    finally:
        await conn.close()
    client = temporal_env.client
    env = {
        "WARMUP_DATABASE_URL": db_dsn,
        "WARMUP_SECRET_KEYS": settings.SECRET_KEYS.get_secret_value(),
        "WARMUP_TASK_QUEUE": settings.TASK_QUEUE,
        "TEMPORAL_ADDRESS": client.service_client.config.target_host,
        "TEMPORAL_NAMESPACE": client.namespace,
        "SMTP_PASSWORD": PASSWORD,
    }
    # The user workflows too: the next test's enroll_mailbox Update must not meet one on this test's
    # task queue, where no worker answers any more.
    started = [mailbox_workflow_id(first_id + i) for i in range(3)] + ["user-u1", "user-u2"]
    c = Ctx(settings, env, client, db_dsn, first_id, started)
    try:
        yield c
    finally:
        for workflow_id in c.started:
            try:
                await client.get_workflow_handle(workflow_id).terminate("test over")
            except RPCError:
                pass  # never started, or already closed


def enroll_args(flags: Mapping[str, str | None] | None = None, sink_port: int = 2525) -> list[str]:
    """A valid enroll against a clear-text local sink; a flag set to None is left out."""
    base: dict[str, str | None] = {
        "--mailbox": ADDRESS,
        "--user": "u1",
        "--smtp-host": "127.0.0.1",
        "--smtp-port": str(sink_port),
        "--smtp-security": "none",
        "--username": ADDRESS,
        "--secret-env": "SMTP_PASSWORD",
        "--timezone": "Europe/Berlin",
    }
    base.update(flags or {})
    argv = ["enroll"]
    for flag, value in base.items():
        if value is not None:
            argv += [flag, value] if value != "" else [flag]
    return argv


# ---- bad input: exit 2, a message naming the flag, nothing stored, no workflow ---------------------


@pytest.mark.parametrize(
    ("flags", "stdin", "expected"),
    [
        ({"--mailbox": "alice-at-demo.test"}, "", "--mailbox"),
        ({"--smtp-port": "70000"}, "", "--smtp-port"),
        ({"--smtp-port": "465", "--smtp-security": "starttls"}, "", "--smtp-security tls"),
        ({"--timezone": "Mars/Olympus"}, "", "--timezone"),
        ({"--user": "no spaces allowed"}, "", "--user"),
        ({"--window-start": "20", "--window-end": "8"}, "", "--window-start"),
        ({"--secret-env": None}, "", "--secret-env"),
        ({"--secret-env": "NOT_SET_ANYWHERE"}, "", "--secret-env"),
        ({"--secret-env": None, "--secret-stdin": ""}, "\n", "--secret-stdin"),
    ],
    ids=[
        "address",
        "port",
        "port-vs-mode",
        "timezone",
        "user",
        "window",
        "no-secret",
        "unset-env",
        "empty-stdin",
    ],
)
async def test_bad_input_is_refused_and_nothing_is_written(
    ctx: Ctx, flags: dict[str, str | None], stdin: str, expected: str
) -> None:
    run = await ctx.starter(*enroll_args(flags), stdin=stdin)
    assert run.code == 2, run
    assert expected in run.err
    assert PASSWORD not in run.err + run.out
    await ctx.assert_nothing_written()


@pytest.mark.parametrize(
    "argv_tail", [["--password", PASSWORD], [f"--password={PASSWORD}"], ["--secret", PASSWORD]]
)
async def test_a_password_argument_is_refused_without_echoing_it(ctx: Ctx, argv_tail: list[str]) -> None:
    run = await ctx.starter(*enroll_args({"--secret-env": None}), *argv_tail)
    assert run.code == 2
    assert "--secret-env" in run.err and "--secret-stdin" in run.err
    assert PASSWORD not in run.err + run.out
    await ctx.assert_nothing_written()


async def test_unknown_arguments_are_named_but_values_not_echoed(ctx: Ctx) -> None:
    run = await ctx.starter(*enroll_args(), "-p", PASSWORD)
    assert run.code == 2
    assert "-p" in run.err and PASSWORD not in run.err
    await ctx.assert_nothing_written()


async def test_a_bad_setting_is_a_configuration_error(ctx: Ctx) -> None:
    env = dict(ctx.env, WARMUP_SEND_WINDOW_START_HOUR="30")
    run = await ctx.starter(*enroll_args(), env=env)
    assert run.code == 2
    assert "WARMUP_SEND_WINDOW_START_HOUR" in run.err
    await ctx.assert_nothing_written()


async def test_missing_encryption_keys_are_a_configuration_error(ctx: Ctx) -> None:
    env = {k: v for k, v in ctx.env.items() if k != "WARMUP_SECRET_KEYS"}
    run = await ctx.starter(*enroll_args(), env=env)
    assert run.code == 2
    assert "WARMUP_SECRET_KEYS" in run.err
    await ctx.assert_nothing_written()


async def test_unreachable_temporal_writes_nothing(ctx: Ctx) -> None:
    env = dict(ctx.env, TEMPORAL_ADDRESS=f"127.0.0.1:{free_port()}")
    run = await ctx.starter(*enroll_args(), env=env)
    assert run.code == 1
    assert "cannot reach Temporal" in run.err and "TEMPORAL_ADDRESS" in run.err
    await ctx.assert_nothing_written()


async def test_a_workflow_start_that_temporal_refuses_rolls_the_row_back(ctx: Ctx) -> None:
    # Temporal is reachable but refuses the start (no such namespace): the upsert must not commit.
    env = dict(ctx.env, TEMPORAL_NAMESPACE="no-such-namespace")
    run = await ctx.starter(*enroll_args(), env=env)
    assert run.code == 1
    assert "TEMPORAL_NAMESPACE" in run.err
    await ctx.assert_nothing_written()


async def test_unreachable_database_names_the_setting_but_not_its_password(ctx: Ctx) -> None:
    env = dict(ctx.env, WARMUP_DATABASE_URL=f"postgresql://warmup:Db-pa55-xyz@127.0.0.1:{free_port()}/warmup")
    run = await ctx.starter(*enroll_args(), env=env)
    assert run.code == 1
    assert "WARMUP_DATABASE_URL" in run.err and "Db-pa55-xyz" not in run.err
    assert len(run.err.strip().splitlines()) == 1
    await ctx.assert_nothing_written()


# ---- enrolling ------------------------------------------------------------------------------------


async def test_enroll_stores_the_mailbox_encrypted_and_starts_one_workflow(ctx: Ctx, worker: None) -> None:
    run = await ctx.starter(*enroll_args({"--mailbox": "Alice@Demo.TEST", "--ramp-ceiling": "25"}))
    assert run.code == 0, run.err
    workflow_id = mailbox_workflow_id(ctx.first_id)
    assert str(ctx.first_id) in run.out and workflow_id in run.out
    assert f"/namespaces/{ctx.client.namespace}/workflows/{workflow_id}" in run.out

    rows = await ctx.fetch("SELECT m.*, row_to_json(m)::text AS everything FROM mailboxes m")
    assert len(rows) == 1
    row = rows[0]
    assert (row["id"], row["user_id"], row["address"]) == (ctx.first_id, "u1", ADDRESS)
    assert (row["smtp_host"], row["smtp_port"], row["smtp_security"]) == ("127.0.0.1", 2525, "none")
    assert (row["timezone"], row["ramp_ceiling"], row["state"]) == ("Europe/Berlin", 25, "active")
    # Stored encrypted: the plaintext is nowhere in the row, and the configured key opens it.
    assert PASSWORD not in row["everything"]
    assert SecretBox(ctx.settings.secret_keys()).decrypt(row["secret_ciphertext"]) == PASSWORD
    assert [r["id"] for r in await ctx.fetch("SELECT id FROM users")] == ["u1"]

    handle = ctx.client.get_workflow_handle(workflow_id)
    desc = await handle.describe()
    assert desc.status is WorkflowExecutionStatus.RUNNING
    assert desc.task_queue == ctx.settings.TASK_QUEUE
    history = await handle.fetch_history()
    assert PASSWORD not in history.to_json()  # the secret never enters workflow history


async def test_enrolling_again_updates_the_row_and_the_same_workflow(ctx: Ctx, worker: None) -> None:
    first = await ctx.starter(*enroll_args(), "--json")
    assert first.code == 0, first.err
    created = json.loads(first.out)
    assert created["created"] is True and created["mailbox_id"] == ctx.first_id
    handle = ctx.client.get_workflow_handle(created["workflow_id"])
    run_id = (await handle.describe()).run_id

    again = await ctx.starter(
        *enroll_args({"--timezone": "America/New_York", "--mailbox": "ALICE@demo.test"})
    )
    assert again.code == 0, again.err
    assert again.out.startswith("Updated")

    rows = await ctx.fetch("SELECT id, timezone FROM mailboxes")
    assert [(r["id"], r["timezone"]) for r in rows] == [(ctx.first_id, "America/New_York")]
    # Same execution, not a second one: the user workflow started it with its settings, and the
    # re-enroll reached the first run as one settings signal from there.
    desc = await handle.describe()
    assert (desc.run_id, desc.status) == (run_id, WorkflowExecutionStatus.RUNNING)
    signals = []
    for _ in range(50):  # the user workflow awaits its signal before answering; allow a loaded server
        history = await handle.fetch_history()
        signals = [
            e.workflow_execution_signaled_event_attributes
            for e in history.events
            if e.event_type == EventType.EVENT_TYPE_WORKFLOW_EXECUTION_SIGNALED
        ]
        if signals:
            break
        await asyncio.sleep(0.1)
    assert [(s.signal_name, s.external_workflow_execution.workflow_id) for s in signals] == [
        ("update_settings", "user-u1")
    ]
    assert b"America/New_York" in signals[0].input.payloads[0].data
    with pytest.raises(RPCError):
        await ctx.client.get_workflow_handle(mailbox_workflow_id(ctx.first_id + 1)).describe()


async def test_an_address_of_another_user_is_refused(ctx: Ctx, worker: None) -> None:
    assert (await ctx.starter(*enroll_args())).code == 0
    run = await ctx.starter(*enroll_args({"--user": "u2", "--timezone": "Asia/Tokyo"}))
    assert run.code == 1
    assert "another user" in run.err
    rows = await ctx.fetch("SELECT user_id, timezone FROM mailboxes")
    assert [(r["user_id"], r["timezone"]) for r in rows] == [("u1", "Europe/Berlin")]
    assert [r["id"] for r in await ctx.fetch("SELECT id FROM users")] == ["u1"]


async def test_check_with_wrong_credentials_writes_nothing(ctx: Ctx, smtp_sink: SmtpSink) -> None:
    smtp_sink.credentials[ADDRESS] = "the-right-password"
    run = await ctx.starter(*enroll_args(sink_port=smtp_sink.port), "--check")
    assert run.code == 1
    assert "535" in run.err and "nothing was stored" in run.err
    assert PASSWORD not in run.err
    await ctx.assert_nothing_written()


async def test_check_with_the_right_credentials_enrolls(ctx: Ctx, smtp_sink: SmtpSink, worker: None) -> None:
    smtp_sink.credentials[ADDRESS] = PASSWORD
    argv = enroll_args({"--secret-env": None, "--secret-stdin": ""}, smtp_sink.port)
    run = await ctx.starter(*argv, "--check", stdin=PASSWORD + "\n")
    assert run.code == 0, run.err
    assert "SMTP login OK" in run.err
    rows = await ctx.fetch("SELECT secret_ciphertext FROM mailboxes")
    assert SecretBox(ctx.settings.secret_keys()).decrypt(rows[0]["secret_ciphertext"]) == PASSWORD


async def test_check_refuses_a_server_without_starttls(ctx: Ctx, smtp_sink: SmtpSink) -> None:
    # The sink speaks clear text only: STARTTLS is required, never silently skipped.
    run = await ctx.starter(*enroll_args({"--smtp-security": "starttls"}, smtp_sink.port), "--check")
    assert run.code == 1
    assert "--smtp-security" in run.err
    await ctx.assert_nothing_written()


@pytest.mark.parametrize("security", ["starttls", "tls"])
async def test_check_validates_certificates_unless_told_not_to(
    ctx: Ctx, tmp_path: Path, security: str, worker: None
) -> None:
    tls = self_signed_server_context(tmp_path)
    async with SmtpSink(
        credentials={ADDRESS: PASSWORD}, tls_context=tls, implicit_tls=security == "tls"
    ) as sink:
        argv = enroll_args({"--smtp-security": security}, sink.port)
        refused = await ctx.starter(*argv, "--check")
        assert refused.code == 1
        assert "certificate" in refused.err and "--no-verify-tls" in refused.err
        await ctx.assert_nothing_written()

        accepted = await ctx.starter(*argv, "--check", "--no-verify-tls")
        assert accepted.code == 0, accepted.err
    rows = await ctx.fetch("SELECT smtp_security, verify_tls FROM mailboxes")
    assert [(r["smtp_security"], r["verify_tls"]) for r in rows] == [(security, False)]


async def test_the_installed_command_exits_cleanly(ctx: Ctx, worker: None) -> None:
    # As a real process: exit 0 on success, not a crash during interpreter teardown.
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "starter",
        *enroll_args(),
        "--json",
        env=ctx.env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await proc.communicate()
    assert proc.returncode == 0, err.decode()
    assert json.loads(out)["workflow_id"] == mailbox_workflow_id(ctx.first_id)


# ---- pause, resume, status on a running workflow ----------------------------------------------------


@pytest_asyncio.fixture
async def worker(ctx: Ctx) -> AsyncIterator[None]:
    from activities.send import SendActivities
    from workers.worker import build_worker

    pool = await asyncpg.create_pool(ctx.dsn, min_size=1, max_size=2)
    try:
        activities = SendActivities(pool, SecretBox(ctx.settings.secret_keys()), ctx.settings)
        async with build_worker(ctx.client, ctx.settings, activities):
            yield
    finally:
        await pool.close()


async def eventually(check: Callable[[], Awaitable[bool]]) -> None:
    """Poll for up to 10 s: the worker applies a signal a moment after Temporal accepted it."""
    for _ in range(100):
        if await check():
            return
        await asyncio.sleep(0.1)
    raise AssertionError("condition not met within 10 s")


async def test_pause_resume_and_status(ctx: Ctx, worker: None) -> None:
    # A zero ramp keeps the mailbox from sending: this test is about control, not mail.
    flags = {"--ramp-start": "0", "--ramp-increment": "0", "--ramp-ceiling": "0", "--timezone": "Asia/Tokyo"}
    assert (await ctx.starter(*enroll_args(flags))).code == 0

    async def status() -> dict[str, object]:
        run = await ctx.starter("status", "--mailbox", ADDRESS, "--json")
        assert run.code == 0, run.err
        data: dict[str, object] = json.loads(run.out)
        return data

    first = await status()
    assert (first["mailbox_id"], first["user_id"], first["timezone"]) == (ctx.first_id, "u1", "Asia/Tokyo")
    assert first["paused"] is False

    paused = await ctx.starter("pause", "--mailbox", "Alice@Demo.test", "--reason", "holiday")
    assert paused.code == 0, paused.err
    rows = await ctx.fetch("SELECT state, pause_reason FROM mailboxes")
    assert [(r["state"], r["pause_reason"]) for r in rows] == [("paused", "holiday")]

    async def is_paused() -> bool:
        s = await status()
        return s["paused"] is True and s["pause_reason"] == "holiday"

    await eventually(is_paused)
    table = await ctx.starter("status", "--mailbox", ADDRESS)
    assert table.code == 0
    assert "paused (holiday)" in table.out and mailbox_workflow_id(ctx.first_id) in table.out

    resumed = await ctx.starter("resume", "--mailbox", ADDRESS)
    assert resumed.code == 0, resumed.err
    rows = await ctx.fetch("SELECT state, pause_reason FROM mailboxes")
    assert [(r["state"], r["pause_reason"]) for r in rows] == [("active", "")]

    async def is_running() -> bool:
        return (await status())["paused"] is False

    await eventually(is_running)


@pytest.mark.parametrize("command", ["pause", "resume", "status"])
async def test_an_unknown_mailbox_is_a_clear_error(ctx: Ctx, command: str) -> None:
    run = await ctx.starter(command, "--mailbox", "nobody@demo.test")
    assert run.code == 1
    assert "nobody@demo.test" in run.err and "no such mailbox" in run.err
    assert await ctx.fetch("SELECT * FROM mailboxes") == []


async def test_a_malformed_address_is_bad_input_for_every_command(ctx: Ctx) -> None:
    for command in ("pause", "resume", "status"):
        run = await ctx.starter(command, "--mailbox", "not-an-address")
        assert run.code == 2
        assert "--mailbox" in run.err
