"""100,000 mailboxes on one machine: enrollment rate, sustained sends/s and the lateness of every
send against its planned time over a measured span of at least ten minutes.

The fleet is a 1,000,000-emails-a-day fleet caught mid-day: every mailbox's window (6-22 local, a
timezone chosen so that it is about 10:00 there when the run starts) has been open four hours. Each
workflow starts with the state its own day would have reached by then, computed by the simulation
(the very `DaySchedule` the workflow drives), so every mailbox's whole day of sends is known: a send
planned inside the measured span that did not happen counts as late, not as absent.
"""

from __future__ import annotations

import array
import asyncio
import datetime as dt
import math
import sys
import time
import uuid
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from asyncpg import Record
from temporalio.api.enums.v1 import TaskQueueType
from temporalio.api.taskqueue.v1 import TaskQueue
from temporalio.api.workflowservice.v1 import DescribeTaskQueueRequest

from bench import capprobe, pgsample, pyspy
from bench.capprobe import CapCheck
from bench.des import Sim
from bench.enroll import Enrolled, insert_mailboxes, start_workflows
from bench.pgsample import SqlProfile
from bench.procstat import CpuMeter, rss_bytes
from bench.profile import SCALE_PROFILE
from bench.stack import Stack
from bench.warmup_sim import SimSend, mailbox_process
from warmup import schedule
from warmup.config import load_settings
from warmup.day_schedule import DaySchedule
from warmup.models import MailboxWorkflowInput, MailboxWorkflowState, RampSettings, ScheduleSettings

LOCAL_HOUR_AT_START = 10  # four hours into a 6-22 window


@dataclass(frozen=True)
class Lateness:
    count: int
    p50: float
    p99: float
    max: float


@dataclass
class ScaleResult:
    mailboxes: int
    quota_per_day: int
    timezone: str
    enroll_mode: str  # "delayed": first task at the first planned send; "immediate": right away
    start_per_second: float  # workflow starts the server accepted per second
    enroll_seconds: float  # from the first start until no first workflow task was waiting
    measured_seconds: float
    planned: int  # sends the mailboxes' plans put inside the measured span
    sent: int  # sends completed inside the measured span
    min_minute_rate: float  # the slowest whole minute of the span, sends/s
    not_sent: int  # planned inside the span, still not sent after the grace period
    not_sent_by_status: dict[str, int]  # their ledger status ("no row": never dispatched)
    # Mailboxes whose workflow re-spread the rest of its day (a send finished so late that the next
    # was closer than delay_min): judged by the planned times in the ledger, not the predicted ones.
    respread_mailboxes: int
    lateness: Lateness  # sent_at - planned_at, seconds (not sent: counted as infinitely late)
    dispatch_lateness: Lateness  # workflow dispatch time - planned_at
    cores: dict[str, float]
    worker_rss_mb_idle: float
    worker_rss_mb: float
    cache_size: int
    workflows_run: int  # workflows that ran at least one task on the worker (the others wait, started)
    profile: list[tuple[float, str]] = field(default_factory=list)
    sql: SqlProfile | None = None
    cap_checks: list[CapCheck] = field(default_factory=list)
    # Whether the mailboxes ran inbox sessions: they have no IMAP settings (docs/benchmarks.md, Engagement).
    engagement: bool = False

    @property
    def sends_per_second(self) -> float:
        return self.sent / self.measured_seconds if self.measured_seconds else 0.0

    @property
    def planned_per_second(self) -> float:
        return self.planned / self.measured_seconds if self.measured_seconds else 0.0


def zone_for_local_hour(now: float, hour: int) -> str:
    """An Etc/GMT zone in which it is `hour`:mm at `now` (Etc/GMT-3 is UTC+3)."""
    utc_hour = dt.datetime.fromtimestamp(now, dt.UTC).hour
    offset = (hour - utc_hour) % 24
    if offset > 14:
        offset -= 24
    return "UTC" if offset == 0 else f"Etc/GMT{'-' if offset > 0 else '+'}{abs(offset)}"


