"""The pool rules of recipient selection (issue #15 item 3): the pure rules by property, the pick against
real PostgreSQL (rules kept, uniform over eligible receivers despite id gaps, stable for a key, relaxed
in order in a tiny pool, and the statements per pick in a pool of a few thousand mailboxes)."""

from __future__ import annotations

import asyncio
import datetime as dt
import itertools
import json
import math
import statistics
import time
import uuid
from collections import Counter

import asyncpg
import pytest
from asyncpg.pool import PoolConnectionProxy
from hypothesis import given, settings
from hypothesis import strategies as st

from activities import recipients as r
from tests.helpers.plans import explain_prepared, explained, generic_statement, reads, scanned
from warmup.fleet import relaxed_rules_on
from warmup.mailboxes import ImapServer, MailboxRecord, NewMailbox, SmtpAccount, set_state, upsert_mailbox
from warmup.models import EngagementSettings, MailboxState, RampSettings, ScheduleSettings, SmtpSecurity

DAY = dt.date(2026, 6, 1)
Connection = asyncpg.pool.PoolConnectionProxy

# --- families -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("domain", "family"),
    [
        ("gmail.com", "google"),
        ("googlemail.com", "google"),
        ("GMail.COM", "google"),
        ("outlook.com", "microsoft"),
        ("hotmail.com", "microsoft"),
        ("hotmail.co.uk", "microsoft"),
        ("live.com", "microsoft"),
        ("msn.com", "microsoft"),
        ("yahoo.com", "yahoo"),
        ("yahoo.co.jp", "yahoo"),
        ("yahoo.fr", "yahoo"),
        ("acme.example", "acme.example"),
        ("mail.gmail.com.evil.example", "mail.gmail.com.evil.example"),
        ("gmail.evil-example.com", "gmail.evil-example.com"),
    ],
)
def test_family_of_known_domains(domain: str, family: str) -> None:
    assert r.family_of(domain) == family


_LABEL = st.from_regex(r"[a-z][a-z0-9-]{0,12}[a-z0-9]", fullmatch=True)


@given(st.lists(_LABEL, min_size=2, max_size=4))
def test_other_domains_are_their_own_family(labels: list[str]) -> None:
    domain = ".".join(labels)
    family = r.family_of(domain)
    assert r.family_of(domain.upper()) == family  # case never changes a family
    if labels[0] not in r._PROVIDERS:
        assert family == domain


@given(
    st.sampled_from(sorted(r._PROVIDERS)), st.from_regex(r"(com|co|org)\.[a-z]{2}|[a-z]{2,3}", fullmatch=True)
)
def test_providers_keep_their_family_under_any_country_suffix(base: str, suffix: str) -> None:
    assert r.family_of(f"{base}.{suffix}") == r._PROVIDERS[base]


def test_domain_of_is_the_lowercased_part_after_the_at() -> None:
    assert r.domain_of("Ana.Silva@Example.ORG") == "example.org"


# --- the inbound cap ----------------------------------------------------------------------------

_RAMP = st.tuples(st.integers(0, 200), st.integers(0, 50), st.integers(0, 200)).map(
    lambda t: (min(t[0], t[2]), t[1], max(t[0], t[2]))  # start <= ceiling, as the table requires
)


@given(_RAMP, st.integers(0, 500), st.integers(0, 500))
def test_inbound_cap_stays_near_the_receivers_own_volume(
    ramp: tuple[int, int, int], yesterday: int, more: int
) -> None:
    start, increment, ceiling = ramp
    cap = r.inbound_cap(start, increment, ceiling, yesterday)
    volume = r.estimated_volume(start, increment, ceiling, yesterday)
    assert start <= volume <= ceiling
    assert cap >= r.INBOUND_CAP_FLOOR  # a receiver that sends nothing still gets a little
    assert cap == max(r.INBOUND_CAP_FLOOR, math.ceil(r.INBOUND_CAP_SLACK * volume))
    assert cap <= max(r.INBOUND_CAP_FLOOR, math.ceil(r.INBOUND_CAP_SLACK * ceiling))  # never flooded
    assert r.inbound_cap(start, increment, ceiling, yesterday + more) >= cap  # monotone in its sends


