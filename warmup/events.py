"""The event feed the embedding product polls (`GET /v1/events?after=<id>`): rows the mailboxes
table's trigger writes (migration 0013) whenever a mailbox's state changes, whoever changed it."""

from __future__ import annotations

import dataclasses
import datetime as dt

from warmup.db import Conn

KINDS = ("mailbox.paused", "mailbox.sign_in_needed", "mailbox.resumed", "mailbox.removed")


@dataclasses.dataclass(frozen=True)
class Event:
    id: int  # increasing: the feed's cursor, and the event's idempotency key
    kind: str
    user_id: str
    mailbox_id: int
    address: str
    reason: str
    created_at: dt.datetime


async def list_events(conn: Conn, user_id: str | None, after: int, limit: int) -> list[Event]:
    """Events after id `after`, oldest first; of one user, or (None) of every user."""
    rows = await conn.fetch(
        "SELECT id, kind, user_id, mailbox_id, address, reason, created_at FROM events"
        " WHERE id > $1 AND ($2::text IS NULL OR user_id = $2) ORDER BY id LIMIT $3",
        after,
        user_id,
        limit,
    )
    return [Event(**dict(r)) for r in rows]


async def recent_events(conn: Conn, user_id: str | None, limit: int = 10) -> list[Event]:
    """The newest events, newest first (the dashboard's list)."""
    rows = await conn.fetch(
        "SELECT id, kind, user_id, mailbox_id, address, reason, created_at FROM events"
        " WHERE ($1::text IS NULL OR user_id = $1) ORDER BY id DESC LIMIT $2",
        user_id,
        limit,
    )
    return [Event(**dict(r)) for r in rows]
