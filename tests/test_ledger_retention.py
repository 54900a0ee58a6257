"""The send ledger partitioned by day and its retention (issue #13 item 6, migration 0021), on real
PostgreSQL: a database from before keeps every row and id; a day without its partition still takes
inserts and moves into the partition made later; old bodies are cleared but a due answer can still be
built; old days are dropped without breaking engagement, bounces, refusals or placement; the upkeep is
safe twice and twice at once; the settings refuse bad values by name."""

from __future__ import annotations

import asyncio
import datetime as dt

import asyncpg
import pytest
from temporalio.testing import WorkflowEnvironment

from activities.bounces import BOUNCE_LOOKBACK_DAYS
from activities.engagement import EngagementActivities
from activities.ledger_upkeep import LedgerActivities
from activities.ledger_writes import forget_pending, insert_pending
from activities.message import build_message, build_reply
from activities.replies import DueReply, due_reply_of, due_sql
from activities.send import SendActivities
from devstack.postgres import PgServer
from devstack.smtp_sink import SmtpSink
from tests.test_placement_days import found
from tests.test_send_activity import DAY, add_mailbox, box, request, settings
from warmup.config import ConfigError, Settings, load_settings
from warmup.db import Conn, migrate
from warmup.ledger import ledger_row
from warmup.ledger_retention import ensure_partitions, upkeep
from warmup.mailboxes import MailboxRecord
from warmup.models import LedgerUpkeep
from warmup.secrets import SecretBox
from warmup.workflow_ids import ledger_upkeep_workflow_id, webhook_delivery_workflow_id
from workers.worker import build_inbox_worker, build_worker, start_side_workflows

__all__ = ["box", "settings"]

PARTITIONS_MIGRATION = 21
TODAY = dt.datetime.now(dt.UTC).date()


def ago(days: int) -> dt.date:
    return TODAY - dt.timedelta(days=days)


async def where(conn: Conn, ledger_id: int) -> str:
    """The partition that holds a ledger row."""
    return str(
        await conn.fetchval("SELECT tableoid::regclass::text FROM send_ledger WHERE id = $1", ledger_id)
    )


async def pair(pool: asyncpg.Pool, box: SecretBox, sink: SmtpSink) -> tuple[MailboxRecord, MailboxRecord]:
    return (
        await add_mailbox(pool, box, sink, "ann@one.example", user_id="u1"),
        await add_mailbox(pool, box, sink, "bob@two.example", user_id="u2"),
    )


async def _insert(
    conn: Conn,
    sender: MailboxRecord,
    recipient: MailboxRecord,
    day: dt.date,
    key: str,
    in_reply_to: int | None = None,
) -> int | None:
    """A warmup email written by the send path's insert (its real text); its ledger id, or None for an
    answer to an email answered already."""
    message_id, text = build_message(key, sender.address, None, recipient.address, dt.datetime.now(dt.UTC))
    row = await insert_pending(
        conn,
        idempotency_key=key,
        sender_id=sender.id,
        user_id=sender.user_id,
        recipient_id=recipient.id,
        day=day,
        slot=0,
        message_id=message_id,
        message=text,
        planned_at=0.0,
        dispatched_at=0.0,
        in_reply_to=in_reply_to,
    )
    if row is None:
        return None
    return int(await conn.fetchval("SELECT id FROM send_ledger WHERE idempotency_key = $1", key))


async def sent_row(
    conn: Conn, sender: MailboxRecord, recipient: MailboxRecord, day: dt.date, slot: int
) -> int:
    """A SENT email of `day` as the send path leaves it; its ledger id."""
    key = f"{sender.id}:{day}:{slot}"
    ledger_id = await _insert(conn, sender, recipient, day, key)
    assert ledger_id is not None
    await conn.execute(
        "UPDATE send_ledger SET status = 'SENT', sent_at = $2 WHERE id = $1",
        ledger_id,
        dt.datetime.combine(day, dt.time(9), tzinfo=dt.UTC),
    )
    return ledger_id


