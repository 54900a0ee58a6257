"""Picks who receives a warmup email: another active mailbox, new to this sender today if possible.

Cheap at 100,000 mailboxes: a random start id (derived from the idempotency key, so a retry picks the
same mailbox) and an index range scan `id >= start ORDER BY id LIMIT 1` on the partial index of
active mailboxes, wrapping around to the lowest ids. No `ORDER BY random()` over the table.
"""

from __future__ import annotations

import datetime as dt
import hashlib
from dataclasses import dataclass

from warmup.db import Conn
from warmup.ledger import recipients_on
from warmup.models import SendStatus


@dataclass(frozen=True)
class Recipient:
    id: int
    address: str


def start_point(idempotency_key: str, low: int, high: int) -> int:
    """A pseudo-random id in [low, high], the same for the same key."""
    digest = hashlib.sha256(b"recipient:" + idempotency_key.encode("utf-8")).digest()
    return low + int.from_bytes(digest[:8], "big") % (high - low + 1)


_FIRST_UNUSED_FROM = """
    SELECT id, address FROM mailboxes
    WHERE state = 'active' AND id >= $1 AND id <> $2 AND NOT (id = ANY($3::bigint[]))
    ORDER BY id LIMIT 1
"""
_FIRST_UNUSED_BEFORE = """
    SELECT id, address FROM mailboxes
    WHERE state = 'active' AND id < $1 AND id <> $2 AND NOT (id = ANY($3::bigint[]))
    ORDER BY id LIMIT 1
"""
# Only reached when this sender already mailed every other active mailbox today (a small pool).
_LEAST_USED = """
    SELECT m.id, m.address FROM send_ledger l JOIN mailboxes m ON m.id = l.recipient_id
    WHERE l.sender_id = $1 AND l.day = $2 AND l.status <> $4::send_status
      AND m.state = 'active' AND m.id <> $1
    GROUP BY m.id, m.address
    ORDER BY count(*), (m.id < $3), m.id
    LIMIT 1
"""


async def choose_recipient(
    conn: Conn, sender_id: int, day: dt.date, idempotency_key: str
) -> Recipient | None:
    """Another active mailbox for `sender_id` to mail on `day`; None when there is no other one."""
    bounds = await conn.fetchrow(
        "SELECT min(id) AS low, max(id) AS high FROM mailboxes WHERE state = 'active'"
    )
    if bounds is None or bounds["low"] is None:
        return None
    start = start_point(idempotency_key, int(bounds["low"]), int(bounds["high"]))
    used = sorted(await recipients_on(conn, sender_id, day))
    # The scans skip at most len(used) + 1 rows (a day's sends), whatever the table size.
    for query in (_FIRST_UNUSED_FROM, _FIRST_UNUSED_BEFORE):
        row = await conn.fetchrow(query, start, sender_id, used)
        if row is not None:
            return Recipient(int(row["id"]), row["address"])
    row = await conn.fetchrow(_LEAST_USED, sender_id, day, start, SendStatus.FAILED.value)
    return Recipient(int(row["id"]), row["address"]) if row is not None else None
