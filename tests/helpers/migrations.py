"""A database as an earlier release left it: the shipped migrations but some, applied and recorded
the way warmup.db.migrate does, so the next migrate() applies only the missing ones."""

from __future__ import annotations

from collections.abc import Callable

import asyncpg

from warmup.db import migration_files


async def apply_migrations(conn: asyncpg.Connection, keep: Callable[[int], bool]) -> None:
    """Apply (and record) the migrations whose version `keep` accepts, in order, in one transaction."""
    async with conn.transaction():
        await conn.execute(
            "CREATE TABLE schema_migrations (version INT PRIMARY KEY, name TEXT NOT NULL,"
            " applied_at TIMESTAMPTZ NOT NULL DEFAULT now())"
        )
        for version, name, sql in migration_files():
            if keep(version):
                await conn.execute(sql)
                await conn.execute(
                    "INSERT INTO schema_migrations (version, name) VALUES ($1, $2)", version, name
                )