async def test_a_ledger_from_before_0021_keeps_every_row_and_id_and_the_app_works_on_it(
    pg_server: PgServer, smtp_sink: SmtpSink, box: SecretBox, settings: Settings
) -> None:
    await pg_server.create_database("before_partitions")
    dsn = pg_server.dsn("before_partitions")
    conn = await asyncpg.connect(dsn)
    pool = await asyncpg.create_pool(dsn, min_size=1, max_size=3)
    try:
        await migrate(conn, lambda version: version < PARTITIONS_MIGRATION)
        sender, receiver = await pair(pool, box, smtp_sink)
        acts = SendActivities(pool, box, settings)
        # Rows as the code of that time wrote them (today's send path needs 0021's tables).
        for slot in range(3):
            key = request(sender, slot).idempotency_key
            await conn.execute(
                "INSERT INTO send_ledger (idempotency_key, sender_id, recipient_id, day, slot, message_id,"
                " message, status, planned_at, dispatched_at, sent_at, user_id)"
                " VALUES ($1, $2, $3, $4::text::date, $5, $6, $7, 'SENT', now(), now(), now(), 'u1')",
                key,
                sender.id,
                receiver.id,
                DAY,
                slot,
                f"<{key}@one.example>",
                f"Subject: hello {slot}\r\n\r\nbody\r\n",
            )
        # An answer (receiver -> sender) to the first email, and engagement and a bounce pointing in.
        first = await conn.fetchrow("SELECT id, day FROM send_ledger ORDER BY id LIMIT 1")
        assert first is not None
        await conn.execute(
            "INSERT INTO send_ledger (idempotency_key, sender_id, recipient_id, day, slot, message_id,"
            " message, status, planned_at, dispatched_at, user_id, in_reply_to)"
            " VALUES ('answer', $1, $2, $3, 0, '<a@two.example>', 'x', 'SENT', now(), now(), 'u2', $4)",
            receiver.id,
            sender.id,
            first["day"],
            first["id"],
        )
        await found(conn, first["id"], receiver.id, "inbox")
        await conn.execute(
            "INSERT INTO bounces (ledger_id, recipient, kind, status, diagnostic)"
            " VALUES ($1, 'bob@two.example', 'sender', '5.7.1', 'policy')",
            first["id"],
        )
        before = [dict(r) for r in await conn.fetch("SELECT * FROM send_ledger ORDER BY id")]

        assert any(name.startswith("0021") for name in await migrate(conn))

        assert await conn.fetchval("SELECT relkind FROM pg_class WHERE relname = 'send_ledger'") == b"p"
        after = [dict(r) for r in await conn.fetch("SELECT * FROM send_ledger ORDER BY id")]
        assert after == before, "every row and id kept"
        day = first["day"]
        assert {await where(conn, r["id"]) for r in after} == {f"send_ledger_{day:%Y%m%d}"}
        assert await conn.fetchval("SELECT count(*) FROM send_ledger_default") == 0
        # The app on the migrated ledger: new ids follow the old ones, lookups find the old rows.
        await acts.send_email(request(sender, 3))
        new = await ledger_row(conn, request(sender, 3).idempotency_key)
        assert new is not None and new.slot == 3
        assert await conn.fetchval("SELECT max(id) FROM send_ledger") > max(r["id"] for r in before)
        old = await ledger_row(conn, request(sender, 1).idempotency_key)
        assert old is not None and old.message == before[1]["message"]
        assert (await acts.send_email(request(sender, 1))).already_done
        # The answer's link moved to ledger_replies: the first email is answered, and a second answer
        # is refused as the old unique column refused it.
        assert await conn.fetchval(
            "SELECT idempotency_key FROM ledger_replies WHERE in_reply_to = $1", first["id"]
        )
        assert await _insert(conn, receiver, sender, day, f"{receiver.id}:{day}:2", first["id"]) is None
        assert await conn.fetchval("SELECT count(*) FROM engagement") == 1
        assert await conn.fetchval("SELECT count(*) FROM placement_days") == 1
    finally:
        await pool.close()
        await conn.close()
        await pg_server.drop_database("before_partitions")


async def test_one_answer_per_email_across_days_and_a_forgotten_answer_frees_it(
    db_pool: asyncpg.Pool, smtp_sink: SmtpSink, box: SecretBox
) -> None:
    ann, bob = await pair(db_pool, box, smtp_sink)
    async with db_pool.acquire() as conn:
        await ensure_partitions(conn, TODAY)
        original = await sent_row(conn, ann, bob, ago(1), 0)
        first = await _insert(conn, bob, ann, TODAY, f"{bob.id}:{TODAY}:0", original)
        assert first is not None
        # The same answer retried (same key) converges on its row; another slot's answer is refused,
        # even on another day (another partition).
        assert await _insert(conn, bob, ann, TODAY, f"{bob.id}:{TODAY}:0", original) == first
        assert await _insert(conn, bob, ann, ago(-1), f"{bob.id}:{ago(-1)}:0", original) is None
        assert await forget_pending(conn, f"{bob.id}:{TODAY}:0")
        assert await _insert(conn, bob, ann, ago(-1), f"{bob.id}:{ago(-1)}:0", original) is not None


