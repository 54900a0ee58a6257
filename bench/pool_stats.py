"""The pool rules over a day of picks at fleet size, on PostgreSQL (issue #15 item 6).

A fleet of users with 100 mailboxes each (a user's mailboxes on its own domains and on the shared
gmail.com and outlook.com), each mailbox at its ramp day's volume, with yesterday's sends in the ledger
(the inbound cap reads them). Every send of the day asks `choose_recipient`, the send path's own pick,
and is written to the ledger as the send path writes it; slot 0 of every mailbox first, then slot 1, as
a day interleaves them. What comes out: same-user and same-domain pairs (0 while the pool allows), the
rules relaxed, each receiver's inbound (max and median), pairs repeated within the window, and then the
cost of one pick in a pool grown to `large` mailboxes (time and statements per pick).
"""

from __future__ import annotations

import asyncio
import datetime as dt
import random
import statistics
import time
from collections import Counter
from dataclasses import dataclass
from typing import Any, cast

import asyncpg

from activities import recipients
from bench.fleet import MAILBOXES_PER_USER
from devstack.postgres import PgServer
from warmup.db import Conn, connect_pool

DATABASE = "pool_bench"
DAY = dt.date(2030, 3, 31)
CONCURRENCY = 8  # picks in flight, as a worker's send slots would make them
DOMAINS_PER_USER = 4
SHARED = (("gmail.com", 0.3), ("outlook.com", 0.2))  # the rest on the user's own domains


@dataclass(frozen=True)
class PoolDay:
    mailboxes: int
    users: int
    picks: int
    same_user: int
    same_domain: int
    relaxed: dict[str, int]  # rule -> picks that broke it
    inbound_max: int
    inbound_median: float
    inbound_p99: int
    over_cap: int  # picks past the receiver's inbound cap
    repeat_pairs: int  # picks of a receiver this sender mailed earlier in the window (today included)
    back_to_back_family: int  # picks of the same provider family as the sender's previous pick
    picks_per_second: float
    large_pool: int
    ms_per_pick: float  # mean over `sample` picks in the large pool
    ms_per_pick_p99: float
    statements_per_pick: float
    sample: int


def _domain(user: int, n: int, rng: random.Random) -> str:
    x = rng.random()
    for domain, share in SHARED:
        if x < share:
            return domain
        x -= share
    return f"u{user}-d{n % DOMAINS_PER_USER}.example"