def test_inbound_cap_examples() -> None:
    assert r.inbound_cap(5, 2, 40, 0) == 8  # a new mailbox: its first day's 5, with slack
    assert r.inbound_cap(5, 2, 40, 20) == 33  # it sent 20 yesterday, 22 today
    assert r.inbound_cap(5, 2, 40, 40) == 60  # at its ceiling
    assert r.inbound_cap(0, 0, 0, 0) == 2  # sends nothing (the drills' inbox): the floor


# --- relaxation ---------------------------------------------------------------------------------


def test_relaxation_order_is_the_documented_one() -> None:
    assert [rule.value for rule in r.RELAXATION_ORDER] == [
        "pair_repeat",
        "inbound_cap",
        "family_mix",
        "same_domain",
        "same_user",
    ]


_SENDER = r.Sender(user_id="u0", domain="d0.example", last_family="gmail.com")
_CANDIDATES = st.lists(
    st.builds(
        r.Candidate,
        id=st.integers(1, 10_000),
        address=st.sampled_from(
            ["a@d0.example", "b@d1.example", "c@gmail.com", "d@googlemail.com", "e@yahoo.fr"]
        ),
        user_id=st.sampled_from(["u0", "u1", "u2"]),
        inbound_today=st.integers(0, 6),
        cap=st.integers(2, 5),
        pair_today=st.integers(0, 2),
        pair_window=st.integers(0, 4),
    ).filter(lambda c: c.pair_today <= c.pair_window),
    max_size=12,
)


@settings(max_examples=300)
@given(_CANDIDATES, st.text(max_size=20))
def test_a_rule_gives_way_only_when_no_candidate_keeps_it_and_the_more_important_ones(
    candidates: list[r.Candidate], key: str
) -> None:
    chosen = r.best_of(_SENDER, candidates, key)
    if not candidates:
        assert chosen is None
        return
    assert chosen is not None
    mine = r.preference(_SENDER, chosen)
    assert all(mine <= r.preference(_SENDER, c) for c in candidates)
    relaxed = r.relaxed_rules(_SENDER, chosen)
    assert (relaxed == "") == any(r.relaxed_rules(_SENDER, c) == "" for c in candidates)
    order = list(r.RELAXATION_ORDER)
    mine_breaches = r.breaches(_SENDER, chosen)
    for name in filter(None, relaxed.split(",")):
        rule = r.Rule(name)
        stronger = order[order.index(rule) + 1 :]
        for c in candidates:
            theirs = r.breaches(_SENDER, c)
            if theirs[rule] == 0:  # it keeps the broken rule: it must break a stronger one worse
                assert [theirs[s] for s in reversed(stronger)] > [
                    mine_breaches[s] for s in reversed(stronger)
                ]
    # Names come in relaxation order.
    names = [r.Rule(n) for n in filter(None, relaxed.split(","))]
    assert names == sorted(names, key=order.index)


@given(_CANDIDATES)
def test_first_eligible_is_the_first_that_keeps_every_rule(candidates: list[r.Candidate]) -> None:
    found = r.first_eligible(_SENDER, candidates)
    keeping = [c for c in candidates if r.relaxed_rules(_SENDER, c) == ""]
    assert found == (keeping[0] if keeping else None)


@given(st.text(max_size=40), st.integers(1, 20))
def test_draws_derive_from_the_key(key: str, count: int) -> None:
    draws = r.key_draws(key, count)
    assert draws == r.key_draws(key, count) and len(draws) == count
    assert all(0.0 <= r.unit(d) < 1.0 for d in draws)
    assert r.key_draws(key, count + 3)[:count] == draws


# --- against PostgreSQL -------------------------------------------------------------------------


async def _mailbox(
    conn: Connection, address: str, user: str, ramp: RampSettings | None = None, *, engages: bool = False
) -> MailboxRecord:
    """A pool mailbox; `engages`: with IMAP settings, so its inbox sessions read what it receives."""
    return await upsert_mailbox(
        conn,
        NewMailbox(
            user_id=user,
            address=address,
            smtp=SmtpAccount("127.0.0.1", 2525, SmtpSecurity.NONE, address),
            secret_ciphertext="not-a-real-token",
            schedule=ScheduleSettings(
                ramp=ramp or RampSettings(), engagement=EngagementSettings(enabled=engages)
            ),
            imap=ImapServer("127.0.0.1") if engages else None,
        ),
    )


