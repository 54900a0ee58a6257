"""A sender's days, for the dashboard's charts: emails delivered and failed per local day, and where
its receivers found them (inbox, junk, other, missing) per day, from the ledger and `engagement`.

The day's quota is the workflow's; each send keeps it in its ledger row (`quota`, migration 0019), so
a past day's quota is what its last send saw (a later change that day is not seen).
"""

from __future__ import annotations

import dataclasses
import datetime as dt

from warmup.db import Conn
from warmup.models import DELIVERED_STATUSES, Placement, SendStatus

_DELIVERED = [s.value for s in DELIVERED_STATUSES]


@dataclasses.dataclass(frozen=True)
class SendDay:
    day: dt.date
    delivered: int = 0
    failed: int = 0
    inbox: int = 0  # of the delivered, where the receivers' sessions first found them
    junk: int = 0
    other: int = 0
    missing: int = 0
    quota: int = 0  # the day's quota as its last send saw it (0: not known, rows before migration 0019)

    @property
    def placement(self) -> Placement:
        return Placement(self.inbox, self.junk, self.other, self.missing)

    @property
    def inbox_share(self) -> float | None:
        return self.placement.inbox_share


async def send_days(conn: Conn, sender_id: int, days: int, today: dt.date | None = None) -> list[SendDay]:
    """One row per local day of the last `days` (today included), oldest first; empty days are zeros."""
    today = today or dt.datetime.now(dt.UTC).date()
    since = today - dt.timedelta(days=days - 1)
    rows = await conn.fetch(
        f"""
        SELECT l.day,
               count(*) FILTER (WHERE l.status = ANY($3::send_status[])) AS delivered,
               count(*) FILTER (WHERE l.status = '{SendStatus.FAILED.value}') AS failed,
               count(*) FILTER (WHERE e.found_in = 'inbox') AS inbox,
               count(*) FILTER (WHERE e.found_in = 'junk') AS junk,
               count(*) FILTER (WHERE e.found_in = 'other') AS other,
               count(*) FILTER (WHERE e.found_in = 'missing') AS missing,
               coalesce(max(l.quota), 0) AS quota
        FROM send_ledger l LEFT JOIN engagement e ON e.ledger_id = l.id
        WHERE l.sender_id = $1 AND l.day >= $2
        GROUP BY l.day
        """,
        sender_id,
        since,
        _DELIVERED,
    )
    found = {r["day"]: SendDay(r["day"], *(int(r[c]) for c in list(r.keys())[1:])) for r in rows}
    span = [since + dt.timedelta(days=i) for i in range(days)]
    last = max([today, *found])
    span += [d for d in sorted(found) if d > today and d <= last]  # a zone ahead of UTC
    return [found.get(d, SendDay(d)) for d in span]
