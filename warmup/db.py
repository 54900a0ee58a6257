"""PostgreSQL connections and the versioned migrations applied on start."""

from __future__ import annotations

from collections.abc import Callable
from importlib import resources
from typing import TypeAlias

import asyncpg
from asyncpg.pool import PoolConnectionProxy

# A plain connection or one borrowed from a pool: every query function takes either.
Conn: TypeAlias = asyncpg.Connection | PoolConnectionProxy

# One arbitrary constant: every process that migrates takes this lock, so concurrent
# workers and starters apply each migration exactly once.
_MIGRATION_LOCK = 0x5741524D  # "WARM"


class DatabaseError(Exception):
    """The database cannot be reached or is not in the expected shape."""


def migration_files() -> list[tuple[int, str, str]]:
    """(version, name, sql) of each migration shipped with the package, in order."""
    found = []
    for entry in resources.files("warmup.migrations").iterdir():
        name = entry.name
        if name.endswith(".sql"):
            version = int(name.split("_", 1)[0])
            found.append((version, name, entry.read_text(encoding="utf-8")))
    return sorted(found)


async def migrate(conn: Conn, only: Callable[[int], bool] | None = None) -> list[str]:
    """Apply the migrations this database lacks; returns the names applied. `only` (tests, benches)
    picks the versions to apply, to leave a database as an earlier release did."""
    applied: list[str] = []
    async with conn.transaction():
        await conn.execute("SELECT pg_advisory_xact_lock($1)", _MIGRATION_LOCK)
        await conn.execute(
            "CREATE TABLE IF NOT EXISTS schema_migrations ("
            " version INT PRIMARY KEY, name TEXT NOT NULL, applied_at TIMESTAMPTZ NOT NULL DEFAULT now())"
        )
        done = {r["version"] for r in await conn.fetch("SELECT version FROM schema_migrations")}
        for version, name, sql in migration_files():
            if version in done or (only is not None and not only(version)):
                continue
            await conn.execute(sql)
            await conn.execute("INSERT INTO schema_migrations (version, name) VALUES ($1, $2)", version, name)
            applied.append(name)
    return applied


async def _keep_session(conn: asyncpg.Connection) -> None:
    """Release without asyncpg's reset query (one more round trip per release, four per email).

    asyncpg still rolls back an open transaction before this runs. Nothing else needs resetting: the
    code changes no session settings after connecting, holds only transaction-level advisory locks,
    opens no cursors outside a transaction and never LISTENs.
    """


# The worker's statements are lookups by key, id and day; PostgreSQL re-planned them at every call
# (a partitioned ledger keeps its planner on custom plans), about 40% of its CPU per send: 4.5 ms a
# send against 2.7 ms with one plan per statement and connection. Plans are still rebuilt after
# ANALYZE and DDL (a new ledger partition). A statement whose best plan depends on a parameter's
# value (`$1 IS NULL OR ...`) does not belong on such a pool: write one statement per case instead.
GENERIC_PLANS = {"plan_cache_mode": "force_generic_plan"}


async def connect_pool(
    dsn: str, *, min_size: int = 1, max_size: int = 10, generic_plans: bool = False
) -> asyncpg.Pool:
    """A pool on a migrated database. The DSN never appears in the error (it may hold a password).
    `generic_plans`: each statement planned once per connection (GENERIC_PLANS), for the worker."""
    try:
        pool = await asyncpg.create_pool(
            dsn,
            min_size=min_size,
            max_size=max_size,
            server_settings=GENERIC_PLANS if generic_plans else None,
            reset=_keep_session,  # type: ignore[arg-type]  # a coroutine, as asyncpg documents; stubs 0.30 say otherwise
            # Idle connections stay open: closing them after 5 idle minutes (asyncpg's default) made a
            # worker reconnect at every burst (10% of its samples at the 100,000-mailbox scale).
            max_inactive_connection_lifetime=0,
        )
    except (OSError, asyncpg.PostgresError) as exc:
        raise DatabaseError(
            f"cannot connect to PostgreSQL ({type(exc).__name__}: {exc}); check WARMUP_DATABASE_URL"
        ) from None
    async with pool.acquire() as conn:
        await migrate(conn)
    return pool
