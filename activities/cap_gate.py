"""The database side of the caps: count permits in each window and claim a send atomically.

Every worker process shares PostgreSQL, so the four windows hold across any number of workers; a
worker killed after its claim still counts, because the permit is a committed row.
"""

from __future__ import annotations

from dataclasses import dataclass

from warmup.caps import Window, WindowCount, wait_before_send
from warmup.db import Conn
from warmup.models import SendStatus

_USER_LOCK_CLASS = 1
_GLOBAL_LOCK = (2, 0)


@dataclass(frozen=True)
class GateDecision:
    claimed: bool  # True: this attempt holds the permit and may start DATA
    wait_seconds: float = 0.0  # > 0: a cap is full, try again after this long
    binding: Window | None = None


async def _counts(conn: Conn, user_id: str, windows: list[Window]) -> tuple[float, list[WindowCount]]:
    """The database clock (workers' clocks may disagree) and each window's permit count."""
    now = float(await conn.fetchval("SELECT extract(epoch FROM clock_timestamp())"))
    columns = []
    for i, w in enumerate(windows):
        cond = f"permit_at > to_timestamp($2 - {float(w.seconds)})"
        if w.scope == "user":
            cond += " AND user_id = $1"
        columns.append(f"count(*) FILTER (WHERE {cond}) AS n{i}")
        columns.append(f"extract(epoch FROM min(permit_at) FILTER (WHERE {cond})) AS o{i}")
    longest = max(w.seconds for w in windows)
    row = await conn.fetchrow(
        f"SELECT {', '.join(columns)} FROM send_ledger WHERE permit_at > to_timestamp($2 - {float(longest)})",
        user_id,
        now,
    )
    assert row is not None  # an aggregate always returns one row
    counts = [
        WindowCount(w, int(row[f"n{i}"]), None if row[f"o{i}"] is None else float(row[f"o{i}"]))
        for i, w in enumerate(windows)
    ]
    return now, counts


async def peek(conn: Conn, user_id: str, windows: list[Window]) -> GateDecision:
    """An unlocked look before connecting to SMTP: a full window means no connection at all."""
    now, counts = await _counts(conn, user_id, windows)
    wait, binding = wait_before_send(counts, now)
    return GateDecision(False, wait, binding)


async def claim(conn: Conn, idempotency_key: str, user_id: str, windows: list[Window]) -> GateDecision:
    """PENDING -> SENDING with a permit, only if every window has room; exact under concurrency."""
    async with conn.transaction():
        # User lock first, then global, in every process: no deadlock, and two sends of one user
        # (or of anyone, for the global windows) never both see the last free place.
        await conn.execute("SELECT pg_advisory_xact_lock($1, hashtext($2))", _USER_LOCK_CLASS, user_id)
        await conn.execute("SELECT pg_advisory_xact_lock($1, $2)", *_GLOBAL_LOCK)
        now, counts = await _counts(conn, user_id, windows)
        wait, binding = wait_before_send(counts, now)
        if binding is not None:
            await conn.execute(
                "UPDATE send_ledger SET binding_cap = $2 WHERE idempotency_key = $1",
                idempotency_key,
                binding.name,
            )
            return GateDecision(False, wait, binding)
        status = await conn.execute(
            "UPDATE send_ledger SET status = $2, attempts = attempts + 1, permit_at = to_timestamp($4),"
            " updated_at = now() WHERE idempotency_key = $1 AND status = $3",
            idempotency_key,
            SendStatus.SENDING.value,
            SendStatus.PENDING.value,
            now,
        )
        return GateDecision(status == "UPDATE 1")
