"""MailboxWarmupWorkflow behaviour on the real time-skipping server: signals, failures, continue-as-new.

The send activity here records what the workflow asked for (and can fail on cue); the real
activity against PostgreSQL and SMTP is exercised in test_simulated_day.py and
test_send_activity.py.
"""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

import pytest
from temporalio import activity
from temporalio.exceptions import ApplicationError
from temporalio.testing import WorkflowEnvironment
from temporalio.worker import Worker

from tests.helpers.workflows import skip_to, start_mailboxes, status
from warmup import schedule
from warmup.models import (
    ERR_AUTH,
    ERR_UNKNOWN_OUTCOME,
    PauseRequest,
    RampSettings,
    ScheduleSettings,
    SendRequest,
    SendResult,
    SendStatus,
    SettingsUpdate,
)
from workers.sandbox import workflow_runner
from workflows.mailbox import MailboxWarmupWorkflow

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
            raise ApplicationError(f"scripted {kind}", type=kind, non_retryable=True)
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
