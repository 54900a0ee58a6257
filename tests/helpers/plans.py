"""Reading PostgreSQL's EXPLAIN (ANALYZE, FORMAT JSON) plans in tests: what a statement really read."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from typing import Any

from warmup.db import Conn


async def explained(conn: Conn, sql: str, *args: object, generic: bool = False) -> dict[str, Any]:
    """The executed plan of `sql` with `args` (the statement runs). `generic`: the plan made without
    the parameters' values, as the worker's pool runs every statement (warmup/db.py GENERIC_PLANS)."""
    if not generic:
        text = await conn.fetchval("EXPLAIN (ANALYZE, FORMAT JSON) " + sql, *args)
        plan: dict[str, Any] = json.loads(text)[0]["Plan"]
        return plan
    async with generic_statement(conn, "explained_generic", sql):
        return await explain_prepared(conn, "explained_generic", *args)


@asynccontextmanager
async def generic_statement(conn: Conn, name: str, sql: str, *args: object) -> AsyncIterator[None]:
    """`sql` PREPAREd as `name` under generic plans, for the block; given `args`, also run once first,
    which makes the plan the session keeps, as a worker's connection keeps it whatever the tables hold
    later. Deallocated afterwards."""
    await conn.execute(f"PREPARE {name} AS {sql}")
    try:
        await conn.execute("SET plan_cache_mode = force_generic_plan")
        if args:
            await conn.execute(f"EXECUTE {name}({_params(args)})")
        yield
    finally:
        await conn.execute(f"DEALLOCATE {name}; RESET plan_cache_mode")


async def explain_prepared(conn: Conn, name: str, *args: object) -> dict[str, Any]:
    """The executed plan of the statement prepared as `name` (generic_statement), run with `args`."""
    text = await conn.fetchval(f"EXPLAIN (ANALYZE, FORMAT JSON) EXECUTE {name}({_params(args)})")
    plan: dict[str, Any] = json.loads(text)[0]["Plan"]
    return plan


def _params(args: tuple[object, ...]) -> str:
    return ", ".join(_literal(a) for a in args)  # EXECUTE takes no bound parameters


def _literal(value: object) -> str:
    """`value` as an SQL literal of no type yet (the prepared statement's parameter gives it one)."""
    if isinstance(value, list | tuple):
        text = "{" + ",".join(repr(v) if isinstance(v, float) else str(v) for v in value) + "}"
    elif isinstance(value, float):
        text = repr(value)
    else:
        text = str(value)  # ints, dates, text
    return "'" + text.replace("'", "''") + "'"


def reads(plan: dict[str, Any], relation: str) -> Iterator[tuple[int, float]]:
    """(loops, rows over all loops) of each node of `plan` that reads `relation` or one of its
    partitions (send_ledger_YYYYMMDD)."""
    name = str(plan.get("Relation Name", ""))
    if name == relation or name.startswith(relation + "_"):
        loops = int(plan["Actual Loops"])
        yield loops, float(plan["Actual Rows"]) * loops
    for child in plan.get("Plans", []):
        yield from reads(child, relation)


def scanned(plan: dict[str, Any], relation: str) -> float:
    """Rows of `relation` (or its partitions) the plan looked at over all loops: those it kept and
    those its filters then dropped."""
    name = str(plan.get("Relation Name", ""))
    own = 0.0
    if name == relation or name.startswith(relation + "_"):
        looked = float(plan["Actual Rows"]) + sum(
            float(plan.get(k, 0)) for k in ("Rows Removed by Filter", "Rows Removed by Index Recheck")
        )
        own = looked * int(plan["Actual Loops"])
    return own + sum(scanned(child, relation) for child in plan.get("Plans", []))
