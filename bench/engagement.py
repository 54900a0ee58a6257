"""What engagement (issue #11's inbox sessions) adds to a mailbox's cost: the same mailboxes run the same
simulated day twice on the time-skipping Temporal server, side by side, with the real
`MailboxWarmupWorkflow`: once with engagement on (IMAP settings, the default 4 inbox sessions a day) and
once with it off. Both runs' histories are counted like the cross-check's (events, workflow tasks,
billable actions, per email and per mailbox-day), and the difference is what the sessions add.

`send_email`, `inbox_session` and `placement_check` (the daily placement read of the ramp's reaction, which
engaged mailboxes run too) are bench-side recorders registered under the real names: the phase
measures the workflow's cost, not SMTP's or IMAP's. The recording session stands for one IMAP login (the
real activity logs in once per session whenever the mailbox has received warmup mail, which a mailbox in
the warmup network has every day); the logins per mailbox-day are counted from the requests it received,
not taken from the setting.
"""

from __future__ import annotations

import asyncio
import dataclasses
import datetime as dt
import time
import uuid
from collections import Counter
from dataclasses import dataclass, field

from temporalio import activity
from temporalio.api.history.v1 import HistoryEvent
from temporalio.api.testservice.v1 import SleepRequest
from temporalio.testing import WorkflowEnvironment
from temporalio.worker import Worker

from bench.costs import CostSummary, before, summarize
from bench.crosscheck import Recorder, _register_search_attributes
from bench.fleet import SimMailbox
from devstack.temporal import test_server_binary
from warmup.models import (
    EngagementSettings,
    InboxSessionReport,
    InboxSessionRequest,
    PlacementCheckRequest,
    PlacementReport,
)
from warmup.workflow_ids import inbox_task_queue, mailbox_workflow_id
from workers.sandbox import workflow_runner
from workflows.mailbox import MailboxWarmupWorkflow

ON, OFF = "on", "off"


@dataclass
class SessionRecorder:
    """Stands in for the IMAP session: records which workflow asked for which session."""

    calls: list[tuple[str, InboxSessionRequest]] = field(default_factory=list)
    checks: int = 0  # placement checks (one a day per engaged mailbox, issue #15)

    @activity.defn(name="inbox_session")
    async def inbox_session(self, req: InboxSessionRequest) -> InboxSessionReport:
        self.calls.append((activity.info().workflow_id or "", req))
        return InboxSessionReport()

    @activity.defn(name="placement_check")
    async def placement_check(self, req: PlacementCheckRequest) -> PlacementReport:
        self.checks += 1
        return PlacementReport()  # no data yet: the ramp goes as configured, the same both ways


@dataclass(frozen=True)
class EngagementCost:
    mailboxes: int
    day: str
    inbox_sessions_setting: int  # what the mailboxes were configured with (the default)
    wall_seconds: float
    on: CostSummary  # whole simulated day, engagement on
    off: CostSummary  # the same mailboxes and day, engagement off
    sessions_on: int  # distinct (mailbox, day, session) the on-run's workflows asked for
    sessions_off: int  # the same for the off-run: must be 0
    session_attempts: int  # activity calls for the day (retries included)

    @property
    def logins_per_mailbox_day(self) -> float:
        return self.sessions_on / self.mailboxes if self.mailboxes else 0.0

    def added_per_email(self) -> dict[str, float]:
        """What engagement adds per email sent (on minus off, over the on-run's emails)."""
        n = self.on.total.emails or 1
        return {
            "events": (self.on.total.events - self.off.total.events) / n,
            "workflow_tasks": (self.on.total.workflow_tasks - self.off.total.workflow_tasks) / n,
            "actions": (self.on.total.actions - self.off.total.actions) / n,
        }

    def added_per_session(self) -> dict[str, float]:
        n = self.sessions_on or 1
        return {
            "events": (self.on.total.events - self.off.total.events) / n,
            "workflow_tasks": (self.on.total.workflow_tasks - self.off.total.workflow_tasks) / n,
            "actions": (self.on.total.actions - self.off.total.actions) / n,
        }

    def ratio(self) -> dict[str, float]:
        """On over off, per email: how much larger (and busier) a history gets with engagement on."""
        on, off = self.on.per_email(steady=False), self.off.per_email(steady=False)
        return {k: on[k] / off[k] if off[k] else 0.0 for k in ("events", "workflow_tasks", "actions")}


def engaged(m: SimMailbox) -> SimMailbox:
    """`m` with IMAP settings, i.e. engagement on with the default sessions and rates."""
    return dataclasses.replace(
        m, schedule=dataclasses.replace(m.schedule, engagement=EngagementSettings(enabled=True))
    )


