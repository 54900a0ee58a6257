"""What the receiving side did, per mailbox and day, read from PostgreSQL (`starter status`, `report`).

The workflow's engagement totals count what its sessions did since it started; these rows come from
the ledger and the `engagement` table, so they survive restarts and continue-as-new and can be grouped
by day. A received email belongs to the receiver's local day on which it was delivered; a reply sent
belongs to the replier's local day of its send slot (the ledger's `day`).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass

from warmup.db import Conn
from warmup.models import DELIVERED_STATUSES, SendStatus

_DELIVERED = [s.value for s in DELIVERED_STATUSES]
# How many days `starter status` and `starter report` show (today and the days before it).
DAYS_SHOWN = 7


def shown_since(days_back: int = DAYS_SHOWN - 1) -> dt.date:
    """The first UTC day shown: today less `days_back`."""
    return dt.datetime.now(dt.UTC).date() - dt.timedelta(days=days_back)


@dataclass(frozen=True)
class EngagementDay:
    mailbox_id: int
    day: dt.date
    received: int = 0  # warmup emails delivered to this mailbox
    inbox: int = 0  # where its sessions first found them
    junk: int = 0
    other: int = 0
    missing: int = 0  # looked for until the give-up time and never found
    rescued: int = 0  # moved out of Junk into INBOX
    read: int = 0
    flagged: int = 0
    replied: int = 0  # answered by this mailbox (the original's row is REPLIED)
    replies_sent: int = 0  # answers this mailbox sent (its own ledger rows with in_reply_to)

    @property
    def not_looked_for(self) -> int:
        """Received but not found or given up yet: no session has seen them so far."""
        return self.received - self.inbox - self.junk - self.other - self.missing


_COUNTS = ("received", "inbox", "junk", "other", "missing", "rescued", "read", "flagged", "replied")


async def engagement_days(
    conn: Conn,
    mailbox_ids: Sequence[int] | None,
    since: dt.date,
) -> list[EngagementDay]:
    """Rows per (mailbox, local day) from `since` on, of the given mailboxes (None: every mailbox),
    ordered by mailbox then day. Days with nothing received and no reply sent have no row."""
    rows = await conn.fetch(
        f"""
        WITH received AS (
            SELECT l.recipient_id AS mailbox_id, (l.sent_at AT TIME ZONE m.timezone)::date AS day,
                   count(*) AS received,
                   count(*) FILTER (WHERE e.found_in = 'inbox') AS inbox,
                   count(*) FILTER (WHERE e.found_in = 'junk') AS junk,
                   count(*) FILTER (WHERE e.found_in = 'other') AS other,
                   count(*) FILTER (WHERE e.found_in = 'missing') AS missing,
                   count(e.rescued_at) AS rescued,
                   count(e.seen_at) AS read,
                   count(e.flagged_at) AS flagged,
                   count(*) FILTER (WHERE l.status = '{SendStatus.REPLIED.value}') AS replied
            FROM send_ledger l
            JOIN mailboxes m ON m.id = l.recipient_id
            LEFT JOIN engagement e ON e.ledger_id = l.id
            WHERE l.status = ANY($3::send_status[])
              AND ($1::bigint[] IS NULL OR l.recipient_id = ANY($1::bigint[]))
              -- a day earlier in UTC covers every timezone's `since`; the outer filter is exact
              AND l.sent_at >= $2::date - 1
            GROUP BY 1, 2
        ), sent AS (
            SELECT sender_id AS mailbox_id, day, count(*) AS replies_sent
            FROM send_ledger
            WHERE in_reply_to IS NOT NULL AND status = ANY($3::send_status[])
              AND ($1::bigint[] IS NULL OR sender_id = ANY($1::bigint[]))
              AND day >= $2::date
            GROUP BY 1, 2
        )
        SELECT mailbox_id, day, {", ".join(f"coalesce(r.{c}, 0) AS {c}" for c in _COUNTS)},
               coalesce(s.replies_sent, 0) AS replies_sent
        FROM received r FULL JOIN sent s USING (mailbox_id, day)
        WHERE day >= $2::date
        ORDER BY mailbox_id, day
        """,
        None if mailbox_ids is None else list(mailbox_ids),
        since,
        _DELIVERED,
    )
    return [
        EngagementDay(
            mailbox_id=int(r["mailbox_id"]),
            day=r["day"],
            **{c: int(r[c]) for c in _COUNTS},
            replies_sent=int(r["replies_sent"]),
        )
        for r in rows
    ]


def by_day(rows: Sequence[EngagementDay]) -> list[EngagementDay]:
    """The fleet's (or a user's) totals per day, oldest first (mailbox_id 0: all of them)."""
    days: dict[dt.date, dict[str, int]] = {}
    for r in rows:
        totals = days.setdefault(r.day, dict.fromkeys((*_COUNTS, "replies_sent"), 0))
        for c in totals:
            totals[c] += getattr(r, c)
    return [EngagementDay(mailbox_id=0, day=d, **t) for d, t in sorted(days.items())]
