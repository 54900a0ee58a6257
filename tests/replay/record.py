"""Record real workflow histories for the replay test: `python -m tests.replay.record [SCENARIO ...]`.

Each scenario drives MailboxWarmupWorkflow or UserWarmupWorkflow on the time-skipping server with
the Recorder activity (as in test_mailbox_workflow.py) and saves every history it produced to
tests/replay/histories/<name>.json. Name scenarios (the functions below, e.g. `user_updates`) to
record only those; with none, all are recorded. Re-record only deliberately: a new history captures
the code as it is now, so re-recording after an incompatible change would hide the very break the
replay test exists to catch (docs/versioning.md says when to re-record).
"""

from __future__ import annotations

import asyncio
import dataclasses
import datetime as dt
import sys
import uuid
from collections.abc import Awaitable, Callable
from pathlib import Path

from temporalio.client import Client, WorkflowHandle, WorkflowUpdateFailedError
from temporalio.testing import WorkflowEnvironment
from temporalio.worker import Worker

from devstack.temporal import (
    dynamic_config_args,
    search_attribute_keys,
    temporal_cli,
    test_server_binary,
)
from tests.helpers.workflows import skip_to, start_mailboxes
from tests.test_inbox_sessions import Inbox
from tests.test_mailbox_workflow import UTC_DAY, Recorder
from tests.test_reactive_ramp import Placements
from tests.test_user_workflow import FIXED_TEN, enroll_result
from warmup.errors import ERR_AUTH
from warmup.models import (
    EngagementSettings,
    MailboxEnrollment,
    MailboxEnrollments,
    PauseRequest,
    RampSettings,
    ScheduleSettings,
    SettingsUpdate,
    UserPlan,
    UserWorkflowInput,
)
from warmup.workflow_ids import inbox_task_queue, mailbox_workflow_id
from workers.sandbox import workflow_runner
from workflows.mailbox import MailboxWarmupWorkflow
from workflows.user import UserWarmupWorkflow

HISTORIES = Path(__file__).parent / "histories"
HOUR = dt.timedelta(hours=1)

Histories = dict[str, str]  # file stem -> history JSON
Scenario = Callable[[WorkflowEnvironment, Recorder], Awaitable[Histories]]


async def _history(client: Client, workflow_id: str, run_id: str | None = None) -> str:
    return (await client.get_workflow_handle(workflow_id, run_id=run_id).fetch_history()).to_json()


async def _remove(handle: WorkflowHandle[MailboxWarmupWorkflow, None]) -> None:
    await handle.signal(MailboxWarmupWorkflow.remove)
    await handle.result()


async def mailbox_day(env: WorkflowEnvironment, rec: Recorder) -> Histories:
    (h,) = await start_mailboxes(env.client, _queue(), [(101, UTC_DAY)])
    await env.sleep(23 * HOUR)
    await _remove(h)
    return {"mailbox_day_with_sends": await _history(env.client, h.id)}


async def mailbox_pause_resume(env: WorkflowEnvironment, rec: Recorder) -> Histories:
    (h,) = await start_mailboxes(env.client, _queue(), [(102, UTC_DAY)])
    await env.sleep(7 * HOUR)
    await h.signal(MailboxWarmupWorkflow.pause, PauseRequest("holiday"))
    await env.sleep(4 * HOUR)
    await h.signal(MailboxWarmupWorkflow.resume)
    await env.sleep(10 * HOUR)
    await _remove(h)
    return {"mailbox_pause_resume": await _history(env.client, h.id)}


async def mailbox_settings_update(env: WorkflowEnvironment, rec: Recorder) -> Histories:
    (h,) = await start_mailboxes(env.client, _queue(), [(103, UTC_DAY)])
    await env.sleep(7 * HOUR)
    update = SettingsUpdate(window_start_hour=9, window_end_hour=12, ramp=RampSettings(12, 0, 12))
    await h.signal(MailboxWarmupWorkflow.update_settings, update)
    await env.sleep(16 * HOUR)
    await _remove(h)
    return {"mailbox_settings_update": await _history(env.client, h.id)}


async def mailbox_continue_as_new(env: WorkflowEnvironment, rec: Recorder) -> Histories:
    (h,) = await start_mailboxes(env.client, _queue(), [(104, UTC_DAY)], continue_as_new_after_sends=3)
    await env.sleep(23 * HOUR)
    await _remove(h)
    assert h.first_execution_run_id is not None
    return {
        # The first run ends in continue-as-new; the last starts from carried-over state.
        "mailbox_continue_as_new_first_run": await _history(env.client, h.id, h.first_execution_run_id),
        "mailbox_continue_as_new_last_run": await _history(env.client, h.id),
    }


