"""Drill 2: the Temporal server stops in the middle of a day and comes back on its persisted database.

A dev server of the drill's own (SQLite file, free ports) is stopped while a send waits for its
250, and started again on the same file. Workers keep running throughout and must reconnect by themselves.
Expected: every workflow resumes where it was, each slot of the day is sent exactly once (ledger
slots against the Message-IDs the SMTP server received), and the workflows' own counters agree.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from pathlib import Path

from devstack.temporal import DevServer
from tests.drills.support import DrillStack, assert_clean
from tests.helpers.operator_cli import free_port
from warmup.config import Settings

QUOTA = 6
DOWN_SECONDS = 5.0


async def test_temporal_restart_mid_day(make_settings: Callable[..., Settings], tmp_path: Path) -> None:
    server = DevServer(
        tmp_path / "temporal.db", port=free_port(), ui_port=free_port(), log_path=tmp_path / "temporal.log"
    )
    await asyncio.to_thread(server.start)
    stack = DrillStack(make_settings(), server.address, tmp_path)
    try:
        stack.workers.start(1)
        await stack.prepare()
        await stack.wait_worker_ready()
        senders = [await stack.sender(f"restart-{i}", QUOTA) for i in range(2)]

        async def some_sent() -> bool:
            return sum(len(s.sink.messages) for s in senders) >= 3

        await stack.settle(some_sent, within=30, quiet=0)
        # Stop the server while a send waits for its 250 (held shorter than the 2 s SMTP timeout, so
        # it succeeds): its completion then finds no server, the worst moment for "exactly once".
        senders[0].sink.stall_after_data(1.5)
        await asyncio.wait_for(senders[0].sink.stalled.wait(), 10)
        before = sum(len(s.sink.messages) for s in senders)
        await asyncio.to_thread(server.stop)
        stopped = time.time()
        await asyncio.sleep(DOWN_SECONDS)
        await asyncio.to_thread(server.start)

        await stack.settle(stack.all_final, within=90)
        f = await stack.figures_of(
            f"Temporal restart ({DOWN_SECONDS:.0f} s down)",
            senders,
            2 * QUOTA,
            f"{before} sent before the stop; resumed",
        )
        assert_clean(f)
        assert f.ledger == {"SENT": 2 * QUOTA}, f
        for s in senders:
            rows = await stack.ledger(s)
            assert [r["slot"] for r in rows] == list(range(QUOTA)), rows  # each slot once, none skipped
            st = await stack.status(s)
            assert st["sent_today"] == QUOTA == st["quota_today"], st
        late = [m for s in senders for m in s.sink.messages if m.received_at > stopped]
        assert late, "nothing was sent after the restart: the drill proved nothing"
        assert stack.workers.procs[0].poll() is None, "the worker died with the server"
    finally:
        await stack.close(None)  # the server and its workflows are this drill's own
        await asyncio.to_thread(server.stop)
