"""Reads of the send ledger that the send path itself needs: one send's row, and whom a sender
already mailed on a day. The queries that count delivered email are in `warmup.fleet`; both take
their statuses from `warmup.models`, so the writer and the counters cannot disagree on spelling
(the audit's bug #1)."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

import asyncpg

from warmup.db import Conn
from warmup.models import SendStatus, day_of_key


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


_ROW_NAMES = (
    "idempotency_key, sender_id, recipient_id, day, slot, message_id, message, status, attempts,"
    " smtp_code, error, planned_at, dispatched_at, sent_at, binding_cap, in_reply_to"
).split(", ")
ROW_COLUMNS = ", ".join(_ROW_NAMES)


def prefixed_columns(alias: str, prefix: str) -> str:
    """The columns `ledger_row_of(row, prefix)` reads, from the table named `alias` in a join."""
    return ", ".join(f"{alias}.{c} AS {prefix}{c}" for c in _ROW_NAMES)


def ledger_row_of(row: asyncpg.Record, prefix: str = "") -> LedgerRow | None:
    """The LedgerRow in `row` (its columns named with `prefix`), or None when a left join found none."""
    key = row[prefix + "idempotency_key"]
    if key is None:
        return None
    return LedgerRow(
        idempotency_key=key,
        sender_id=int(row[prefix + "sender_id"]),
        recipient_id=int(row[prefix + "recipient_id"]),
        day=row[prefix + "day"],
        slot=int(row[prefix + "slot"]),
        message_id=row[prefix + "message_id"],
        message=row[prefix + "message"],
        status=SendStatus(row[prefix + "status"]),
        attempts=int(row[prefix + "attempts"]),
        smtp_code=None if row[prefix + "smtp_code"] is None else int(row[prefix + "smtp_code"]),
        error=row[prefix + "error"],
        planned_at=row[prefix + "planned_at"],
        dispatched_at=row[prefix + "dispatched_at"],
        sent_at=row[prefix + "sent_at"],
        binding_cap=row[prefix + "binding_cap"],
        in_reply_to=row[prefix + "in_reply_to"],
    )


async def ledger_row(conn: Conn, idempotency_key: str) -> LedgerRow | None:
    """The ledger row of one send (mailbox:day:slot), or None if it was never recorded."""
    row = await conn.fetchrow(
        f"SELECT {ROW_COLUMNS} FROM send_ledger WHERE idempotency_key = $1 AND day = $2",
        idempotency_key,
        day_of_key(idempotency_key),
    )
    return ledger_row_of(row) if row else None