# The time-skipping server's wall time grows faster than the mailboxes on it (measured 2026-12-08:
# 12, 24, 69 and 379 s for 30, 60, 120 and 300), while each workflow's history does not depend on
# its neighbours: the subset runs in groups of this size, each on a server of its own, two at a time
# (one group leaves most of both cores idle: the server waits on the worker and the worker on it).
GROUP_MAILBOXES = 60
GROUPS_AT_ONCE = 2


async def run_engagement(subset: list[SimMailbox], day: dt.date) -> EngagementCost:
    """`subset`'s day with engagement on and off, in groups on time-skipping servers of their own."""
    began = time.perf_counter()
    binary = test_server_binary()
    # Every `groups`-th mailbox, so that each group spans the subset's timezones and ramp days alike.
    groups = -(-len(subset) // GROUP_MAILBOXES)
    limit = asyncio.Semaphore(GROUPS_AT_ONCE)

    async def group(members: list[SimMailbox]) -> tuple[SessionRecorder, dict[str, list[list[HistoryEvent]]]]:
        async with (
            limit,
            await WorkflowEnvironment.start_time_skipping(test_server_existing_path=binary) as env,
        ):
            return await _both_days(env, members, day)

    done = await asyncio.gather(*(group(subset[g::groups]) for g in range(groups)))
    inbox = SessionRecorder([c for rec, _ in done for c in rec.calls], sum(rec.checks for rec, _ in done))
    histories = {run: [h for _, by_run in done for h in by_run[run]] for run in (ON, OFF)}
    runs = {
        run: summarize(f"time-skipping server, one whole day, engagement {run}", h, len(subset))
        for run, h in histories.items()
    }
    # Only the simulated day's: a mailbox whose day ends early goes on into its next while the others finish.
    calls = [(wid.rsplit("-", 1)[-1], r) for wid, r in inbox.calls if r.day == day.isoformat()]
    by_run = Counter(run for run, _, _ in {(run, r.mailbox_id, r.session) for run, r in calls})
    return EngagementCost(
        mailboxes=len(subset),
        day=day.isoformat(),
        inbox_sessions_setting=EngagementSettings().inbox_sessions,
        wall_seconds=time.perf_counter() - began,
        on=runs[ON],
        off=runs[OFF],
        sessions_on=by_run[ON],
        sessions_off=by_run[OFF],
        session_attempts=len(calls),
    )


async def _skip_to(env: WorkflowEnvironment, when: float) -> None:
    """`env.sleep` without its RPC deadline: the test server answers a skip only once every task of the
    span has run, which for a day of hundreds of mailboxes takes longer than the SDK's default."""
    now = (await env.get_current_time()).timestamp()
    if when > now:
        req = SleepRequest()
        req.duration.FromTimedelta(dt.timedelta(seconds=when - now))
        await env.client.test_service.unlock_time_skipping_with_sleep(req, timeout=dt.timedelta(hours=2))


async def _both_days(
    env: WorkflowEnvironment, subset: list[SimMailbox], day: dt.date
) -> tuple[SessionRecorder, dict[str, list[list[HistoryEvent]]]]:
    """Both runs of each mailbox start together at its local midnight; each history is cut at the end
    of its simulated day, as in the cross-check."""
    await _register_search_attributes(env)
    sends, inbox = Recorder(), SessionRecorder()
    queue = f"engagement-{uuid.uuid4().hex[:8]}"
    suffix = uuid.uuid4().hex[:6]
    started = []
    async with (
        Worker(
            env.client,
            task_queue=queue,
            workflows=[MailboxWarmupWorkflow],
            activities=[sends.send_email],
            workflow_runner=workflow_runner(),
            max_cached_workflows=2 * len(subset) + 10,
        ),
        Worker(
            env.client,
            task_queue=inbox_task_queue(queue),
            activities=[inbox.inbox_session, inbox.placement_check],
        ),
    ):
        for m in sorted(subset, key=lambda m: m.enrolled_at(day)):
            await _skip_to(env, m.enrolled_at(day))
            for run, mailbox in ((ON, engaged(m)), (OFF, m)):
                handle = await env.client.start_workflow(
                    MailboxWarmupWorkflow.run,
                    mailbox.workflow_input(),
                    # The run's name last: the recorder tells the runs apart by it.
                    id=f"{mailbox_workflow_id(m.mailbox_id)}-{suffix}-{run}",
                    task_queue=queue,
                )
                started.append((run, handle, m.horizon(day)))
        await _skip_to(env, max(h for _, _, h in started))
        histories: dict[str, list[list[HistoryEvent]]] = {ON: [], OFF: []}
        for run, handle, horizon in started:
            histories[run].append(before((await handle.fetch_history()).events, horizon))
            await handle.terminate()
    return inbox, histories
