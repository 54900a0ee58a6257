"""The event feed the embedding product polls (`GET /v1/events?after=<id>`) or receives as webhooks
(warmup/webhooks.py): rows the mailboxes table's trigger writes (migration 0013) whenever a mailbox's
state changes, whoever changed it, and the rows the inbox activities record (engagement off, placement
low)."""

from __future__ import annotations

import dataclasses
import datetime as dt

from warmup.db import Conn

# The first four come from the mailboxes table's trigger; the last two from the activities that see them.
ENGAGEMENT_OFF = "mailbox.engagement_off"  # its IMAP login was refused: no inbox sessions until fixed
PLACEMENT_LOW = "mailbox.placement_low"  # the day's placement check found its spam share too high
KINDS = (
    "mailbox.paused",
    "mailbox.sign_in_needed",
    "mailbox.resumed",
    "mailbox.removed",
    ENGAGEMENT_OFF,
    PLACEMENT_LOW,
)


@dataclasses.dataclass(frozen=True)
class Event:
    id: int  # increasing: the feed's cursor, and the event's idempotency key
    kind: str
    user_id: str
    mailbox_id: int
    address: str
    reason: str
    created_at: dt.datetime


async def record_event(conn: Conn, mailbox_id: int, kind: str, reason: str, dedup_key: str) -> bool:
    """An event of an activity, once per `dedup_key` (a retry records nothing twice); True if new.
    Its webhooks are queued by the events table's trigger, in the same statement."""
    assert kind in KINDS, kind
    status = await conn.execute(
        "INSERT INTO events (user_id, mailbox_id, address, kind, reason, dedup_key)"
        " SELECT user_id, id, address, $2, $3, $4 FROM mailboxes WHERE id = $1"
        " ON CONFLICT (dedup_key) WHERE dedup_key IS NOT NULL DO NOTHING",
        mailbox_id,
        kind,
        reason,
        dedup_key,
    )
    return status == "INSERT 0 1"


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