async def _sent(conn: Connection, sender: MailboxRecord, recipient_id: int, day: dt.date = DAY) -> None:
    """One SENT ledger row, as the send path would leave it."""
    await conn.execute(
        """
        INSERT INTO send_ledger (idempotency_key, sender_id, user_id, recipient_id, day, slot, message_id,
            message, status, planned_at, dispatched_at)
        VALUES ($1, $2, $3, $4, $5, 0, $1, 'text', 'SENT', now(), now())
        """,
        uuid.uuid4().hex,
        sender.id,
        sender.user_id,
        recipient_id,
        day,
    )


async def _pick(conn: Connection, sender: MailboxRecord, key: str, **kw: int) -> r.Recipient:
    got = await r.choose_recipient(conn, sender.id, DAY, key, **kw)
    assert got is not None
    return got


async def test_the_pick_keeps_every_rule_while_the_pool_allows(db_pool: asyncpg.Pool) -> None:
    async with db_pool.acquire() as conn:
        sender = await _mailbox(conn, "ana@acme.example", "acme")
        own = [await _mailbox(conn, f"ana{n}@other{n}.example", "acme") for n in range(5)]
        same_domain = [await _mailbox(conn, f"bob{n}@acme.example", f"bob{n}") for n in range(5)]
        google = [await _mailbox(conn, f"g{n}@gmail.com", f"g{n}") for n in range(4)]
        google.append(await _mailbox(conn, "gm@googlemail.com", "gm"))
        others = [
            await _mailbox(conn, address, address.split("@")[0])
            for address in (
                "o@outlook.com",
                "h@hotmail.co.uk",
                "y@yahoo.fr",
                "c@corp.example",
                "d@shop.example",
            )
        ]
        forbidden = {m.id for m in own + same_domain} | {sender.id}
        picks = [await _pick(conn, sender, f"{sender.id}:{DAY}:{i}") for i in range(300)]
        assert not {p.id for p in picks} & forbidden
        assert {p.relaxed for p in picks} == {""}
        assert {p.id for p in picks} == {m.id for m in google + others}  # every eligible one comes up

        # After a Gmail pick, the next one is of another family (googlemail.com is Google too).
        await _sent(conn, sender, google[0].id)
        after_google = [await _pick(conn, sender, f"{sender.id}:{DAY}:g{i}") for i in range(100)]
        assert {p.id for p in after_google} == {m.id for m in others}


async def test_the_inbound_cap_and_the_pair_window_are_kept(db_pool: asyncpg.Pool) -> None:
    async with db_pool.acquire() as conn:
        sender = await _mailbox(conn, "ana@acme.example", "acme")
        quiet = RampSettings(start_volume=2, daily_increment=0, ceiling=2)  # cap: max(2, ceil(1.5 * 2)) = 3
        full = await _mailbox(conn, "full@full.example", "full", quiet)
        recent = await _mailbox(conn, "recent@recent.example", "recent")
        free = await _mailbox(conn, "free@free.example", "free")
        feeders = [await _mailbox(conn, f"f{n}@feed{n}.example", "feed") for n in range(3)]
        for feeder in feeders:
            await _sent(conn, feeder, full.id)  # 3 today: its cap is reached
        await _sent(conn, sender, recent.id, DAY - dt.timedelta(days=3))
        # The feeders are fine receivers too; make them full so the choice is between the three.
        for feeder in feeders:
            for n in range(8):
                await _sent(conn, sender if n == 0 else feeders[(feeders.index(feeder) + 1) % 3], feeder.id)

        picks = {(await _pick(conn, sender, f"k{i}")).id for i in range(80)}
        assert picks == {free.id}
        # A window of 2 days no longer covers the send 3 days ago.
        short = {(await _pick(conn, sender, f"k{i}", pair_repeat_days=2)).id for i in range(80)}
        assert short == {free.id, recent.id}
        # With the free receiver paused, the rules give way from the bottom: the pair window first.
        await set_state(conn, free.id, MailboxState.PAUSED, "test")
        relaxed = await _pick(conn, sender, "k0")
        assert (relaxed.id, relaxed.relaxed) == (recent.id, "pair_repeat")