async def mailbox_one_day_per_run(env: WorkflowEnvironment, rec: Recorder) -> Histories:
    """Since issue #13: a run holds one local day; the next day starts a new run."""
    (h,) = await start_mailboxes(env.client, _queue(), [(106, UTC_DAY)])
    await env.sleep(47 * HOUR)
    await _remove(h)
    assert h.first_execution_run_id is not None
    return {
        "mailbox_one_day_per_run_first_run": await _history(env.client, h.id, h.first_execution_run_id),
        "mailbox_one_day_per_run_last_run": await _history(env.client, h.id),
    }


async def mailbox_auth_failure(env: WorkflowEnvironment, rec: Recorder) -> Histories:
    rec.fail[2] = ERR_AUTH
    (h,) = await start_mailboxes(env.client, _queue(), [(105, UTC_DAY)])
    await env.sleep(23 * HOUR)
    await _remove(h)
    return {"mailbox_auth_failure_pauses": await _history(env.client, h.id)}


async def _enroll_by_signal(
    client: Client, queue: str, user: str, mailbox_id: int, *, plan: UserPlan, schedule: ScheduleSettings
) -> WorkflowHandle[UserWarmupWorkflow, None]:
    """Enrollment as the code before the enroll_mailbox Update did it: signal-with-start."""
    return await client.start_workflow(
        UserWarmupWorkflow.run,
        UserWorkflowInput(user, plan, search_attributes=False),
        id=f"user-{user}",
        task_queue=queue,
        start_signal="enroll",
        start_signal_args=[MailboxEnrollment(mailbox_id, schedule)],
    )


async def user_lifecycle(env: WorkflowEnvironment, rec: Recorder) -> Histories:
    """Recorded before the enroll_mailbox Update: enrollments are `enroll` signals."""
    queue, user, ids = _queue(), f"replay-{uuid.uuid4().hex[:6]}", [201, 202, 203]
    plan = UserPlan("starter", daily_limit=24)
    for m in ids:
        h = await _enroll_by_signal(env.client, queue, user, m, plan=plan, schedule=FIXED_TEN)
    await _enroll_by_signal(env.client, queue, user, ids[0], plan=plan, schedule=FIXED_TEN)
    await env.sleep(9 * HOUR)
    await h.signal(UserWarmupWorkflow.pause, PauseRequest("user on holiday"))
    await env.sleep(2 * HOUR)
    await h.signal(UserWarmupWorkflow.resume)
    await h.signal(UserWarmupWorkflow.remove_mailbox, ids[2])
    await h.signal(UserWarmupWorkflow.set_plan, UserPlan("pro", daily_limit=None, weight=2.0))
    await env.sleep(12 * HOUR)
    out = {
        "user_lifecycle": await _history(env.client, h.id),
        "user_lifecycle_child_mailbox": await _history(env.client, mailbox_workflow_id(ids[0])),
        "user_lifecycle_removed_mailbox": await _history(env.client, mailbox_workflow_id(ids[2])),
    }
    for m in ids[:2]:
        await env.client.get_workflow_handle(mailbox_workflow_id(m)).terminate("recorded")
    await h.terminate("recorded")
    return out


async def user_updates(env: WorkflowEnvironment, rec: Recorder) -> Histories:
    """Enrollment as `starter enroll` does it since the Updates: update-with-start of enroll_mailbox
    (the user workflow starts each mailbox workflow), a refused enrollment (not in history), a
    re-enrollment (one update_settings signal), change_plan, pause/resume, remove_mailbox."""
    queue, user, ids = _queue(), f"upd-{uuid.uuid4().hex[:6]}", [211, 212]
    plan = UserPlan("starter", daily_limit=12)
    for m in ids:
        await enroll_result(env.client, queue, user, m, plan=plan)
    try:
        await enroll_result(env.client, queue, user, 213, owner="someone-else")
    except WorkflowUpdateFailedError:
        pass  # refused by the validator, as it should be: nothing of it is in the history
    else:
        raise AssertionError("the user workflow adopted another user's mailbox")
    tokyo = ScheduleSettings(timezone="Asia/Tokyo", ramp=RampSettings(10, 0, 10))
    await enroll_result(env.client, queue, user, ids[0], plan=plan, schedule=tokyo)
    h = env.client.get_workflow_handle_for(UserWarmupWorkflow.run, f"user-{user}")
    await env.sleep(9 * HOUR)
    await h.signal(UserWarmupWorkflow.pause, PauseRequest("user on holiday"))
    await env.sleep(2 * HOUR)
    await h.signal(UserWarmupWorkflow.resume)
    await h.execute_update(UserWarmupWorkflow.change_plan, UserPlan("pro", daily_limit=None, weight=2.0))
    await h.signal(UserWarmupWorkflow.remove_mailbox, ids[1])
    await env.sleep(12 * HOUR)
    out = {
        "user_updates": await _history(env.client, h.id),
        "user_updates_child_mailbox": await _history(env.client, mailbox_workflow_id(ids[0])),
    }
    await env.client.get_workflow_handle(mailbox_workflow_id(ids[0])).terminate("recorded")
    await h.terminate("recorded")
    return out


