"""Aged histories: what a cache miss costs a mailbox workflow whose run has grown for days.

A mailbox at its ramp's ceiling (40 sends a day) runs for `days` days on the time-skipping server,
twice: continued as new only when Temporal suggests it (about 4,096 events, `one_day_per_run=False`,
how every run went before issue #13) and one local day per run (the default since). For each, from
the real histories:
- the history length a cache miss finds, over a run's life (sampled at every workflow task: a miss
  replays the history up to the task it is evicted before), its mean, p50 and max;
- the SDK's Replayer on prefixes of the longest run, timed in CPU: the replay cost per event and of
  the mean history, i.e. the worker CPU a cache miss adds to an email, and what a deploy (every
  worker restarted at once, the whole fleet evicted) costs to bring `fleet` workflows back;
- history events and workflow tasks per email.
"""

from __future__ import annotations

import statistics
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from temporalio.api.enums.v1 import EventType
from temporalio.api.history.v1 import History, HistoryEvent
from temporalio.client import WorkflowHistory
from temporalio.testing import WorkflowEnvironment
from temporalio.worker import Replayer, Worker

from bench.crosscheck import Recorder
from devstack.temporal import test_server_binary
from warmup.models import MailboxWorkflowInput, RampSettings, ScheduleSettings
from workers.sandbox import workflow_runner
from workflows.mailbox import MailboxWarmupWorkflow

DAY = 86_400.0
SENDS_PER_DAY = 40  # the ramp's default ceiling: the fleet on its twentieth day
_TASK_STARTED = EventType.EVENT_TYPE_WORKFLOW_TASK_STARTED
_TASK_COMPLETED = EventType.EVENT_TYPE_WORKFLOW_TASK_COMPLETED
_CONTINUED = EventType.EVENT_TYPE_WORKFLOW_EXECUTION_CONTINUED_AS_NEW
_ACTIVITY_SCHEDULED = EventType.EVENT_TYPE_ACTIVITY_TASK_SCHEDULED


@dataclass(frozen=True)
class ReplayPoint:
    events: int
    cpu_ms: float  # the Replayer's CPU for a history of `events` events (best of three)


@dataclass
class AgedRuns:
    label: str  # "suggested" (before the bound) or "one day per run" (the bound)
    day_per_run: bool  # the input's one_day_per_run: False, continue-as-new when Temporal suggests
    days: float
    sends: int
    runs: int
    events: int
    workflow_tasks: int
    run_events_max: int  # the longest run's history
    miss_events_mean: float  # the history a cache miss replays, over a run's life
    miss_events_p50: float
    replay: list[ReplayPoint] = field(default_factory=list)
    replay_us_per_event: float = 0.0  # the slope of replay CPU over history length
    replay_fixed_ms: float = 0.0  # its intercept: a replay's cost that no event count explains
    # The workflow's own CPU for one email when cached: the replay cost of one email's events.
    hit_cpu_ms: float = 0.0

    @property
    def events_per_email(self) -> float:
        return self.events / self.sends if self.sends else 0.0

    @property
    def tasks_per_email(self) -> float:
        return self.workflow_tasks / self.sends if self.sends else 0.0

    @property
    def miss_cpu_ms(self) -> float:
        """A cache miss's CPU: the replay of the mean history it finds."""
        return self.replay_fixed_ms + self.replay_us_per_event * self.miss_events_mean / 1000


@dataclass
class Aged:
    days: float
    fleet: int  # the fleet a deploy brings back, for the recovery figures
    workers: int  # worker processes that replay it, each on one core (replay is Python under the GIL)
    suggested: AgedRuns
    bounded: AgedRuns
    wall_seconds: float

    def recovery(self, runs: AgedRuns) -> tuple[float, float]:
        """(worker CPU seconds, wall seconds on `workers` processes) to replay the fleet after a deploy."""
        cpu = self.fleet * runs.miss_cpu_ms / 1000
        return cpu, cpu / self.workers


