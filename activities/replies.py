"""What a mailbox's next send is: a due reply first, else a new thread (issue #11 item 4).

The workflow decides *when* a mailbox sends; this decides *what*. An inbox session records, per email it
received, when the answer is due (`engagement.reply_due_at`); the next send slot of the receiving mailbox at
or after that time answers it, through the same idempotent path as every other warmup email: the replier's
own SMTP server, its window and spacing, the user and global caps, a ledger row of its own. Keeping replies in
the send slots keeps the workflow as it is and makes a reply part of the replier's daily volume.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from warmup.db import Conn
from warmup.models import MailboxState, SendStatus


@dataclass(frozen=True)
class DueReply:
    ledger_id: int  # the email being answered
    original_sender_id: int  # who gets the answer
    original_message: str  # its full text, to thread the answer to it


# The oldest due answer whose original sender can still receive mail (active, its address not refused);
# an email already answered (or whose answer is under way) has its row in ledger_replies and is never
# picked again. An email whose text retention cleared (message = '', migration 0021) is not answered.
_DUE = f"""
    SELECT o.id, o.sender_id, o.message
    FROM engagement e
    JOIN send_ledger o ON o.id = e.ledger_id
    JOIN mailboxes m ON m.id = o.sender_id
    WHERE o.recipient_id = $1 AND e.reply_due_at <= $2 AND o.status = '{SendStatus.SENT.value}'
      AND m.state = '{MailboxState.ACTIVE.value}' AND m.receiving_off = ''
      AND o.message <> ''
      AND NOT EXISTS (SELECT 1 FROM ledger_replies r WHERE r.in_reply_to = o.id)
    ORDER BY e.reply_due_at, o.id
    LIMIT 1
"""


async def due_reply(conn: Conn, mailbox_id: int, at: dt.datetime) -> DueReply | None:
    row = await conn.fetchrow(_DUE, mailbox_id, at)
    if row is None:
        return None
    return DueReply(int(row["id"]), int(row["sender_id"]), str(row["message"]))
