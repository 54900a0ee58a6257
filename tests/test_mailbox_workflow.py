"""MailboxWarmupWorkflow behaviour on the real time-skipping server: signals, failures, continue-as-new.

The send activity here records what the workflow asked for (and can fail on cue); the real
activity against PostgreSQL and SMTP is exercised in test_simulated_day.py and
test_send_activity.py.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import typing
import uuid
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field

import pytest
from temporalio import activity
from temporalio.api.enums.v1 import EventType
from temporalio.client import WorkflowHandle, WorkflowUpdateFailedError
from temporalio.exceptions import ApplicationError
from temporalio.testing import WorkflowEnvironment
from temporalio.worker import Worker

from starter import temporal_calls
from tests.helpers.workflows import skip_to, start_mailboxes, status
from warmup import schedule
from warmup.config import load_settings
from warmup.errors import ERR_AUTH, ERR_CAP_DEFERRED, ERR_DAILY_LIMIT, ERR_REFUSED, ERR_UNKNOWN_OUTCOME
from warmup.models import (
    MailboxWorkflowInput,
    PauseRequest,
    RampSettings,
    ScheduleSettings,
    SendRequest,
    SendResult,
    SendStatus,
    SettingsUpdate,
)
from warmup.workflow_ids import mailbox_workflow_id
from workers.sandbox import workflow_runner
from workflows.mailbox import MailboxWarmupWorkflow
from workflows.send_contract import SendEmail

UTC_DAY = ScheduleSettings(timezone="UTC", ramp=RampSettings(start_volume=8, daily_increment=2, ceiling=20))


@dataclass
class Recorder:
    """Stands in for send_email: records each request; `fail` maps slot -> error type to raise."""

    requests: list[SendRequest] = field(default_factory=list)
    fail: dict[int, str] = field(default_factory=dict)

    @activity.defn(name="send_email")
    async def send_email(self, req: SendRequest) -> SendResult:
        self.requests.append(req)
        if req.slot in self.fail:
            kind = self.fail.pop(req.slot)
            raise ApplicationError(
                f"scripted {kind}", f"scripted reply {kind}", type=kind, non_retryable=True
            )
        return SendResult(SendStatus.SENT, recipient_id=0, message_id=f"<{req.idempotency_key}@t>")

    def keys(self) -> list[str]:
        return [r.idempotency_key for r in self.requests]


@pytest.fixture
async def rig(
    time_skipping_env: WorkflowEnvironment,
) -> AsyncIterator[tuple[WorkflowEnvironment, Recorder, str]]:
    env, rec, queue = time_skipping_env, Recorder(), f"wf-{uuid.uuid4().hex[:8]}"
    # Start each test at the next UTC midnight so the window arithmetic is the same whenever it runs.
    now = await env.get_current_time()
    await skip_to(env, dt.datetime.combine(now.date() + dt.timedelta(days=1), dt.time(), tzinfo=dt.UTC))
    async with Worker(
        env.client,
        task_queue=queue,
        workflows=[MailboxWarmupWorkflow],
        activities=[rec.send_email],
        workflow_runner=workflow_runner("isolated"),
    ):
        yield env, rec, queue


async def test_a_day_sends_exactly_the_quota_then_ramps_up(
    rig: tuple[WorkflowEnvironment, Recorder, str],
) -> None:
    env, rec, queue = rig
    (h,) = await start_mailboxes(env.client, queue, [(1, UTC_DAY)])
    await env.sleep(dt.timedelta(hours=23))
    st = await status(h)
    assert (st.sent_today, st.quota_today, st.ramp_day) == (8, 8, 0)
    await env.sleep(dt.timedelta(hours=24))
    st = await status(h)
    assert (st.sent_today, st.quota_today, st.ramp_day, st.sent_total) == (10, 10, 1, 18)
    days = {r.day for r in rec.requests}
    assert len(days) == 2 and len(set(rec.keys())) == 18, "each slot sent once"
    for r in rec.requests:
        start, end = schedule.window_bounds(dt.date.fromisoformat(r.day), UTC_DAY)
        assert start <= r.dispatched_at < end
    await h.terminate()


async def test_pause_stops_sends_and_resume_refills_the_day(
    rig: tuple[WorkflowEnvironment, Recorder, str],
) -> None:
    env, rec, queue = rig
    (h,) = await start_mailboxes(env.client, queue, [(2, UTC_DAY)])
    await env.sleep(dt.timedelta(hours=6))  # the window opens at 06:00
    await h.signal(MailboxWarmupWorkflow.pause, PauseRequest("holiday"))
    paused_at = len(rec.requests)
    await env.sleep(dt.timedelta(hours=8))
    st = await status(h)
    assert st.paused and st.pause_reason == "holiday" and st.next_send_at is None
    assert len(rec.requests) == paused_at, "a paused mailbox sent mail"
    await h.signal(MailboxWarmupWorkflow.resume)
    await env.sleep(dt.timedelta(hours=9))
    st = await status(h)
    assert not st.paused
    assert st.sent_today == st.quota_today == 8, "resume re-spreads the rest of the day's quota"
    await h.terminate()


async def test_settings_update_applies_to_the_rest_of_today(
    rig: tuple[WorkflowEnvironment, Recorder, str],
) -> None:
    env, rec, queue = rig
    (h,) = await start_mailboxes(env.client, queue, [(3, UTC_DAY)])
    await env.sleep(dt.timedelta(hours=5))
    await h.signal(
        MailboxWarmupWorkflow.update_settings,
        SettingsUpdate(window_start_hour=9, window_end_hour=12, ramp=RampSettings(12, 0, 12)),
    )
    await env.sleep(dt.timedelta(hours=18))
    st = await status(h)
    assert (st.sent_today, st.quota_today) == (12, 12)
    hours = {dt.datetime.fromtimestamp(r.dispatched_at, dt.UTC).hour for r in rec.requests}
    assert hours <= {9, 10, 11}, f"sent outside the updated 9-12 window: {sorted(hours)}"
    await h.terminate()


async def test_continue_as_new_keeps_counters_and_slots(
    rig: tuple[WorkflowEnvironment, Recorder, str],
) -> None:
    env, rec, queue = rig
    (h,) = await start_mailboxes(env.client, queue, [(4, UTC_DAY)], continue_as_new_after_sends=3)
    await env.sleep(dt.timedelta(hours=47))
    st = await status(h)
    assert (st.sent_today, st.quota_today, st.sent_total, st.ramp_day) == (10, 10, 18, 1)
    assert len(rec.keys()) == len(set(rec.keys())) == 18, "a slot was repeated or lost across runs"
    desc = await h.describe()
    assert desc.run_id != h.first_execution_run_id, "the workflow never continued as new"
    await h.terminate()


async def test_each_local_day_is_a_run_of_its_own(rig: tuple[WorkflowEnvironment, Recorder, str]) -> None:
    # Issue #13: a cache miss replays one day of history, not up to 4,096 events.
    env, rec, queue = rig
    (h,) = await start_mailboxes(env.client, queue, [(6, UTC_DAY)])
    await env.sleep(dt.timedelta(hours=71))
    st = await status(h)
    assert (st.sent_today, st.sent_total, st.ramp_day) == (st.quota_today, 8 + 10 + 12, 2)
    assert len(rec.keys()) == len(set(rec.keys())) == 30, "a slot was repeated or lost across runs"
    runs, run_id = [], h.first_execution_run_id
    while run_id:
        events = (await env.client.get_workflow_handle(h.id, run_id=run_id).fetch_history()).events
        days = {
            e.event_time.ToDatetime().date()
            for e in events
            if e.activity_task_scheduled_event_attributes.activity_type.name
        }
        runs.append(days)
        last = events[-1].workflow_execution_continued_as_new_event_attributes
        run_id = last.new_execution_run_id
    assert len(runs) == 3 and all(len(d) == 1 for d in runs), f"the sends' days by run: {runs}"
    await h.terminate()


async def test_auth_rejection_pauses_with_the_reason(rig: tuple[WorkflowEnvironment, Recorder, str]) -> None:
    env, rec, queue = rig
    rec.fail[2] = ERR_AUTH
    (h,) = await start_mailboxes(env.client, queue, [(5, UTC_DAY)])
    await env.sleep(dt.timedelta(hours=23))
    st = await status(h)
    assert st.paused and "scripted" in st.pause_reason and ERR_AUTH in st.last_error
    assert (st.sent_today, st.failed_today) == (2, 1)
    assert len(rec.requests) == 3, "kept sending after the server refused the login"
    await h.terminate()


async def test_a_providers_daily_limit_stops_today_then_sends_at_the_next_window(
    rig: tuple[WorkflowEnvironment, Recorder, str],
) -> None:
    env, rec, queue = rig
    rec.fail[3] = ERR_DAILY_LIMIT
    (h,) = await start_mailboxes(env.client, queue, [(16, UTC_DAY)])
    await env.sleep(dt.timedelta(hours=23))
    st = await status(h)
    assert (st.sent_today, st.failed_today, st.quota_today, st.next_send_at) == (3, 1, 4, None)
    assert not st.paused, "a provider's daily limit is not the mailbox's fault: no pause to lift"
    assert "provider's limit" in st.capped_reason and f"scripted reply {ERR_DAILY_LIMIT}" in st.capped_reason
    assert len(rec.requests) == 4, "kept sending after the provider's daily limit"
    await env.sleep(dt.timedelta(hours=24))
    st = await status(h)
    # The next window sends again, at a held ramp: the limit says the volume is enough for now.
    assert (st.sent_today, st.quota_today, st.ramp_day, st.capped_reason) == (8, 8, 0, "")
    await h.terminate()


async def test_unknown_outcome_consumes_the_slot_without_resending(
    rig: tuple[WorkflowEnvironment, Recorder, str],
) -> None:
    env, rec, queue = rig
    rec.fail[1] = ERR_UNKNOWN_OUTCOME
    (h,) = await start_mailboxes(env.client, queue, [(6, UTC_DAY)])
    await env.sleep(dt.timedelta(hours=23))
    st = await status(h)
    assert (st.sent_today, st.unknown_today, st.paused) == (7, 1, False)
    assert [r.slot for r in rec.requests] == list(range(8)), "the unknown slot was resent"
    await h.terminate()


async def test_enrolled_after_the_window_waits_for_tomorrow(
    rig: tuple[WorkflowEnvironment, Recorder, str],
) -> None:
    env, _, queue = rig
    await env.sleep(dt.timedelta(hours=22, minutes=30))
    (h,) = await start_mailboxes(env.client, queue, [(7, UTC_DAY)])
    await env.sleep(dt.timedelta(hours=1))
    st = await status(h)
    assert (st.sent_today, st.quota_today) == (0, 0) and "closed" in st.capped_reason
    await env.sleep(dt.timedelta(hours=23))
    st = await status(h)
    assert (st.sent_today, st.quota_today, st.ramp_day) == (8, 8, 0), "the first warmed day is ramp day 0"
    await h.terminate()


async def test_remove_completes_the_workflow_and_stops_sending(
    rig: tuple[WorkflowEnvironment, Recorder, str],
) -> None:
    env, rec, queue = rig
    (h,) = await start_mailboxes(env.client, queue, [(8, UTC_DAY)])
    for _ in range(24):  # remove mid-day: after the first send, whenever the plan put it
        await env.sleep(dt.timedelta(hours=1))
        if rec.requests:
            break
    await h.signal(MailboxWarmupWorkflow.remove)
    await h.result()  # completes instead of running forever
    sent = len(rec.requests)
    assert 0 < sent < 8
    await env.sleep(dt.timedelta(hours=30))
    assert len(rec.requests) == sent, "a removed mailbox kept sending"


def test_the_activity_the_workflow_calls_is_the_one_workers_register() -> None:
    from activities.send import SendActivities

    stub = activity._Definition.must_from_callable(SendEmail.send_email)
    real = activity._Definition.must_from_callable(SendActivities.send_email)
    assert stub.name == real.name == "send_email"
    assert typing.get_type_hints(SendEmail.send_email) == typing.get_type_hints(SendActivities.send_email)


async def _accepted_updates(h: WorkflowHandle[MailboxWarmupWorkflow, None]) -> list[str]:
    """The Updates the history accepted: a refused one never enters it."""
    return [
        e.workflow_execution_update_accepted_event_attributes.accepted_request.input.name
        async for e in h.fetch_history_events()
        if e.event_type == EventType.EVENT_TYPE_WORKFLOW_EXECUTION_UPDATE_ACCEPTED
    ]


async def test_a_settings_change_is_validated_before_it_enters_history(
    rig: tuple[WorkflowEnvironment, Recorder, str],
) -> None:
    env, _, queue = rig
    (h,) = await start_mailboxes(env.client, queue, [(9, UTC_DAY)])
    for bad, expected in [
        (SettingsUpdate(window_start_hour=23), "window_start_hour (23) must be before window_end_hour (22)"),
        (SettingsUpdate(delay_min_minutes=0), "delay_min_minutes must be a number of minutes above 0"),
        (
            SettingsUpdate(delay_min_minutes=30),
            "delay_min_minutes (30) must not exceed delay_max_minutes (10)",
        ),
        (SettingsUpdate(ramp=RampSettings(50, 2, 40)), "ramp.start_volume (50) must not exceed ramp.ceiling"),
        (SettingsUpdate(timezone="Mars/Olympus"), "'Mars/Olympus' is not an IANA time zone"),
    ]:
        with pytest.raises(WorkflowUpdateFailedError) as info:
            await h.execute_update(MailboxWarmupWorkflow.change_settings, bad)
        cause = info.value.cause
        assert isinstance(cause, ApplicationError) and cause.type == ERR_REFUSED
        assert expected in cause.message, cause.message
    assert await _accepted_updates(h) == [], "a refused change entered history"
    assert (await status(h)).timezone == "UTC"

    now = await h.execute_update(
        MailboxWarmupWorkflow.change_settings, SettingsUpdate(timezone="Asia/Tokyo", window_end_hour=20)
    )
    assert (now.timezone, now.window_start_hour, now.window_end_hour) == ("Asia/Tokyo", 6, 20)
    assert (await status(h)).timezone == "Asia/Tokyo"
    assert await _accepted_updates(h) == ["change_settings"]
    await h.terminate()


# The first send a minute or two after the start, whenever the test runs.
SOON = ScheduleSettings(
    timezone="UTC", window_start_hour=0, window_end_hour=24, spread_over_window=False,
    delay_min_minutes=1, delay_max_minutes=2,
)  # fmt: skip


async def _skip_until(env: WorkflowEnvironment, done: Callable[[], bool]) -> None:
    """Skip time in short steps (a cancelled env.sleep would leave the test server skipping)."""
    for _ in range(60):
        if done():
            return
        await env.sleep(dt.timedelta(seconds=10))
        await asyncio.sleep(0.05)  # the worker runs what came due
    raise AssertionError("not done within 10 minutes of workflow time")


@dataclass
class HeldSend:
    """A send that does not finish until released, like one waiting for a cap."""

    started: asyncio.Event = field(default_factory=asyncio.Event)
    release: asyncio.Event = field(default_factory=asyncio.Event)

    @activity.defn(name="send_email")
    async def send_email(self, req: SendRequest) -> SendResult:
        self.started.set()
        while not self.release.is_set():
            activity.heartbeat()
            await asyncio.sleep(0.05)
        return SendResult(SendStatus.SENT, recipient_id=0, message_id=f"<{req.idempotency_key}@t>")


async def test_a_send_in_flight_says_what_the_mailbox_waits_for(
    time_skipping_env: WorkflowEnvironment,
) -> None:
    env, held, queue = time_skipping_env, HeldSend(), f"wf-{uuid.uuid4().hex[:8]}"
    async with Worker(
        env.client,
        task_queue=queue,
        workflows=[MailboxWarmupWorkflow],
        activities=[held.send_email],
        workflow_runner=workflow_runner("isolated"),
    ):
        (h,) = await start_mailboxes(env.client, queue, [(10, SOON)])
        await _skip_until(env, held.started.is_set)
        st = await status(h)
        assert st.sending_since is not None and st.sent_today == 0
        assert st.waiting_for.startswith("send 1 of today") and "in flight since" in st.waiting_for
        held.release.set()
        for _ in range(100):
            st = await status(h)
            if st.sent_today:
                break
            await asyncio.sleep(0.05)
        assert st.sent_today >= 1, "the released send was not recorded"
        await h.terminate()


@dataclass
class CapFull:
    """A send whose first attempt finds its cap full, as SendActivities does (CapDeferred, retried later)."""

    attempts: int = 0

    @activity.defn(name="send_email")
    async def send_email(self, req: SendRequest) -> SendResult:
        self.attempts += 1
        raise ApplicationError(
            f"mailbox {req.mailbox_id}: USER_SENDS_PER_MINUTE (5) is full for user u1; waiting 3600.0s",
            type=ERR_CAP_DEFERRED,
            next_retry_delay=dt.timedelta(hours=1),
        )


async def test_starter_status_adds_the_last_attempts_failure(time_skipping_env: WorkflowEnvironment) -> None:
    env, cap, queue = time_skipping_env, CapFull(), f"wf-{uuid.uuid4().hex[:8]}"
    mailbox_id = (
        int(uuid.uuid4().int % 10**9) + 10**9
    )  # mailbox_workflow_id(id): the id `starter status` uses
    async with Worker(
        env.client,
        task_queue=queue,
        workflows=[MailboxWarmupWorkflow],
        activities=[cap.send_email],
        workflow_runner=workflow_runner("isolated"),
    ):
        h = await env.client.start_workflow(
            MailboxWarmupWorkflow.run,
            MailboxWorkflowInput(mailbox_id, "u1", SOON, search_attributes=False),
            id=mailbox_workflow_id(mailbox_id),
            task_queue=queue,
        )
        await _skip_until(env, lambda: cap.attempts > 0)  # its retry comes an hour later
        st = await temporal_calls.status(env.client, mailbox_id, load_settings({}))
        assert st.sending_since is not None, st
        assert "in flight since" in st.waiting_for
        assert f"the last failed with {ERR_CAP_DEFERRED}: " in st.waiting_for, st.waiting_for
        assert (
            "1 attempt(s) so far" in st.waiting_for and "USER_SENDS_PER_MINUTE (5) is full" in st.waiting_for
        )
        await h.terminate()