async def test_a_tiny_pool_relaxes_in_order_and_says_so(db_pool: asyncpg.Pool) -> None:
    async with db_pool.acquire() as conn:
        sender = await _mailbox(conn, "ana@acme.example", "acme")
        assert await r.choose_recipient(conn, sender.id, DAY, "k") is None  # nobody else
        colleague = await _mailbox(conn, "bea@acme.example", "acme")
        first = await _pick(conn, sender, "k1")
        assert (first.id, first.relaxed) == (colleague.id, "same_domain,same_user")
        await _sent(conn, sender, colleague.id)
        again = await _pick(conn, sender, "k2")
        assert (again.id, again.relaxed) == (colleague.id, "pair_repeat,family_mix,same_domain,same_user")
        # Another user on the same domain beats the colleague: same_user gives way last.
        neighbour = await _mailbox(conn, "cid@acme.example", "cid")
        third = await _pick(conn, sender, "k3")
        assert (third.id, third.relaxed) == (neighbour.id, "family_mix,same_domain")


async def test_receivers_that_engage_come_first_and_uniformly(db_pool: asyncpg.Pool) -> None:
    """Half the pool engages (IMAP settings): with 8 probes, a pick misses all of them once in 256, so
    nearly every email goes where a session will read it, spread evenly over those receivers."""
    async with db_pool.acquire() as conn:
        sender = await _mailbox(conn, "ana@acme.example", "acme")
        engaging = [(await _mailbox(conn, f"e{n}@e{n}.example", f"e{n}", engages=True)).id for n in range(10)]
        for n in range(10):
            await _mailbox(conn, f"q{n}@q{n}.example", f"q{n}")
        picks = [await _pick(conn, sender, f"{sender.id}:{DAY}:{i}") for i in range(1000)]
    to_engaging = Counter(p.id for p in picks if p.id in engaging)
    assert sum(to_engaging.values()) >= 970, f"{sum(to_engaging.values())} of 1000 to receivers that engage"
    assert {p.relaxed for p in picks} == {""}, "a preference, never a broken rule"
    assert set(to_engaging) == set(engaging) and min(to_engaging.values()) >= 60  # about 100 each


async def test_the_rules_a_day_relaxed_are_counted_for_status(db_pool: asyncpg.Pool) -> None:
    async with db_pool.acquire() as conn:
        sender = await _mailbox(conn, "ana@acme.example", "acme")
        colleague = await _mailbox(conn, "bea@acme.example", "acme")
        relaxed = await _pick(conn, sender, "k1")
        await conn.execute(
            """
            INSERT INTO send_ledger (idempotency_key, sender_id, user_id, recipient_id, day, slot, message_id,
                message, status, planned_at, dispatched_at, relaxed)
            VALUES ('k1', $1, 'acme', $2, $3, 0, 'k1', 'text', 'SENT', now(), now(), $4)
            """,
            sender.id,
            colleague.id,
            DAY,
            relaxed.relaxed,
        )
        today = await relaxed_rules_on(conn, sender.id, DAY)
        assert (today.picks, today.by_rule) == (1, {"same_domain": 1, "same_user": 1})
        assert "same_user on 1 of 1 picks" in today.text() and "enroll more mailboxes" in today.text()
        assert (await relaxed_rules_on(conn, colleague.id, DAY)).text() == ""


async def test_a_retry_picks_the_same_receiver(db_pool: asyncpg.Pool) -> None:
    async with db_pool.acquire() as conn:
        sender = await _mailbox(conn, "ana@acme.example", "acme")
        for n in range(40):
            await _mailbox(conn, f"m{n}@d{n}.example", f"u{n}")
        first = [await _pick(conn, sender, f"{sender.id}:{DAY}:{i}") for i in range(20)]
    async with db_pool.acquire() as other:  # another worker's connection
        again = [await _pick(other, sender, f"{sender.id}:{DAY}:{i}") for i in range(20)]
    assert first == again
    assert len({p.id for p in first}) > 10  # different keys, different receivers


