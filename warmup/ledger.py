"""Reads of the send ledger that the send path itself needs: one send's row, and whom a sender
already mailed on a day. The queries that count delivered email are in `warmup.fleet`; both take
their statuses from `warmup.models`, so the writer and the counters cannot disagree on spelling
(the audit's bug #1)."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

import asyncpg

from warmup.db import Conn
from warmup.models import SendStatus


async def recipients_on(conn: Conn, sender_id: int, day: dt.date) -> set[int]:
    """Uniqueness check: who this sender already mailed on `day` (any status but FAILED)."""
    rows = await conn.fetch(
        "SELECT DISTINCT recipient_id FROM send_ledger WHERE sender_id = $1 AND day = $2 AND status <> $3",
        sender_id,
        day,
        SendStatus.FAILED.value,
    )
    return {int(r["recipient_id"]) for r in rows}


@dataclass(frozen=True)
class LedgerRow:
    """One warmup email as the send ledger records it."""

    idempotency_key: str
    sender_id: int
    recipient_id: int
    day: dt.date
    slot: int
    message_id: str
    message: str  # the full RFC 5322 text, sent byte for byte on every attempt
    status: SendStatus
    attempts: int
    smtp_code: int | None
    error: str
    planned_at: dt.datetime
    dispatched_at: dt.datetime
    sent_at: dt.datetime | None
    binding_cap: str = ""  # the cap that last made this send wait
    in_reply_to: int | None = None  # the ledger id of the email this one answers; None = a new thread


_ROW_COLUMNS = (
    "idempotency_key, sender_id, recipient_id, day, slot, message_id, message, status, attempts,"
    " smtp_code, error, planned_at, dispatched_at, sent_at, binding_cap, in_reply_to"
)


def _ledger_row(row: asyncpg.Record) -> LedgerRow:
    return LedgerRow(
        idempotency_key=row["idempotency_key"],
        sender_id=int(row["sender_id"]),
        recipient_id=int(row["recipient_id"]),
        day=row["day"],
        slot=int(row["slot"]),
        message_id=row["message_id"],
        message=row["message"],
        status=SendStatus(row["status"]),
        attempts=int(row["attempts"]),
        smtp_code=None if row["smtp_code"] is None else int(row["smtp_code"]),
        error=row["error"],
        planned_at=row["planned_at"],
        dispatched_at=row["dispatched_at"],
        sent_at=row["sent_at"],
        binding_cap=row["binding_cap"],
        in_reply_to=row["in_reply_to"],
    )


async def ledger_row(conn: Conn, idempotency_key: str) -> LedgerRow | None:
    """The ledger row of one send (mailbox:day:slot), or None if it was never recorded."""
    row = await conn.fetchrow(
        f"SELECT {_ROW_COLUMNS} FROM send_ledger WHERE idempotency_key = $1", idempotency_key
    )
    return _ledger_row(row) if row else None
