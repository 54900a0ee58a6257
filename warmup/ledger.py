"""Every query that counts warmup email. All of them take their statuses from `warmup.models`,
so the writer and the counters cannot disagree on spelling (the audit's bug #1)."""

from __future__ import annotations

import datetime as dt

import asyncpg

from warmup.models import DELIVERED_STATUSES, SendStatus

_DELIVERED = [s.value for s in DELIVERED_STATUSES]


async def delivered_by_mailbox_on(conn: asyncpg.Connection, mailbox_id: int, day: dt.date) -> int:
    """Per-mailbox quota: warmup emails this mailbox delivered on its local `day`."""
    n = await conn.fetchval(
        "SELECT count(*) FROM send_ledger WHERE sender_id = $1 AND day = $2 AND status = ANY($3::send_status[])",
        mailbox_id,
        day,
        _DELIVERED,
    )
    return int(n)


async def delivered_by_user_on(conn: asyncpg.Connection, user_id: str, day: dt.date) -> int:
    """Plan limit: warmup emails all of a user's mailboxes delivered on `day` (SENT and REPLIED)."""
    n = await conn.fetchval(
        "SELECT count(*) FROM send_ledger l JOIN mailboxes m ON m.id = l.sender_id"
        " WHERE m.user_id = $1 AND l.day = $2 AND l.status = ANY($3::send_status[])",
        user_id,
        day,
        _DELIVERED,
    )
    return int(n)


async def recipients_on(conn: asyncpg.Connection, sender_id: int, day: dt.date) -> set[int]:
    """Uniqueness check: who this sender already mailed on `day` (any status but FAILED)."""
    rows = await conn.fetch(
        "SELECT DISTINCT recipient_id FROM send_ledger WHERE sender_id = $1 AND day = $2 AND status <> $3",
        sender_id,
        day,
        SendStatus.FAILED.value,
    )
    return {int(r["recipient_id"]) for r in rows}


async def delivered_per_hour(
    conn: asyncpg.Connection, since: dt.datetime
) -> list[tuple[dt.datetime, int, int]]:
    """Hourly throughput: (hour, emails delivered, distinct senders) since `since`."""
    rows = await conn.fetch(
        "SELECT date_trunc('hour', sent_at) AS hour, count(*) AS sent, count(DISTINCT sender_id) AS senders"
        " FROM send_ledger WHERE status = ANY($1::send_status[]) AND sent_at >= $2"
        " GROUP BY hour ORDER BY hour",
        _DELIVERED,
        since,
    )
    return [(r["hour"], int(r["sent"]), int(r["senders"])) for r in rows]


async def status_counts_on(conn: asyncpg.Connection, mailbox_id: int, day: dt.date) -> dict[SendStatus, int]:
    rows = await conn.fetch(
        "SELECT status, count(*) AS n FROM send_ledger WHERE sender_id = $1 AND day = $2 GROUP BY status",
        mailbox_id,
        day,
    )
    return {SendStatus(r["status"]): int(r["n"]) for r in rows}
