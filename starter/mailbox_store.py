"""The starter's own writes to the mailboxes table, besides enroll's upsert (warmup.mailboxes)."""

from __future__ import annotations

from warmup.db import Conn
from warmup.mailboxes import schedule_values
from warmup.models import ScheduleSettings


async def update_schedule(conn: Conn, mailbox_id: int, schedule: ScheduleSettings) -> None:
    """Store a mailbox's new schedule (the columns `starter update` can change)."""
    await conn.execute(
        """
        UPDATE mailboxes SET timezone = $2, window_start_hour = $3, window_end_hour = $4,
            delay_min_minutes = $5, delay_max_minutes = $6, ramp_start = $7, ramp_increment = $8,
            ramp_ceiling = $9, ramp_variance = $10, weekdays_only = $11, updated_at = now()
        WHERE id = $1
        """,
        mailbox_id,
        *schedule_values(schedule),
    )


async def ledger_rows_of(conn: Conn, mailbox_id: int) -> int:
    """How many sends the ledger keeps for a mailbox (as sender): what `remove` leaves in place."""
    n = await conn.fetchval("SELECT count(*) FROM send_ledger WHERE sender_id = $1", mailbox_id)
    return int(n)
