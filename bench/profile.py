"""The configuration profile for 100,000 mailboxes and 1,000,000 emails a day (docs/capacity.md).

The audit's default caps (100/min, 5,000/hour globally; 5/min, 300/hour per user) allow at most
120,000 emails a day; at this scale they are relaxed to several times the peaks the simulated day
measures, so they stop a runaway without shaping a normal day.
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class Profile:
    env: dict[str, str] = field(default_factory=dict)

    def caps(self) -> dict[str, int]:
        names = (
            "GLOBAL_SENDS_PER_MINUTE",
            "GLOBAL_SENDS_PER_HOUR",
            "USER_SENDS_PER_MINUTE",
            "USER_SENDS_PER_HOUR",
        )
        return {n: int(self.env[f"WARMUP_{n}"]) for n in names}


SCALE_PROFILE = Profile(
    {
        "WARMUP_GLOBAL_SENDS_PER_MINUTE": "3000",
        "WARMUP_GLOBAL_SENDS_PER_HOUR": "150000",
        "WARMUP_USER_SENDS_PER_MINUTE": "60",
        "WARMUP_USER_SENDS_PER_HOUR": "2000",
        # Each worker opens WORKER_CONCURRENCY + 2 PostgreSQL connections: 50 slots keep one worker
        # (and the starter, and the benchmark) inside PostgreSQL's default max_connections of 100.
        "WARMUP_WORKER_CONCURRENCY": "50",
        # Inbox sessions sleep through a human's dwell: 4 workers x 300 hold one timezone's session band.
        "WARMUP_INBOX_CONCURRENCY": "300",
        # 25,000 resident workflows of about 110 KB each: about 2.7 GB per worker.
        "WARMUP_MAX_CACHED_WORKFLOWS": "25000",
    }
)
