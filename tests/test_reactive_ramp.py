"""The mailbox workflow's ramp reacts to its placement (issue #15): each new day it reads its placement
(the `placement_check` activity, a stand-in here on the time-skipping server), then climbs, holds, steps
down with wider spacing, or pauses, and says so in `status` and the current details."""

from __future__ import annotations

import datetime as dt
import itertools
import uuid
from dataclasses import dataclass, field

from temporalio import activity
from temporalio.api.enums.v1 import EventType
from temporalio.testing import WorkflowEnvironment
from temporalio.worker import Worker

from starter.views import status_table
from tests.helpers.workflows import skip_to, start_mailboxes, status
from tests.test_mailbox_workflow import Recorder
from warmup.models import (
    EngagementSettings,
    InboxSessionReport,
    InboxSessionRequest,
    MailboxState,
    Placement,
    PlacementCheckRequest,
    PlacementReport,
    RampSettings,
    ScheduleSettings,
)
from warmup.workflow_ids import inbox_task_queue
from workers.sandbox import workflow_runner
from workflows.engagement_contract import InboxSession
from workflows.mailbox import REACTIVE_RAMP_PATCH, MailboxWarmupWorkflow

# Mailboxes that read their mail (IMAP settings) are the engaged pool whose ramp follows placement.
SCHEDULE = ScheduleSettings(
    timezone="UTC",
    ramp=RampSettings(start_volume=6, daily_increment=2, ceiling=20),
    engagement=EngagementSettings(enabled=True, inbox_sessions=1),
)


@dataclass
class Placements:
    """Stands in for placement_check: day n of the run gets the n-th (inbox, junk) pair."""

    script: list[tuple[int, int]]
    asked: list[PlacementCheckRequest] = field(default_factory=list)

    @activity.defn(name="placement_check")
    async def placement_check(self, req: PlacementCheckRequest) -> PlacementReport:
        self.asked.append(req)
        inbox, junk = self.script[min(len(self.asked), len(self.script)) - 1]
        return PlacementReport(Placement(inbox=inbox, junk=junk), days=7)

    @activity.defn(name="inbox_session")
    async def inbox_session(self, req: InboxSessionRequest) -> InboxSessionReport:
        return InboxSessionReport()


def test_the_stand_in_has_the_contracts_names() -> None:
    assert activity._Definition.must_from_callable(Placements.placement_check).name == (
        activity._Definition.must_from_callable(InboxSession.placement_check).name
    )


async def test_the_ramp_climbs_holds_steps_down_recovers_and_pauses_on_placement(
    time_skipping_env: WorkflowEnvironment,
) -> None:
    env, queue = time_skipping_env, f"rr-{uuid.uuid4().hex[:8]}"
    # Day by day: no data yet, healthy, healthy, 18% spam, 30% spam, healthy, 60% spam.
    checks = Placements([(0, 0), (95, 5), (95, 5), (82, 18), (70, 30), (99, 1), (40, 60)])
    sends = Recorder()
    now = await env.get_current_time()
    midnight = dt.datetime.combine(now.date() + dt.timedelta(days=1), dt.time(), tzinfo=dt.UTC)
    await skip_to(env, midnight)
    async with (
        Worker(
            env.client,
            task_queue=queue,
            workflows=[MailboxWarmupWorkflow],
            activities=[sends.send_email],
            workflow_runner=workflow_runner("isolated"),
        ),
        Worker(
            env.client,
            task_queue=inbox_task_queue(queue),
            activities=[checks.placement_check, checks.inbox_session],
        ),
    ):
        (h,) = await start_mailboxes(env.client, queue, [(71, SCHEDULE)])
        seen = []
        for day in range(7):
            await skip_to(env, midnight + dt.timedelta(days=day, hours=23))
            st = await status(h)
            sent = [r for r in sends.requests if r.day == st.day]
            seen.append((st.quota_today, len(sent), st.ramp_day, st.paused, st.ramp_note))
        history = await h.fetch_history()
        await h.terminate()

    quotas = [q for q, *_ in seen]
    # 6 (day 0), 8, 10, held at 10, stepped down to ramp day 0 (6), climbs to 8, paused.
    assert quotas[:6] == [6, 8, 10, 10, 6, 8], seen
    assert [n for _, n, *_ in seen[:6]] == quotas[:6], "each day sends its reacted quota, no more"
    assert seen[0][4].startswith("ramping as configured today: when the day began, 0 of its emails")
    assert seen[3][4] == "held at ramp day 2: 18% in spam over 7 days (18 of 100)"
    assert seen[4][4].startswith("stepped down to ramp day 0, spacing x1.5: 30% in spam")
    assert seen[5][4] == "" and not seen[5][3]
    _, sent_on_pause_day, _, paused, note = seen[6]
    assert paused and note.startswith("placement critical: 60% in spam") and sent_on_pause_day == 0
    assert [r.day for r in checks.asked] == sorted({r.day for r in checks.asked}), "one check a day"
    # The step-down day's sends are at least 1.5 x the minimum spacing apart.
    day4 = (midnight + dt.timedelta(days=4)).date().isoformat()
    times = sorted(r.planned_at for r in sends.requests if r.day == day4)
    gaps = [b - a for a, b in itertools.pairwise(times)]
    assert gaps and min(gaps) >= SCHEDULE.delay_min_minutes * 60 * 1.5 - 1
    markers = [e for e in history.events if e.event_type == EventType.EVENT_TYPE_MARKER_RECORDED]
    assert any(REACTIVE_RAMP_PATCH.encode() in e.SerializeToString() for e in markers)
    shown = {line.split("  ", 1)[0]: line.split("  ", 1)[1].strip() for line in
             status_table(st, "a@x.test", h.id, MailboxState.PAUSED).splitlines()}  # fmt: skip
    assert shown["Ramp reaction"] == note and shown["State"] == f"paused ({note})"
