"""Read models of the whole fleet, for people (`starter list/status --user/report`) and for metrics.

PostgreSQL answers what is stored (mailboxes, the send ledger); Temporal answers what is running
(each mailbox workflow's `status` query, the task queue's backlog, workflow counts). Nothing here
writes; nothing here imports workflow code (the query is called by name), so workers can use it too.
"""

from __future__ import annotations

import asyncio
import datetime as dt
from collections.abc import Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import TypeVar

from temporalio.api.enums.v1 import TaskQueueType
from temporalio.api.taskqueue.v1 import TaskQueue
from temporalio.api.workflowservice.v1 import DescribeTaskQueueRequest
from temporalio.client import Client, WorkflowQueryFailedError, WorkflowQueryRejectedError
from temporalio.service import RPCError, RPCStatusCode

from warmup.db import Conn
from warmup.errors import ERR_CAP_WINDOW_CLOSED, ERR_TRANSIENT
from warmup.models import DELIVERED_STATUSES, MailboxState, MailboxStatus, SendStatus
from warmup.workflow_ids import mailbox_workflow_id
from workflows.mailbox import MailboxWarmupWorkflow

_DELIVERED = [s.value for s in DELIVERED_STATUSES]
T = TypeVar("T")
R = TypeVar("R")

# How many workflow queries run at once: enough to read a few thousand mailboxes in seconds without
# flooding the workers that answer them.
QUERY_CONCURRENCY = 20
# The ledger is partitioned by its rows' local day (migration 0021). A row is written when its slot is
# first dispatched, within its day; a query by time (the last hour, the last 24 h) also bounds `day` to
# this many days before the window, so it reads a week's partitions, not the retention's 90 days.
LATE_DAYS = 7


# --- PostgreSQL ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class MailboxRow:
    """One mailbox as stored, with what it delivered on its own local calendar day so far."""

    id: int
    user_id: str
    address: str
    state: MailboxState
    pause_reason: str
    timezone: str
    window_start_hour: int
    window_end_hour: int
    ramp_start: int
    ramp_increment: int
    ramp_ceiling: int
    delivered_today: int

    @property
    def workflow_id(self) -> str:
        return mailbox_workflow_id(self.id)


async def list_mailboxes(
    conn: Conn, *, user_id: str | None = None, state: MailboxState | None = None
) -> list[MailboxRow]:
    """Mailboxes by user then address, optionally of one user and/or in one state."""
    rows = await conn.fetch(
        """
        SELECT m.id, m.user_id, m.address, m.state, m.pause_reason, m.timezone, m.window_start_hour,
               m.window_end_hour, m.ramp_start, m.ramp_increment, m.ramp_ceiling,
               (SELECT count(*) FROM send_ledger l
                 WHERE l.sender_id = m.id AND l.day = (now() AT TIME ZONE m.timezone)::date
                   AND l.status = ANY($3::send_status[])) AS delivered_today
        FROM mailboxes m
        WHERE ($1::text IS NULL OR m.user_id = $1) AND ($2::mailbox_state IS NULL OR m.state = $2)
        ORDER BY m.user_id, m.address
        """,
        user_id,
        None if state is None else state.value,
        _DELIVERED,
    )
    return [
        MailboxRow(
            id=int(r["id"]),
            user_id=r["user_id"],
            address=r["address"],
            state=MailboxState(r["state"]),
            pause_reason=r["pause_reason"],
            timezone=r["timezone"],
            window_start_hour=int(r["window_start_hour"]),
            window_end_hour=int(r["window_end_hour"]),
            ramp_start=int(r["ramp_start"]),
            ramp_increment=int(r["ramp_increment"]),
            ramp_ceiling=int(r["ramp_ceiling"]),
            delivered_today=int(r["delivered_today"]),
        )
        for r in rows
    ]


async def delivered_on(conn: Conn, days: Sequence[tuple[int, dt.date]]) -> dict[tuple[int, dt.date], int]:
    """Emails delivered (SENT, REPLIED) per (mailbox, local day): the ledger's side of a fill rate."""
    if not days:
        return {}
    rows = await conn.fetch(
        """
        SELECT l.sender_id, l.day, count(*) AS n
        FROM send_ledger l
        JOIN unnest($1::bigint[], $2::date[]) AS want(sender_id, day)
          ON want.sender_id = l.sender_id AND want.day = l.day
        WHERE l.status = ANY($3::send_status[])
        GROUP BY l.sender_id, l.day
        """,
        [m for m, _ in days],
        [d for _, d in days],
        _DELIVERED,
    )
    return {(int(r["sender_id"]), r["day"]): int(r["n"]) for r in rows}