async def test_the_pick_is_uniform_over_eligible_receivers_despite_id_and_slot_gaps(
    db_pool: asyncpg.Pool,
) -> None:
    """30 eligible receivers between id gaps (re-enrolls burn ids) of 0 to 40, paused and same-user
    mailboxes in between (holes the probes must skip): each should get 1/30 of the picks. The old
    `id >= random ORDER BY id` scan gave a receiver after a 40-id gap 41 times the share of one
    without a gap."""
    async with db_pool.acquire() as conn:
        sender = await _mailbox(conn, "ana@acme.example", "acme")
        eligible: list[int] = []
        for n in range(30):
            for _ in range((n * 7) % 41):  # a re-enroll: the conflicting upsert burns an identity value
                await _mailbox(conn, "ana@acme.example", "acme")
            eligible.append((await _mailbox(conn, f"r{n}@d{n}.example", f"u{n}")).id)
            if n % 3 == 0:
                paused = await _mailbox(conn, f"p{n}@p{n}.example", f"p{n}")
                await set_state(conn, paused.id, MailboxState.PAUSED, "test")
            if n % 4 == 0:
                await _mailbox(conn, f"ana{n}@own{n}.example", "acme")
        ids = sorted(eligible)
        assert max(b - a for a, b in itertools.pairwise(ids)) > 30  # the ids do have gaps

        picks = 6000
        counts = Counter([(await _pick(conn, sender, f"{sender.id}:{DAY}:{i}")).id for i in range(picks)])
    expected = picks / len(eligible)
    chi2 = sum((counts[i] - expected) ** 2 / expected for i in eligible)
    worst = max(abs(counts[i] - expected) / expected for i in eligible)
    print(
        f"\nuniformity: {picks} picks over {len(eligible)} receivers,"
        f" chi2={chi2:.1f} (df 29), max deviation {worst:.1%}"
    )
    assert set(counts) == set(eligible)
    assert chi2 < 58.3  # the chi-square critical value at p = 0.001 for 29 degrees of freedom


async def _pool_of_thousands(conn: PoolConnectionProxy) -> None:
    """3,000 mailboxes of 600 users over 60 domains (a few of them the big providers), in one INSERT."""
    domains = ["gmail.com", "outlook.com", "yahoo.com", "hotmail.com", *(f"d{n}.example" for n in range(56))]
    await conn.execute("INSERT INTO users (id) SELECT 'u' || g FROM generate_series(0, 599) g")
    await conn.execute(
        """
        INSERT INTO mailboxes (user_id, address, smtp_host, smtp_port, smtp_security, smtp_username,
            secret_ciphertext, timezone, window_start_hour, window_end_hour, delay_min_minutes,
            delay_max_minutes, ramp_start, ramp_increment, ramp_ceiling)
        SELECT 'u' || (g % 600), 'm' || g || '@' || ($1::text[])[1 + g % 60], '127.0.0.1', 25, 'none',
            'u', 'x', 'UTC', 6, 22, 2, 10, 5, 2, 40
        FROM generate_series(0, 2999) AS g
        """,
        domains,
    )


@pytest.mark.parametrize("generic", [False, True], ids=["custom plan", "the worker's generic plan"])
async def test_a_pick_counts_only_the_probed_receivers_even_with_stale_statistics(
    db_pool: asyncpg.Pool, generic: bool
) -> None:
    """Right after a bulk enrollment PostgreSQL has no statistics of the new mailboxes. A pick must
    still look up its probes by slot and count the ledger for those few receivers only: once the
    planner computed the counts of every active mailbox first (a scan of the pool per email). The
    worker plans it once for any parameters (warmup/db.py), so that plan must hold too."""
    async with db_pool.acquire() as conn:
        await _pool_of_thousands(conn)  # no ANALYZE: the table's statistics say it is empty
        sender = int(await conn.fetchval("SELECT min(id) FROM mailboxes"))
        key = f"{sender}:{DAY}:0"
        draws = [r.unit(d) for d in r.key_draws(key, r.PROBES)]
        plan = await explained(conn, r._PROBE, sender, DAY, key, draws, r.PAIR_REPEAT_DAYS, generic=generic)
    # Each probe is one lookup by slot, and its counts are index lookups on the ledger run once each.
    assert max(rows for _, rows in reads(plan, "mailboxes")) <= r.PROBES
    assert 1 <= max(loops for loops, _ in reads(plan, "send_ledger")) <= r.PROBES