async def run_aged(
    *,
    days: float,
    fleet: int,
    workers: int = 1,
    sends_per_day: int = SENDS_PER_DAY,
    say: Callable[[str], None] = print,
) -> Aged:
    began = time.perf_counter()
    env = await WorkflowEnvironment.start_time_skipping(test_server_existing_path=test_server_binary())
    try:
        before = await _runs(env, "suggested", False, days, sends_per_day)
        after = await _runs(env, "one day per run", True, days, sends_per_day)
    finally:
        await env.shutdown()
    longest = max(before.histories, key=len)
    for runs, hist in ((before.result, longest), (after.result, max(after.histories, key=len))):
        runs.replay = await _replay_curve(hist)
        runs.replay_us_per_event, runs.replay_fixed_ms = _fit(runs.replay)
    for runs in (before.result, after.result):  # one per-event cost (the long run's fit) for both
        runs.hit_cpu_ms = before.result.replay_us_per_event * runs.events_per_email / 1000
    result = Aged(days, fleet, workers, before.result, after.result, time.perf_counter() - began)
    for r in (result.suggested, result.bounded):
        cpu, wall = result.recovery(r)
        say(
            f"  {r.label}: {r.runs} run(s), a miss replays {r.miss_events_mean:.0f} events on average "
            f"({r.replay_us_per_event:.0f} us each, {r.miss_cpu_ms:.0f} ms); deploy of {fleet:,}: "
            f"{cpu:,.0f} CPU-s, {wall / 60:.1f} min on {workers} worker(s)"
        )
    return result


@dataclass
class _Recorded:
    result: AgedRuns
    histories: list[list[HistoryEvent]]


async def _runs(
    env: WorkflowEnvironment, label: str, day_per_run: bool, days: float, sends_per_day: int
) -> _Recorded:
    rec = Recorder()
    queue = f"aged-{uuid.uuid4().hex[:8]}"
    ramp = RampSettings(sends_per_day, 0, sends_per_day)
    inp = MailboxWorkflowInput(
        1,
        "aged",
        ScheduleSettings(ramp=ramp),
        one_day_per_run=day_per_run,
        search_attributes=False,
    )
    async with Worker(
        env.client,
        task_queue=queue,
        workflows=[MailboxWarmupWorkflow],
        activities=[rec.send_email],
        workflow_runner=workflow_runner("shared"),
    ):
        handle = await env.client.start_workflow(MailboxWarmupWorkflow.run, inp, id=queue, task_queue=queue)
        await env.sleep(days * DAY)
        histories = await _chain(env, queue, handle.first_execution_run_id or handle.result_run_id or "")
        await env.client.get_workflow_handle(queue).terminate()
    # The runs that ended (the last one was cut by the horizon; it counts for the per-email costs).
    events = [e for h in histories for e in h]
    sampled = [e.event_id for h in histories for e in h if e.event_type == _TASK_STARTED]
    result = AgedRuns(
        label,
        day_per_run,
        days,
        sends=sum(1 for e in events if e.event_type == _ACTIVITY_SCHEDULED),
        runs=len(histories),
        events=len(events),
        workflow_tasks=sum(1 for e in events if e.event_type == _TASK_COMPLETED),
        run_events_max=max(len(h) for h in histories),
        miss_events_mean=round(statistics.fmean(sampled), 1),
        miss_events_p50=statistics.median(sampled),
    )
    return _Recorded(result, histories)


async def _chain(env: WorkflowEnvironment, workflow_id: str, run_id: str) -> list[list[HistoryEvent]]:
    """Every run's history, following continue-as-new from the first run."""
    out: list[list[HistoryEvent]] = []
    while run_id:
        events = list(
            (await env.client.get_workflow_handle(workflow_id, run_id=run_id).fetch_history()).events
        )
        out.append(events)
        last = events[-1]
        run_id = (
            last.workflow_execution_continued_as_new_event_attributes.new_execution_run_id
            if last.event_type == _CONTINUED
            else ""
        )
    return out


def _prefix(events: Sequence[HistoryEvent], size: int) -> list[HistoryEvent]:
    """The history a worker would replay at the first workflow task at or past `size` events."""
    for i, e in enumerate(events):
        if e.event_type == _TASK_STARTED and e.event_id >= size:
            return list(events[: i + 1])
    return list(events)


