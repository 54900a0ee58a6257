"""What one cap check costs PostgreSQL as the permits of the last hour pile up.

The send activity checks the caps twice per email (`cap_gate.peek`, then `cap_gate.claim` under a
global advisory lock): the per-second totals of the user's permits and of everyone's in the longest
window (`user_permits`, `global_permits`: at most 3,600 rows each). A 10-minute run
never reaches the steady state of a million emails a day (62,500 permits in the last hour), so after
the scale phase this probe times `peek` on the run's own database, then again after topping the
last hour up with synthetic permits. It writes to the ledger: run it only on a throwaway database.
"""

from __future__ import annotations

import statistics
import time
from dataclasses import dataclass

import asyncpg

from activities import cap_gate
from warmup import caps
from warmup.config import Settings

STEADY_STATE_PERMITS = 62_500  # 1,000,000 emails in a 16-hour window: one hour's worth


@dataclass(frozen=True)
class CapCheck:
    permits_last_hour: int
    statistics: str  # "as the run left them" or "fresh" (after ANALYZE): the plan PostgreSQL picks
    ms_per_check: float  # median wall time of one check, PostgreSQL doing nothing else

    @property
    def locked_checks_per_second(self) -> float:
        """The ceiling on sends/s while every claim counts under the one global lock."""
        return 1000 / self.ms_per_check if self.ms_per_check else 0.0


async def _time_checks(pool: asyncpg.Pool, user_id: str, windows: list[caps.Window], n: int = 30) -> float:
    took = []
    async with pool.acquire() as conn:
        for _ in range(n):
            began = time.perf_counter()
            await cap_gate.peek(conn, user_id, windows)
            took.append((time.perf_counter() - began) * 1000)
    return round(statistics.median(took), 2)


async def _permits(pool: asyncpg.Pool) -> int:
    return int(
        await pool.fetchval("SELECT count(*) FROM send_ledger WHERE permit_at > now() - interval '1 hour'")
    )


async def probe(pool: asyncpg.Pool, settings: Settings, user_id: str) -> list[CapCheck]:
    windows = caps.windows(settings)
    now_permits = await _permits(pool)
    out = [CapCheck(now_permits, "as the run left them", await _time_checks(pool, user_id, windows))]
    await pool.execute("ANALYZE send_ledger")
    out.append(CapCheck(now_permits, "fresh", await _time_checks(pool, user_id, windows)))
    missing = STEADY_STATE_PERMITS - now_permits
    if missing > 0:
        await _top_up(pool, missing)
        await pool.execute("ANALYZE send_ledger")
        out.append(CapCheck(await _permits(pool), "fresh", await _time_checks(pool, user_id, windows)))
    return out


async def _top_up(pool: asyncpg.Pool, count: int) -> None:
    """`count` SENT rows with permits spread over the last hour, from one existing pair of mailboxes."""
    async with pool.acquire() as conn:
        # The last two mailboxes: the probe times the first mailbox's user, whose own permits stay few.
        pair = await conn.fetch("SELECT id, user_id FROM mailboxes ORDER BY id DESC LIMIT 2")
        if len(pair) < 2:
            return
        (a, user), (b, _) = (pair[0]["id"], pair[0]["user_id"]), (pair[1]["id"], pair[1]["user_id"])
        await conn.execute(
            """
            INSERT INTO send_ledger (idempotency_key, sender_id, recipient_id, day, slot, message_id, message,
                status, planned_at, dispatched_at, user_id, permit_at, sent_at)
            SELECT 'capprobe:' || g, $1, $2, current_date, g, '<capprobe-' || g || '>', '', 'SENT',
                now() - (g * interval '3600 seconds') / $3, now() - (g * interval '3600 seconds') / $3, $4,
                now() - (g * interval '3600 seconds') / $3, now() - (g * interval '3600 seconds') / $3
            FROM generate_series(1, $3) AS g
            """,
            a,
            b,
            count,
            user,
        )
        await conn.execute(
            """
            INSERT INTO global_permits (second, permits)
            SELECT floor(extract(epoch FROM permit_at))::bigint, count(*) FROM send_ledger
            WHERE idempotency_key LIKE 'capprobe:%' GROUP BY 1
            ON CONFLICT (second) DO UPDATE SET permits = global_permits.permits + excluded.permits
            """
        )
        await conn.execute(
            """
            INSERT INTO user_permits (user_id, second, permits)
            SELECT user_id, floor(extract(epoch FROM permit_at))::bigint, count(*) FROM send_ledger
            WHERE idempotency_key LIKE 'capprobe:%' GROUP BY 1, 2
            ON CONFLICT (user_id, second) DO UPDATE SET permits = user_permits.permits + excluded.permits
            """
        )
