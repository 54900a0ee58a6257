"""Reading PostgreSQL's EXPLAIN (ANALYZE, FORMAT JSON) plans in tests: what a statement really read."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

from warmup.db import Conn


async def explained(conn: Conn, sql: str, *args: object) -> dict[str, Any]:
    """The executed plan of `sql` with `args` (the statement runs)."""
    text = await conn.fetchval("EXPLAIN (ANALYZE, FORMAT JSON) " + sql, *args)
    plan: dict[str, Any] = json.loads(text)[0]["Plan"]
    return plan


def reads(plan: dict[str, Any], relation: str) -> Iterator[tuple[int, float]]:
    """(loops, rows over all loops) of each node of `plan` that reads `relation` or one of its
    partitions (send_ledger_YYYYMMDD)."""
    name = str(plan.get("Relation Name", ""))
    if name == relation or name.startswith(relation + "_"):
        loops = int(plan["Actual Loops"])
        yield loops, float(plan["Actual Rows"]) * loops
    for child in plan.get("Plans", []):
        yield from reads(child, relation)
