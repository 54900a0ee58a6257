"""The cap gate against real PostgreSQL: every window holds exactly at its cap, across users."""

from __future__ import annotations

import datetime as dt
import uuid

import asyncpg

from activities import cap_gate, ledger_writes
from devstack.postgres import PgServer
from warmup import caps
from warmup.config import load_settings
from warmup.db import Conn, migrate
from warmup.mailboxes import NewMailbox, SmtpAccount, upsert_mailbox
from warmup.models import ScheduleSettings, SmtpSecurity

DAY = dt.date(2026, 6, 1)


async def _pending_sends(conn: Conn, users: list[str]) -> list[tuple[str, str]]:
    """One PENDING send per entry of `users` (its own sender each): (idempotency key, user)."""
    out = []
    recipient = await upsert_mailbox(
        conn,
        NewMailbox(
            user_id="pool",
            address="rcpt@example.test",
            smtp=SmtpAccount("127.0.0.1", 2525, SmtpSecurity.NONE, "rcpt"),
            secret_ciphertext="not-a-real-token",
            schedule=ScheduleSettings(),
        ),
    )
    for n, user in enumerate(users):
        sender = await upsert_mailbox(
            conn,
            NewMailbox(
                user_id=user,
                address=f"s{n}@example.test",
                smtp=SmtpAccount("127.0.0.1", 2525, SmtpSecurity.NONE, f"s{n}"),
                secret_ciphertext="not-a-real-token",
                schedule=ScheduleSettings(),
            ),
        )
        key = f"{sender.id}:{DAY}:0"
        await ledger_writes.insert_pending(
            conn,
            idempotency_key=key,
            sender_id=sender.id,
            user_id=user,
            recipient_id=recipient.id,
            day=DAY,
            slot=0,
            message_id=f"<{n}@example.test>",
            message="Subject: hi\r\n\r\nhello",
            planned_at=0.0,
            dispatched_at=0.0,
        )
        out.append((key, user))
    return out


async def test_the_global_minute_cap_admits_exactly_its_number_across_users(db_pool: asyncpg.Pool) -> None:
    windows = caps.windows(load_settings({"WARMUP_GLOBAL_SENDS_PER_MINUTE": "3"}))
    async with db_pool.acquire() as conn:
        sends = await _pending_sends(conn, ["u1", "u2", "u3", "u4", "u5"])
        decisions = [await cap_gate.claim(conn, key, user, windows) for key, user in sends]
        assert [d.claimed for d in decisions] == [True, True, True, False, False]
        held = decisions[3]
        assert held.binding is not None and held.binding.name == "GLOBAL_SENDS_PER_MINUTE"
        # The first permit leaves the window a minute after its second ends: never sooner.
        assert 58.0 < held.wait_seconds <= 61.0
        assert (await cap_gate.peek(conn, "u9", windows)).binding == held.binding
        assert await conn.fetchval("SELECT sum(permits) FROM global_permits") == 3
        statuses = await conn.fetch(
            "SELECT status::text, binding_cap FROM send_ledger ORDER BY idempotency_key"
        )
        assert sorted(r["status"] for r in statuses) == [
            "PENDING",
            "PENDING",
            "SENDING",
            "SENDING",
            "SENDING",
        ]


async def test_permits_older_than_every_window_stop_counting_and_are_forgotten(db_pool: asyncpg.Pool) -> None:
    windows = caps.windows(load_settings({"WARMUP_GLOBAL_SENDS_PER_MINUTE": "2"}))
    async with db_pool.acquire() as conn:
        now = int(await conn.fetchval("SELECT extract(epoch FROM clock_timestamp())"))
        # Two seconds: one just over a minute ago (outside the minute, inside the hour), one two hours ago.
        await conn.execute(
            "INSERT INTO global_permits VALUES ($1, 5), ($2, 7)",
            now - 62,
            now - 7200,
        )
        [(key, user)] = await _pending_sends(conn, ["u1"])
        assert (await cap_gate.peek(conn, user, windows)).binding is None
        assert (await cap_gate.claim(conn, key, user, windows)).claimed
        rows = await conn.fetch("SELECT second, permits FROM global_permits")
        left = {int(r["second"]): int(r["permits"]) for r in rows}
        assert now - 7200 not in left, "a second no window reaches is deleted"
        assert left[now - 62] == 5