async def _load(conn: Conn, first: int, count: int, seed: str) -> dict[int, int]:
    """Mailboxes `first`..`first+count-1` (user = index // 100) and yesterday's sends; their quotas."""
    rng = random.Random(f"{seed}:{first}")
    users = sorted({i // MAILBOXES_PER_USER for i in range(first, first + count)})
    await conn.executemany(
        "INSERT INTO users (id) VALUES ($1) ON CONFLICT DO NOTHING", [(f"user{u}",) for u in users]
    )
    rows = []
    for i in range(first, first + count):
        user = i // MAILBOXES_PER_USER
        rows.append((f"user{user}", f"m{i}@{_domain(user, i, rng)}", rng.randint(0, 20)))
    await conn.execute(
        """
        INSERT INTO mailboxes (user_id, address, smtp_host, smtp_port, smtp_security, smtp_username,
            secret_ciphertext, timezone, window_start_hour, window_end_hour, delay_min_minutes,
            delay_max_minutes, ramp_start, ramp_increment, ramp_ceiling, state)
        SELECT u, a, '127.0.0.1', 25, 'none', 'u', 'x', 'UTC', 6, 22, 2, 10, 5, 2, 40, 'active'
        FROM unnest($1::text[], $2::text[]) AS t(u, a)
        """,
        [u for u, _, _ in rows],
        [a for _, a, _ in rows],
    )
    ids = await conn.fetch(
        "SELECT id, address FROM mailboxes WHERE address = ANY($1::text[])", [a for _, a, _ in rows]
    )
    by_address = {r["address"]: int(r["id"]) for r in ids}
    quotas = {by_address[a]: min(40, 5 + 2 * d) for _, a, d in rows}
    # Yesterday: each sent one step less than today (the inbound cap's volume estimate reads it), to
    # receivers drawn uniformly, as the pick would have.
    every = list(by_address.values())
    yesterday = []
    for sender, quota in quotas.items():
        for slot in range(max(0, quota - 2)):
            recipient = every[rng.randrange(len(every))]
            if recipient != sender:
                yesterday.append((f"{sender}:{DAY - dt.timedelta(days=1)}:{slot}", sender, recipient, slot))
    await conn.execute(
        """
        INSERT INTO send_ledger (idempotency_key, sender_id, recipient_id, day, slot, message_id, message,
            status, planned_at, dispatched_at, user_id)
        SELECT t.k, t.s, t.r, $5::date - 1, t.n, t.k, '', 'SENT', now(), now(), m.user_id
        FROM unnest($1::text[], $2::bigint[], $3::bigint[], $4::int[]) AS t(k, s, r, n)
        JOIN mailboxes m ON m.id = t.s
        """,
        [y[0] for y in yesterday],
        [y[1] for y in yesterday],
        [y[2] for y in yesterday],
        [y[3] for y in yesterday],
        DAY,
    )
    await conn.execute("ANALYZE mailboxes; ANALYZE send_ledger")
    return quotas


_RECORD = """
    INSERT INTO send_ledger (idempotency_key, sender_id, recipient_id, day, slot, message_id, message,
        status, planned_at, dispatched_at, user_id)
    VALUES ($1, $2, $3, $4, $5, $1, '', 'PENDING', now(), now(), $6)
"""


class _Counting:
    """A connection that counts the statements a pick makes (the pick takes any `Conn`)."""

    def __init__(self, conn: Conn) -> None:
        self._conn = conn
        self.statements = 0

    async def fetch(self, query: str, *args: Any) -> list[asyncpg.Record]:
        self.statements += 1
        return await self._conn.fetch(query, *args)


async def _day(
    pool: asyncpg.Pool, quotas: dict[int, int]
) -> tuple[list[tuple[int, recipients.Recipient]], float]:
    """Every send of the day, slot by slot across the fleet: (sender, pick)."""
    order = [(slot, sender) for sender, quota in quotas.items() for slot in range(quota)]
    order.sort()
    queue: asyncio.Queue[tuple[int, int]] = asyncio.Queue()
    for item in order:
        queue.put_nowait(item)
    picks: list[tuple[int, recipients.Recipient]] = []
    users = {
        int(r["id"]): r["user_id"]
        for r in await pool.fetch(
            "SELECT id, user_id FROM mailboxes WHERE id = ANY($1::bigint[])", list(quotas)
        )
    }

    async def worker() -> None:
        async with pool.acquire() as conn:
            while not queue.empty():
                slot, sender = queue.get_nowait()
                key = f"{sender}:{DAY}:{slot}"
                chosen = await recipients.choose_recipient(conn, sender, DAY, key)
                if chosen is None:
                    continue
                # The send path's row (insert_pending's columns), not read back: only counts matter.
                await conn.execute(_RECORD, key, sender, chosen.id, DAY, slot, users[sender])
                picks.append((sender, chosen))

    began = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(CONCURRENCY)))
    return picks, time.perf_counter() - began


async def _pick_cost(pool: asyncpg.Pool, sample: int) -> tuple[float, float, float]:
    """Mean and p99 milliseconds per pick, and statements per pick, for `sample` senders drawn uniformly."""
    async with pool.acquire() as conn:
        ids = [int(r["id"]) for r in await conn.fetch("SELECT id FROM mailboxes")]
        rng = random.Random("pick-cost")
        counting = _Counting(conn)
        took = []
        for n in range(sample):
            sender = ids[rng.randrange(len(ids))]
            began = time.perf_counter()
            await recipients.choose_recipient(cast(Conn, counting), sender, DAY, f"{sender}:{DAY}:cost{n}")
            took.append((time.perf_counter() - began) * 1000)
    took.sort()
    return (
        statistics.fmean(took),
        took[min(len(took) - 1, int(len(took) * 0.99))],
        counting.statements / sample,
    )


