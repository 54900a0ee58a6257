"""Sustained sends/s end to end against a bare Temporal loop on the same server, side by side.

End to end: `python -m workers.run` processes with the real `send_email` (ledger in PostgreSQL,
aiosmtplib to the SMTP sink process), caps on but set above what the machine can do. Timing is
compressed (sends 0.3-0.6 s apart per mailbox, all-day window, chained) so every mailbox always has
a send due: the measured rate is the system's capacity. The bare loop runs the same number of
workflows, each a timer of the same length and a no-op activity, on workers configured the same.

The loops run in rounds, in turn, each round in the reverse order of the one before (ABC CBA ABC):
the machine's speed drifts by a quarter within minutes, and a ratio of loops run in one block each
measured that drift as much as the send path (docs/benchmarks.md, 2026-12-07).
"""

from __future__ import annotations

import asyncio
import bisect
import math
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from temporalio.api.history.v1 import HistoryEvent

from bench import pgsample, pyspy
from bench.costs import CostSummary, fetch_events, summarize
from bench.enroll import insert_mailboxes, start_workflows
from bench.pgsample import SqlProfile
from bench.procstat import CpuMeter, fixed_work_seconds, rss_bytes
from bench.stack import Stack
from warmup.config import load_settings
from warmup.models import MailboxWorkflowInput, SendRetrySettings
from warmup.workflow_ids import (
    ledger_upkeep_workflow_id,
    mailbox_workflow_id,
    webhook_delivery_workflow_id,
)

DELAY_MIN_MINUTES = 0.005  # 0.3 s
DELAY_MAX_MINUTES = 0.01  # 0.6 s
LIFTED_CAPS = {  # caps enforced, but far above one machine's rate
    "WARMUP_GLOBAL_SENDS_PER_MINUTE": "1000000",
    "WARMUP_GLOBAL_SENDS_PER_HOUR": "60000000",
    "WARMUP_USER_SENDS_PER_MINUTE": "1000000",
    "WARMUP_USER_SENDS_PER_HOUR": "60000000",
}


@dataclass(frozen=True)
class LoopRate:
    name: str
    workflows: int
    completed: int  # sends (or no-op activities) completed inside the measured span
    seconds: float
    start_per_second: float
    cores: dict[str, float]  # CPU per process role during the measured span
    worker_rss_mb: float
    profile: list[tuple[float, str]] = field(default_factory=list)  # py-spy, the worker's hot frames
    sql: SqlProfile | None = None  # what PostgreSQL was running, sampled
    pg_transactions: int = 0  # committed + rolled back in the span: one per statement outside a block
    fixed_work_seconds: float = 0.0  # procstat.fixed_work_seconds, the mean of before and after the span

    @property
    def pg_round_trips(self) -> float:
        """PostgreSQL transactions per completion: the send path's round trips (its writes autocommit)."""
        return self.pg_transactions / self.completed if self.completed else 0.0

    def cpu_ms_per_completion(self) -> dict[str, float]:
        """Milliseconds of CPU each process role spent per send (or no-op loop): the cost profile."""
        rate = self.per_second or 1.0
        return {role: round(c * 1000 / rate, 2) for role, c in self.cores.items() if c > 0.005}

    @property
    def per_second(self) -> float:
        return self.completed / self.seconds if self.seconds else 0.0


def pooled(rates: Sequence[LoopRate]) -> LoopRate:
    """One loop's rounds as one measurement: every completion over every measured second."""
    seconds = sum(r.seconds for r in rates)

    def weighted(values: Sequence[float]) -> float:
        return sum(v * r.seconds for v, r in zip(values, rates, strict=True)) / seconds if seconds else 0.0

    roles = sorted({role for r in rates for role in r.cores})
    return LoopRate(
        rates[0].name,
        rates[0].workflows,
        sum(r.completed for r in rates),
        seconds,
        sum(r.start_per_second for r in rates) / len(rates),
        {role: round(weighted([r.cores.get(role, 0.0) for r in rates]), 3) for role in roles},
        max(r.worker_rss_mb for r in rates),
        next((r.profile for r in rates if r.profile), []),
        next((r.sql for r in rates if r.sql is not None), None),
        sum(r.pg_transactions for r in rates),
        weighted([r.fixed_work_seconds for r in rates]),
    )


def _ratio(a: LoopRate, b: LoopRate | None) -> float:
    return a.per_second / b.per_second if b is not None and b.per_second else 0.0


