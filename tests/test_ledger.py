"""The audit's bug #1 cannot come back: the row the send path writes is the row every count counts.

The counts are the queries production runs: `warmup.fleet` (`starter list/status/report` and the
metrics collector) and `warmup.ledger.recipients_on` (the send activity's uniqueness check).
"""

from __future__ import annotations

import datetime as dt
import time

import asyncpg
import pytest

from activities import cap_gate, ledger_writes
from warmup import caps, fleet, ledger
from warmup.config import load_settings
from warmup.errors import ERR_CAP_WINDOW_CLOSED, ERR_POLICY, ERR_TRANSIENT, ledger_error
from warmup.mailboxes import NewMailbox, SmtpAccount, upsert_mailbox
from warmup.models import ScheduleSettings, SendStatus, SmtpSecurity


async def _two_mailboxes(conn: asyncpg.pool.PoolConnectionProxy) -> tuple[int, int]:
    ids = []
    for name in ("a", "b"):
        rec = await upsert_mailbox(
            conn,
            NewMailbox(
                user_id="alice",
                address=f"{name}@example.test",
                smtp=SmtpAccount("127.0.0.1", 2525, SmtpSecurity.NONE, name),
                secret_ciphertext="not-a-real-token",
                schedule=ScheduleSettings(),
            ),
        )
        ids.append(rec.id)
    return ids[0], ids[1]


async def _today(conn: asyncpg.pool.PoolConnectionProxy, sender: int) -> dt.date:
    """The sender's local calendar day: the one its workflow plans and `starter list` counts."""
    day = await conn.fetchval(
        "SELECT (now() AT TIME ZONE timezone)::date FROM mailboxes WHERE id = $1", sender
    )
    assert isinstance(day, dt.date)
    return day


async def _pending(conn: asyncpg.pool.PoolConnectionProxy, sender: int, recipient: int, slot: int) -> str:
    """Record a send as the activity does, on the sender's local today."""
    day = await _today(conn, sender)
    key = f"{sender}:{day}:{slot}"
    now = time.time()
    await ledger_writes.insert_pending(
        conn,
        idempotency_key=key,
        sender_id=sender,
        user_id="alice",
        recipient_id=recipient,
        day=day,
        slot=slot,
        message_id=f"<{slot}@example.test>",
        message="Subject: hi\r\n\r\nhello",
        planned_at=now,
        dispatched_at=now,
    )
    return key


async def _counts(conn: asyncpg.pool.PoolConnectionProxy, sender: int) -> dict[str, int]:
    """What each production query says the sender delivered today, and the last hours' totals."""
    day = await _today(conn, sender)
    listed = {m.id: m.delivered_today for m in await fleet.list_mailboxes(conn, user_id="alice")}
    hours = await fleet.hourly_throughput(conn, user_id="alice")
    return {
        "delivered_on": (await fleet.delivered_on(conn, [(sender, day)])).get((sender, day), 0),
        "delivered_today": listed[sender],
        "hourly_delivered": sum(h.delivered for h in hours),
        "hourly_senders": sum(h.active_mailboxes for h in hours),
        "hourly_failed": sum(h.failed for h in hours),
    }


async def test_a_sent_row_written_by_the_send_path_is_counted_by_every_production_query(
    db_pool: asyncpg.Pool,
) -> None:
    async with db_pool.acquire() as conn:
        sender, recipient = await _two_mailboxes(conn)
        key = await _pending(conn, sender, recipient, 0)
        nothing = {
            "delivered_on": 0,
            "delivered_today": 0,
            "hourly_delivered": 0,
            "hourly_senders": 0,
            "hourly_failed": 0,
        }
        assert await _counts(conn, sender) == nothing, "PENDING is not delivered"
        assert (await cap_gate.claim(conn, key, "alice", caps.windows(load_settings({})))).claimed
        assert await _counts(conn, sender) == nothing, "SENDING is not delivered"
        await ledger_writes.mark_sent(conn, key, 250, None)

        assert await conn.fetchval("SELECT status::text FROM send_ledger") == SendStatus.SENT.value
        one = {**nothing, "delivered_on": 1, "delivered_today": 1, "hourly_delivered": 1, "hourly_senders": 1}
        assert await _counts(conn, sender) == one
        assert await ledger.recipients_on(conn, sender, await _today(conn, sender)) == {recipient}
        by_status = {(s.status, s.count) for s in await fleet.ledger_last_day(conn, "alice")}
        assert by_status == {(SendStatus.SENT, 1)}
        assert await fleet.hourly_throughput(conn, user_id="bob") == [], "another user's view counts none"

        # REPLIED still counts as delivered, as the audit's plan checks did.
        await conn.execute("UPDATE send_ledger SET status = $1", SendStatus.REPLIED.value)
        assert await _counts(conn, sender) == one