async def user_bulk_enroll(env: WorkflowEnvironment, rec: Recorder) -> Histories:
    """A bulk import since the `parallel-enroll` patch: one mailbox by enroll_mailbox, then a batch of
    enroll_mailboxes (its workflows started together, the first one found running and updated)."""
    queue, user = _queue(), f"bulk-{uuid.uuid4().hex[:6]}"
    ids = [221, 222, 223, 224]
    await enroll_result(env.client, queue, user, ids[0])
    h = env.client.get_workflow_handle_for(UserWarmupWorkflow.run, f"user-{user}")
    batch = MailboxEnrollments([MailboxEnrollment(m, FIXED_TEN, user_id=user) for m in ids])
    await h.execute_update(UserWarmupWorkflow.enroll_mailboxes, batch)
    await env.sleep(12 * HOUR)
    out = {"user_bulk_enroll": await _history(env.client, h.id)}
    for m in ids:
        await env.client.get_workflow_handle(mailbox_workflow_id(m)).terminate("recorded")
    await h.terminate("recorded")
    return out


async def mailbox_change_settings(env: WorkflowEnvironment, rec: Recorder) -> Histories:
    """`starter update` since the Update: one change accepted, one refused (not in history)."""
    (h,) = await start_mailboxes(env.client, _queue(), [(106, UTC_DAY)])
    await env.sleep(7 * HOUR)
    try:
        await h.execute_update(MailboxWarmupWorkflow.change_settings, SettingsUpdate(window_start_hour=23))
    except WorkflowUpdateFailedError:
        pass  # refused by the validator
    else:
        raise AssertionError("an invalid window was accepted")
    update = SettingsUpdate(window_start_hour=9, window_end_hour=12, ramp=RampSettings(12, 0, 12))
    await h.execute_update(MailboxWarmupWorkflow.change_settings, update)
    await env.sleep(16 * HOUR)
    await _remove(h)
    return {"mailbox_change_settings": await _history(env.client, h.id)}


async def mailbox_inbox_sessions(env: WorkflowEnvironment, rec: Recorder) -> Histories:
    """Issue #11: a day of inbox sessions beside the sends, then a refused IMAP login, then a settings
    change that turns engagement on again."""
    engaged = dataclasses.replace(UTC_DAY, engagement=EngagementSettings(enabled=True, inbox_sessions=3))
    (h,) = await start_mailboxes(env.client, _queue(), [(107, engaged)])
    await env.sleep(23 * HOUR)
    _INBOX.refuse = True
    await env.sleep(12 * HOUR)
    _INBOX.refuse = False
    await h.execute_update(
        MailboxWarmupWorkflow.change_settings, SettingsUpdate(engagement=engaged.engagement)
    )
    await env.sleep(6 * HOUR)
    await _remove(h)
    return {"mailbox_inbox_sessions": await _history(env.client, h.id)}


async def mailbox_reactive_ramp(env: WorkflowEnvironment, rec: Recorder) -> Histories:
    """Issue #15: a placement check each day; healthy, then 30% spam (step down, wider spacing), then 60%
    (paused by placement), then a resume."""
    engaged = dataclasses.replace(UTC_DAY, engagement=EngagementSettings(enabled=True, inbox_sessions=1))
    (h,) = await start_mailboxes(env.client, _queue(), [(108, engaged)])
    await env.sleep(71 * HOUR)
    await h.signal(MailboxWarmupWorkflow.resume)
    await env.sleep(6 * HOUR)
    await _remove(h)
    return {"mailbox_reactive_ramp": await _history(env.client, h.id)}


async def mailbox_user_cap_wait(env: WorkflowEnvironment, rec: Recorder) -> Histories:
    """Issue #13: a day of sends on code whose attempts may wait for the user's cap (the patch marker,
    a longer start-to-close)."""
    (h,) = await start_mailboxes(env.client, _queue(), [(109, UTC_DAY)])
    await env.sleep(23 * HOUR)
    await _remove(h)
    return {"mailbox_user_cap_wait": await _history(env.client, h.id)}


SCENARIOS: list[Scenario] = [
    mailbox_day,
    mailbox_pause_resume,
    mailbox_settings_update,
    mailbox_continue_as_new,
    mailbox_one_day_per_run,
    mailbox_auth_failure,
    mailbox_change_settings,
    user_lifecycle,
    user_updates,
    user_bulk_enroll,
    mailbox_inbox_sessions,
    mailbox_reactive_ramp,
    mailbox_user_cap_wait,
]
_INBOX = Inbox()  # the inbox sessions' stand-in, on every scenario's inbox queue
_PLACEMENTS = Placements([(95, 5), (70, 30), (40, 60)])  # the placement checks' stand-in, likewise