async def run_pool_day(pg: PgServer, mailboxes: int, large: int, *, sample: int = 2000) -> PoolDay:
    await pg.create_database(DATABASE)
    pool = await connect_pool(pg.dsn(DATABASE), max_size=CONCURRENCY, generic_plans=True)  # the worker's
    try:
        async with pool.acquire() as conn:
            quotas = await _load(conn, 0, mailboxes, "pool")
            info = {
                int(r["id"]): (r["user_id"], recipients.domain_of(r["address"]))
                for r in await conn.fetch("SELECT id, user_id, address FROM mailboxes")
            }
        picks, seconds = await _day(pool, quotas)
        relaxed: Counter[str] = Counter()
        for _, p in picks:
            for rule in filter(None, p.relaxed.split(",")):
                relaxed[rule] += 1
        inbound = Counter(p.id for _, p in picks)
        counts = sorted(inbound.get(i, 0) for i in info)
        last_family: dict[int, str] = {}
        back_to_back = 0
        for sender, p in picks:  # in pick order per sender (the slots came in order)
            family = recipients.family_of(recipients.domain_of(p.address))
            back_to_back += last_family.get(sender) == family
            last_family[sender] = family
        async with pool.acquire() as conn:
            repeats = int(
                await conn.fetchval(
                    """
                    SELECT count(*) FROM send_ledger t WHERE t.day = $1 AND EXISTS (
                        SELECT 1 FROM send_ledger e WHERE e.sender_id = t.sender_id
                          AND e.recipient_id = t.recipient_id AND e.day > $1 - $2::int AND e.day <= $1
                          AND e.id < t.id)
                    """,
                    DAY,
                    recipients.PAIR_REPEAT_DAYS,
                )
            )
            grown = max(0, large - mailboxes)
            for first in range(mailboxes, mailboxes + grown, 20_000):
                await _load(conn, first, min(20_000, mailboxes + grown - first), "pool-large")
        mean, p99, statements = await _pick_cost(pool, sample)
        return PoolDay(
            mailboxes=mailboxes,
            users=len({i // MAILBOXES_PER_USER for i in range(mailboxes)}),
            picks=len(picks),
            same_user=sum(1 for s, p in picks if info[s][0] == info[p.id][0]),
            same_domain=sum(1 for s, p in picks if info[s][1] == recipients.domain_of(p.address)),
            relaxed=dict(relaxed),
            inbound_max=counts[-1],
            inbound_median=statistics.median(counts),
            inbound_p99=counts[min(len(counts) - 1, int(len(counts) * 0.99))],
            over_cap=relaxed.get(recipients.Rule.INBOUND_CAP.value, 0),
            repeat_pairs=repeats,
            back_to_back_family=back_to_back,
            picks_per_second=len(picks) / seconds if seconds else 0.0,
            large_pool=max(large, mailboxes),
            ms_per_pick=mean,
            ms_per_pick_p99=p99,
            statements_per_pick=statements,
            sample=sample,
        )
    finally:
        await pool.close()


def summary(d: PoolDay) -> str:
    return (
        f"{d.picks:,} picks at {d.picks_per_second:.0f}/s; same user {d.same_user}, same domain "
        f"{d.same_domain}; inbound max {d.inbound_max} / median {d.inbound_median:g}; "
        f"{d.ms_per_pick:.2f} ms and {d.statements_per_pick:.2f} statements per pick at {d.large_pool:,}"
    )


def markdown(d: PoolDay) -> list[str]:
    relaxed = ", ".join(f"{k} {v:,}" for k, v in sorted(d.relaxed.items())) or "none"

    def share(n: int) -> str:
        return f"{n:,} ({n / d.picks:.2%})" if d.picks else str(n)

    inbound = f"{d.inbound_max} / {d.inbound_p99} / {d.inbound_median:g}"
    return [
        "### Pool rules over a day",
        "",
        f"A day of {d.picks:,} recipient picks for {d.mailboxes:,} mailboxes of {d.users:,} users (100 "
        f"each, on {DOMAINS_PER_USER} domains of their own and the shared gmail.com and outlook.com), each "
        "at its ramp day's volume with yesterday's sends in the ledger, through `choose_recipient` and the "
        f"ledger insert of the send path, {CONCURRENCY} at a time ({d.picks_per_second:.0f} picks/s).",
        "",
        "| measure | value |",
        "|---|---|",
        f"| same-user pairs | {share(d.same_user)} |",
        f"| same-domain pairs | {share(d.same_domain)} |",
        f"| rules relaxed (picks) | {relaxed} |",
        f"| inbound per receiver: max / p99 / median | {inbound} |",
        f"| picks past the receiver's inbound cap | {share(d.over_cap)} |",
        f"| pairs repeated within {recipients.PAIR_REPEAT_DAYS} days | {share(d.repeat_pairs)} |",
        f"| same provider family as the sender's previous pick | {share(d.back_to_back_family)} |",
        f"| cost per pick at {d.large_pool:,} mailboxes (mean / p99, {d.sample:,} picks) | "
        f"{d.ms_per_pick:.2f} ms / {d.ms_per_pick_p99:.2f} ms, {d.statements_per_pick:.2f} statements |",
        "",
    ]
