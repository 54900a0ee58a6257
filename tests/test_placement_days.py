"""Placement stored per sender and send day (issue #15 item 1), on real PostgreSQL.

The receivers' inbox sessions write where each email was first found (`engagement.found_in`); the
database counts it once into `placement_days`, and a sender's score reads those counts: it survives the
ledger's rows being trimmed, counts nothing twice when a session is retried, and a database migrated
from before the table gets the placement its sessions had already found. The sessions themselves, on
the real mail lab, are in test_engagement_session.py.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
from typing import cast

import asyncpg

from activities.send import SendActivities
from devstack.postgres import PgServer
from devstack.smtp_sink import SmtpSink
from tests.helpers.plans import explained, scanned
from tests.test_pool_rules import _pool_of_thousands
from tests.test_send_activity import DAY, add_mailbox, box, request, settings
from warmup.config import Settings
from warmup.db import Conn, migrate
from warmup.mailboxes import MailboxRecord
from warmup.placement import sender_scores
from warmup.secrets import SecretBox
from warmup.send_days import send_days

__all__ = ["box", "settings"]

PLACEMENT_DAYS_MIGRATION = 16


async def sent_ledger_ids(
    pool: asyncpg.Pool, box: SecretBox, settings: Settings, sink: SmtpSink, n: int
) -> tuple[MailboxRecord, list[int]]:
    """A sender with `n` warmup emails sent through the real send path to one receiver."""
    sender = await add_mailbox(pool, box, sink, "ann@one.example", user_id="u1")
    await add_mailbox(pool, box, sink, "bob@two.example", user_id="u2")
    acts = SendActivities(pool, box, settings)
    for slot in range(n):
        await acts.send_email(request(sender, slot))
    async with pool.acquire() as conn:
        ids = [r["id"] for r in await conn.fetch("SELECT id FROM send_ledger ORDER BY id")]
    return sender, ids


async def found(conn: Conn, ledger_id: int, receiver_id: int, place: str) -> None:
    """What an inbox session writes when it finds an email: each column once (activities/engagement.py)."""
    await conn.execute(
        "INSERT INTO engagement (ledger_id, mailbox_id, found_in, found_at) VALUES ($1, $2, $3, now())"
        " ON CONFLICT (ledger_id) DO UPDATE SET found_in = COALESCE(engagement.found_in, EXCLUDED.found_in),"
        " found_at = COALESCE(engagement.found_at, EXCLUDED.found_at)",
        ledger_id,
        receiver_id,
        place,
    )


async def test_placement_is_counted_once_per_email_and_outlives_the_ledger(
    db_pool: asyncpg.Pool, smtp_sink: SmtpSink, box: SecretBox, settings: Settings
) -> None:
    sender, ids = await sent_ledger_ids(db_pool, box, settings, smtp_sink, 4)
    async with db_pool.acquire() as conn:
        receiver = await conn.fetchval("SELECT id FROM mailboxes WHERE address = 'bob@two.example'")
        # A session read the email before finding it (a row without found_in), then found it.
        await conn.execute("INSERT INTO engagement (ledger_id, mailbox_id) VALUES ($1, $2)", ids[0], receiver)
        for ledger_id, place in zip(ids, ["inbox", "inbox", "junk", "missing"], strict=True):
            await found(conn, ledger_id, receiver, place)
        # A retried session finds the first email again, now in Junk: its first place stands.
        await found(conn, ids[0], receiver, "junk")
        await conn.execute("UPDATE engagement SET seen_at = now() WHERE ledger_id = $1", ids[1])

        score = (await sender_scores(conn, [sender.id], 7, _day()))[sender.id]
        assert (score.overall.inbox, score.overall.junk, score.overall.missing) == (2, 1, 1)
        assert set(score.by_family) == {"lab"}, "the receiver's mail host is the lab's loopback"
        assert score.text().startswith("50% inbox over 7 days")

        # The ledger's rows trimmed (old partitions, bodies dropped): the placement stays.
        await conn.execute("DELETE FROM engagement")
        await conn.execute("DELETE FROM send_ledger")
        again = (await sender_scores(conn, [sender.id], 7, _day()))[sender.id]
        assert again.overall == score.overall

        # A day outside the window is not counted.
        later = _day() + dt.timedelta(days=7)
        assert await sender_scores(conn, [sender.id], 7, later) == {}


async def test_a_past_days_quota_is_kept_with_its_sends_for_the_charts(
    db_pool: asyncpg.Pool, smtp_sink: SmtpSink, box: SecretBox, settings: Settings
) -> None:
    sender = await add_mailbox(db_pool, box, smtp_sink, "ann@one.example", user_id="u1")
    await add_mailbox(db_pool, box, smtp_sink, "bob@two.example", user_id="u2")
    acts = SendActivities(db_pool, box, settings)
    for slot, quota in enumerate([12, 12, 14]):  # the quota grew during the day (a settings change)
        await acts.send_email(dataclasses.replace(request(sender, slot), quota=quota))
    async with db_pool.acquire() as conn:
        days = await send_days(conn, sender.id, 3, _day())
    assert [(d.day, d.delivered, d.quota) for d in days][-1] == (_day(), 3, 14)
    assert days[0].quota == 0, "a day without sends has no quota on record"


async def test_a_database_from_before_the_table_gets_the_placement_already_found(
    pg_server: PgServer, smtp_sink: SmtpSink, box: SecretBox, settings: Settings
) -> None:
    await pg_server.create_database("before_placement_days")
    dsn = pg_server.dsn("before_placement_days")
    conn = await asyncpg.connect(dsn)
    pool = await asyncpg.create_pool(dsn, min_size=1, max_size=3)
    try:
        # Every migration but 0016: the later ones serve today's send path.
        await migrate(conn, lambda version: version != PLACEMENT_DAYS_MIGRATION)
        sender, ids = await sent_ledger_ids(pool, box, settings, smtp_sink, 3)
        receiver = await conn.fetchval("SELECT id FROM mailboxes WHERE address = 'bob@two.example'")
        for ledger_id, place in zip(ids, ["inbox", "junk", "junk"], strict=True):
            await found(conn, ledger_id, receiver, place)

        assert any(name.startswith("0016") for name in await migrate(conn))
        score = (await sender_scores(conn, [sender.id], 7, _day()))[sender.id]
        assert (score.overall.inbox, score.overall.junk) == (1, 2)
    finally:
        await pool.close()
        await conn.close()
        await pg_server.drop_database("before_placement_days")


def _day() -> dt.date:
    return dt.date.fromisoformat(DAY)


class _Recorded:
    """A connection that keeps the statements it is given and answers none: what a function runs."""

    def __init__(self) -> None:
        self.statements: list[tuple[str, tuple[object, ...]]] = []

    async def fetch(self, query: str, *args: object) -> list[asyncpg.Record]:
        self.statements.append((query, args))
        return []


async def test_one_senders_score_reads_its_own_rows_under_the_workers_generic_plan(
    db_pool: asyncpg.Pool,
) -> None:
    """The placement check runs on the worker's pool, which plans each statement once for any
    parameters (warmup/db.py). Its statement must still read the one sender's days, not every
    sender's: written as `$1 IS NULL OR sender_id = ANY($1)`, that plan read the fleet's window."""
    days = 14
    async with db_pool.acquire() as conn:
        await _pool_of_thousands(conn)
        await conn.execute(
            "INSERT INTO placement_days (sender_id, day, host, place, emails)"
            " SELECT m.id, $1::date - d, h, 'inbox', 3 FROM mailboxes m, generate_series(0, $2 - 1) d,"
            " unnest(ARRAY['imap.one.test', 'imap.two.test']) h",
            _day(),
            days,
        )
        await conn.execute("ANALYZE placement_days")
        sender = int(await conn.fetchval("SELECT min(id) FROM mailboxes"))
        recorded = _Recorded()
        await sender_scores(cast(Conn, recorded), [sender], days, _day())
        [(sql, args)] = recorded.statements
        plan = await explained(conn, sql, *args, generic=True)
    assert scanned(plan, "placement_days") <= 2 * days  # its two hosts' days
