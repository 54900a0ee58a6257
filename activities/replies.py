"""What a mailbox's next send is: a due reply first, else a new thread (issue #11 item 4).

The workflow decides *when* a mailbox sends; this decides *what*. An inbox session records, per email it
received, when the answer is due (`engagement.reply_due_at`); the next send slot of the receiving mailbox at
or after that time answers it, through the same idempotent path as every other warmup email: the replier's
own SMTP server, its window and spacing, the user and global caps, a ledger row of its own. Keeping replies in
the send slots keeps the workflow as it is and makes a reply part of the replier's daily volume.
"""

from __future__ import annotations

from dataclasses import dataclass

from asyncpg import Record

from warmup.models import MailboxState, SendStatus

# A person answers a warmup email within days or not at all: older answers owed are given up (a mailbox
# paused that long). It also bounds the lookup to this many of the ledger's day partitions.
REPLY_WITHIN_DAYS = 14


@dataclass(frozen=True)
class DueReply:
    ledger_id: int  # the email being answered
    original_sender_id: int  # who gets the answer
    original_sender_address: str
    original_message: str  # its full text, to thread the answer to it


def due_sql(mailbox: str, at: str, day: str) -> str:
    """The oldest answer `mailbox` owes at `at` on its local `day` (SQL expressions: parameters or outer
    columns), whose original sender can still receive mail (active, its address not refused); as
    columns due_*.

    An email already answered (or whose answer is under way) has its row in ledger_replies and is never
    picked again. An email whose text retention cleared (message = '', migration 0021) is not answered,
    nor one received more than REPLY_WITHIN_DAYS days before `day`. A subquery, so the send path reads
    it in the statement it starts with (activities/send_start.py)."""
    # The receiver's own emails first (a fence, OFFSET 0), then each one's sender by its key (lateral):
    # a planner that thought the mailboxes table empty (just enrolled by COPY, no statistics yet) read
    # every active mailbox and looked up the ledger once per mailbox.
    return f"""
    SELECT o.id AS due_id, o.sender_id AS due_sender_id, m.address AS due_address, o.message AS due_message
    FROM (
        SELECT o.id, o.sender_id, o.message, e.reply_due_at
        FROM send_ledger o JOIN engagement e ON e.ledger_id = o.id
        WHERE o.recipient_id = {mailbox} AND e.reply_due_at <= {at} AND o.status = '{SendStatus.SENT.value}'
          -- a day later too: the original's sender may be a timezone ahead
          AND o.day BETWEEN {day}::date - {REPLY_WITHIN_DAYS} AND {day}::date + 1
          AND o.message <> ''
          AND NOT EXISTS (SELECT 1 FROM ledger_replies r WHERE r.in_reply_to = o.id)
        OFFSET 0
    ) o
    CROSS JOIN LATERAL (
        SELECT m.address FROM mailboxes m
        WHERE m.id = o.sender_id AND m.state = '{MailboxState.ACTIVE.value}' AND m.receiving_off = ''
        LIMIT 1
    ) m
    ORDER BY o.reply_due_at, o.id
    LIMIT 1
"""


def due_reply_of(row: Record) -> DueReply | None:
    """The DueReply in a row that selected `due_sql`'s columns (None when nothing is due)."""
    if row["due_id"] is None:
        return None
    return DueReply(
        int(row["due_id"]), int(row["due_sender_id"]), str(row["due_address"]), str(row["due_message"])
    )
