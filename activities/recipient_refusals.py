"""A recipient refused for good at RCPT leaves the pool; the sender goes on (issue #15 item 4).

A `550 5.1.1` (unknown user), `5.2.1` (disabled) and the like at RCPT are about the *receiver's*
address: the receiver leaves the pool (`mailboxes.receiving_off` says why, shown to its owner in
`starter status`), its own sends go on, and the send that was refused picks another receiver.

One guard keeps a broken sender from emptying the pool: when one sender's server refuses
`SENDER_AT_FAULT_RECIPIENTS` different receivers in one day, the fault is the sender's (a server that
refuses every remote address, a relay rule), not theirs. Then the sender pauses with that reason and
the receivers only it had refused come back into the pool.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from warmup.db import Conn

# Different receivers refused by one sender's server in one day that make it the sender's fault.
SENDER_AT_FAULT_RECIPIENTS = 3


@dataclass(frozen=True)
class Refusal:
    idempotency_key: str  # the refused send
    sender_id: int
    recipient_id: int
    day: dt.date
    reply: str  # "550 5.1.1 <x@y>: Recipient address rejected: User unknown"


@dataclass(frozen=True)
class Verdict:
    sender_at_fault: bool
    refused_today: int  # different receivers the sender's server refused today, this one included


def receiving_off_reason(refusal: Refusal) -> str:
    """What the receiver's owner reads. It names no sender: that may be another user's mailbox."""
    return (
        f"its address was refused at RCPT on {refusal.day.isoformat()} ({refusal.reply}); "
        "fix the address or the mailbox, then `starter resume` it to rejoin the pool"
    )


def sender_at_fault_reason(refused_today: int, reply: str) -> str:
    return (
        f"its SMTP server refused {refused_today} different recipients today that the pool reaches "
        f"(last: {reply}); check the server's relay and recipient rules, then `starter resume` it"
    )


async def record_refusal(conn: Conn, refusal: Refusal) -> Verdict:
    """Record `refusal` and take the receiver out of the pool, or, past the guard, put back every
    receiver only this sender refused today. Run it inside the caller's transaction: the refusal, the
    receiver's state and the ledger row change together."""
    await conn.execute(
        "INSERT INTO recipient_refusals (idempotency_key, sender_id, recipient_id, day, reply)"
        " VALUES ($1, $2, $3, $4, $5) ON CONFLICT (idempotency_key, recipient_id) DO NOTHING",
        refusal.idempotency_key,
        refusal.sender_id,
        refusal.recipient_id,
        refusal.day,
        refusal.reply,
    )
    refused = int(
        await conn.fetchval(
            "SELECT count(DISTINCT recipient_id) FROM recipient_refusals WHERE sender_id = $1 AND day = $2",
            refusal.sender_id,
            refusal.day,
        )
    )
    if refused >= SENDER_AT_FAULT_RECIPIENTS:
        await conn.execute(
            """
            UPDATE mailboxes m SET receiving_off = '', updated_at = now()
            WHERE m.id IN (SELECT recipient_id FROM recipient_refusals WHERE sender_id = $1 AND day = $2)
              AND NOT EXISTS (
                  SELECT 1 FROM recipient_refusals o WHERE o.recipient_id = m.id AND o.sender_id <> $1)
            """,
            refusal.sender_id,
            refusal.day,
        )
        # They were the sender's fault: forgotten, so a resumed sender starts its count anew.
        await conn.execute(
            "DELETE FROM recipient_refusals WHERE sender_id = $1 AND day = $2", refusal.sender_id, refusal.day
        )
        return Verdict(True, refused)
    await conn.execute(
        "UPDATE mailboxes SET receiving_off = $2, updated_at = now() WHERE id = $1 AND receiving_off = ''",
        refusal.recipient_id,
        receiving_off_reason(refusal),
    )
    return Verdict(False, refused)