async def test_an_insert_for_a_day_without_a_partition_works_and_later_lands_in_its_partition(
    db_pool: asyncpg.Pool, smtp_sink: SmtpSink, box: SecretBox, settings: Settings
) -> None:
    far = dt.date(2031, 6, 2)  # no partition: the migration made them around its own day
    sender, _ = await pair(db_pool, box, smtp_sink)
    acts = SendActivities(db_pool, box, settings)
    await acts.send_email(request(sender, 0, day=far.isoformat()))
    async with db_pool.acquire() as conn:
        row_id = int(await conn.fetchval("SELECT id FROM send_ledger WHERE day = $1", far))
        assert await where(conn, row_id) == "send_ledger_default"
        assert await ensure_partitions(conn, far) == 10
        assert await where(conn, row_id) == f"send_ledger_{far:%Y%m%d}", "moved with its id"
        assert await conn.fetchval("SELECT count(*) FROM send_ledger_default") == 0
        assert await ensure_partitions(conn, far) == 0, "idempotent"
    assert (await acts.send_email(request(sender, 0, day=far.isoformat()))).already_done
    await acts.send_email(request(sender, 1, day=far.isoformat()))
    async with db_pool.acquire() as conn:
        ids = [r["id"] for r in await conn.fetch("SELECT id FROM send_ledger WHERE day = $1", far)]
        assert len(ids) == 2
        assert {await where(conn, i) for i in ids} == {f"send_ledger_{far:%Y%m%d}"}


async def _old_ledger(pool: asyncpg.Pool, box: SecretBox, sink: SmtpSink) -> dict[str, int]:
    """Emails of 100, 30, 10 and 1 days ago (ann -> bob), with what other tables keep about them."""
    ann, bob = await pair(pool, box, sink)
    async with pool.acquire() as conn:
        for days in (100, 30, 10):
            await conn.execute("SELECT ledger_ensure_partitions($1, 1)", ago(days))
        await ensure_partitions(conn, TODAY)
        ids = {
            "old": await sent_row(conn, ann, bob, ago(100), 0),
            "month": await sent_row(conn, ann, bob, ago(30), 0),
            "due": await sent_row(conn, ann, bob, ago(10), 0),
            "read": await sent_row(conn, ann, bob, ago(10), 1),
            "fresh": await sent_row(conn, ann, bob, ago(1), 0),
        }
        # bob found every email; he will answer the one of 10 days ago (not yet sent).
        for ledger_id in ids.values():
            await found(conn, ledger_id, bob.id, "inbox")
        await conn.execute(
            "UPDATE engagement SET reply_due_at = now() - interval '1 hour' WHERE ledger_id = $1", ids["due"]
        )
        await conn.execute(
            "INSERT INTO bounces (ledger_id, recipient, kind, status, diagnostic)"
            " VALUES ($1, 'bob@two.example', 'sender', '5.7.1', 'policy')",
            ids["old"],
        )
        await conn.execute(
            "INSERT INTO recipient_refusals (idempotency_key, sender_id, recipient_id, day, reply)"
            " VALUES ('x', $1, $2, $3, '550 5.1.1')",
            ann.id,
            bob.id,
            ago(100),
        )
    return {**ids, "ann": ann.id, "bob": bob.id}


async def _due_reply(conn: Conn, mailbox_id: int) -> DueReply | None:
    """The answer the send path would find due for `mailbox_id` now (activities/send_start.py)."""
    row = await conn.fetchrow(due_sql("$1", "$2", "$3"), mailbox_id, dt.datetime.now(dt.UTC), TODAY)
    return None if row is None else due_reply_of(row)


async def test_retention_clears_old_bodies_keeps_a_due_answer_and_drops_old_days(
    db_pool: asyncpg.Pool, smtp_sink: SmtpSink, box: SecretBox
) -> None:
    ids = await _old_ledger(db_pool, box, smtp_sink)
    done = await upkeep(db_pool, TODAY, body_days=7, keep_days=90)
    assert done.partitions_dropped >= 1 and done.bodies_cleared == 2  # "month" and "read"
    async with db_pool.acquire() as conn:
        bodies = {
            name: await conn.fetchval("SELECT message FROM send_ledger WHERE id = $1", ledger_id)
            for name, ledger_id in ids.items()
            if name not in ("ann", "bob")
        }
        assert bodies["old"] is None, "the day of 100 days ago is dropped"
        assert bodies["month"] == "" and bodies["read"] == ""
        assert bodies["due"] and bodies["fresh"], "a due answer's original and a recent email keep their text"
        assert await conn.fetchval("SELECT to_regclass($1)", f"send_ledger_{ago(100):%Y%m%d}") is None
        # What pointed into the dropped day went with it; what carries its own day stays.
        assert await conn.fetchval("SELECT count(*) FROM engagement WHERE ledger_id = $1", ids["old"]) == 0
        assert await conn.fetchval("SELECT count(*) FROM bounces") == 0
        assert await conn.fetchval("SELECT count(*) FROM recipient_refusals") == 1
        assert await conn.fetchval("SELECT sum(emails) FROM placement_days") == 5
        # The due answer can still be built from the kept text.
        due = await _due_reply(conn, ids["bob"])
        assert due is not None and due.ledger_id == ids["due"]
        _, text = build_reply(due.original_message, "bob:answer:0", dt.datetime.now(dt.UTC))
        original_id = await conn.fetchval("SELECT message_id FROM send_ledger WHERE id = $1", ids["due"])
        assert f"In-Reply-To: {original_id}" in text
        # An answer decided only after its original's text was cleared is not sent (nothing to quote).
        await conn.execute("DELETE FROM engagement WHERE ledger_id = $1", ids["due"])
        await conn.execute(
            "UPDATE engagement SET reply_due_at = now() - interval '1 hour' WHERE ledger_id = $1", ids["read"]
        )
        assert await _due_reply(conn, ids["bob"]) is None
    again = await upkeep(db_pool, TODAY, body_days=7, keep_days=90)
    assert again == LedgerUpkeep(), "a second round finds nothing to do"


