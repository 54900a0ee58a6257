"""The send ledger's upkeep (issue #13 item 6, migration 0021): its day partitions made ahead, message
bodies cleared after WARMUP_JOB_CLEANUP_DAYS, whole days dropped after WARMUP_LEDGER_RETENTION_DAYS.

Every step is idempotent and safe beside another worker doing the same (the SQL functions take turns on
one advisory lock; a cleared body no longer matches), so a retry or a SIGKILL at any line only repeats
work. Clearing runs in batches, one short transaction each, so it never holds many row locks for long.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable

import asyncpg

from warmup.db import Conn
from warmup.models import LedgerUpkeep

# Partitions exist from two days back (a mailbox's local day may be behind UTC's) to this many ahead,
# so a day's first insert never waits on DDL and DEFAULT stays empty.
PARTITION_DAYS_AHEAD = 7
PARTITION_DAYS_BACK = 2
BODY_BATCH = 10_000  # bodies cleared per transaction


# A partition's DDL locks the ledger; waiting behind a long report would hold every send up behind it,
# so it gives up after this long instead, and the next round tries again.
DDL_LOCK_TIMEOUT = "5s"


async def _ddl(conn: Conn, sql: str, *args: object) -> int:
    async with conn.transaction():
        await conn.execute(f"SET LOCAL lock_timeout = '{DDL_LOCK_TIMEOUT}'")
        return int(await conn.fetchval(sql, *args))


async def ensure_partitions(conn: Conn, today: dt.date) -> int:
    """Make the partitions around `today` that are missing; how many it made."""
    return await _ddl(
        conn,
        "SELECT ledger_ensure_partitions($1, $2)",
        today - dt.timedelta(days=PARTITION_DAYS_BACK),
        PARTITION_DAYS_BACK + 1 + PARTITION_DAYS_AHEAD,
    )


async def days_to_trim(conn: Conn, before: dt.date) -> list[dt.date]:
    """The partitioned days before `before` whose bodies were not cleared yet, oldest first."""
    rows = await conn.fetch(
        "SELECT d FROM ledger_partition_days() d WHERE d < $1"
        " AND NOT EXISTS (SELECT 1 FROM ledger_trimmed_days t WHERE t.day = d) ORDER BY d",
        before,
    )
    return [r["d"] for r in rows]


async def trim_day(conn: Conn, day: dt.date, heartbeat: Callable[[], None]) -> int:
    """Clear the bodies of `day` (batch by batch), then mark it trimmed; how many were cleared."""
    cleared = 0
    while n := int(await conn.fetchval("SELECT ledger_clear_bodies($1, $2)", day, BODY_BATCH)):
        cleared += n
        heartbeat()
    await conn.execute(
        "INSERT INTO ledger_trimmed_days (day, cleared) VALUES ($1, $2)"
        " ON CONFLICT (day) DO UPDATE SET cleared = ledger_trimmed_days.cleared + EXCLUDED.cleared",
        day,
        cleared,
    )
    return cleared


async def drop_days(conn: Conn, before: dt.date) -> int:
    """Drop the partitions of the days before `before` and what pointed into them; how many."""
    return await _ddl(conn, "SELECT ledger_drop_partitions($1)", before)


async def upkeep(
    pool: asyncpg.Pool,
    today: dt.date,
    *,
    body_days: int,
    keep_days: int,
    heartbeat: Callable[[], None] = lambda: None,
) -> LedgerUpkeep:
    """One round: partitions ahead, bodies older than `body_days` cleared, days older than `keep_days`
    dropped. The day cut-offs count back from `today` (UTC); a day either side of a local day changes
    nothing at these lengths."""
    body_before = today - dt.timedelta(days=body_days)
    drop_before = today - dt.timedelta(days=keep_days)
    async with pool.acquire() as conn:
        made = await ensure_partitions(conn, today)
        dropped = await drop_days(conn, drop_before)
        cleared = trimmed = 0
        for day in await days_to_trim(conn, body_before):
            cleared += await trim_day(conn, day, heartbeat)
            trimmed += 1
    return LedgerUpkeep(made, cleared, trimmed, dropped)
