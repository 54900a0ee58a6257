"""Drill 1: SIGKILL the only worker while a send is in flight, then start another.

(a) The SMTP server stalls its reply to RCPT: the ledger row is still PENDING (the cap gate claims it
    PENDING -> SENDING only after RCPT, right before DATA), so the retry sends it, once.
(b) The server has kept the message and withholds its 250: the row is SENDING, so the retry marks it
    UNKNOWN and never resends (the slot is used up; the message did arrive).
The SMTP timeout is 20 s here, so start-to-close is 130 s; the dead worker stops heartbeating, and
Temporal retries its sends after the 4 s heartbeat timeout instead (WARMUP_SEND_HEARTBEAT_SECONDS).
Either way the rest of the day is sent and no Message-ID arrives twice.
"""

from __future__ import annotations

import asyncio
import signal
import time
from collections.abc import Callable
from pathlib import Path

from temporalio.testing import WorkflowEnvironment

from tests.drills.support import DrillStack, assert_clean
from warmup.config import Settings

QUOTA = 3


async def test_sigkill_mid_send_before_and_after_data(
    temporal_env: WorkflowEnvironment,
    make_settings: Callable[..., Settings],
    tmp_path: Path,
) -> None:
    client = temporal_env.client
    stack = DrillStack.on(
        client, make_settings(), tmp_path, SMTP_TIMEOUT_SECONDS="20", SEND_HEARTBEAT_SECONDS="4"
    )
    try:
        # Enrolling is an Update, which a worker accepts: it runs first. The two enrolls follow each
        # other within a second or two, so both first sends stall well inside the client's 20 s SMTP
        # timeout, where the kill must land (or the client would give up by itself).
        stack.workers.start(1)
        await stack.prepare()
        # Longer than the whole drill: only the kill ends these stalls.
        rcpt = await stack.sender("kill-before-data", QUOTA, arm=lambda sink: sink.stall_before_data(120))
        data = await stack.sender("kill-after-data", QUOTA, arm=lambda sink: sink.stall_after_data(120))
        await asyncio.wait_for(asyncio.gather(rcpt.sink.stalled.wait(), data.sink.stalled.wait()), 30)
        assert [r["status"] for r in await stack.ledger(rcpt)] == ["PENDING"]
        assert [r["status"] for r in await stack.ledger(data)] == ["SENDING"]
        stack.workers.procs[0].send_signal(signal.SIGKILL)
        stack.workers.procs[0].wait()
        killed = time.monotonic()
        stack.workers.start(1)

        # The first slot's retry comes after the heartbeat timeout, long before start-to-close (130 s).
        await rcpt.sink.wait_for(1, timeout=60)
        resent_after = time.monotonic() - killed
        assert resent_after < 40, f"the dead worker's send was retried only after {resent_after:.0f} s"
        await stack.settle(stack.all_final, within=60)
        a = await stack.figures(
            "SIGKILL at RCPT (before DATA)", rcpt, QUOTA, f"resent {resent_after:.0f} s after the kill"
        )
        b = await stack.figures("SIGKILL after DATA, before 250", data, QUOTA, "UNKNOWN, not resent")
        for f in (a, b):
            assert_clean(f)
        assert a.ledger == {"SENT": QUOTA}, a
        assert b.ledger == {"SENT": QUOTA - 1, "UNKNOWN": 1}, b
        assert (await stack.ledger(data))[0]["status"] == "UNKNOWN"
        for s in (rcpt, data):
            st = await stack.status(s)
            assert st["sent_today"] + st["unknown_today"] == QUOTA == st["quota_today"], st
    finally:
        await stack.close(client)
