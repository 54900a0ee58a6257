"""Drill 3: PostgreSQL is unavailable for 30 s in the middle of a day, and nobody restarts anything.

A PostgreSQL server of the drill's own is stopped and started again on the same port and data
folder. The outage begins while one send waits for the server's 250 (the SMTP server has kept the
message and holds its reply): the 250 then arrives with the database down, the worst moment for the
SENT update. Expected: that send is still recorded SENT (the activity retries that one write), the
other sends wait in Temporal's retry and go out once the database is back, the worker's connection
pool reconnects by itself, nothing is sent during the outage, nothing twice, nothing lost.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from pathlib import Path

import asyncpg
from temporalio.testing import WorkflowEnvironment

from devstack.postgres import PgServer, free_port
from tests.drills.support import DrillStack, assert_clean
from warmup.config import Settings
from warmup.db import migrate

QUOTA = 5
OUTAGE_SECONDS = 30.0
STALL_SECONDS = 5.0  # the 250 is held this long: time enough to stop PostgreSQL meanwhile


async def test_postgres_down_30s_mid_run(
    temporal_env: WorkflowEnvironment,
    make_settings: Callable[..., Settings],
    tmp_path: Path,
) -> None:
    pg = PgServer(tmp_path / "pg" / "data", port=free_port(), fast=True)
    await asyncio.to_thread(pg.start)
    client = temporal_env.client
    stack: DrillStack | None = None
    try:
        await pg.create_database("warmup")
        conn = await asyncpg.connect(pg.dsn("warmup"))
        try:
            await migrate(conn)
        finally:
            await conn.close()
        # An SMTP timeout of 8 s gives each attempt 58 s (6 x 8 + 10): room for the SENT update to
        # outlast the outage inside the attempt that got the 250.
        settings = make_settings(DATABASE_URL=pg.dsn("warmup"))
        stack = DrillStack.on(client, settings, tmp_path, SMTP_TIMEOUT_SECONDS="8")
        stack.workers.start(1)
        await stack.prepare()
        await stack.wait_worker_ready()
        held = await stack.sender("pg-held", QUOTA, arm=lambda sink: sink.stall_after_data(STALL_SECONDS))
        other = await stack.sender("pg-other", QUOTA)
        await asyncio.wait_for(held.sink.stalled.wait(), 20)

        await asyncio.to_thread(pg.stop)
        down_at = time.time()
        await asyncio.sleep(OUTAGE_SECONDS)
        await asyncio.to_thread(pg.start)
        up_at = time.time()

        await stack.settle(stack.all_final, within=60)
        log = stack.worker_log()
        drill = f"PostgreSQL down {OUTAGE_SECONDS:.0f} s"
        f = await stack.figures_of(drill, [held, other], 2 * QUOTA, "waited, SENT kept, no restart")
        assert_clean(f)
        assert f.ledger == {"SENT": 2 * QUOTA}, f  # in particular, the 250 that met the outage
        during = [m for s in (held, other) for m in s.sink.messages if down_at + 1 < m.received_at < up_at]
        assert not during, f"sent while PostgreSQL was down (it cannot be recorded): {during}"
        assert "PostgreSQL unreachable" in log, "the outage never met a SENT update: the drill proved nothing"
        assert len(stack.workers.procs) == 1 and stack.workers.procs[0].poll() is None, "the worker died"
    finally:
        if stack is not None:
            await stack.close(client)
        await asyncio.to_thread(pg.stop)
