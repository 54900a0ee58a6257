"""A sampling profile of PostgreSQL: which statements are running, sampled from pg_stat_activity.

A statement seen in a larger share of the samples is where the database spends more of its time
(CPU or waiting for a lock); the share of samples with nothing running is the idle share.
"""

from __future__ import annotations

import asyncio
import re
import time
from collections import Counter
from dataclasses import dataclass

import asyncpg

_SPACES = re.compile(r"\s+")


@dataclass(frozen=True)
class SqlProfile:
    samples: int
    busy_share: float  # samples with at least one statement running
    top: list[tuple[float, str]]  # (share of samples the statement was running in, statement)


async def sample(pool: asyncpg.Pool, seconds: float, interval: float = 0.02) -> SqlProfile:
    seen: Counter[str] = Counter()
    samples = busy = 0
    deadline = time.monotonic() + seconds
    async with pool.acquire() as conn:
        while time.monotonic() < deadline:
            rows = await conn.fetch(
                "SELECT query, wait_event_type FROM pg_stat_activity"
                " WHERE state = 'active' AND pid <> pg_backend_pid() AND backend_type = 'client backend'"
            )
            samples += 1
            busy += bool(rows)
            for r in rows:
                text = _SPACES.sub(" ", r["query"]).strip()[:140]
                waiting = f" [waits: {r['wait_event_type']}]" if r["wait_event_type"] else ""
                seen[text + waiting] += 1
            await asyncio.sleep(interval)
    top = [(round(n / samples, 3), q) for q, n in seen.most_common(8)] if samples else []
    return SqlProfile(samples, round(busy / samples, 3) if samples else 0.0, top)