def state_at(
    mailbox_id: int, sched: ScheduleSettings, now: float
) -> tuple[MailboxWorkflowState, list[float]]:
    """The state this mailbox's day reaches by `now` (every send so far on plan), and the day's plan."""
    day_schedule = DaySchedule(mailbox_id, sched, MailboxWorkflowState())
    opened = schedule.window_bounds(schedule.local_day(now, sched.timezone), sched)[0]
    sim = Sim(opened)
    done: list[SimSend] = []
    sim.spawn(mailbox_process(sim, day_schedule, math.inf, 0.0, done))
    sim.run(until=now)
    return day_schedule.state, [s.planned_at for s in done] + list(day_schedule.state.today.plan)


def _percentiles(values: list[float]) -> Lateness:
    if not values:
        return Lateness(0, 0.0, 0.0, 0.0)
    v = sorted(values)

    def q(p: float) -> float:
        return v[min(len(v) - 1, math.ceil(p * len(v)) - 1)]

    return Lateness(len(v), round(q(0.5), 3), round(q(0.99), 3), round(v[-1], 3))


async def _backlog(stack: Stack, queue: str) -> int:
    resp = await stack.client.workflow_service.describe_task_queue(
        DescribeTaskQueueRequest(
            namespace=stack.client.namespace,
            task_queue=TaskQueue(name=queue),
            task_queue_type=TaskQueueType.TASK_QUEUE_TYPE_WORKFLOW,
            report_stats=True,
        )
    )
    return int(resp.stats.approximate_backlog_count)


async def wait_for_ready(log_path: Path, within: float = 60.0) -> None:
    """Until the worker logs that it polls (it has connected and migrated the database)."""
    deadline = time.monotonic() + within
    while "polling task queue" not in _read(log_path):
        if time.monotonic() > deadline:
            raise RuntimeError(f"the worker did not start polling within {within:.0f}s; see {log_path}")
        await asyncio.sleep(0.2)


