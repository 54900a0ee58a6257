"""The mailbox workflow's inbox sessions (issue #11): when they run, beside the sends and on their own task
queue, and what a refused login or a mailbox without IMAP settings does. The session activity here is a
stand-in on the time-skipping server; tests/test_engagement_session.py runs the real one against the lab."""

from __future__ import annotations

import dataclasses
import datetime as dt
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

import pytest
from temporalio import activity
from temporalio.api.enums.v1 import EventType
from temporalio.client import WorkflowUpdateFailedError
from temporalio.exceptions import ApplicationError
from temporalio.testing import WorkflowEnvironment
from temporalio.worker import Worker

from starter.views import status_table
from tests.helpers.workflows import skip_to, start_mailboxes, status
from tests.test_mailbox_workflow import Recorder
from warmup import schedule
from warmup.errors import ERR_IMAP_AUTH
from warmup.models import (
    EngagementSettings,
    EngagementTotals,
    InboxSessionReport,
    InboxSessionRequest,
    MailboxState,
    PauseRequest,
    PlacementCheckRequest,
    PlacementReport,
    RampSettings,
    ScheduleSettings,
    SettingsUpdate,
)
from warmup.workflow_ids import inbox_task_queue
from workers.sandbox import workflow_runner
from workflows.engagement_contract import InboxSession
from workflows.mailbox import INBOX_SESSIONS_PATCH, MailboxWarmupWorkflow

ENGAGED = ScheduleSettings(
    timezone="UTC",
    ramp=RampSettings(start_volume=6, daily_increment=0, ceiling=6),
    engagement=EngagementSettings(enabled=True, inbox_sessions=4),
)


@dataclass
class Inbox:
    """Stands in for inbox_session: records each request; `refuse` answers with a refused login."""

    requests: list[tuple[InboxSessionRequest, float]] = field(default_factory=list)
    refuse: bool = False
    off: str = ""

    @activity.defn(name="inbox_session")
    async def inbox_session(self, req: InboxSessionRequest) -> InboxSessionReport:
        self.requests.append((req, activity.info().current_attempt_scheduled_time.timestamp()))
        if self.refuse:
            raise ApplicationError(
                "IMAP login refused for ana@x.test: fix --imap-username or the IMAP password",
                type=ERR_IMAP_AUTH,
                non_retryable=True,
            )
        return InboxSessionReport(EngagementTotals(inbox=2, junk=1, rescued=1, read=3), off=self.off)

    @activity.defn(name="placement_check")
    async def placement_check(self, req: PlacementCheckRequest) -> PlacementReport:
        return PlacementReport()  # no placement data yet: the ramp goes as configured


Rig = tuple[WorkflowEnvironment, Inbox, Recorder, str]


@pytest.fixture
async def rig(time_skipping_env: WorkflowEnvironment) -> AsyncIterator[Rig]:
    env, inbox, sends, queue = time_skipping_env, Inbox(), Recorder(), f"in-{uuid.uuid4().hex[:8]}"
    now = await env.get_current_time()
    await skip_to(env, dt.datetime.combine(now.date() + dt.timedelta(days=1), dt.time(), tzinfo=dt.UTC))
    runner = workflow_runner("isolated")
    async with (
        Worker(
            env.client,
            task_queue=queue,
            workflows=[MailboxWarmupWorkflow],
            activities=[sends.send_email],
            workflow_runner=runner,
        ),
        Worker(
            env.client,
            task_queue=inbox_task_queue(queue),
            activities=[inbox.inbox_session, inbox.placement_check],
        ),
    ):
        yield env, inbox, sends, queue


def test_the_stand_in_has_the_contracts_name_and_types() -> None:
    real = activity._Definition.must_from_callable(InboxSession.inbox_session)
    stand_in = activity._Definition.must_from_callable(Inbox().inbox_session)
    assert (real.name, real.arg_types, real.ret_type) == (
        stand_in.name,
        stand_in.arg_types,
        stand_in.ret_type,
    )


@pytest.mark.parametrize("sessions", [1, 4])
def test_session_times_are_inside_the_window_one_per_part(sessions: int) -> None:
    day = dt.date(2026, 12, 7)
    start, end = schedule.window_bounds(day, ENGAGED)
    times = schedule.session_times(start, end, sessions, schedule.session_rng(7, day))
    part = (end - start) / sessions
    assert len(times) == sessions and times == sorted(times)
    assert all(start + part * (i + 0.25) <= t <= start + part * (i + 0.75) for i, t in enumerate(times))
    assert times == schedule.session_times(start, end, sessions, schedule.session_rng(7, day))  # replayable