LOOPS = ("e2e", "bare", "bare_send")  # a round's order; every other round runs it backwards


@dataclass(frozen=True)
class Round:
    order: tuple[str, ...]  # LOOPS as they ran
    e2e: LoopRate
    bare: LoopRate
    bare_send: LoopRate

    @property
    def ratio(self) -> float:
        return _ratio(self.e2e, self.bare)


@dataclass(frozen=True)
class Throughput:
    e2e: LoopRate  # each loop pooled over its rounds
    bare: LoopRate
    costs: CostSummary
    settings: dict[str, str] = field(default_factory=dict)
    # Whether the mailboxes ran inbox sessions: they have no IMAP settings (docs/benchmarks.md, Engagement).
    engagement: bool = False
    # The bare loop with the send's activity options and payloads (bench/bare_workflow.py).
    bare_send: LoopRate | None = None
    rounds: list[Round] = field(default_factory=list)

    @property
    def ratio(self) -> float:
        return _ratio(self.e2e, self.bare)

    @property
    def ratio_to_bare_send(self) -> float:
        """End to end against the loop that pays Temporal what a send pays: the send path's own share."""
        return _ratio(self.e2e, self.bare_send)


def e2e_settings(mailboxes: int, concurrency: int, quota: int) -> dict[str, str]:
    return {
        "WARMUP_SAME_MAILBOX_DELAY_MIN": str(DELAY_MIN_MINUTES),
        "WARMUP_SAME_MAILBOX_DELAY_MAX": str(DELAY_MAX_MINUTES),
        "WARMUP_SEND_WINDOW_START_HOUR": "0",
        "WARMUP_SEND_WINDOW_END_HOUR": "24",
        "WARMUP_SPREAD_OVER_WINDOW": "false",
        "WARMUP_RAMP_START_VOLUME": str(quota),
        "WARMUP_RAMP_DAILY_INCREMENT": "0",
        "WARMUP_RAMP_CEILING": str(quota),
        "WARMUP_WORKER_CONCURRENCY": str(concurrency),
        "WARMUP_MAX_CACHED_WORKFLOWS": str(mailboxes + 1000),
        "WARMUP_SMTP_TIMEOUT_SECONDS": "10",
        "WARMUP_SEND_RETRY_INITIAL_SECONDS": "1",
        **LIFTED_CAPS,
    }


async def run_throughput(
    stack: Stack,
    *,
    mailboxes: int,
    warmup_seconds: float,
    seconds: float,
    rounds: int = 3,
    workers: int = 1,
    concurrency: int = 50,
    say: Callable[[str], None] = print,
) -> Throughput:
    """`rounds` of the three loops, each warmed up for `warmup_seconds` and measured for `seconds`."""
    # Enough quota that no mailbox finishes its day during the run, even at 300 sends/s.
    quota = max(20, math.ceil(300 * (warmup_seconds + seconds + 30) / mailboxes))
    settings = e2e_settings(mailboxes, concurrency, quota)
    retry = load_settings(settings).send_retry()
    histories: list[list[HistoryEvent]] = []
    engagement = False
    done: list[Round] = []
    for n in range(rounds):
        order = LOOPS if n % 2 == 0 else LOOPS[::-1]
        say(f"  round {n + 1} of {rounds}: {', '.join(order)}")
        got: dict[str, LoopRate] = {}
        for loop in order:
            if loop == "e2e":
                got[loop], ids, engagement = await _e2e(
                    stack, settings, mailboxes, warmup_seconds, seconds, workers, say, profile=n == 0
                )
                wids = [mailbox_workflow_id(i) for i in ids]
                if n == 0:
                    histories = await fetch_events(stack.client, wids[:200])
                # The round's mailboxes stay active, as receivers: removed, they would keep their pick
                # slots and later rounds' picks would miss on them (measured: end to end's Temporal CPU
                # per email rose from 16 to 27 ms over three rounds).
                await terminate_all(stack, wids)
            else:
                send_retry = retry if loop == "bare_send" else None
                got[loop] = await _bare(
                    stack, mailboxes, concurrency, warmup_seconds, seconds, workers, say, send_retry
                )
        r = Round(order, got["e2e"], got["bare"], got["bare_send"])
        done.append(r)
        say(f"  round {n + 1}: end to end / bare {r.ratio:.2f}")
    costs = summarize("dev server, compressed timing", histories)
    e2e, bare, bare_send = (
        pooled([r.e2e for r in done]),
        pooled([r.bare for r in done]),
        pooled([r.bare_send for r in done]),
    )
    return Throughput(e2e, bare, costs, settings, engagement, bare_send, done)