async def test_the_global_hour_window_counts_every_second_inside_it(db_pool: asyncpg.Pool) -> None:
    windows = caps.windows(
        load_settings({"WARMUP_GLOBAL_SENDS_PER_HOUR": "100", "WARMUP_GLOBAL_SENDS_PER_MINUTE": "1000"})
    )
    async with db_pool.acquire() as conn:
        now = int(await conn.fetchval("SELECT extract(epoch FROM clock_timestamp())"))
        await conn.execute(
            "INSERT INTO global_permits SELECT $1::bigint - g * 36, 1 FROM generate_series(1, 99) g", now
        )
        sends = await _pending_sends(conn, ["u1", "u2"])
        first, second = [await cap_gate.claim(conn, key, user, windows) for key, user in sends]
        assert first.claimed and not second.claimed
        assert second.binding is not None and second.binding.name == "GLOBAL_SENDS_PER_HOUR"
        # The oldest permit, 99 x 36 s ago, leaves the hour 36 s (+1 s of rounding) from now.
        assert 34.0 < second.wait_seconds <= 38.0


async def test_a_users_windows_count_its_own_permits_and_forget_old_seconds(db_pool: asyncpg.Pool) -> None:
    windows = caps.windows(load_settings({"WARMUP_USER_SENDS_PER_MINUTE": "3"}))
    async with db_pool.acquire() as conn:
        now = int(await conn.fetchval("SELECT extract(epoch FROM clock_timestamp())"))
        # u1 sent one 30 s ago (inside its minute) and four two hours ago (no window reaches those).
        await conn.execute(
            "INSERT INTO user_permits VALUES ('u1', $1, 1), ('u1', $2, 4)", now - 30, now - 7200
        )
        sends = await _pending_sends(conn, ["u1", "u1", "u1", "u2"])
        decisions = [await cap_gate.claim(conn, key, user, windows) for key, user in sends]
        assert [d.claimed for d in decisions] == [True, True, False, True]
        held = decisions[2]
        assert held.binding is not None and held.binding.name == "USER_SENDS_PER_MINUTE"
        # The permit of 30 s ago leaves the minute about 30 s from now (+1 s of rounding).
        assert 28.0 < held.wait_seconds <= 32.0
        rows = await conn.fetch("SELECT user_id, sum(permits) AS n FROM user_permits GROUP BY 1")
        assert {r["user_id"]: r["n"] for r in rows} == {"u1": 3, "u2": 1}, "the old second is forgotten"


async def test_permits_claimed_before_0023_still_count_after_it(pg_server: PgServer) -> None:
    name = f"before_user_permits_{uuid.uuid4().hex[:8]}"
    await pg_server.create_database(name)
    conn = await asyncpg.connect(pg_server.dsn(name))
    try:
        await migrate(conn, lambda version: version < 23)
        windows = caps.windows(load_settings({"WARMUP_USER_SENDS_PER_MINUTE": "2"}))
        sends = await _pending_sends(conn, ["u1", "u1", "u1"])
        for key, user in sends[:2]:
            assert (await cap_gate.claim(conn, key, user, windows, DAY)).claimed

        assert "0023_user_permits.sql" in await migrate(conn)

        key, user = sends[2]
        assert (await cap_gate.peek(conn, user, windows)).binding is not None
        held = await cap_gate.claim(conn, key, user, windows, DAY)
        assert not held.claimed and held.binding is not None
        assert held.binding.name == "USER_SENDS_PER_MINUTE"
    finally:
        await conn.close()
        await pg_server.drop_database(name)
