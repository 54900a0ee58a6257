"""Bounces: delivery status notifications (RFC 3464) that came back to a sender for its warmup mail.

A server that accepted a warmup email at RCPT may still fail to deliver it, and then mails the sender a
report: `multipart/report; report-type=delivery-status`, with a `message/delivery-status` part (per
recipient: Action, Status, Diagnostic-Code) and the original's headers. The sender's inbox session reads
them (`activities/engagement.py`), matches each to the ledger by the original's Message-ID, and files it:

- `recipient`: a permanent failure about the receiver's address (the RCPT codes of
  `activities/smtp_errors.py`: 5.1.1 unknown, 5.2.1 disabled...). The receiver leaves the pool, exactly as
  for a refusal at RCPT, with the same guard against a sender at fault.
- `sender`: any other permanent failure (5.7.x policy: spam, SPF/DKIM/DMARC...), a verdict on the sender's
  mail. A run of them pauses the sender (`warmup/ramp_reaction.py`, `ReactionSettings.bounce_pause`).

Delayed reports (Action: delayed) and successes are not bounces.
"""

from __future__ import annotations

import datetime as dt
import email
import email.message
from dataclasses import dataclass
from email.policy import default as default_policy

from activities.recipient_refusals import Refusal
from activities.smtp_errors import RECIPIENT_CODES
from warmup.db import Conn


@dataclass(frozen=True)
class Bounce:
    original_message_id: str  # "<...>", as the ledger stores it
    recipient: str  # Final-Recipient's address, lowercased ("" when the report names none)
    status: str  # the RFC 3463 code, e.g. "5.1.1"
    diagnostic: str  # Diagnostic-Code, one line ("" when absent)

    @property
    def kind(self) -> str:
        return "recipient" if self.status in RECIPIENT_CODES else "sender"

    def reply(self) -> str:
        """How it reads in a reason: 'bounced 5.1.1 (smtp; 550 5.1.1 <x@y>: User unknown)'."""
        return f"bounced {self.status}" + (f" ({self.diagnostic})" if self.diagnostic else "")


def _one_line(value: object) -> str:
    return " ".join(str(value or "").split())


def _address(field: str) -> str:
    # "rfc822; x@y" -> "x@y"
    return field.partition(";")[2].strip().strip("<>").lower() if ";" in field else field.strip().lower()


def _original_message_id(msg: email.message.Message) -> str:
    for part in msg.walk():
        kind = part.get_content_type()
        if kind == "text/rfc822-headers":
            payload = part.get_payload(decode=True)
            if isinstance(payload, bytes):
                headers = email.message_from_bytes(payload, policy=default_policy)
                return _one_line(headers.get("Message-ID"))
        if kind == "message/rfc822":
            inner = part.get_payload()
            if isinstance(inner, list) and inner and isinstance(inner[0], email.message.Message):
                return _one_line(inner[0].get("Message-ID"))
    return ""


def parse_bounces(raw: bytes) -> list[Bounce]:
    """The permanent failures a delivery status notification reports, one per failed recipient; [] for
    anything else (not a report, a delay, no original Message-ID)."""
    msg = email.message_from_bytes(raw, policy=default_policy)
    if msg.get_content_type() != "multipart/report" or msg.get_param("report-type") != "delivery-status":
        return []
    original = _original_message_id(msg)
    if not original:
        return []
    out: list[Bounce] = []
    for part in msg.walk():
        if part.get_content_type() != "message/delivery-status":
            continue
        # Python parses the part into its field blocks: the per-message one, then one per recipient.
        blocks = part.get_payload()
        for block in blocks if isinstance(blocks, list) else []:
            if not isinstance(block, email.message.Message):
                continue
            action = _one_line(block.get("Action")).lower()
            status = _one_line(block.get("Status")).split(" ")[0]
            if action != "failed" or not status.startswith("5."):
                continue
            out.append(
                Bounce(
                    original_message_id=original,
                    recipient=_address(_one_line(block.get("Final-Recipient"))),
                    status=status,
                    diagnostic=_one_line(block.get("Diagnostic-Code")),
                )
            )
    return out


# The ledger row a bounce is about: the sender's own email of the last BOUNCE_LOOKBACK_DAYS days, found
# through send_ledger_sender_day (a few hundred rows at most), so no index on message_id is needed.
BOUNCE_LOOKBACK_DAYS = 14
_ORIGINAL = """
    SELECT id, idempotency_key, recipient_id, day FROM send_ledger
    WHERE sender_id = $1 AND day >= $2 AND message_id = $3
"""


async def record_bounce(conn: Conn, sender_id: int, bounce: Bounce, today: dt.date) -> Refusal | None:
    """File `bounce` once (an earlier session may have): a recipient bounce becomes a `Refusal` of the
    receiver (returned for the caller to record, in the same transaction); None when there is nothing
    more to do: a sender bounce, a repeat, or a report about no email of this sender."""
    row = await conn.fetchrow(
        _ORIGINAL, sender_id, today - dt.timedelta(days=BOUNCE_LOOKBACK_DAYS), bounce.original_message_id
    )
    if row is None:
        return None
    status = await conn.execute(
        "INSERT INTO bounces (ledger_id, recipient, kind, status, diagnostic) VALUES ($1, $2, $3, $4, $5)"
        " ON CONFLICT DO NOTHING",
        row["id"],
        bounce.recipient,
        bounce.kind,
        bounce.status,
        bounce.diagnostic,
    )
    if status == "INSERT 0 0" or bounce.kind != "recipient":
        return None
    return Refusal(row["idempotency_key"], sender_id, int(row["recipient_id"]), row["day"], bounce.reply())


async def sender_bounces(
    conn: Conn, sender_id: int, first_day: dt.date, last_day: dt.date
) -> tuple[int, str]:
    """Sender bounces of `sender_id`'s mail sent from `first_day` to `last_day`, and the latest's reply."""
    row = await conn.fetchrow(
        """
        SELECT count(*) AS n,
               (array_agg('bounced ' || b.status || ' (' || b.diagnostic || ')' ORDER BY b.found_at DESC))[1]
                   AS last
        FROM send_ledger l JOIN bounces b ON b.ledger_id = l.id
        WHERE l.sender_id = $1 AND l.day >= $2 AND l.day <= $3 AND b.kind = 'sender'
        """,
        sender_id,
        first_day,
        last_day,
    )
    return (int(row["n"]), row["last"] or "") if row else (0, "")