async def test_sessions_run_inside_the_window_beside_the_sends(rig: Rig) -> None:
    env, inbox, _, queue = rig
    (h,) = await start_mailboxes(env.client, queue, [(41, ENGAGED)])
    await env.sleep(dt.timedelta(hours=23))
    st = await status(h)
    assert [r.session for r, _ in inbox.requests] == [0, 1, 2, 3]
    day = dt.date.fromisoformat(inbox.requests[0][0].day)
    start, end = schedule.window_bounds(day, ENGAGED)
    assert all(start <= at < end for _, at in inbox.requests)
    assert st.sent_today == st.quota_today == 6, "sessions must not cost sends"
    assert st.engagement == EngagementTotals(sessions=4, inbox=8, junk=4, rescued=4, read=12)
    assert st.engagement_off == "" and st.next_session_at is None
    shown = status_table(st, "a@x.test", h.id, MailboxState.ACTIVE)  # `starter status`
    assert "4 so far" in shown and "12 found (8 inbox, 4 junk, 0 other, 0 missing)" in shown
    assert "4 rescued, 12 read" in shown
    history = await h.fetch_history()
    markers = [e for e in history.events if e.event_type == EventType.EVENT_TYPE_MARKER_RECORDED]
    assert any(INBOX_SESSIONS_PATCH.encode() in e.SerializeToString() for e in markers)
    # Ready for a replay test: the activity tasks of the sessions went to the inbox queue.
    scheduled = [
        e.activity_task_scheduled_event_attributes
        for e in history.events
        if e.event_type == EventType.EVENT_TYPE_ACTIVITY_TASK_SCHEDULED
    ]
    assert {a.task_queue.name for a in scheduled if a.activity_type.name == "inbox_session"} == {
        inbox_task_queue(queue)
    }
    await h.terminate()


async def test_a_refused_imap_login_stops_engagement_not_sending(rig: Rig) -> None:
    env, inbox, _, queue = rig
    inbox.refuse = True
    (h,) = await start_mailboxes(env.client, queue, [(42, ENGAGED)])
    await env.sleep(dt.timedelta(hours=23))
    st = await status(h)
    assert len(inbox.requests) == 1, "no session after the server refused the login"
    assert st.engagement_off.startswith("IMAP login refused") and st.sent_today == 6
    assert "off: IMAP login refused" in status_table(st, "a@x.test", h.id, MailboxState.ACTIVE)
    # Fixed settings (here: the same settings again) try again.
    inbox.refuse = False
    await env.sleep(dt.timedelta(hours=7))  # 06:00 the next day
    assert len(inbox.requests) == 1, "a refused login stays off across days"
    await h.execute_update(
        MailboxWarmupWorkflow.change_settings, SettingsUpdate(engagement=ENGAGED.engagement)
    )
    await env.sleep(dt.timedelta(hours=17))
    st = await status(h)
    assert st.engagement_off == "" and len(inbox.requests) >= 3
    await h.terminate()


async def test_no_imap_settings_means_one_look_a_day_and_no_more(rig: Rig) -> None:
    env, inbox, _, queue = rig
    inbox.off = "no IMAP settings: enroll again with --imap-host"
    (h,) = await start_mailboxes(env.client, queue, [(43, ENGAGED)])
    await env.sleep(dt.timedelta(hours=23))
    st = await status(h)
    assert len(inbox.requests) == 1 and st.engagement_off == inbox.off and st.sent_today == 6
    await h.terminate()


async def test_a_mailbox_without_engagement_runs_no_session_and_pauses_stop_them(rig: Rig) -> None:
    env, inbox, _, queue = rig
    plain = dataclasses.replace(ENGAGED, engagement=EngagementSettings())
    (off, paused) = await start_mailboxes(env.client, queue, [(44, plain), (45, ENGAGED)])
    await paused.signal(MailboxWarmupWorkflow.pause, PauseRequest("holiday"))
    await env.sleep(dt.timedelta(hours=23))
    assert inbox.requests == []
    assert (await status(off)).sent_today == 6
    await off.terminate()
    await paused.terminate()


async def test_read_inbox_now_runs_a_session_at_once_or_says_why_not(rig: Rig) -> None:
    env, inbox, _, queue = rig
    inbox.off = ""
    plain = dataclasses.replace(ENGAGED, engagement=EngagementSettings())
    (h, no_imap) = await start_mailboxes(env.client, queue, [(46, ENGAGED), (47, plain)])
    await env.sleep(dt.timedelta(hours=6, minutes=1))  # the window opened; the first session is later
    st = await status(h)
    assert inbox.requests == [] and st.next_session_at is not None
    asked = await h.execute_update(MailboxWarmupWorkflow.read_inbox_now)
    await env.sleep(dt.timedelta(seconds=30))
    (req, at), *_ = inbox.requests
    assert abs(at - dt.datetime.fromisoformat(asked).timestamp()) < 5, "the session ran when asked"
    assert req.session == 0 and (await status(h)).next_session_at == st.next_session_at, "the day's own stay"

    with pytest.raises(WorkflowUpdateFailedError) as refused:
        await no_imap.execute_update(MailboxWarmupWorkflow.read_inbox_now)
    assert "no IMAP settings" in str(refused.value.cause)
    await h.signal(MailboxWarmupWorkflow.pause, PauseRequest("holiday"))
    with pytest.raises(WorkflowUpdateFailedError) as refused:
        await h.execute_update(MailboxWarmupWorkflow.read_inbox_now)
    assert "paused (holiday); resume it first" in str(refused.value.cause)
    assert len(inbox.requests) == 1
    await h.terminate()
    await no_imap.terminate()