@dataclass(frozen=True)
class RelaxedRules:
    """The pool rules a mailbox's picks of one day broke (`activities/recipients.py`): the pool too small."""

    picks: int  # new threads picked that day
    by_rule: dict[str, int]  # rule -> picks that broke it

    def text(self) -> str:
        """'relaxed today: pair_repeat on 3 of 12 picks (the pool is too small ...)', or '' if none."""
        if not self.by_rule:
            return ""
        rules = ", ".join(f"{rule} on {n} of {self.picks} picks" for rule, n in self.by_rule.items())
        return f"relaxed today: {rules} (the pool is too small to keep them; enroll more mailboxes)"


async def relaxed_rules_on(conn: Conn, mailbox_id: int, day: dt.date) -> RelaxedRules:
    """What `starter status` shows of the pool rules for `mailbox_id` on its local `day`."""
    rows = await conn.fetch(
        "SELECT relaxed, count(*) AS n FROM send_ledger"
        " WHERE sender_id = $1 AND day = $2 AND in_reply_to IS NULL GROUP BY relaxed",
        mailbox_id,
        day,
    )
    by_rule: dict[str, int] = {}
    for r in rows:
        for rule in filter(None, str(r["relaxed"]).split(",")):
            by_rule[rule] = by_rule.get(rule, 0) + int(r["n"])
    return RelaxedRules(sum(int(r["n"]) for r in rows), by_rule)


# Error kinds of `warmup_errors_per_hour` and `starter report`, from the ledger's status and the
# error type the activity stores as the prefix of `error` ("SmtpAuthRejected: 535 ...").
ERROR_KINDS = ("refused", "gave_up", "unknown", "retrying", "cap_window_closed")


async def errors_last_hour(conn: Conn, now: dt.datetime | None = None) -> dict[str, int]:
    """Sends that ran into an error in the last 60 minutes, by kind (every kind present, 0 if none).

    refused: the server refused it for good (5xx, 535, configuration); gave_up: SMTP kept failing
    transiently until the attempts ran out; unknown: no reply after DATA; retrying: failed transiently
    and waits for its next attempt; cap_window_closed: the cluster caps held it past its window.
    """
    rows = await conn.fetch(
        """
        SELECT CASE
                 WHEN status = $2 AND split_part(error, ':', 1) = $5 THEN 'gave_up'
                 WHEN status = $2 AND split_part(error, ':', 1) = $6 THEN 'cap_window_closed'
                 WHEN status = $2 THEN 'refused'
                 WHEN status = $3 THEN 'unknown'
                 ELSE 'retrying'
               END AS kind,
               count(*) AS n
        FROM send_ledger
        WHERE updated_at >= $1::timestamptz - interval '1 hour' AND updated_at <= $1::timestamptz
          AND day >= $1::timestamptz::date - $7::int
          AND (status IN ($2, $3) OR (status = $4 AND error <> ''))
        GROUP BY kind
        """,
        now or dt.datetime.now(dt.UTC),
        SendStatus.FAILED.value,
        SendStatus.UNKNOWN.value,
        SendStatus.PENDING.value,
        ERR_TRANSIENT,
        ERR_CAP_WINDOW_CLOSED,
        LATE_DAYS,
    )
    counts = dict.fromkeys(ERROR_KINDS, 0)
    counts.update({r["kind"]: int(r["n"]) for r in rows})
    return counts


@dataclass(frozen=True)
class HourRow:
    hour: dt.datetime  # UTC, start of the hour
    delivered: int
    active_mailboxes: int  # distinct senders that delivered in the hour
    failed: int  # FAILED or UNKNOWN in the hour