_QUEUE = f"replay-{uuid.uuid4().hex[:8]}"


def _queue() -> str:
    return _QUEUE


# Real time on the dev server: a sub-minute cadence, all day, so a few sends take seconds.
FAST = ScheduleSettings(
    timezone="UTC",
    window_start_hour=0,
    window_end_hour=24,
    delay_min_minutes=0.01,
    delay_max_minutes=0.02,
    spread_over_window=False,
    ramp=RampSettings(start_volume=6, daily_increment=0, ceiling=6),
)


async def _until(check: Callable[[], bool], what: str) -> None:
    for _ in range(300):
        if check():
            return
        await asyncio.sleep(0.1)
    raise TimeoutError(f"recording stalled waiting for {what}")


async def with_search_attributes(env: WorkflowEnvironment, rec: Recorder) -> Histories:
    """Production runs upsert UserId/MailboxId/WarmupStatus: those commands are in history too."""
    queue, user, mailbox = _queue(), f"sa-{uuid.uuid4().hex[:6]}", 301
    h = await env.client.start_workflow(
        UserWarmupWorkflow.run,
        UserWorkflowInput(user, UserPlan(daily_limit=20), search_attributes=True),
        id=f"user-{user}",
        task_queue=queue,
        start_signal="enroll",
        start_signal_args=[MailboxEnrollment(mailbox, FAST)],
    )
    await _until(lambda: len(rec.requests) >= 2, "two sends")
    await h.signal(UserWarmupWorkflow.pause, PauseRequest("paused while recording"))
    await asyncio.sleep(1)
    await h.signal(UserWarmupWorkflow.resume)
    await _until(lambda: len(rec.requests) >= 6, "the day's quota")
    await h.signal(UserWarmupWorkflow.remove_mailbox, mailbox)
    await env.client.get_workflow_handle(mailbox_workflow_id(mailbox)).result()
    out = {
        "search_attributes_user": await _history(env.client, h.id),
        "search_attributes_mailbox": await _history(env.client, mailbox_workflow_id(mailbox)),
    }
    await h.terminate("recorded")
    return out


async def _run_scenario(env: WorkflowEnvironment, scenario: Scenario, *, skip_to_midnight: bool) -> Histories:
    rec = Recorder()
    async with (
        Worker(
            env.client,
            task_queue=_queue(),
            workflows=[MailboxWarmupWorkflow, UserWarmupWorkflow],
            activities=[rec.send_email],
            workflow_runner=workflow_runner("isolated"),
        ),
        Worker(
            env.client,
            task_queue=inbox_task_queue(_queue()),
            activities=[_INBOX.inbox_session, _PLACEMENTS.placement_check],
        ),
    ):
        if skip_to_midnight:
            # Each scenario starts at a UTC midnight, so the day's window is all ahead of it.
            now = await env.get_current_time()
            await skip_to(env, dt.datetime.combine(now.date() + dt.timedelta(days=1), dt.time(), dt.UTC))
        return await scenario(env, rec)


async def record(names: set[str] | None = None) -> Histories:
    """Every scenario's histories, or only those of the scenarios in `names`."""
    chosen = [s for s in SCENARIOS if names is None or s.__name__ in names]
    env = await WorkflowEnvironment.start_time_skipping(test_server_existing_path=test_server_binary())
    out: Histories = {}
    try:
        for scenario in chosen:
            out |= await _run_scenario(env, scenario, skip_to_midnight=True)
    finally:
        await env.shutdown()
    if names is not None and with_search_attributes.__name__ not in names:
        return out
    # The time-skipping server has no search attributes registered; the dev server does.
    dev = await WorkflowEnvironment.start_local(
        dev_server_existing_path=temporal_cli(),
        search_attributes=search_attribute_keys(),
        dev_server_extra_args=dynamic_config_args(),
        dev_server_log_level="error",
    )
    try:
        out |= await _run_scenario(dev, with_search_attributes, skip_to_midnight=False)
    finally:
        await dev.shutdown()
    return out


def main() -> None:
    names = set(sys.argv[1:]) or None
    known = {s.__name__ for s in SCENARIOS} | {with_search_attributes.__name__}
    if names is not None and names - known:
        raise SystemExit(f"unknown scenarios {sorted(names - known)}; known: {', '.join(sorted(known))}")
    histories = asyncio.run(record(names))
    HISTORIES.mkdir(exist_ok=True)
    for name, text in sorted(histories.items()):
        (HISTORIES / f"{name}.json").write_text(text + "\n")
        print(f"recorded {name}.json ({len(text)} bytes)")


if __name__ == "__main__":
    main()