async def test_a_pick_planned_before_the_days_first_send_still_reads_only_the_senders_rows(
    db_pool: asyncpg.Pool,
) -> None:
    """A worker's connection plans the pick once (warmup/db.py), often while the day's partition is still
    empty, and keeps that plan as the day fills. With the day's rows in, a pick must still read the
    sender's own rows of the day and the probed receivers' counts only: planned on the empty partition,
    the sender's last receiver was looked up by walking the primary key back from the newest row."""
    async with db_pool.acquire() as conn:
        await _pool_of_thousands(conn)
        await conn.execute("ANALYZE mailboxes")  # the pool is known; only the day is new
        sender = int(await conn.fetchval("SELECT min(id) FROM mailboxes"))
        key = f"{sender}:{DAY}:2"
        args = (sender, DAY, key, [r.unit(d) for d in r.key_draws(key, r.PROBES)], r.PAIR_REPEAT_DAYS)
        async with generic_statement(conn, "day_start_pick", r._PROBE, *args):
            # The sender's two sends of the day come first; 3,000 of other senders follow them.
            await conn.execute(
                """
                INSERT INTO send_ledger (idempotency_key, sender_id, user_id, recipient_id, day, slot,
                    message_id, message, status, planned_at, dispatched_at)
                SELECT m.id || ':' || $1::date || ':' || g, m.id, m.user_id, m.id + 1, $1::date, g,
                    m.id || '-' || g, 'text', 'SENT', now(), now()
                FROM mailboxes m CROSS JOIN generate_series(0, 1) g
                WHERE m.id = $2 OR (m.id > $2 + 1 AND m.id <= $2 + 1501)
                ORDER BY m.id = $2 DESC, m.id, g
                """,
                DAY,
                sender,
            )
            plan = await explain_prepared(conn, "day_start_pick", *args)
    assert scanned(plan, "send_ledger") <= 100, json.dumps(plan)[:3000]


async def test_one_statement_per_pick_in_a_pool_of_thousands(db_pool: asyncpg.Pool) -> None:
    """3,000 mailboxes of 600 users over 60 domains (a few of them the big providers); 400 picks recorded
    as sends, so the counts grow as in a day. Counts the statements each pick sends to PostgreSQL."""
    async with db_pool.acquire() as conn:
        await _pool_of_thousands(conn)
        await conn.execute("ANALYZE mailboxes")
        rows = await conn.fetch("SELECT id, user_id, address FROM mailboxes ORDER BY id")
        owner = {int(m["id"]): (m["user_id"], r.domain_of(m["address"])) for m in rows}
        senders = [int(m["id"]) for m in rows[::30]]  # 100 senders, 4 sends each

        await r.choose_recipient(conn, senders[0], DAY, "warm-up")  # asyncpg's one-off type introspection
        statements: list[str] = []
        conn.add_query_logger(lambda q: statements.append(q.query))
        per_pick: list[int] = []
        latency: list[float] = []
        relaxed: Counter[str] = Counter()
        for slot in range(4):
            for sender_id in senders:
                await asyncio.sleep(0)  # asyncpg calls query loggers with call_soon: let them run
                before = len(statements)
                started = time.perf_counter()
                got = await r.choose_recipient(conn, sender_id, DAY, f"{sender_id}:{DAY}:{slot}")
                latency.append(time.perf_counter() - started)
                await asyncio.sleep(0)
                per_pick.append(len(statements) - before)
                assert got is not None
                relaxed[got.relaxed] += 1
                assert owner[got.id][0] != owner[sender_id][0] and owner[got.id][1] != owner[sender_id][1]
                await conn.execute(
                    "INSERT INTO send_ledger (idempotency_key, sender_id, user_id, recipient_id, day, slot,"
                    " message_id, message, status, planned_at, dispatched_at)"
                    " VALUES ($1, $2, $3, $4, $5, $6, $1, 'text', 'SENT', now(), now())",
                    f"{sender_id}:{DAY}:{slot}",
                    sender_id,
                    owner[sender_id][0],
                    got.id,
                    DAY,
                    slot,
                )
    latency.sort()
    p50, p99 = statistics.median(latency) * 1e3, latency[int(len(latency) * 0.99)] * 1e3
    print(
        f"\n3,000 mailboxes: {len(per_pick)} picks, statements per pick {Counter(per_pick)},"
        f" p50 {p50:.2f} ms, p99 {p99:.2f} ms, relaxed {dict(relaxed)}"
    )
    assert relaxed == Counter({"": len(per_pick)})
    assert min(per_pick) >= 1 and max(per_pick) <= 2 and Counter(per_pick)[1] >= 0.99 * len(per_pick)