async def test_two_upkeeps_at_once_end_as_one(
    db_pool: asyncpg.Pool, smtp_sink: SmtpSink, box: SecretBox
) -> None:
    await _old_ledger(db_pool, box, smtp_sink)
    a, b = await asyncio.gather(
        upkeep(db_pool, TODAY, body_days=7, keep_days=90), upkeep(db_pool, TODAY, body_days=7, keep_days=90)
    )
    assert a.partitions_dropped + b.partitions_dropped >= 1
    assert a.bodies_cleared + b.bodies_cleared == 2, "each body cleared once"
    async with db_pool.acquire() as conn:
        assert await conn.fetchval("SELECT count(*) FROM send_ledger") == 4
        assert await conn.fetchval("SELECT count(*) FROM send_ledger WHERE message = ''") == 2


@pytest.mark.parametrize(
    ("env", "named"),
    [
        ({"WARMUP_JOB_CLEANUP_DAYS": "0"}, "WARMUP_JOB_CLEANUP_DAYS"),
        ({"WARMUP_LEDGER_RETENTION_DAYS": str(BOUNCE_LOOKBACK_DAYS)}, "WARMUP_LEDGER_RETENTION_DAYS"),
        ({"WARMUP_LEDGER_RETENTION_DAYS": "ninety"}, "WARMUP_LEDGER_RETENTION_DAYS"),
        (
            {"WARMUP_JOB_CLEANUP_DAYS": "30", "WARMUP_LEDGER_RETENTION_DAYS": "30"},
            "WARMUP_LEDGER_RETENTION_DAYS",
        ),
        ({"WARMUP_PLACEMENT_DAYS": "60", "WARMUP_LEDGER_RETENTION_DAYS": "45"}, "WARMUP_PLACEMENT_DAYS"),
    ],
)
def test_the_retention_settings_refuse_bad_values_by_name(env: dict[str, str], named: str) -> None:
    with pytest.raises(ConfigError, match=named):
        load_settings(env)


def test_the_retention_defaults_are_the_argued_ones() -> None:
    s = load_settings({})
    assert (s.JOB_CLEANUP_DAYS, s.LEDGER_RETENTION_DAYS) == (7, 90)
    assert s.LEDGER_RETENTION_DAYS > BOUNCE_LOOKBACK_DAYS


async def test_the_workers_upkeep_workflow_drops_an_old_day_on_its_first_round(
    temporal_env: WorkflowEnvironment, db_pool: asyncpg.Pool, box: SecretBox, settings: Settings
) -> None:
    old = ago(settings.LEDGER_RETENTION_DAYS + 5)
    async with db_pool.acquire() as conn:
        await conn.execute("SELECT ledger_ensure_partitions($1, 1)", old)
    client = temporal_env.client
    sends = build_worker(client, settings, SendActivities(db_pool, box, settings))
    inbox = build_inbox_worker(
        client,
        settings,
        EngagementActivities(db_pool, box, settings),
        ledger=LedgerActivities(db_pool, settings),
    )
    async with sends, inbox:
        await start_side_workflows(client, settings)
        await start_side_workflows(client, settings)  # every worker asks; one runs
        try:
            for _ in range(200):
                if await db_pool.fetchval("SELECT to_regclass($1)", f"send_ledger_{old:%Y%m%d}") is None:
                    break
                await asyncio.sleep(0.1)
            else:
                raise AssertionError("the upkeep workflow did not drop the old day within 20 s")
        finally:
            for workflow_id in (
                ledger_upkeep_workflow_id(settings.TASK_QUEUE),
                webhook_delivery_workflow_id(settings.TASK_QUEUE),
            ):
                await client.get_workflow_handle(workflow_id).terminate()