def _read(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8", errors="replace")
    except OSError:
        return ""


async def wait_for_first_tasks(stack: Stack, queue: str, within: float) -> None:
    """Until no workflow task waits in `queue`: every started workflow has run its first task."""
    deadline = time.monotonic() + within
    while await _backlog(stack, queue) > 0:
        if time.monotonic() > deadline:
            raise RuntimeError(f"workflow tasks still waiting in {queue} after {within:.0f}s")
        await asyncio.sleep(2)


async def run_scale(
    stack: Stack,
    *,
    mailboxes: int,
    minutes: float,
    emails_per_day: int,
    cache: int,
    workers: int = 1,
    enroll: str = "delayed",
    grace_seconds: float = 60.0,
    profile_seconds: float = 30.0,
    say: Callable[[str], None] = print,
) -> ScaleResult:
    queue = f"scale-{uuid.uuid4().hex[:6]}"
    now = time.time()
    quota = max(1, round(emails_per_day / mailboxes))
    tz = zone_for_local_hour(now, LOCAL_HOUR_AT_START)
    sched = ScheduleSettings(timezone=tz, ramp=RampSettings(quota, 0, quota))
    enrolled = await insert_mailboxes(
        stack.pool,
        f"sc{queue[6:]}",
        [(f"sc{queue[6:]}-u{i // 100}", sched) for i in range(mailboxes)],
        stack.sink_port,
        stack.box.encrypt("bench-password"),
    )
    say(f"  scale: {mailboxes:,} mailboxes inserted ({quota}/day each, {tz}); starting workflows")
    env = stack.worker_env(queue, {**SCALE_PROFILE.env, "WARMUP_MAX_CACHED_WORKFLOWS": str(cache)})
    retry = load_settings(env).send_retry()
    procs = [
        stack.spawn([sys.executable, "-m", "workers.run"], env, f"scale-worker{i}") for i in range(workers)
    ]
    for i in range(workers):
        await wait_for_ready(stack.logs / f"scale-worker{i}.log")
    rss_idle = sum(rss_bytes(p.pid) for p in procs) / 2**20

    plans: dict[int, array.array[float]] = {}

    def make_input(m: Enrolled) -> MailboxWorkflowInput:
        state, plan = state_at(m.mailbox_id, m.schedule, time.time())
        plans[m.mailbox_id] = array.array("d", plan)
        return MailboxWorkflowInput(m.mailbox_id, m.user_id, m.schedule, retry, state=state)

    def first_send(inp: MailboxWorkflowInput) -> dt.timedelta | None:
        # Temporal's start delay: the workflow's first task runs when its first send is due, so
        # enrolling costs the server one start instead of a start and an immediate task.
        plan = inp.state.today.plan if inp.state is not None else []
        return dt.timedelta(seconds=max(0.0, plan[0] - time.time())) if plan else None

    if enroll not in ("delayed", "immediate"):
        raise ValueError(f"enroll={enroll!r}: use 'delayed' or 'immediate'")
    began, enroll_start = time.perf_counter(), time.time()
    # Enrolling is setup, not measured: the server runs it without fsync (the workers reconnect
    # across its restarts), and the measured span below runs on the durable pragmas again.
    async with stack.unsynced_temporal():
        started = await start_workflows(
            stack.client,
            queue,
            enrolled,
            make_input,
            progress=lambda n: say(f"    {n:,} started"),
            start_delay=first_send if enroll == "delayed" else None,
        )
        say(f"  scale: {started.started:,} started at {started.per_second:.0f}/s; waiting for first tasks")
        await wait_for_first_tasks(stack, queue, within=3600)
    await wait_for_first_tasks(stack, queue, within=600)  # what came due during the restart
    enroll_seconds = time.perf_counter() - began
    say(f"  scale: enrolled in {enroll_seconds:.0f}s; measuring {minutes:g} min")

    meter = CpuMeter({**stack.pids(), "worker": [p.pid for p in procs]})
    a, t1 = meter.sample(), time.time()
    span = minutes * 60
    await asyncio.sleep(span)
    b, t2 = meter.sample(), time.time()
    rss = sum(rss_bytes(p.pid) for p in procs) / 2**20
    say(f"  scale: measured; {grace_seconds:.0f}s grace for sends planned near the end (profiling)")
    # Profiled after the measured span, during the grace period, so the sampler cannot slow the measurement.
    grace_end = time.time() + grace_seconds
    spy = None
    if profile_seconds > 0:
        spy = pyspy.record(
            procs[0].pid, min(profile_seconds, grace_seconds), stack.logs / "scale-worker.pyspy"
        )
    sql = (
        await pgsample.sample(stack.pool, min(profile_seconds, grace_seconds))
        if profile_seconds > 0
        else None
    )
    if spy is not None:
        await asyncio.to_thread(spy.wait)
    await asyncio.sleep(max(0.0, grace_end - time.time()))

    rows = await stack.pool.fetch(
        "SELECT sender_id, slot, extract(epoch FROM planned_at) AS planned,"
        " extract(epoch FROM dispatched_at) AS dispatched, extract(epoch FROM sent_at) AS sent"
        " FROM send_ledger WHERE status = 'SENT' AND sent_at IS NOT NULL"
        " AND sent_at >= to_timestamp($1)",
        enroll_start,
    )
    by_key = {(int(r["sender_id"]), int(r["slot"])): r for r in rows}
    sent_in_span = sum(t1 <= float(r["sent"]) < t2 for r in rows)
    spacing = sched.delay_min_minutes * 60
    per_minute = [0] * max(1, int(span // 60))
    for r in rows:
        k = int((float(r["sent"]) - t1) // 60)
        if 0 <= k < len(per_minute):
            per_minute[k] += 1

    late: list[float] = []
    dispatch_late: list[float] = []
    moved = _respread(plans, by_key, spacing)
    planned = not_sent = 0
    for (m, _), rec in by_key.items():
        if m in moved and t1 <= float(rec["planned"]) < t2:
            planned += 1
            late.append(float(rec["sent"]) - float(rec["planned"]))
            dispatch_late.append(float(rec["dispatched"]) - float(rec["planned"]))
    missing: list[tuple[int, int]] = []
    for mailbox_id, plan in plans.items():
        if mailbox_id in moved:
            continue
        for slot, at in enumerate(plan):
            if not t1 <= at < t2:
                continue
            planned += 1
            row = by_key.get((mailbox_id, slot))
            if row is None:
                not_sent += 1
                missing.append((mailbox_id, slot))
                late.append(math.inf)
                continue
            late.append(float(row["sent"]) - float(row["planned"]))
            dispatch_late.append(float(row["dispatched"]) - float(row["planned"]))

    statuses = await stack.pool.fetch(
        "SELECT m.sender_id, m.slot, coalesce(l.status::text, 'no row') AS status"
        " FROM unnest($1::bigint[], $2::int[]) AS m(sender_id, slot)"
        " LEFT JOIN send_ledger l ON l.sender_id = m.sender_id AND l.slot = m.slot AND l.day = $3::date",
        [m for m, _ in missing],
        [s for _, s in missing],
        schedule.local_day(t1, tz),
    )
    not_sent_by_status = dict(Counter(r["status"] for r in statuses))
    ran = await stack.pool.fetchval(
        "SELECT count(DISTINCT sender_id) FROM send_ledger WHERE created_at >= to_timestamp($1)", enroll_start
    )
    prof = pyspy.summarize(stack.logs / "scale-worker.pyspy")
    for p in procs:
        stack.stop_child(p, timeout=10)
    cap_checks = await capprobe.probe(stack.pool, load_settings(env), enrolled[0].user_id)
    return ScaleResult(
        mailboxes=mailboxes,
        quota_per_day=quota,
        timezone=tz,
        enroll_mode=enroll,
        start_per_second=round(started.per_second, 1),
        enroll_seconds=round(enroll_seconds, 1),
        measured_seconds=round(t2 - t1, 1),
        planned=planned,
        sent=sent_in_span,
        min_minute_rate=round(min(per_minute) / 60, 2) if span >= 60 else round(sent_in_span / span, 2),
        not_sent=not_sent,
        not_sent_by_status=not_sent_by_status,
        respread_mailboxes=len(moved),
        lateness=_percentiles(late),
        dispatch_lateness=_percentiles(dispatch_late),
        cores=CpuMeter.cores(a, b),
        worker_rss_mb_idle=round(rss_idle, 1),
        worker_rss_mb=round(rss, 1),
        cache_size=cache,
        workflows_run=mailboxes if enroll == "immediate" else int(ran),
        profile=prof.top if prof else [],
        sql=sql,
        cap_checks=cap_checks,
        engagement=sched.engagement.enabled,
    )


def _respread(
    plans: dict[int, array.array[float]], sent: dict[tuple[int, int], Record], spacing: float
) -> set[int]:
    """Mailboxes whose workflow re-spread its day, so later slots have other planned times.

    It does when a send finishes less than delay_min before the next planned one: seen either as a
    sent slot whose planned time differs from the prediction, or as a slot never dispatched right
    after a send that finished within delay_min of it.
    """
    moved = set()
    for mailbox_id, plan in plans.items():
        for slot, at in enumerate(plan):
            row = sent.get((mailbox_id, slot))
            if row is not None and abs(float(row["planned"]) - at) > 0.001:
                moved.add(mailbox_id)
                break
            prev = sent.get((mailbox_id, slot - 1))
            if row is None and prev is not None and at < float(prev["sent"]) + spacing + 1.0:
                moved.add(mailbox_id)
                break
    return moved
