"""The send activity's writes to the ledger: each one a guarded state transition.

Each names the row's day (from its key), so it reads one of the ledger's day partitions.

Transitions only happen from the states named in each WHERE clause, so two attempts of the same send
that overlap (a retry started while a lost attempt still runs) cannot both reach DATA.
"""

from __future__ import annotations

import datetime as dt

from activities.replies import REPLY_WITHIN_DAYS
from warmup.db import Conn
from warmup.ledger import ROW_COLUMNS, LedgerRow, ledger_row, ledger_row_of
from warmup.models import SendStatus, day_of_key

P, S, F, U, SENT = (
    SendStatus.PENDING.value,
    SendStatus.SENDING.value,
    SendStatus.FAILED.value,
    SendStatus.UNKNOWN.value,
    SendStatus.SENT.value,
)


def _ts(epoch_seconds: float) -> dt.datetime:
    return dt.datetime.fromtimestamp(epoch_seconds, tz=dt.UTC)


async def insert_pending(
    conn: Conn,
    *,
    idempotency_key: str,
    sender_id: int,
    user_id: str,
    recipient_id: int,
    day: dt.date,
    slot: int,
    message_id: str,
    message: str,
    planned_at: float,
    dispatched_at: float,
    in_reply_to: int | None = None,
    relaxed: str = "",
    quota: int = 0,
) -> LedgerRow | None:
    """Record a send; if another attempt recorded it first, return that row instead. None only for a
    reply whose email another row answers already (in_reply_to is unique): send a new thread instead."""
    inserted = await conn.fetchrow(
        "INSERT INTO send_ledger (idempotency_key, sender_id, recipient_id, day, slot, message_id, message,"
        " status, planned_at, dispatched_at, user_id, in_reply_to, relaxed, quota)"
        " VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14)"
        f" ON CONFLICT DO NOTHING RETURNING {ROW_COLUMNS}",
        idempotency_key,
        sender_id,
        recipient_id,
        day,
        slot,
        message_id,
        message,
        P,
        _ts(planned_at),
        _ts(dispatched_at),
        user_id,
        in_reply_to,
        relaxed,
        quota,
    )
    if inserted is not None:  # the usual case: one round trip
        return ledger_row_of(inserted)
    row = await ledger_row(conn, idempotency_key)
    if row is None and in_reply_to is None:  # only if someone deleted it in between
        raise RuntimeError(f"ledger row {idempotency_key} vanished right after it was written")
    return row


# SENDING/UNKNOWN -> SENT: $1 key, $2 SMTP code, $3 its day; the statuses are literals of SendStatus.
_MARK_SENT = (
    f"UPDATE send_ledger SET status = '{SENT}', sent_at = now(), smtp_code = $2, error = '',"
    f" updated_at = now() WHERE idempotency_key = $1 AND day = $3 AND status IN ('{S}', '{U}')"
)


async def mark_sent(conn: Conn, idempotency_key: str, smtp_code: int, in_reply_to: int | None) -> None:
    """The server accepted the message. Also from UNKNOWN: a 250 is the truth a later look may have missed.
    A reply's original (`in_reply_to`, the row's) becomes REPLIED in the same statement, so no crash can
    leave one without the other."""
    day = day_of_key(idempotency_key)
    if in_reply_to is None:
        # Not the reply's statement with nothing to mark: planned once per connection (warmup/db.py),
        # that one's search for the original used the (status, sent_at) index on a day partition
        # planned while empty and read the day's every SENT row until ANALYZE (534 buffers a call
        # against 28, measured on the benchmark's first minute).
        await conn.execute(_MARK_SENT, idempotency_key, smtp_code, day)
        return
    await conn.execute(
        f"WITH sent AS ({_MARK_SENT} RETURNING in_reply_to)"
        f" UPDATE send_ledger SET status = '{SendStatus.REPLIED.value}', updated_at = now()"
        # The original is at most REPLY_WITHIN_DAYS older (activities/replies.py), or a day later in a
        # timezone ahead: those partitions only.
        f" WHERE id = (SELECT in_reply_to FROM sent) AND status = '{SENT}'"
        f" AND day BETWEEN $3::date - {REPLY_WITHIN_DAYS} AND $3::date + 1",
        idempotency_key,
        smtp_code,
        day,
    )


async def mark_retry(conn: Conn, idempotency_key: str, smtp_code: int | None, error: str) -> int:
    """A transient failure: back to PENDING (nothing was delivered) with the reason, for the next attempt.
    Returns how many transient failures this send has had."""
    n = await conn.fetchval(
        "UPDATE send_ledger SET status = $2, smtp_code = $3, error = $4, updated_at = now(),"
        " transient_failures = transient_failures + 1"
        " WHERE idempotency_key = $1 AND day = $6 AND status IN ($2, $5) RETURNING transient_failures",
        idempotency_key,
        P,
        smtp_code,
        error,
        S,
        day_of_key(idempotency_key),
    )
    return int(n or 0)


async def mark_failed(conn: Conn, idempotency_key: str, smtp_code: int | None, error: str) -> None:
    """Refused for good: nothing was delivered and the slot is given up."""
    await conn.execute(
        "UPDATE send_ledger SET status = $2, smtp_code = $3, error = $4, updated_at = now()"
        " WHERE idempotency_key = $1 AND day = $7 AND status IN ($5, $6)",
        idempotency_key,
        F,
        smtp_code,
        error,
        P,
        S,
        day_of_key(idempotency_key),
    )


async def mark_unknown(conn: Conn, idempotency_key: str, error: str) -> bool:
    """SENDING -> UNKNOWN: DATA went out and no reply came; True if this call made the change."""
    status = await conn.execute(
        "UPDATE send_ledger SET status = $2, error = $3, updated_at = now()"
        " WHERE idempotency_key = $1 AND day = $5 AND status = $4",
        idempotency_key,
        U,
        error,
        S,
        day_of_key(idempotency_key),
    )
    return status == "UPDATE 1"


async def forget_pending(conn: Conn, idempotency_key: str) -> bool:
    """Delete a row nothing was sent for yet (PENDING: before DATA, no cap permit), so the next attempt
    decides its recipient again; True if it was deleted. Used when the recipient was refused for good."""
    status = await conn.execute(
        "DELETE FROM send_ledger"
        " WHERE idempotency_key = $1 AND day = $3 AND status = $2 AND permit_at IS NULL",
        idempotency_key,
        P,
        day_of_key(idempotency_key),
    )
    return status == "DELETE 1"
