"""Bulk enrollment at fleet scale (issue #16 item 5): `starter enroll --csv` of a legacy export, on the
benchmark's real stack (bench/stack.py: PostgreSQL, the Temporal dev server, one `workers.run`).

The file has `rows` mailboxes, `per_user` of each user listed together (as a product's export lists
them). It is imported once (every row new: a mailbox row, its user workflow's Update, the mailbox
workflow started), then again (every row already enrolled: the cost of resuming an interrupted
import). `make bench` runs it as the `bulk` phase; `python -m bench.bulk_enroll --rows N` alone.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import json
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

from bench.stack import Stack
from warmup.config import Settings
from warmup.process_exit import exit_skipping_teardown

HEADER = "mailbox,user,smtp_host,smtp_port,smtp_security,username,timezone,secret_env,ramp_start,ramp_ceiling"
_ZONES = ("UTC", "Europe/Lisbon", "America/New_York", "Asia/Tokyo")


@dataclasses.dataclass(frozen=True)
class BulkRun:
    what: str
    rows: int
    seconds: float
    counts: dict[str, int]

    @property
    def per_second(self) -> float:
        return self.rows / self.seconds if self.seconds else 0.0


@dataclasses.dataclass(frozen=True)
class BulkResult:
    rows: int
    per_user: int
    concurrency: int
    runs: list[BulkRun]


def write_csv(path: Path, rows: int, per_user: int, smtp_port: int) -> None:
    tag = uuid.uuid4().hex[:6]
    lines = [HEADER]
    for i in range(rows):
        address = f"b{i}-{tag}@bulk{i // per_user}.test"
        zone = _ZONES[(i // per_user) % len(_ZONES)]
        lines.append(
            f"{address},u{i // per_user}-{tag},127.0.0.1,{smtp_port},none,{address},{zone},BENCH_PW,0,0"
        )
    path.write_text("\n".join(lines) + "\n")
    path.chmod(0o600)


async def import_csv(env: dict[str, str], path: Path) -> tuple[float, dict[str, int]]:
    """`starter enroll --csv` of the file: its seconds and its counts."""
    began = time.perf_counter()
    done = await asyncio.to_thread(
        subprocess.run,
        [sys.executable, "-m", "starter", "enroll", "--csv", str(path), "--json"],
        env={**env, "BENCH_PW": "bench-password"},
        capture_output=True,
        text=True,
        check=False,
    )
    seconds = time.perf_counter() - began
    try:  # rows that failed (a batch the server did not answer in time) are counted, not fatal
        counts: dict[str, int] = json.loads(done.stdout)["counts"]
    except (json.JSONDecodeError, KeyError):
        raise RuntimeError(f"enroll --csv exited {done.returncode}: {done.stderr[-2000:]}") from None
    return seconds, counts


async def run_bulk(workdir: Path, rows: int, per_user: int, concurrency: int) -> BulkResult:
    async with Stack(workdir) as stack:
        queue = f"bulk-bench-{uuid.uuid4().hex[:8]}"
        env = stack.worker_env(queue, {"WARMUP_ENROLL_CONCURRENCY": str(concurrency)})
        stack.spawn([sys.executable, "-m", "workers.run"], env, "worker")
        path = workdir / "legacy-export.csv"
        write_csv(path, rows, per_user, stack.sink_port)
        runs = []
        for what in ("new", "again"):
            seconds, counts = await import_csv(env, path)
            runs.append(BulkRun(what, rows, seconds, counts))
    return BulkResult(rows, per_user, concurrency, runs)


def summary(result: BulkResult) -> list[str]:
    lines = []
    for r in result.runs:
        counts = ", ".join(f"{n} {k}" for k, n in r.counts.items() if n)
        lines.append(
            f"starter enroll --csv, {r.rows} rows ({r.rows // result.per_user} users of {result.per_user}), "
            f"{r.what}: {r.seconds:.1f} s, {r.per_second:.0f} rows/s ({counts})"
        )
    return lines


def main() -> int:
    p = argparse.ArgumentParser(prog="python -m bench.bulk_enroll", description=__doc__.split("\n\n")[0])
    p.add_argument("--rows", type=int, default=100_000, help="rows of the file (100000)")
    p.add_argument("--per-user", type=int, default=100, help="mailboxes per user (100)")
    p.add_argument(
        "--concurrency",
        type=int,
        default=Settings.model_fields["ENROLL_CONCURRENCY"].default,
        help="WARMUP_ENROLL_CONCURRENCY",
    )
    a = p.parse_args()
    (Path.cwd() / ".data").mkdir(exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="bulk-bench-", dir=Path.cwd() / ".data") as tmp:
        result = asyncio.run(run_bulk(Path(tmp), a.rows, a.per_user, a.concurrency))
    for line in summary(result):
        print(line)
    return 0


if __name__ == "__main__":
    exit_skipping_teardown(main())
