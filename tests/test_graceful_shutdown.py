"""SIGTERM while a send waits for its 250: the worker stops polling, lets the send finish, exits 0.

The SMTP server has taken the message (DATA) and holds its reply back, the moment a cancelled send
would leave its ledger row SENDING (and the next worker would call a delivered mail UNKNOWN). With
the grace (WARMUP_SHUTDOWN_GRACE_SECONDS, default 200 s) the row ends SENT, the mail arrives once,
the worker's /readyz says 503 while it drains, and the rest of the day is sent by the next worker.
With a grace of 0 (the SDK's default, what the worker had before) the same SIGTERM leaves SENDING.
A send that is only waiting for its user's cap is not in flight: SIGTERM ends its wait at once.
"""

from __future__ import annotations

import asyncio
import signal
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path

from temporalio.testing import WorkflowEnvironment

from devstack.postgres import free_port
from tests.drills.support import DrillStack
from warmup.config import Settings

HOLD_SECONDS = 8.0  # how long the server withholds its 250 after DATA
QUOTA = 2


def _get(port: int, path: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=3) as resp:
            return resp.status, resp.read().decode()
    except urllib.error.HTTPError as err:
        return err.code, err.read().decode()


async def _wait_exit(proc: subprocess.Popen[bytes], within: float) -> int:
    deadline = time.monotonic() + within
    while proc.poll() is None:
        assert time.monotonic() < deadline, f"the worker did not exit within {within:.0f}s of SIGTERM"
        await asyncio.sleep(0.05)
    return proc.returncode


async def test_sigterm_lets_the_send_in_flight_finish_and_exits_0(
    temporal_env: WorkflowEnvironment, make_settings: Callable[..., Settings], tmp_path: Path
) -> None:
    client = temporal_env.client
    health_port = free_port()
    # A 20 s SMTP timeout: the client keeps waiting through the hold. The grace is left at its default.
    stack = DrillStack.on(
        client, make_settings(), tmp_path, SMTP_TIMEOUT_SECONDS="20", HEALTH_PORT=str(health_port)
    )
    try:
        stack.workers.start(1)  # before enrolling: enrolment waits for a worker to accept it
        await stack.wait_worker_ready()
        await stack.prepare()
        sender = await stack.sender("drain", QUOTA, arm=lambda sink: sink.stall_after_data(HOLD_SECONDS))
        await asyncio.wait_for(sender.sink.stalled.wait(), 30)
        held_since = time.monotonic()
        assert [r["status"] for r in await stack.ledger(sender)] == ["SENDING"]
        assert _get(health_port, "/readyz")[0] == 200

        worker = stack.workers.procs[0]
        worker.send_signal(signal.SIGTERM)
        signalled = time.monotonic()
        # Draining: not ready (Kubernetes stops routing), but alive (no liveness kill mid-send).
        await asyncio.sleep(0.5)
        assert worker.poll() is None, "the worker exited before its send finished"
        assert _get(health_port, "/readyz") == (503, "shutting down\n")
        assert _get(health_port, "/livez")[0] == 200

        code = await _wait_exit(worker, within=60)
        took = time.monotonic() - signalled
        reply_after = HOLD_SECONDS - (signalled - held_since)
        print(
            f"SIGTERM to exit: {took:.1f}s with a send in flight; the 250 came {reply_after:.1f}s after "
            f"the signal, the exit {took - reply_after:.2f}s after the 250"
        )
        assert code == 0, stack.worker_log()[-3000:]
        assert [r["status"] for r in await stack.ledger(sender)] == ["SENT"], stack.worker_log()[-3000:]
        assert len(sender.sink.messages) == 1
        log = stack.worker_log()
        assert "worker stopped" in log and "Traceback" not in log

        # The next worker sends the rest of the day and nothing twice.
        stack.workers.start(1)
        await stack.settle(stack.all_final, within=60)
        rows = await stack.ledger(sender)
        assert [r["status"] for r in rows] == ["SENT"] * QUOTA
        arrived = [m.message_id for m in sender.sink.messages]
        assert sorted(arrived) == sorted(r["message_id"] for r in rows), "lost or sent twice"
    finally:
        await stack.close(client)


async def test_without_a_grace_the_same_sigterm_cancels_the_send(
    temporal_env: WorkflowEnvironment, make_settings: Callable[..., Settings], tmp_path: Path
) -> None:
    """The contrast: WARMUP_SHUTDOWN_GRACE_SECONDS=0 is the SDK's default, i.e. the old worker."""
    client = temporal_env.client
    stack = DrillStack.on(
        client, make_settings(), tmp_path, SMTP_TIMEOUT_SECONDS="20", SHUTDOWN_GRACE_SECONDS="0"
    )
    try:
        stack.workers.start(1)
        await stack.wait_worker_ready()
        await stack.prepare()
        sender = await stack.sender("cut", 1, arm=lambda sink: sink.stall_after_data(HOLD_SECONDS))
        await asyncio.wait_for(sender.sink.stalled.wait(), 30)
        stack.workers.procs[0].send_signal(signal.SIGTERM)
        await _wait_exit(stack.workers.procs[0], within=30)
        assert [r["status"] for r in await stack.ledger(sender)] == ["SENDING"]
    finally:
        await stack.close(client)


async def test_sigterm_ends_a_wait_for_the_users_cap_and_the_next_worker_sends_it(
    temporal_env: WorkflowEnvironment, make_settings: Callable[..., Settings], tmp_path: Path
) -> None:
    """A send held by its user's cap waits inside its attempt (up to a minute, activities/send.py).
    Before, a SIGTERM waited that out and then sent from the stopping worker; now the worker exits at
    once and the send goes back to Temporal's retry, to go out from the next worker when the cap frees.
    """
    client = temporal_env.client
    # The second send waits about a minute for the first.
    stack = DrillStack.on(client, make_settings(), tmp_path, USER_SENDS_PER_MINUTE="1")
    try:
        stack.workers.start(1)
        await stack.wait_worker_ready()
        await stack.prepare()
        sender = await stack.sender("held", QUOTA)

        async def second_waits() -> bool:
            return [r["status"] for r in await stack.ledger(sender)] == ["SENT", "PENDING"]

        await stack.settle(second_waits, within=30)  # the quiet 2 s: its attempt is in the wait
        worker = stack.workers.procs[0]
        worker.send_signal(signal.SIGTERM)
        signalled = time.monotonic()
        code = await _wait_exit(worker, within=10)
        print(f"SIGTERM to exit: {time.monotonic() - signalled:.1f}s with a send waiting for its cap")
        assert code == 0, stack.worker_log()[-3000:]
        assert [r["status"] for r in await stack.ledger(sender)] == ["SENT", "PENDING"]
        assert len(sender.sink.messages) == 1, "the stopping worker sent the waiting mail"

        stack.workers.start(1)
        await stack.settle(stack.all_final, within=90)
        assert [r["status"] for r in await stack.ledger(sender)] == ["SENT"] * QUOTA
        first, second = sorted(m.received_at for m in sender.sink.messages)
        assert second - first >= 59.5, (
            f"the user's cap of 1 a minute let two through {second - first:.1f}s apart"
        )
    finally:
        await stack.close(client)
