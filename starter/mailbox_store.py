"""The starter's own writes to the mailboxes table, besides enroll's upsert (warmup.mailboxes)."""

from __future__ import annotations

from warmup import mailbox_settings as ms
from warmup.db import Conn
from warmup.models import ScheduleSettings

_SET_UPDATABLE = ", ".join(f"{s.db_column} = ${i}" for i, s in enumerate(ms.UPDATABLE, start=2))


async def update_schedule(conn: Conn, mailbox_id: int, schedule: ScheduleSettings) -> None:
    """Store a mailbox's new schedule (the settings `starter update` can change)."""
    values = ms.schedule_values_of(schedule)
    await conn.execute(
        f"UPDATE mailboxes SET {_SET_UPDATABLE}, updated_at = now() WHERE id = $1",
        mailbox_id,
        *(values[s.name] for s in ms.UPDATABLE),
    )


async def ledger_rows_of(conn: Conn, mailbox_id: int) -> int:
    """How many sends the ledger keeps for a mailbox (as sender): what `remove` leaves in place."""
    n = await conn.fetchval("SELECT count(*) FROM send_ledger WHERE sender_id = $1", mailbox_id)
    return int(n)
