"""What one attempt of `send_email` starts from, read in one statement (issue #13 item 5).

An attempt needs the sender, the send's ledger row if an earlier attempt wrote it (and its receiver's
address), the caps' unlocked look, and, for a send not yet decided, the answer its mailbox owes. Read one
by one these were five round trips to PostgreSQL per email; together they are one, and an attempt that
only waits for a cap makes no other.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from activities import cap_gate
from activities.replies import DueReply, due_reply_of, due_sql
from warmup.caps import Window
from warmup.db import Conn
from warmup.ledger import LedgerRow, ledger_row_of, prefixed_columns
from warmup.mailboxes import MailboxRecord, mailbox_record, qualified_columns


@dataclass(frozen=True)
class SendStart:
    sender: MailboxRecord
    row: LedgerRow | None  # None: no attempt has decided this send yet
    recipient_address: str | None  # the row's receiver; None without a row (or if it was deleted)
    gate: cap_gate.GateDecision  # the caps as they stood at the read: `cap_gate.peek`
    due: DueReply | None  # the answer owed; None also when the send has its row already


# $1 sender id, $2 key, $3 its day (the key's own: it lets a ledger partitioned by day find the row
# in one partition), $4/$5 the windows' scopes and lengths, $6 the dispatch time.
_START = f"""
SELECT {qualified_columns("m")}, {prefixed_columns("l", "l_")}, r.address AS recipient_address,
       c.now_epoch, c.counts, c.oldest, d.*
FROM mailboxes m
LEFT JOIN send_ledger l ON l.idempotency_key = $2 AND l.day = $3
LEFT JOIN mailboxes r ON r.id = l.recipient_id
CROSS JOIN LATERAL cap_counts(m.user_id, $4, $5) c
-- Wanted only for a send not yet decided. The planner applies the condition on l as a join filter,
-- so the lookup runs on every attempt: a few index lookups, cheaper than a second round trip.
LEFT JOIN LATERAL (SELECT * FROM ({due_sql("$1", "$6", "$3")}) due WHERE l.idempotency_key IS NULL) d ON true
WHERE m.id = $1
"""


async def read_start(
    conn: Conn, mailbox_id: int, key: str, day: dt.date, windows: list[Window], dispatched_at: float
) -> SendStart | None:
    """What the attempt starts from; None when the sender is not in the database."""
    scopes, seconds, _ = cap_gate.window_args(windows)
    at = dt.datetime.fromtimestamp(dispatched_at, tz=dt.UTC)
    found = await conn.fetchrow(_START, mailbox_id, key, day, scopes, seconds, at)
    if found is None:
        return None
    return SendStart(
        sender=mailbox_record(found),
        row=ledger_row_of(found, "l_"),
        recipient_address=found["recipient_address"],
        gate=cap_gate.decision_of(found, windows),
        due=due_reply_of(found),
    )