async def _e2e(
    stack: Stack,
    settings: dict[str, str],
    mailboxes: int,
    warmup_seconds: float,
    seconds: float,
    workers: int,
    say: Callable[[str], None],
    *,
    profile: bool,
) -> tuple[LoopRate, list[int], bool]:
    queue = f"tp-{uuid.uuid4().hex[:6]}"
    env = stack.worker_env(queue, settings)
    cfg = load_settings(env)
    sched = cfg.default_schedule("UTC")
    enrolled = await insert_mailboxes(
        stack.pool,
        f"tp{queue[3:]}",
        [(f"tp{queue[3:]}-u{i // 100}", sched) for i in range(mailboxes)],
        stack.sink_port,
        stack.box.encrypt("bench-password"),
    )
    procs = [
        stack.spawn([sys.executable, "-m", "workers.run"], env, f"throughput-worker{i}")
        for i in range(workers)
    ]
    for i in range(workers):
        await stack.polling(f"throughput-worker{i}")
    retry = cfg.send_retry()
    started = await start_workflows(
        stack.client,
        queue,
        enrolled,
        lambda m: MailboxWorkflowInput(m.mailbox_id, m.user_id, m.schedule, retry),
    )
    say(f"  e2e: {started.started} mailboxes started at {started.per_second:.0f}/s; warming up")
    span = await _measure(stack, procs, warmup_seconds, seconds)
    sql, prof = None, None
    if profile:
        # Taken after the measured span: the sampler's own CPU must not slow the measurement.
        spy = pyspy.record(procs[0].pid, min(seconds, 20), stack.logs / "e2e-worker.pyspy")
        sql = await pgsample.sample(stack.pool, min(seconds, 20))
        if spy is not None:
            await asyncio.to_thread(spy.wait)
        prof = pyspy.summarize(stack.logs / "e2e-worker.pyspy")
    ids = [m.mailbox_id for m in enrolled]
    completed = await stack.pool.fetchval(
        "SELECT count(*) FROM send_ledger WHERE status = 'SENT' AND sender_id = ANY($1::bigint[])"
        " AND sent_at >= to_timestamp($2) AND sent_at < to_timestamp($3)",
        ids,
        span.t1,
        span.t2,
    )
    for p in procs:
        stack.stop_child(p)
    # Every worker start leaves its queue's side workflows running, and no poller serves them now.
    await terminate_all(stack, [webhook_delivery_workflow_id(queue), ledger_upkeep_workflow_id(queue)])
    rate = LoopRate(
        "end to end",
        mailboxes,
        int(completed),
        span.t2 - span.t1,
        started.per_second,
        span.cores,
        span.rss_mb,
        prof.top if prof else [],
        sql,
        span.pg_transactions,
        span.fixed_work_seconds,
    )
    say(f"  e2e: {rate.per_second:.1f} sends/s; {_cores_line(rate)}")
    return rate, ids, sched.engagement.enabled


