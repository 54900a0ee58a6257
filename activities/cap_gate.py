"""The database side of the caps: count permits in each window and claim a send atomically.

Every worker process shares PostgreSQL, so the four windows hold across any number of workers; a
worker killed after its claim still counts, because the permit is committed with the claim. The
counting and the claim are SQL functions (migration 0004): one call each, so the global lock is held
only while PostgreSQL works, never across a round trip to a busy worker.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from asyncpg import Record

from warmup.caps import Window, WindowCount, wait_before_send
from warmup.db import Conn
from warmup.models import day_of_key


@dataclass(frozen=True)
class GateDecision:
    claimed: bool  # True: this attempt holds the permit and may start DATA
    wait_seconds: float = 0.0  # > 0: a cap is full, try again after this long
    binding: Window | None = None


def window_args(windows: list[Window]) -> tuple[list[str], list[float], list[int]]:
    return [w.scope for w in windows], [float(w.seconds) for w in windows], [w.cap for w in windows]


def decision_of(row: Record, windows: list[Window]) -> GateDecision:
    counts = [WindowCount(w, n, o) for w, n, o in zip(windows, row["counts"], row["oldest"], strict=True)]
    wait, binding = wait_before_send(counts, float(row["now_epoch"]))
    return GateDecision(False, wait, binding)


async def peek(conn: Conn, user_id: str, windows: list[Window]) -> GateDecision:
    """An unlocked look before connecting to SMTP: a full window means no connection at all. It reads
    the permits per second (global_permits, user_permits: migration 0023), never the ledger."""
    scopes, seconds, _ = window_args(windows)
    row = await conn.fetchrow("SELECT * FROM cap_counts($1, $2, $3)", user_id, scopes, seconds)
    assert row is not None  # a function with OUT parameters returns one row
    return decision_of(row, windows)


async def claim(
    conn: Conn, idempotency_key: str, user_id: str, windows: list[Window], day: dt.date | None = None
) -> GateDecision:
    """PENDING -> SENDING with a permit, only if every window has room; exact under concurrency. `day`:
    the send's own (its row's), so the update reads one ledger partition (migration 0021)."""
    scopes, seconds, caps = window_args(windows)
    row = await conn.fetchrow(
        "SELECT * FROM cap_claim($1, $2, $3, $4, $5, $6)",
        idempotency_key,
        user_id,
        scopes,
        seconds,
        caps,
        day,
    )
    assert row is not None
    if row["claimed"]:
        return GateDecision(True)
    if row["room"]:
        return GateDecision(False)  # not PENDING: another attempt got to DATA first
    decision = decision_of(row, windows)
    if decision.binding is not None:
        # For the status line only: outside the lock, it need not be atomic with the check.
        await conn.execute(
            "UPDATE send_ledger SET binding_cap = $2 WHERE idempotency_key = $1 AND day = $3",
            idempotency_key,
            decision.binding.name,
            day_of_key(idempotency_key),
        )
    return decision