async def hourly_throughput(
    conn: Conn, hours: int = 24, now: dt.datetime | None = None, user_id: str | None = None
) -> list[HourRow]:
    """The audit's "hourly throughput trend", over the last `hours` full and current hours
    (of one user's mailboxes with `user_id`)."""
    rows = await conn.fetch(
        """
        SELECT date_trunc('hour', coalesce(sent_at, updated_at)) AS hour,
               count(*) FILTER (WHERE status = ANY($2::send_status[])) AS delivered,
               count(DISTINCT sender_id) FILTER (WHERE status = ANY($2::send_status[])) AS senders,
               count(*) FILTER (WHERE status IN ($3, $4)) AS failed
        FROM send_ledger
        WHERE coalesce(sent_at, updated_at) >= $1 AND day >= $1::timestamptz::date - $6::int
          AND (status = ANY($2::send_status[]) OR status IN ($3, $4))
          AND ($5::text IS NULL OR sender_id IN (SELECT id FROM mailboxes WHERE user_id = $5))
        GROUP BY hour ORDER BY hour
        """,
        (now or dt.datetime.now(dt.UTC)) - dt.timedelta(hours=hours),
        _DELIVERED,
        SendStatus.FAILED.value,
        SendStatus.UNKNOWN.value,
        user_id,
        LATE_DAYS,
    )
    return [
        HourRow(
            hour=r["hour"].astimezone(dt.UTC),
            delivered=int(r["delivered"]),
            active_mailboxes=int(r["senders"]),
            failed=int(r["failed"]),
        )
        for r in rows
    ]


@dataclass(frozen=True)
class LedgerStatusAge:
    status: SendStatus
    count: int
    avg_age_minutes: float  # since the row was recorded


async def ledger_last_day(conn: Conn, user_id: str | None = None) -> list[LedgerStatusAge]:
    """The audit's "queue health" on the ledger: sends recorded in the last 24 h by status and age."""
    rows = await conn.fetch(
        """
        SELECT status, count(*) AS n, avg(extract(epoch FROM now() - created_at)) / 60 AS age
        FROM send_ledger WHERE created_at >= now() - interval '24 hours'
          AND day >= (now() - interval '24 hours')::date - $2::int
          AND ($1::text IS NULL OR sender_id IN (SELECT id FROM mailboxes WHERE user_id = $1))
        GROUP BY status ORDER BY status
        """,
        user_id,
        LATE_DAYS,
    )
    return [LedgerStatusAge(SendStatus(r["status"]), int(r["n"]), float(r["age"] or 0.0)) for r in rows]


async def mailbox_state_counts(conn: Conn, user_id: str | None = None) -> dict[MailboxState, int]:
    rows = await conn.fetch(
        "SELECT state, count(*) AS n FROM mailboxes WHERE ($1::text IS NULL OR user_id = $1) GROUP BY state",
        user_id,
    )
    counts = dict.fromkeys(MailboxState, 0)
    counts.update({MailboxState(r["state"]): int(r["n"]) for r in rows})
    return counts


# --- Temporal -----------------------------------------------------------------------------------


class StatusUnavailable(Exception):
    """A mailbox workflow could not answer its status query; the message says why and what to do."""


async def query_status(client: Client, mailbox_id: int, rpc_seconds: float = 10.0) -> MailboxStatus:
    workflow_id = mailbox_workflow_id(mailbox_id)
    handle = client.get_workflow_handle(workflow_id)
    try:
        result = await handle.query(
            MailboxWarmupWorkflow.status, rpc_timeout=dt.timedelta(seconds=rpc_seconds)
        )
    except (WorkflowQueryFailedError, WorkflowQueryRejectedError) as exc:
        raise StatusUnavailable(f"{workflow_id} could not answer: {exc}") from None
    except RPCError as exc:
        if exc.status is RPCStatusCode.NOT_FOUND:
            raise StatusUnavailable(
                f"{workflow_id} is not running; `starter enroll` starts it again"
            ) from None
        if exc.status in (RPCStatusCode.DEADLINE_EXCEEDED, RPCStatusCode.CANCELLED):
            raise StatusUnavailable(
                f"no worker answered for {workflow_id} within {rpc_seconds:g}s; is a worker running?"
            ) from None
        raise StatusUnavailable(f"Temporal refused the query for {workflow_id}: {exc.message}") from None
    if not isinstance(result, MailboxStatus):
        raise StatusUnavailable(f"{workflow_id} answered with an unexpected {type(result).__name__}")
    return result


async def bounded_gather(
    items: Iterable[T], call: Callable[[T], Awaitable[R]], limit: int = QUERY_CONCURRENCY
) -> list[R]:
    """`call` on every item, at most `limit` at a time, results in the items' order."""
    gate = asyncio.Semaphore(limit)

    async def one(item: T) -> R:
        async with gate:
            return await call(item)

    return list(await asyncio.gather(*(one(i) for i in items)))


