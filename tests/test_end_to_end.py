"""The whole system as an operator runs it: two `python -m workers.run` processes, the `starter` CLI,
the real `temporal` CLI, the Temporal dev server, PostgreSQL and an SMTP server, all on loopback."""

from __future__ import annotations

import asyncio
import json
import signal
import subprocess
import sys
from collections import Counter
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import asyncpg
import pytest
from temporalio.testing import WorkflowEnvironment

from devstack.smtp_sink import SmtpSink
from devstack.temporal import temporal_cli
from tests.helpers.operator_cli import unique_mailbox_ids
from tests.helpers.worker_procs import Workers, worker_env
from warmup.config import Settings

MAILBOXES = [f"e2e{i}@flow.test" for i in range(4)]
BAD_LOGIN = "locked@flow.test"


def _run(args: list[str], env: dict[str, str], stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(args, env=env, input=stdin, capture_output=True, text=True, timeout=60, check=False)


def _starter(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return _run([sys.executable, "-m", "starter", *args], env)


@pytest.fixture
async def stack(
    temporal_env: WorkflowEnvironment,
    smtp_sink: SmtpSink,
    make_settings: Callable[..., Settings],
    db_dsn: str,
    tmp_path: Path,
) -> AsyncIterator[tuple[dict[str, str], list[subprocess.Popen[bytes]]]]:
    await unique_mailbox_ids(db_dsn)  # the dev server is shared: no other test's mailbox-<id>
    address = temporal_env.client.service_client.config.target_host
    env = worker_env(make_settings(), address, RAMP_START_VOLUME="6")
    smtp_sink.credentials.update({m: "right" for m in [*MAILBOXES, BAD_LOGIN]})
    workers = Workers(env, tmp_path)
    workers.start(2)
    try:
        yield env, workers.procs
    finally:
        workers.stop_all()


async def _enroll(env: dict[str, str], address: str, secret: str, *extra: str) -> None:
    args = ["enroll", "--mailbox", address, "--user", "flow", "--smtp-host", "127.0.0.1"]
    args += ["--smtp-port", env["E2E_SMTP_PORT"], "--smtp-security", "none", "--username", address]
    args += ["--secret-stdin", "--timezone", "Europe/Madrid", *extra]
    run = await asyncio.to_thread(_run, [sys.executable, "-m", "starter", *args], env, secret + "\n")
    assert run.returncode == 0, run.stderr


async def _status(env: dict[str, str], address: str) -> dict[str, object]:
    run = await asyncio.to_thread(_starter, env, "status", "--mailbox", address, "--json")
    assert run.returncode == 0, run.stderr
    data = json.loads(run.stdout)
    assert isinstance(data, dict)
    return data


async def _sent_by(db_dsn: str) -> Counter[str]:
    conn = await asyncpg.connect(db_dsn)
    try:
        rows = await conn.fetch(
            "SELECT m.address FROM send_ledger l JOIN mailboxes m ON m.id = l.sender_id"
            " WHERE l.status = 'SENT'"
        )
    finally:
        await conn.close()
    return Counter(r["address"] for r in rows)


async def test_operator_flow_across_two_worker_processes(
    stack: tuple[dict[str, str], list[subprocess.Popen[bytes]]], smtp_sink: SmtpSink, db_dsn: str
) -> None:
    env, workers = stack
    env["E2E_SMTP_PORT"] = str(smtp_sink.port)
    for address in MAILBOXES:
        await _enroll(env, address, "right")
    await _enroll(env, BAD_LOGIN, "wrong")
    await _enroll(env, MAILBOXES[0], "right")  # a second enroll updates, never a second workflow

    # Mail flows: every good mailbox fills its first day's quota of 6.
    await smtp_sink.wait_for(6 * len(MAILBOXES), timeout=90)
    await asyncio.sleep(1.5)
    received = Counter(m.message_id for m in smtp_sink.messages)
    assert max(received.values()) == 1, "an email arrived twice"
    sent = await _sent_by(db_dsn)
    assert sent == Counter({m: 6 for m in MAILBOXES}), sent
    assert sum(received.values()) == sum(sent.values())
    senders = {w.pid for w in workers}
    assert len(senders) == 2 and all(w.poll() is None for w in workers)

    # The 535 mailbox paused itself with the reason, and sent nothing.
    locked = await _status(env, BAD_LOGIN)
    assert locked["paused"] is True and "535" in str(locked["pause_reason"])

    # Pause through the real Temporal CLI, exactly as the README documents, then raise the quota:
    # the paused mailbox must send nothing more.
    first = await _status(env, MAILBOXES[1])
    workflow_id = f"mailbox-{first['mailbox_id']}"
    cli = await asyncio.to_thread(
        _run,
        [
            temporal_cli(),
            "workflow",
            "signal",
            "--address",
            env["TEMPORAL_ADDRESS"],
            "--workflow-id",
            workflow_id,
            "--name",
            "pause",
        ],
        env,
    )
    assert cli.returncode == 0, cli.stderr
    assert (await _status(env, MAILBOXES[1]))["paused"] is True
    for address in MAILBOXES[:2]:
        await _enroll(env, address, "right", "--ramp-start", "9", "--ramp-ceiling", "9")
    await smtp_sink.wait_for(6 * len(MAILBOXES) + 3, timeout=60)
    await asyncio.sleep(3)  # room for a wrongly still-running paused mailbox to show itself
    sent = await _sent_by(db_dsn)
    assert sent[MAILBOXES[0]] == 9, "the settings update did not raise today's quota"
    assert sent[MAILBOXES[1]] == 6, "a mailbox paused through the Temporal CLI kept sending"

    # Graceful shutdown: SIGTERM, then a clean exit.
    for w in workers:
        w.send_signal(signal.SIGTERM)
    for w in workers:
        assert await asyncio.to_thread(w.wait, 30) == 0
