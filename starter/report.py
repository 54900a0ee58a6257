"""`starter report`: the audit's three dashboard queries, answered by this system's sources.

1. Mailboxes under quota today, with fill %: each workflow's quota for its local day (status query)
   against what the ledger says it delivered that day.
2. Hourly throughput over the last 24 hours: the send ledger.
3. Queue health: there is no job table; Temporal's task-queue backlog, the mailbox workflows by
   execution state (and by WarmupStatus where workflows set it), mailbox states in PostgreSQL, and
   the ledger's sends of the last 24 hours by status and age.

And what decides whether warmup works: the receiving side's days (emails received, where their
receivers found them, rescued/read/flagged/replied, answers sent) and each sender's inbox placement over
the last WARMUP_PLACEMENT_DAYS, from the ledger.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field

from temporalio.client import Client
from temporalio.service import RPCError

from warmup import engagement_days as ed
from warmup import fleet
from warmup import search_attributes as sa
from warmup.config import Settings
from warmup.db import Conn
from warmup.models import MailboxState
from warmup.placement import PlacementScore, sender_scores

# The WarmupStatus values a running mailbox workflow sets (`removed` is set only as it ends).
_RUNNING_STATUSES = (sa.SENDING, sa.IDLE, sa.PAUSED)


@dataclass(frozen=True)
class UnderQuota:
    mailbox_id: int
    address: str
    user_id: str
    day: str
    delivered: int
    quota: int
    fill: float
    state: str  # active, or paused with the reason
    next_send_at: str | None


@dataclass(frozen=True)
class Unanswered:
    mailbox_id: int
    address: str
    error: str


@dataclass(frozen=True)
class SenderPlacement:
    mailbox_id: int
    address: str
    user_id: str
    score: PlacementScore


@dataclass(frozen=True)
class QueueHealth:
    task_queue: str
    backlog: list[fleet.Backlog]
    workflows: dict[str, int]  # execution status -> count
    warmup_status: dict[str, int]  # WarmupStatus -> count of running workflows ({} where not set)
    mailbox_states: dict[str, int]
    ledger_last_24h: list[fleet.LedgerStatusAge]


@dataclass(frozen=True)
class Report:
    generated_at: dt.datetime
    under_quota: list[UnderQuota]
    unanswered: list[Unanswered]
    hourly: list[fleet.HourRow]
    queue: QueueHealth
    engagement: list[ed.EngagementDay] = field(default_factory=list)  # per day, all mailboxes shown
    placement: list[SenderPlacement] = field(default_factory=list)  # senders with data, lowest first
    mailboxes_checked: int = 0
    notes: list[str] = field(default_factory=list)


def under_quota(days: list[fleet.MailboxDay]) -> tuple[list[UnderQuota], list[Unanswered]]:
    rows: list[UnderQuota] = []
    unanswered: list[Unanswered] = []
    for d in days:
        m = d.mailbox
        if m.state is MailboxState.REMOVED:
            continue
        if d.status is None:
            unanswered.append(Unanswered(m.id, m.address, d.error))
            continue
        fill = d.fill
        if fill is None or d.delivered >= d.quota:
            continue
        s = d.status
        state = f"paused ({s.pause_reason})" if s.paused else "active"
        rows.append(
            UnderQuota(m.id, m.address, m.user_id, s.day, d.delivered, d.quota, fill, state, s.next_send_at)
        )
    rows.sort(key=lambda r: (r.fill, r.address))
    return rows, unanswered


async def _warmup_status_counts(client: Client, task_queue: str) -> dict[str, int]:
    base = f"{fleet.mailbox_workflows_query(task_queue)} AND ExecutionStatus = 'Running'"
    counts: dict[str, int] = {}
    try:
        for value in _RUNNING_STATUSES:
            counts[value] = (await client.count_workflows(f"{base} AND WarmupStatus = '{value}'")).count
    except RPCError:
        return {}  # the search attribute is not registered on this server
    return counts


async def build_report(client: Client, conn: Conn, settings: Settings, user_id: str | None = None) -> Report:
    mailboxes = await fleet.list_mailboxes(conn, user_id=user_id)
    days = await fleet.mailbox_days(client, conn, mailboxes)
    rows, unanswered = under_quota(days)
    queue = QueueHealth(
        task_queue=settings.TASK_QUEUE,
        backlog=await fleet.task_queue_backlog(client, settings.TASK_QUEUE),
        workflows=await fleet.workflow_counts(client, settings.TASK_QUEUE),
        warmup_status=await _warmup_status_counts(client, settings.TASK_QUEUE),
        mailbox_states={k.value: v for k, v in (await fleet.mailbox_state_counts(conn, user_id)).items()},
        ledger_last_24h=await fleet.ledger_last_day(conn, user_id),
    )
    ids = None if user_id is None else [m.id for m in mailboxes]
    engagement = ed.by_day(await ed.engagement_days(conn, ids, ed.shown_since()))
    scores = await sender_scores(conn, ids, settings.PLACEMENT_DAYS)
    placement = sorted(
        (SenderPlacement(m.id, m.address, m.user_id, scores[m.id]) for m in mailboxes if m.id in scores),
        key=lambda p: (p.score.inbox_share or 0.0, p.address),
    )
    notes = []
    if user_id is not None:
        # Tenancy: every row and count from PostgreSQL is this user's; Temporal's task queue is
        # shared infrastructure, so its backlog and workflow counts stay the whole queue's.
        notes.append(
            f"user {user_id} only: quota rows, throughput, mailbox states and ledger; "
            "the task queue's backlog and workflow counts are the shared queue's"
        )
    return Report(
        generated_at=dt.datetime.now(dt.UTC).replace(microsecond=0),
        under_quota=rows,
        unanswered=unanswered,
        hourly=await fleet.hourly_throughput(conn, user_id=user_id),
        queue=queue,
        engagement=engagement,
        placement=placement,
        mailboxes_checked=sum(1 for m in mailboxes if m.state is not MailboxState.REMOVED),
        notes=notes,
    )