async def test_a_send_given_up_is_counted_as_an_error_of_its_kind_never_as_delivered(
    db_pool: asyncpg.Pool,
) -> None:
    async with db_pool.acquire() as conn:
        sender, recipient = await _two_mailboxes(conn)
        # The texts the send activity stores when it gives a slot up, one per kind.
        given_up = {
            "gave_up": ledger_error(ERR_TRANSIENT, "SMTP DATA refused (451 4.3.0 try again later)"),
            "cap_window_closed": ledger_error(
                ERR_CAP_WINDOW_CLOSED, "the cap held it until the window closed"
            ),
            "refused": ledger_error(ERR_POLICY, "SMTP RCPT refused (550 5.1.1 no such user)"),
        }
        for slot, error in enumerate(given_up.values()):
            key = await _pending(conn, sender, recipient, slot)
            await ledger_writes.mark_failed(conn, key, None, error)
        unknown = await _pending(conn, sender, recipient, 3)
        assert (await cap_gate.claim(conn, unknown, "alice", caps.windows(load_settings({})))).claimed
        assert await ledger_writes.mark_unknown(conn, unknown, "no reply after DATA")

        errors = await fleet.errors_last_hour(conn)
        assert errors == {"gave_up": 1, "cap_window_closed": 1, "refused": 1, "unknown": 1, "retrying": 0}
        counts = await _counts(conn, sender)
        assert counts["delivered_on"] == counts["delivered_today"] == counts["hourly_delivered"] == 0
        assert counts["hourly_failed"] == 4  # FAILED and UNKNOWN


@pytest.mark.parametrize("spelling", ["sent", "Sent", "SENT "])
async def test_a_misspelt_status_is_refused_not_silently_uncounted(
    db_pool: asyncpg.Pool, spelling: str
) -> None:
    async with db_pool.acquire() as conn:
        sender, recipient = await _two_mailboxes(conn)
        with pytest.raises(asyncpg.InvalidTextRepresentationError):
            await conn.execute(
                "INSERT INTO send_ledger (idempotency_key, sender_id, recipient_id, day, slot, message_id,"
                " message, status, planned_at, dispatched_at, user_id)"
                " VALUES ('k', $1, $2, current_date, 0, 'm', 'x', $3, now(), now(), 'alice')",
                sender,
                recipient,
                spelling,
            )


async def test_a_250_marks_the_send_sent_and_only_a_replys_original_replied(db_pool: asyncpg.Pool) -> None:
    async with db_pool.acquire() as conn:
        sender, recipient = await _two_mailboxes(conn)
        original, reply, plain, lost, waiting = [await _pending(conn, sender, recipient, n) for n in range(5)]

        async def set_row(key: str, status: SendStatus, in_reply_to: int | None = None) -> int:
            row_id = await conn.fetchval(
                "UPDATE send_ledger SET status = $2, in_reply_to = $3"
                " WHERE idempotency_key = $1 RETURNING id",
                key,
                status.value,
                in_reply_to,
            )
            assert isinstance(row_id, int)
            return row_id

        original_id = await set_row(original, SendStatus.SENT)
        await set_row(reply, SendStatus.SENDING, original_id)
        await set_row(plain, SendStatus.SENDING)
        await set_row(lost, SendStatus.UNKNOWN)

        await ledger_writes.mark_sent(conn, reply, 250, original_id)
        await ledger_writes.mark_sent(conn, plain, 250, None)
        await ledger_writes.mark_sent(conn, lost, 250, None)  # a 250 is the truth a look may have missed
        await ledger_writes.mark_sent(conn, waiting, 250, None)  # PENDING: never claimed, never sent

        rows = await conn.fetch("SELECT idempotency_key, status::text, smtp_code FROM send_ledger")
        got = {r["idempotency_key"]: (r["status"], r["smtp_code"]) for r in rows}
        assert got == {
            original: (SendStatus.REPLIED.value, None),
            reply: (SendStatus.SENT.value, 250),
            plain: (SendStatus.SENT.value, 250),
            lost: (SendStatus.SENT.value, 250),
            waiting: (SendStatus.PENDING.value, None),
        }
