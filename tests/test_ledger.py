"""The audit's bug #1 cannot come back: the row the send path writes is the row every quota query counts."""

from __future__ import annotations

import datetime as dt

import asyncpg
import pytest

from activities import cap_gate, ledger_writes
from warmup import caps, ledger
from warmup.config import load_settings
from warmup.mailboxes import SmtpAccount, upsert_mailbox
from warmup.models import ScheduleSettings, SendStatus, SmtpSecurity

DAY = dt.date(2026, 6, 1)
NOON = dt.datetime(2026, 6, 1, 12, tzinfo=dt.UTC).timestamp()


async def _two_mailboxes(conn: asyncpg.pool.PoolConnectionProxy) -> tuple[int, int]:
    ids = []
    for name in ("a", "b"):
        rec = await upsert_mailbox(
            conn,
            user_id="alice",
            address=f"{name}@example.test",
            smtp=SmtpAccount("127.0.0.1", 2525, SmtpSecurity.NONE, name),
            secret_ciphertext="not-a-real-token",
            schedule=ScheduleSettings(),
        )
        ids.append(rec.id)
    return ids[0], ids[1]


async def test_a_sent_row_written_by_the_send_path_is_counted_by_every_quota_query(
    db_pool: asyncpg.Pool,
) -> None:
    async with db_pool.acquire() as conn:
        sender, recipient = await _two_mailboxes(conn)
        key = f"{sender}:{DAY}:0"
        await ledger_writes.insert_pending(
            conn,
            idempotency_key=key,
            sender_id=sender,
            user_id="alice",
            recipient_id=recipient,
            day=DAY,
            slot=0,
            message_id="<k@example.test>",
            message="Subject: hi\r\n\r\nhello",
            planned_at=NOON,
            dispatched_at=NOON,
        )
        assert await ledger.delivered_by_mailbox_on(conn, sender, DAY) == 0, "PENDING is not delivered"
        assert (await cap_gate.claim(conn, key, "alice", caps.windows(load_settings({})))).claimed
        await ledger_writes.mark_sent(conn, key, 250)

        assert await conn.fetchval("SELECT status::text FROM send_ledger") == SendStatus.SENT.value
        assert await ledger.delivered_by_mailbox_on(conn, sender, DAY) == 1
        assert await ledger.delivered_by_user_on(conn, "alice", DAY) == 1
        assert await ledger.recipients_on(conn, sender, DAY) == {recipient}
        assert await ledger.status_counts_on(conn, sender, DAY) == {SendStatus.SENT: 1}
        hours = await ledger.delivered_per_hour(conn, dt.datetime.now(dt.UTC) - dt.timedelta(hours=1))
        assert [(sent, senders) for _, sent, senders in hours] == [(1, 1)]

        # REPLIED still counts toward the quota and the plan, as the audit's plan checks did.
        await conn.execute("UPDATE send_ledger SET status = $1", SendStatus.REPLIED.value)
        assert await ledger.delivered_by_mailbox_on(conn, sender, DAY) == 1
        assert await ledger.delivered_by_user_on(conn, "alice", DAY) == 1


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
                " VALUES ('k', $1, $2, $3, 0, 'm', 'x', $4, now(), now(), 'alice')",
                sender,
                recipient,
                DAY,
                spelling,
            )
