"""The send path's and the report's ledger queries as the ledger grows (issue #13 item 6).

Two databases side by side on one PostgreSQL: the ledger partitioned by day (migration 0021) and the
ledger as it was before (migrations up to 0020, one table). Each first empty (today's sends only), then
with `--days` past days of `--per-day` SENT emails each, with their message text (about 450 bytes, the
size of a real warmup email). Measured on each, in turn, as the send path calls them: a day's cap check
(`cap_gate.peek`, then `cap_gate.claim` on a PENDING row of today), a recipient pick
(`recipients.choose_recipient`), one send's row by its key (`ledger.ledger_row`), and the `starter report`
ledger queries (`send_days` of a sender over 30 days, `fleet.hourly_throughput`, `fleet.ledger_last_day`).
p50 and p99 in ms, and the ratio grown / empty. Small by default (3 days x 20,000); the issue's figure:
`--days 30 --per-day 100000`.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import statistics
import tempfile
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path

import asyncpg

from activities import cap_gate, recipients
from devstack.postgres import PgServer
from warmup import fleet
from warmup.caps import Window
from warmup.db import Conn, migrate, migration_files
from warmup.ledger import ledger_row
from warmup.ledger_retention import BODY_BATCH, ensure_partitions
from warmup.process_exit import exit_skipping_teardown
from warmup.send_days import send_days

PARTITIONS_MIGRATION = 21
MAILBOXES = 2_000
USERS = 20
TODAY = dt.datetime.now(dt.UTC).date()
# The audit's caps, per user and global: what a send's peek and claim count.
WINDOWS = [
    Window("USER_SENDS_PER_MINUTE", "user", 60.0, 1_000_000),
    Window("USER_SENDS_PER_HOUR", "user", 3600.0, 1_000_000),
    Window("GLOBAL_SENDS_PER_MINUTE", "global", 60.0, 1_000_000),
    Window("GLOBAL_SENDS_PER_HOUR", "global", 3600.0, 1_000_000),
]
LAYOUTS = ("partitioned", "unpartitioned")


@dataclass(frozen=True)
class Timing:
    p50_ms: float
    p99_ms: float


@dataclass(frozen=True)
class DayDisk:
    """One day's partition on disk (MB, with its indexes): as written, after its bodies were cleared
    and a plain VACUUM, and after VACUUM FULL (what an operator's compaction gives back)."""

    rows: int
    written_mb: float
    cleared_mb: float
    compacted_mb: float
    clear_seconds: float


@dataclass(frozen=True)
class Measure:
    layout: str
    past_days: int
    rows: int
    ledger_mb: float  # heap, indexes and TOAST of the ledger (all partitions)
    timings: dict[str, Timing]


def _cap_functions() -> str:
    """Migration 0021's cap gate functions (its last part), to install on the unpartitioned ledger."""
    sql = next(text for version, _, text in migration_files() if version == PARTITIONS_MIGRATION)
    return sql[sql.index("DROP FUNCTION cap_claim") :]


async def _mailboxes(conn: Conn) -> None:
    await conn.execute("INSERT INTO users (id) SELECT 'u' || g FROM generate_series(0, $1 - 1) g", USERS)
    await conn.execute(
        """
        INSERT INTO mailboxes (user_id, address, smtp_host, smtp_port, smtp_security, smtp_username,
            secret_ciphertext, timezone, window_start_hour, window_end_hour, delay_min_minutes,
            delay_max_minutes, ramp_start, ramp_increment, ramp_ceiling, state)
        SELECT 'u' || (g % $2), 'm' || g || '@d' || (g % 97) || '.example', '127.0.0.1', 25, 'none', 'u', 'x',
               'UTC', 6, 22, 2, 10, 5, 2, 40, 'active'
        FROM generate_series(0, $1 - 1) g
        """,
        MAILBOXES,
        USERS,
    )


async def _fill_day(conn: Conn, day: dt.date, n: int, status: str) -> None:
    """`n` emails of `day`, spread over 06:00-22:00 UTC, sender and receiver in turn over the fleet."""
    await conn.execute(
        """
        INSERT INTO send_ledger (idempotency_key, sender_id, recipient_id, day, slot, message_id, message,
            status, planned_at, dispatched_at, created_at, sent_at, updated_at, user_id, permit_at, quota)
        SELECT s || ':' || $1::date || ':' || (g / $3), s, r, $1::date, g / $3,
               '<' || g || '.' || $1::date || '@bench.example>', repeat(md5(g::text || $1::text), 14),
               $4::send_status, t, t, t, t, t, 'u' || ((s - 1) % $5), t, 40
        FROM generate_series(0, $2 - 1) g,
             LATERAL (SELECT 1 + g % $3 AS s,
                             1 + ((g % $3) + 1 + (g / $3) % ($3 - 1)) % $3 AS r,
                             $1::date + interval '6 hours' + (g * interval '16 hours') / $2 AS t) x
        """,
        day,
        n,
        MAILBOXES,
        status,
        USERS,
    )


async def _time(fn: Callable[[int], Awaitable[object]], repeat: int) -> Timing:
    for i in range(min(20, repeat)):  # warm: plans cached, pages in memory
        await fn(i)
    took = []
    for i in range(repeat):
        began = time.perf_counter()
        await fn(repeat + i)
        took.append((time.perf_counter() - began) * 1000)
    took.sort()
    return Timing(statistics.median(took), took[min(len(took) - 1, int(len(took) * 0.99))])


async def _measure(conn: Conn, layout: str, past_days: int, repeat: int) -> Measure:
    await conn.execute("ANALYZE")
    # Today: a few sends done, and a PENDING row for every claim to come.
    claims = 2 * (repeat + 20)
    await conn.execute("DELETE FROM send_ledger WHERE day = $1", TODAY)
    await _fill_day(conn, TODAY, claims + 10, "PENDING")
    await conn.execute(
        "UPDATE send_ledger SET status = 'SENT', permit_at = now() - (id % 50) * interval '1 minute'"
        " WHERE day = $1 AND id IN (SELECT id FROM send_ledger WHERE day = $1 ORDER BY id DESC LIMIT 10)",
        TODAY,
    )
    if layout == "partitioned":  # its caps count permits per user and second (migration 0023)
        await conn.execute(
            "INSERT INTO user_permits SELECT user_id, floor(extract(epoch FROM permit_at))::bigint, count(*)"
            " FROM send_ledger WHERE day = $1 AND permit_at IS NOT NULL GROUP BY 1, 2 ON CONFLICT DO NOTHING",
            TODAY,
        )
    keys = [
        r["idempotency_key"]
        for r in await conn.fetch(
            "SELECT idempotency_key FROM send_ledger WHERE day = $1 AND status = 'PENDING' ORDER BY id", TODAY
        )
    ]
    users = [f"u{i % USERS}" for i in range(2 * repeat + 40)]
    day = TODAY if layout == "partitioned" else None  # None: 0004's counting, over every day

    async def peek(i: int) -> object:
        return await cap_gate.peek(conn, users[i], WINDOWS)

    async def claim(i: int) -> object:
        key = keys[i]
        return await cap_gate.claim(conn, key, f"u{(int(key.split(':')[0]) - 1) % USERS}", WINDOWS, day)

    async def pick(i: int) -> object:
        sender = 1 + (i * 7) % MAILBOXES
        return await recipients.choose_recipient(conn, sender, TODAY, f"{sender}:{TODAY}:bench{i}")

    async def lookup(i: int) -> object:
        return await ledger_row(conn, keys[i % len(keys)])

    async def days30(i: int) -> object:
        return await send_days(conn, 1 + (i * 13) % MAILBOXES, 30, TODAY)

    async def hourly(i: int) -> object:
        return await fleet.hourly_throughput(conn)

    async def last_day(i: int) -> object:
        return await fleet.ledger_last_day(conn)

    slow = max(5, repeat // 20)  # the fleet-wide report queries read a day of rows each
    timings = {
        "cap peek": await _time(peek, repeat),
        "cap claim": await _time(claim, repeat),
        "recipient pick": await _time(pick, repeat),
        "row by key": await _time(lookup, repeat),
        "report: send_days (30 d)": await _time(days30, repeat),
        "report: hourly_throughput": await _time(hourly, slow),
        "report: ledger_last_day": await _time(last_day, slow),
    }
    rows = int(await conn.fetchval("SELECT count(*) FROM send_ledger"))
    size = await conn.fetchval(
        "SELECT coalesce(sum(pg_total_relation_size(c.oid)), 0) FROM pg_class c"
        " WHERE c.relname = 'send_ledger' OR c.oid IN (SELECT inhrelid FROM pg_inherits"
        " WHERE inhparent = 'send_ledger'::regclass)"
    )
    return Measure(layout, past_days, rows, int(size) / 1e6, timings)


async def _day_disk(conn: Conn, day: dt.date) -> DayDisk:
    part = f"send_ledger_{day:%Y%m%d}"

    async def mb() -> float:
        return int(await conn.fetchval("SELECT pg_total_relation_size($1::regclass)", part)) / 1e6

    written = await mb()
    began = time.perf_counter()
    while await conn.fetchval("SELECT ledger_clear_bodies($1, $2)", day, BODY_BATCH):
        pass
    took = time.perf_counter() - began
    await conn.execute(f"VACUUM {part}")
    cleared = await mb()
    await conn.execute(f"VACUUM FULL {part}")
    rows = int(await conn.fetchval(f"SELECT count(*) FROM {part}"))
    return DayDisk(rows, written, cleared, await mb(), took)


async def run(pg: PgServer, days: int, per_day: int, repeat: int) -> tuple[list[Measure], DayDisk]:
    out: list[Measure] = []
    conns: dict[str, asyncpg.Connection] = {}
    for layout in LAYOUTS:
        name = f"ledger_{layout}"
        await pg.create_database(name)
        conn = await asyncpg.connect(pg.dsn(name))
        await migrate(conn, None if layout == "partitioned" else (lambda v: v < PARTITIONS_MIGRATION))
        if layout == "unpartitioned":
            # Today's cap_gate calls 0021's functions; called with no day they count as 0004's did.
            await conn.execute(_cap_functions())
        await _mailboxes(conn)
        conns[layout] = conn
    try:
        for layout, conn in conns.items():
            out.append(await _measure(conn, layout, 0, repeat))
        for layout, conn in conns.items():
            began = time.perf_counter()
            first = TODAY - dt.timedelta(days=days)
            if layout == "partitioned":
                await conn.execute("SELECT ledger_ensure_partitions($1, $2)", first, days)
                await ensure_partitions(conn, TODAY)
            for d in range(days):
                await _fill_day(conn, first + dt.timedelta(days=d), per_day, "SENT")
            await conn.execute("VACUUM ANALYZE send_ledger")
            print(f"{layout}: {days} days x {per_day:,} rows loaded in {time.perf_counter() - began:.0f} s")
        for layout, conn in conns.items():
            out.append(await _measure(conn, layout, days, repeat))
        disk = await _day_disk(conns["partitioned"], TODAY - dt.timedelta(days=days))
    finally:
        for conn in conns.values():
            await conn.close()
    return out, disk


def markdown(results: list[Measure]) -> list[str]:
    by = {(m.layout, m.past_days): m for m in results}
    grown = max(m.past_days for m in results)
    names = list(results[0].timings)
    head = (
        "| query | " + " | ".join(f"{layout} empty | {layout} {grown} d | ratio" for layout in LAYOUTS) + " |"
    )
    lines = [head, "|---|" + "---|---|---|" * len(LAYOUTS)]
    for name in names:
        cells = []
        for layout in LAYOUTS:
            e, g = by[(layout, 0)].timings[name], by[(layout, grown)].timings[name]
            cells += [
                f"{e.p50_ms:.2f} / {e.p99_ms:.2f}",
                f"{g.p50_ms:.2f} / {g.p99_ms:.2f}",
                f"{g.p50_ms / e.p50_ms:.1f}x" if e.p50_ms else "-",
            ]
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    for layout in LAYOUTS:
        m = by[(layout, grown)]
        lines.append(f"\n{layout}: {m.rows:,} rows, {m.ledger_mb:,.0f} MB with indexes")
    return lines


def main() -> int:
    p = argparse.ArgumentParser(prog="python -m bench.ledger_growth", description=__doc__.split("\n\n")[0])
    p.add_argument("--days", type=int, default=3, help="past days of rows (3; the issue's figure: 30)")
    p.add_argument("--per-day", type=int, default=20_000, help="rows a day (20000; the issue's: 100000)")
    p.add_argument("--repeat", type=int, default=300, help="calls per measure (300)")
    a = p.parse_args()
    (Path.cwd() / ".data").mkdir(exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="ledger-bench-", dir=Path.cwd() / ".data") as tmp:
        pg = PgServer(Path(tmp) / "pg", fast=True)  # fsync off: the load is faster, reads are the same
        pg.start()
        try:
            results, disk = asyncio.run(run(pg, a.days, a.per_day, a.repeat))
        finally:
            pg.stop()
    print(f"p50 / p99 ms, {MAILBOXES:,} mailboxes of {USERS} users, {a.days} days x {a.per_day:,} rows")
    for line in markdown(results):
        print(line)
    print(
        f"one day's partition, {disk.rows:,} rows: {disk.written_mb:.1f} MB as written; bodies cleared in "
        f"{disk.clear_seconds:.1f} s, then VACUUM: {disk.cleared_mb:.1f} MB; "
        f"VACUUM FULL: {disk.compacted_mb:.1f} MB"
    )
    return 0


if __name__ == "__main__":
    exit_skipping_teardown(main())
