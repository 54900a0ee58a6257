"""Reading PostgreSQL's EXPLAIN (ANALYZE, FORMAT JSON) plans in tests: what a statement really read."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

from warmup.db import Conn


async def explained(conn: Conn, sql: str, *args: object, generic: bool = False) -> dict[str, Any]:
    """The executed plan of `sql` with `args` (the statement runs). `generic`: the plan made without
    the parameters' values, as the worker's pool runs every statement (warmup/db.py GENERIC_PLANS)."""
    if not generic:
        text = await conn.fetchval("EXPLAIN (ANALYZE, FORMAT JSON) " + sql, *args)
    else:
        await conn.execute("PREPARE explained_generic AS " + sql)
        try:
            await conn.execute("SET plan_cache_mode = force_generic_plan")
            params = ", ".join(_literal(a) for a in args)  # EXECUTE takes no bound parameters
            text = await conn.fetchval(f"EXPLAIN (ANALYZE, FORMAT JSON) EXECUTE explained_generic({params})")
        finally:
            await conn.execute("DEALLOCATE explained_generic; RESET plan_cache_mode")
    plan: dict[str, Any] = json.loads(text)[0]["Plan"]
    return plan


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