async def _replay_curve(events: list[HistoryEvent]) -> list[ReplayPoint]:
    replayer = Replayer(workflows=[MailboxWarmupWorkflow], workflow_runner=workflow_runner("shared"))
    sizes = sorted({max(20, int(len(events) * f)) for f in (0.1, 0.25, 0.5, 0.75, 1.0)})
    points = []
    for size in sizes:
        prefix = _prefix(events, size)
        history = WorkflowHistory("aged", History(events=prefix).events)
        best = float("inf")
        for _ in range(3):
            cpu = time.process_time()
            await replayer.replay_workflow(history, raise_on_replay_failure=True)
            best = min(best, time.process_time() - cpu)
        points.append(ReplayPoint(len(prefix), round(best * 1000, 2)))
    return points


def _fit(points: list[ReplayPoint]) -> tuple[float, float]:
    """Least squares: (us per event, fixed ms)."""
    if len(points) < 2:
        p = points[0]
        return p.cpu_ms * 1000 / p.events, 0.0
    slope, intercept = statistics.linear_regression([p.events for p in points], [p.cpu_ms for p in points])
    return round(slope * 1000, 1), round(max(intercept, 0.0), 2)


def markdown(a: Aged) -> list[str]:
    s, b = a.suggested, a.bounded
    rows = [
        ("runs in the span", f"{s.runs}", f"{b.runs}"),
        ("longest run's history (events)", f"{s.run_events_max:,}", f"{b.run_events_max:,}"),
        (
            "history a cache miss replays: mean / p50 (events)",
            f"{s.miss_events_mean:,.0f} / {s.miss_events_p50:,.0f}",
            f"{b.miss_events_mean:,.0f} / {b.miss_events_p50:,.0f}",
        ),
        (
            "replay CPU per event (Replayer, slope)",
            f"{s.replay_us_per_event:.0f} us",
            f"{b.replay_us_per_event:.0f} us",
        ),
        (
            "replay CPU by history length",
            ", ".join(f"{p.events:,}: {p.cpu_ms:.0f} ms" for p in s.replay),
            ", ".join(f"{p.events:,}: {p.cpu_ms:.0f} ms" for p in b.replay),
        ),
        ("workflow CPU per email, cache hit", f"{s.hit_cpu_ms:.1f} ms", f"{b.hit_cpu_ms:.1f} ms"),
        (
            "workflow CPU per email, cache miss",
            f"{s.hit_cpu_ms + s.miss_cpu_ms:.0f} ms",
            f"{b.hit_cpu_ms + b.miss_cpu_ms:.0f} ms",
        ),
        ("history events per email", f"{s.events_per_email:.2f}", f"{b.events_per_email:.2f}"),
        ("workflow tasks per email", f"{s.tasks_per_email:.2f}", f"{b.tasks_per_email:.2f}"),
    ]
    cpu_s, wall_s = a.recovery(s)
    cpu_b, wall_b = a.recovery(b)
    rows.append(
        (
            f"deploy: {a.fleet:,} workflows replayed, worker CPU / wall with {a.workers} worker(s)",
            f"{cpu_s:,.0f} s / {wall_s / 60:.1f} min",
            f"{cpu_b:,.0f} s / {wall_b / 60:.1f} min",
        )
    )
    out = [
        f"### Aged histories: cache misses over {a.days:g} days at {SENDS_PER_DAY} sends a day",
        "",
        "One mailbox at the ramp's ceiling on the time-skipping server, its runs continued as new "
        "when Temporal suggests (before the bound) and one local day per run (the bound, the "
        "default); the SDK's Replayer timed on prefixes of the longest run. A miss replays the "
        "history up to the workflow task it lands on: the mean is over every workflow task of the "
        f"runs. The deploy row is the mean miss times the fleet, on {a.workers} worker process(es), "
        "each replaying on one core (Python's GIL); the "
        "server's share is not in it. "
        f"{a.wall_seconds:.0f} s.",
        "",
        "| | continue-as-new when suggested | one day per run |",
        "|---|---|---|",
    ]
    out += [f"| {name} | {x} | {y} |" for name, x, y in rows]
    out.append("")
    return out