async def _bare(
    stack: Stack,
    workflows: int,
    concurrency: int,
    warmup_seconds: float,
    seconds: float,
    workers: int,
    say: Callable[[str], None],
    send_retry: SendRetrySettings | None = None,  # given: the loop with the send's options, its retry
) -> LoopRate:
    from bench.bare_workflow import BareLoopWorkflow, BareSendInput, BareSendLoopWorkflow

    name = "bare loop" if send_retry is None else "bare loop, a send's options"
    queue = f"bare-{uuid.uuid4().hex[:6]}"
    files = [stack.logs / f"{queue}-{i}.counts" for i in range(workers)]
    procs = [
        stack.spawn(
            [
                sys.executable,
                "-m",
                "bench.bare",
                "--address",
                stack.temporal.address,
                "--task-queue",
                queue,
                "--count-file",
                str(f),
                "--concurrency",
                str(concurrency),
                "--cache",
                str(workflows + 1000),
            ],
            stack.worker_env(queue, {}),
            f"bare-worker{i}",
        )
        for i, f in enumerate(files)
    ]
    for i, f in enumerate(files):
        await stack.polling(f"bare-worker{i}", ready=f)
    delay = DELAY_MIN_MINUTES * 60
    ids = [f"{queue}-{i}" for i in range(workflows)]
    began = time.perf_counter()
    sem = asyncio.Semaphore(64)

    async def start(i: int, wid: str) -> None:
        async with sem:
            if send_retry is None:
                await stack.client.start_workflow(BareLoopWorkflow.run, delay, id=wid, task_queue=queue)
            else:
                # 100 per user, as the end-to-end fleet: as many fairness keys.
                inp = BareSendInput(delay, f"{queue}-u{i // 100}", send_retry)
                await stack.client.start_workflow(BareSendLoopWorkflow.run, inp, id=wid, task_queue=queue)

    await asyncio.gather(*(start(i, w) for i, w in enumerate(ids)))
    start_rate = workflows / (time.perf_counter() - began)
    say(f"  {name}: {workflows} loops started at {start_rate:.0f}/s; warming up")
    span = await _measure(stack, procs, warmup_seconds, seconds)
    await asyncio.sleep(1.0)
    for p in procs:
        stack.stop_child(p)
    completed = sum(_count_between(f, span.t1, span.t2) for f in files)
    await terminate_all(stack, ids)
    rate = LoopRate(
        name,
        workflows,
        completed,
        span.t2 - span.t1,
        start_rate,
        span.cores,
        span.rss_mb,
        fixed_work_seconds=span.fixed_work_seconds,
    )
    say(f"  {name}: {rate.per_second:.1f} loops/s; {_cores_line(rate)}")
    return rate


@dataclass(frozen=True)
class _Span:
    t1: float  # epoch seconds: the measured span
    t2: float
    cores: dict[str, float]  # CPU cores each role used over the span
    rss_mb: float  # the workers' resident memory at its end
    pg_transactions: int
    fixed_work_seconds: float


async def _measure(
    stack: Stack, procs: Sequence[subprocess.Popen[bytes]], warmup_seconds: float, seconds: float
) -> _Span:
    """Let the loop warm up, then measure `seconds` of it: the same span for both loops."""
    meter = CpuMeter({**stack.pids(), "worker": [p.pid for p in procs]})
    await asyncio.sleep(warmup_seconds)
    before = fixed_work_seconds()  # outside the span: its CPU is the bench's, not the loop's
    a, t1, x1 = meter.sample(), time.time(), await _pg_transactions(stack)
    await asyncio.sleep(seconds)
    b, t2, x2 = meter.sample(), time.time(), await _pg_transactions(stack)
    after = fixed_work_seconds()
    rss = sum(rss_bytes(p.pid) for p in procs) / 2**20
    return _Span(t1, t2, CpuMeter.cores(a, b), rss, x2 - x1, (before + after) / 2)


def _cores_line(rate: LoopRate) -> str:
    return f"fixed work {rate.fixed_work_seconds:.3f} s; cores {rate.cores}"


async def _pg_transactions(stack: Stack) -> int:
    n = await stack.pool.fetchval(
        "SELECT xact_commit + xact_rollback FROM pg_stat_database WHERE datname = current_database()"
    )
    return int(n)


def _count_between(path: Path, t1: float, t2: float) -> int:
    """Completions between t1 and t2 from a worker's "time count" lines (linear between samples)."""
    times: list[float] = []
    counts: list[int] = []
    for line in path.read_text().split("\n"):
        parts = line.split()
        if len(parts) == 2:
            times.append(float(parts[0]))
            counts.append(int(parts[1]))

    def at(t: float) -> float:
        i = bisect.bisect_left(times, t)
        if i == 0:
            return float(counts[0]) if counts else 0.0
        if i >= len(times):
            return float(counts[-1])
        t0, t1_, c0, c1 = times[i - 1], times[i], counts[i - 1], counts[i]
        return c0 + (c1 - c0) * (t - t0) / (t1_ - t0)

    return round(at(t2) - at(t1))


async def terminate_all(stack: Stack, workflow_ids: Sequence[str]) -> None:
    sem = asyncio.Semaphore(64)

    async def one(wid: str) -> None:
        async with sem:
            try:
                await stack.client.get_workflow_handle(wid).terminate(reason="benchmark phase over")
            except Exception:  # already closed: nothing to stop
                pass

    await asyncio.gather(*(one(w) for w in workflow_ids))
