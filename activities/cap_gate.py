"""The database side of the caps: count permits in each window and claim a send atomically.

Every worker process shares PostgreSQL, so the four windows hold across any number of workers; a
worker killed after its claim still counts, because the permit is committed with the claim.

User windows count the user's own ledger rows (one index range, a few hundred rows at most).
Global windows count per-second totals in `global_permits`: a window (now - W, now] is read as
every second that overlaps it, so a count can be one second's worth too high, never too low.
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


def _count_sql(windows: list[Window]) -> str:
    """One statement: the database clock (workers' clocks may disagree) and every window's count."""
    user = [(i, w) for i, w in enumerate(windows) if w.scope == "user"]
    glob = [(i, w) for i, w in enumerate(windows) if w.scope == "global"]
    cols = ["t.now"]
    parts = ["(SELECT extract(epoch FROM clock_timestamp())::float8 AS now) t"]
    if user:
        sel = []
        for i, w in user:
            cond = f"permit_at > to_timestamp(t.now - {float(w.seconds)})"
            sel.append(f"count(*) FILTER (WHERE {cond}) AS n{i}")
            sel.append(f"extract(epoch FROM min(permit_at) FILTER (WHERE {cond}))::float8 AS o{i}")
            cols += [f"u.n{i}", f"u.o{i}"]
        longest = max(w.seconds for _, w in user)
        parts.append(
            f"LATERAL (SELECT {', '.join(sel)} FROM send_ledger"
            f" WHERE user_id = $1 AND permit_at > to_timestamp(t.now - {float(longest)})) u"
        )
    if glob:
        sel = []
        for i, w in glob:
            # Second s holds permits in [s, s + 1): it overlaps the window when s + 1 > now - W.
            cond = f"second > t.now - {float(w.seconds)} - 1"
            sel.append(f"coalesce(sum(permits) FILTER (WHERE {cond}), 0) AS n{i}")
            # Its permits have all left the window by s + 1 + W: "oldest" is read as s + 1.
            sel.append(f"(min(second) FILTER (WHERE {cond}) + 1)::float8 AS o{i}")
            cols += [f"g.n{i}", f"g.o{i}"]
        longest = max(w.seconds for _, w in glob)
        parts.append(
            f"LATERAL (SELECT {', '.join(sel)} FROM global_permits"
            f" WHERE second > t.now - {float(longest)} - 1) g"
        )
    return f"SELECT {', '.join(cols)} FROM {', '.join(parts)}"


async def _counts(conn: Conn, user_id: str, windows: list[Window]) -> tuple[float, list[WindowCount]]:
    row = await conn.fetchrow(_count_sql(windows), user_id)
    assert row is not None  # aggregates always return one row
    counts = [
        WindowCount(w, int(row[f"n{i}"]), None if row[f"o{i}"] is None else float(row[f"o{i}"]))
        for i, w in enumerate(windows)
    ]
    return float(row["now"]), counts


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
        # The claim and its global permit commit together, or neither does.
        row = await conn.fetchrow(
            """
            WITH claimed AS (
                UPDATE send_ledger SET status = $2, attempts = attempts + 1, permit_at = to_timestamp($4),
                    updated_at = now()
                WHERE idempotency_key = $1 AND status = $3
                RETURNING 1
            ), counted AS (
                INSERT INTO global_permits (second, permits)
                SELECT floor($4)::bigint, 1 FROM claimed
                ON CONFLICT (second) DO UPDATE SET permits = global_permits.permits + 1
                RETURNING (xmax = 0) AS new_second
            )
            SELECT (SELECT count(*) FROM claimed) AS claimed, (SELECT bool_or(new_second) FROM counted) AS new
            """,
            idempotency_key,
            SendStatus.SENDING.value,
            SendStatus.PENDING.value,
            now,
        )
        assert row is not None
        if row["new"]:
            # Once a second: forget the seconds no window can reach (the hour window is at most 3,600 s).
            await conn.execute("DELETE FROM global_permits WHERE second < $1::float8 - 3602", now)
        return GateDecision(int(row["claimed"]) == 1)