@dataclass(frozen=True)
class MailboxDay:
    """A mailbox's today: the workflow's status (None with `error` when it did not answer) and the
    ledger's delivered count for the workflow's own local day."""

    mailbox: MailboxRow
    status: MailboxStatus | None
    error: str
    delivered: int

    @property
    def quota(self) -> int:
        return self.status.quota_today if self.status else 0

    @property
    def fill(self) -> float | None:
        """Delivered / today's quota, or None when there is no quota to fill."""
        return self.delivered / self.quota if self.quota > 0 else None

    @property
    def day_done(self) -> bool:
        """Every slot of today's quota has been used (sent, failed or unknown), and it is not paused."""
        s = self.status
        return (
            s is not None
            and not s.paused
            and s.quota_today > 0
            and s.sent_today + s.failed_today + s.unknown_today >= s.quota_today
        )


async def mailbox_days(
    client: Client, conn: Conn, mailboxes: Sequence[MailboxRow], *, rpc_seconds: float = 10.0
) -> list[MailboxDay]:
    """Status and ledger count of each mailbox (removed ones are not asked: their workflow has ended)."""

    async def status_of(m: MailboxRow) -> MailboxStatus | str:
        if m.state is MailboxState.REMOVED:
            return "removed"
        try:
            return await query_status(client, m.id, rpc_seconds)
        except StatusUnavailable as exc:
            return str(exc)

    answers = await bounded_gather(mailboxes, status_of)
    wanted = [
        (m.id, dt.date.fromisoformat(a.day))
        for m, a in zip(mailboxes, answers, strict=True)
        if isinstance(a, MailboxStatus) and a.day
    ]
    delivered = await delivered_on(conn, wanted)
    days = []
    for m, a in zip(mailboxes, answers, strict=True):
        if isinstance(a, MailboxStatus):
            n = delivered.get((m.id, dt.date.fromisoformat(a.day)), 0) if a.day else 0
            days.append(MailboxDay(m, a, "", n))
        else:
            days.append(MailboxDay(m, None, a, 0))
    return days


@dataclass(frozen=True)
class Backlog:
    task_queue_type: str  # "workflow" or "activity"
    count: int  # approximate tasks waiting for a worker
    age_seconds: float  # how long the oldest has waited
    add_rate: float  # tasks added per second
    dispatch_rate: float  # tasks handed to workers per second
    pollers: int  # workers polling right now


_QUEUE_TYPES = {
    "workflow": TaskQueueType.TASK_QUEUE_TYPE_WORKFLOW,
    "activity": TaskQueueType.TASK_QUEUE_TYPE_ACTIVITY,
}


async def task_queue_backlog(client: Client, task_queue: str) -> list[Backlog]:
    """Temporal's own view of the work waiting on the task queue (DescribeTaskQueue with stats)."""
    found = []
    for name, kind in _QUEUE_TYPES.items():
        resp = await client.workflow_service.describe_task_queue(
            DescribeTaskQueueRequest(
                namespace=client.namespace,
                task_queue=TaskQueue(name=task_queue),
                task_queue_type=kind,
                report_stats=True,
            ),
            timeout=dt.timedelta(seconds=10),
        )
        stats = resp.stats
        found.append(
            Backlog(
                task_queue_type=name,
                count=int(stats.approximate_backlog_count),
                age_seconds=stats.approximate_backlog_age.ToTimedelta().total_seconds(),
                add_rate=float(stats.tasks_add_rate),
                dispatch_rate=float(stats.tasks_dispatch_rate),
                pollers=len(resp.pollers),
            )
        )
    return found


MAILBOX_WORKFLOW_TYPE = "MailboxWarmupWorkflow"


def mailbox_workflows_query(task_queue: str) -> str:
    """The visibility query that selects the mailbox workflows of `task_queue`."""
    return f"WorkflowType = '{MAILBOX_WORKFLOW_TYPE}' AND TaskQueue = '{quote_literal(task_queue)}'"


async def workflow_counts(client: Client, task_queue: str) -> dict[str, int]:
    """Mailbox workflows on the task queue by execution status (Running, Completed, Failed...)."""
    result = await client.count_workflows(f"{mailbox_workflows_query(task_queue)} GROUP BY ExecutionStatus")
    return {str(g.group_values[0]): g.count for g in result.groups if g.group_values}


def quote_literal(value: str) -> str:
    """A value inside a single-quoted visibility query literal."""
    return value.replace("\\", "\\\\").replace("'", "\\'")
