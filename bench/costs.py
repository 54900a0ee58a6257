"""Cost per email from real workflow histories: history events, workflow tasks and the actions
Temporal Cloud bills (docs.temporal.io/cloud/actions), per sent email and per mailbox-day.

Billable, as Temporal Cloud counts them from history: a workflow start (client start or
continue-as-new), each timer started (including the implicit timer of a wait with a timeout), each
activity attempt, each signal (received, or sent by a workflow), each search-attribute upsert, each
child workflow (2), each accepted or rejected update, a local-activity marker. Queries are billed
too but leave no history: the benchmark sends none; each `starter status` costs one.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import dataclass

from temporalio.api.enums.v1 import EventType
from temporalio.api.history.v1 import HistoryEvent
from temporalio.client import Client

E = EventType
_ONE_ACTION = frozenset(
    {
        E.EVENT_TYPE_WORKFLOW_EXECUTION_STARTED,
        E.EVENT_TYPE_TIMER_STARTED,
        E.EVENT_TYPE_WORKFLOW_EXECUTION_SIGNALED,
        E.EVENT_TYPE_SIGNAL_EXTERNAL_WORKFLOW_EXECUTION_INITIATED,
        E.EVENT_TYPE_UPSERT_WORKFLOW_SEARCH_ATTRIBUTES,
        E.EVENT_TYPE_WORKFLOW_EXECUTION_UPDATE_ACCEPTED,
        E.EVENT_TYPE_WORKFLOW_EXECUTION_UPDATE_REJECTED,
        E.EVENT_TYPE_MARKER_RECORDED,
        E.EVENT_TYPE_WORKFLOW_EXECUTION_OPTIONS_UPDATED,
    }
)
# Events an operator's action adds at the end of a benchmark, not the workload's.
_NOT_WORKLOAD = frozenset({E.EVENT_TYPE_WORKFLOW_EXECUTION_TERMINATED})


def billable_actions(events: Sequence[HistoryEvent]) -> int:
    actions = 0
    scheduled: dict[int, int] = {}  # activity scheduled event id -> attempts seen
    for ev in events:
        if ev.event_type in _ONE_ACTION:
            actions += 1
        elif ev.event_type == E.EVENT_TYPE_START_CHILD_WORKFLOW_EXECUTION_INITIATED:
            actions += 2
        elif ev.event_type == E.EVENT_TYPE_ACTIVITY_TASK_SCHEDULED:
            scheduled[ev.event_id] = 1
        elif ev.event_type == E.EVENT_TYPE_ACTIVITY_TASK_STARTED:
            # Written once, at the end, carrying the number of the last attempt: every attempt bills.
            attempt = ev.activity_task_started_event_attributes.attempt
            scheduled[ev.activity_task_started_event_attributes.scheduled_event_id] = max(attempt, 1)
    return actions + sum(scheduled.values())


def _is_send_completion(ev: HistoryEvent, send_scheduled: set[int]) -> bool:
    return (
        ev.event_type == E.EVENT_TYPE_ACTIVITY_TASK_COMPLETED
        and ev.activity_task_completed_event_attributes.scheduled_event_id in send_scheduled
    )


@dataclass(frozen=True)
class Tally:
    events: int = 0
    workflow_tasks: int = 0  # WorkflowTaskCompleted
    actions: int = 0
    emails: int = 0  # send activities completed

    def __add__(self, other: Tally) -> Tally:
        return Tally(
            self.events + other.events,
            self.workflow_tasks + other.workflow_tasks,
            self.actions + other.actions,
            self.emails + other.emails,
        )


def tally(events: Sequence[HistoryEvent], activity_type: str = "send_email") -> Tally:
    events = [e for e in events if e.event_type not in _NOT_WORKLOAD]
    sends = {
        e.event_id
        for e in events
        if e.event_type == E.EVENT_TYPE_ACTIVITY_TASK_SCHEDULED
        and e.activity_task_scheduled_event_attributes.activity_type.name == activity_type
    }
    return Tally(
        events=len(events),
        workflow_tasks=sum(e.event_type == E.EVENT_TYPE_WORKFLOW_TASK_COMPLETED for e in events),
        actions=billable_actions(events),
        emails=sum(_is_send_completion(e, sends) for e in events),
    )


def steady_state(events: Sequence[HistoryEvent], activity_type: str = "send_email") -> Tally:
    """The events from just after one email's completion to the last one's: whole send cycles only,
    without the start of the run (first task, search attributes) or the idle tail."""
    sends = {
        e.event_id
        for e in events
        if e.event_type == E.EVENT_TYPE_ACTIVITY_TASK_SCHEDULED
        and e.activity_task_scheduled_event_attributes.activity_type.name == activity_type
    }
    done = [i for i, e in enumerate(events) if _is_send_completion(e, sends)]
    if len(done) < 2:
        return Tally()
    part = tally(events[done[0] + 1 : done[-1] + 1], activity_type)
    # The slice's scheduled events are in it, so its completions are counted: len(done) - 1 cycles.
    return part


@dataclass(frozen=True)
class CostSummary:
    source: str
    workflows: int
    total: Tally
    steady: Tally
    mailbox_days: float  # 0 when the source is not a whole day

    def per_email(self, steady: bool = True) -> dict[str, float]:
        t = self.steady if steady else self.total
        n = t.emails or 1
        return {"events": t.events / n, "workflow_tasks": t.workflow_tasks / n, "actions": t.actions / n}

    def per_mailbox_day(self) -> dict[str, float]:
        d = self.mailbox_days or 1.0
        t = self.total
        return {
            "events": t.events / d,
            "workflow_tasks": t.workflow_tasks / d,
            "actions": t.actions / d,
            "emails": t.emails / d,
        }


async def fetch_events(
    client: Client, workflow_ids: Sequence[str], concurrency: int = 16
) -> list[list[HistoryEvent]]:
    """The history of each workflow's current run (the benchmark's runs never continue as new)."""
    sem = asyncio.Semaphore(concurrency)

    async def one(wid: str) -> list[HistoryEvent]:
        async with sem:
            history = await client.get_workflow_handle(wid).fetch_history()
            return list(history.events)

    return list(await asyncio.gather(*(one(w) for w in workflow_ids)))


def before(events: Sequence[HistoryEvent], epoch: float) -> list[HistoryEvent]:
    """The events written before `epoch` (seconds): one mailbox's day out of a longer history."""
    return [e for e in events if e.event_time.seconds + e.event_time.nanos / 1e9 < epoch]


def summarize(
    source: str, histories: Sequence[Sequence[HistoryEvent]], mailbox_days: float = 0.0
) -> CostSummary:
    total, steady = Tally(), Tally()
    for events in histories:
        total += tally(events)
        steady += steady_state(events)
    return CostSummary(source, len(histories), total, steady, mailbox_days)
