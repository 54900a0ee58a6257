"""UserWarmupWorkflow on the time-skipping server: enrollment, plan limits, pause, continue-as-new."""

from __future__ import annotations

import datetime as dt
import uuid
from collections import Counter
from collections.abc import AsyncIterator

import pytest
from temporalio.api.enums.v1 import EventType
from temporalio.client import Client, WithStartWorkflowOperation, WorkflowHandle, WorkflowUpdateFailedError
from temporalio.common import WorkflowIDConflictPolicy
from temporalio.exceptions import ApplicationError
from temporalio.testing import WorkflowEnvironment
from temporalio.worker import Worker

from tests.helpers.workflows import skip_to
from tests.test_mailbox_workflow import Recorder
from warmup.errors import ERR_REFUSED
from warmup.models import (
    EnrollResult,
    MailboxEnrollment,
    MailboxEnrollments,
    MailboxWorkflowInput,
    PauseRequest,
    RampSettings,
    ScheduleSettings,
    UserPlan,
    UserWorkflowInput,
)
from warmup.workflow_ids import mailbox_workflow_id
from workers.sandbox import workflow_runner
from workflows.mailbox import MailboxWarmupWorkflow
from workflows.user import UserWarmupWorkflow

FIXED_TEN = ScheduleSettings(
    timezone="UTC", ramp=RampSettings(start_volume=10, daily_increment=0, ceiling=10)
)

Rig = tuple[WorkflowEnvironment, Recorder, str]


@pytest.fixture
async def rig(time_skipping_env: WorkflowEnvironment) -> AsyncIterator[Rig]:
    env, rec, queue = time_skipping_env, Recorder(), f"user-{uuid.uuid4().hex[:8]}"
    now = await env.get_current_time()
    await skip_to(env, dt.datetime.combine(now.date() + dt.timedelta(days=1), dt.time(), tzinfo=dt.UTC))
    async with Worker(
        env.client,
        task_queue=queue,
        workflows=[MailboxWarmupWorkflow, UserWarmupWorkflow],
        activities=[rec.send_email],
        workflow_runner=workflow_runner("isolated"),
    ):
        yield env, rec, queue


async def enroll_result(
    client: Client,
    queue: str,
    user: str,
    mailbox_id: int,
    *,
    plan: UserPlan | None = None,
    schedule: ScheduleSettings = FIXED_TEN,
    cas_after: int | None = None,
    owner: str | None = None,
) -> EnrollResult:
    """What `starter enroll` does: update-with-start, so the first enrollment starts the user's
    workflow and every one is answered once the mailbox's workflow is started or updated."""
    start = WithStartWorkflowOperation(
        UserWarmupWorkflow.run,
        UserWorkflowInput(
            user, plan or UserPlan(), search_attributes=False, continue_as_new_after_events=cas_after
        ),
        id=f"user-{user}",
        task_queue=queue,
        id_conflict_policy=WorkflowIDConflictPolicy.USE_EXISTING,
    )
    return await client.execute_update_with_start_workflow(
        UserWarmupWorkflow.enroll_mailbox,
        MailboxEnrollment(mailbox_id, schedule, user_id=user if owner is None else owner),
        start_workflow_operation=start,
    )


async def _enroll(
    client: Client,
    queue: str,
    user: str,
    mailbox_id: int,
    *,
    plan: UserPlan | None = None,
    schedule: ScheduleSettings = FIXED_TEN,
    cas_after: int | None = None,
) -> WorkflowHandle[UserWarmupWorkflow, None]:
    await enroll_result(client, queue, user, mailbox_id, plan=plan, schedule=schedule, cas_after=cas_after)
    return client.get_workflow_handle_for(UserWarmupWorkflow.run, f"user-{user}")


async def _signals(client: Client, workflow_id: str) -> list[str]:
    return [
        e.workflow_execution_signaled_event_attributes.signal_name
        async for e in client.get_workflow_handle(workflow_id).fetch_history_events()
        if e.event_type == EventType.EVENT_TYPE_WORKFLOW_EXECUTION_SIGNALED
    ]


async def _updates(client: Client, workflow_id: str) -> list[str]:
    """The Updates a workflow's history accepted (a refused one never enters it)."""
    return [
        e.workflow_execution_update_accepted_event_attributes.accepted_request.input.name
        async for e in client.get_workflow_handle(workflow_id).fetch_history_events()
        if e.event_type == EventType.EVENT_TYPE_WORKFLOW_EXECUTION_UPDATE_ACCEPTED
    ]


def _sent_per_mailbox(rec: Recorder) -> Counter[int]:
    return Counter(r.mailbox_id for r in rec.requests)


async def test_plan_limit_is_shared_exactly_and_fairly(rig: Rig) -> None:
    env, rec, queue = rig
    user = f"planned-{uuid.uuid4().hex[:6]}"
    ids = [9100 + i for i in range(5)]  # 5 x 10 wanted, plan allows 32
    for m in ids:
        h = await _enroll(env.client, queue, user, m, plan=UserPlan("starter", daily_limit=32))
    await env.sleep(dt.timedelta(hours=23))
    per_mailbox = _sent_per_mailbox(rec)
    assert sum(per_mailbox.values()) == 32, per_mailbox
    assert sorted(per_mailbox.values()) == [6, 6, 6, 7, 7], "the plan was not spread evenly"
    st = await h.query(UserWarmupWorkflow.status)
    assert st.mailbox_ids == ids and sum(st.granted.values()) == 32
    mb = await env.client.get_workflow_handle(mailbox_workflow_id(ids[0])).query(MailboxWarmupWorkflow.status)
    assert "plan allows" in mb.capped_reason

    # The next day the plan applies again, and no more than that.
    await env.sleep(dt.timedelta(hours=24))
    assert sum(_sent_per_mailbox(rec).values()) == 64
    for m in ids:
        await env.client.get_workflow_handle(mailbox_workflow_id(m)).terminate()
    await h.terminate()


async def test_without_a_limit_every_mailbox_fills_its_quota(rig: Rig) -> None:
    env, rec, queue = rig
    user = f"free-{uuid.uuid4().hex[:6]}"
    ids = [9200, 9201, 9202]
    for m in ids:
        h = await _enroll(env.client, queue, user, m)
    await _enroll(env.client, queue, user, ids[0])  # enrolling again updates; never a second workflow
    await env.sleep(dt.timedelta(hours=23))
    assert _sent_per_mailbox(rec) == Counter(dict.fromkeys(ids, 10))
    for m in ids:
        await env.client.get_workflow_handle(mailbox_workflow_id(m)).terminate()
    await h.terminate()


async def test_user_pause_resume_and_remove_reach_every_mailbox(rig: Rig) -> None:
    env, rec, queue = rig
    user = f"ops-{uuid.uuid4().hex[:6]}"
    ids = [9300, 9301, 9302]
    for m in ids:
        h = await _enroll(env.client, queue, user, m)
    await env.sleep(dt.timedelta(hours=5, minutes=59))  # just before the window opens
    await h.signal(UserWarmupWorkflow.pause, PauseRequest("user on holiday"))
    await env.sleep(dt.timedelta(hours=6))
    assert rec.requests == [], "a paused user's mailbox sent mail"
    statuses = [
        await env.client.get_workflow_handle(mailbox_workflow_id(m)).query(MailboxWarmupWorkflow.status)
        for m in ids
    ]
    assert all(s.paused and s.pause_reason == "user on holiday" for s in statuses)

    await h.signal(UserWarmupWorkflow.resume)
    await h.signal(UserWarmupWorkflow.remove_mailbox, ids[2])
    await env.sleep(dt.timedelta(hours=11))
    assert _sent_per_mailbox(rec) == Counter({ids[0]: 10, ids[1]: 10}), "resume or remove missed a mailbox"
    removed = env.client.get_workflow_handle(mailbox_workflow_id(ids[2]))
    await removed.result()  # the removed mailbox's workflow completed
    st = await h.query(UserWarmupWorkflow.status)
    assert (st.mailbox_ids, st.removed_ids, st.paused) == (ids[:2], [ids[2]], False)
    for m in ids[:2]:
        await env.client.get_workflow_handle(mailbox_workflow_id(m)).terminate()
    await h.terminate()


async def test_continue_as_new_keeps_mailboxes_and_todays_grants(rig: Rig) -> None:
    env, rec, queue = rig
    user = f"long-{uuid.uuid4().hex[:6]}"
    ids = [9400, 9401, 9402, 9403]
    for m in ids:
        h = await _enroll(env.client, queue, user, m, plan=UserPlan(daily_limit=30), cas_after=12)
    await env.sleep(dt.timedelta(hours=47))
    desc = await h.describe()
    assert desc.run_id != h.first_execution_run_id, "the user workflow never continued as new"
    st = await h.query(UserWarmupWorkflow.status)
    assert st.mailbox_ids == ids
    assert sum(_sent_per_mailbox(rec).values()) == 60, "a plan grant was lost or repeated across runs"
    for m in ids:
        await env.client.get_workflow_handle(mailbox_workflow_id(m)).terminate()
    await h.terminate()


async def test_a_vanished_mailbox_does_not_fail_its_user(rig: Rig) -> None:
    env, _, queue = rig
    user = f"gone-{uuid.uuid4().hex[:6]}"
    ids = [9500, 9501]
    for m in ids:
        h = await _enroll(env.client, queue, user, m)
    await env.sleep(dt.timedelta(minutes=1))
    await env.client.get_workflow_handle(mailbox_workflow_id(ids[0])).terminate("operator cleanup")
    await h.signal(UserWarmupWorkflow.pause, PauseRequest("holiday"))
    await env.sleep(dt.timedelta(minutes=1))
    st = await h.query(UserWarmupWorkflow.status)  # a failed user workflow would not answer
    assert (st.mailbox_ids, st.removed_ids, st.paused) == ([ids[1]], [ids[0]], True)
    live = await env.client.get_workflow_handle(mailbox_workflow_id(ids[1])).query(
        MailboxWarmupWorkflow.status
    )
    assert live.paused
    await env.client.get_workflow_handle(mailbox_workflow_id(ids[1])).terminate()
    await h.terminate()


async def test_a_plan_limited_mailbox_keeps_warming_when_its_user_workflow_is_gone(rig: Rig) -> None:
    env, rec, queue = rig
    user = f"orphan-{uuid.uuid4().hex[:6]}"
    h = await _enroll(env.client, queue, user, 9600, plan=UserPlan(daily_limit=4))
    await env.sleep(dt.timedelta(hours=23))
    assert _sent_per_mailbox(rec)[9600] == 4, "the plan's allowance was not applied"
    await h.terminate("user workflow lost")
    await env.sleep(dt.timedelta(hours=24))
    child = env.client.get_workflow_handle(mailbox_workflow_id(9600))
    st = await child.query(MailboxWarmupWorkflow.status)  # still running, not failed
    assert _sent_per_mailbox(rec)[9600] == 4 + 10, "without its parent the mailbox follows its ramp"
    assert st.sent_today == 10
    await child.terminate()


async def test_enrolling_answers_and_a_mailbox_gets_its_settings_once(rig: Rig) -> None:
    env, _, queue = rig
    user = f"once-{uuid.uuid4().hex[:6]}"
    first = await enroll_result(env.client, queue, user, 9700)
    assert first == EnrollResult(9700, started=True)
    mailbox = env.client.get_workflow_handle_for(MailboxWarmupWorkflow.run, mailbox_workflow_id(9700))
    # Started by the user workflow with its settings: no settings signal follows.
    assert await _signals(env.client, mailbox.id) == []
    assert (await mailbox.describe()).parent_id == f"user-{user}", "not started by the user workflow"
    assert (await mailbox.query(MailboxWarmupWorkflow.status)).timezone == "UTC"

    tokyo = ScheduleSettings(timezone="Asia/Tokyo", ramp=RampSettings(3, 0, 3))
    again = await enroll_result(env.client, queue, user, 9700, schedule=tokyo)
    assert again == EnrollResult(9700, started=False)
    assert await _signals(env.client, mailbox.id) == ["update_settings"], "re-enrolling updates once"
    assert (await mailbox.query(MailboxWarmupWorkflow.status)).timezone == "Asia/Tokyo"
    await mailbox.terminate()
    await env.client.get_workflow_handle(f"user-{user}").terminate()


async def test_an_enrollment_the_workflow_refuses_reaches_the_caller_and_records_nothing(rig: Rig) -> None:
    env, _, queue = rig
    user = f"strict-{uuid.uuid4().hex[:6]}"
    await enroll_result(env.client, queue, user, 9800)
    crossed = ScheduleSettings(window_start_hour=20, window_end_hour=8)
    for kwargs, expected in [
        ({"owner": "someone-else"}, "belongs to another user"),
        ({"schedule": crossed}, "window_start_hour (20) must be before window_end_hour (8)"),
        ({"schedule": ScheduleSettings(timezone="Mars/Olympus")}, "not an IANA time zone"),
    ]:
        with pytest.raises(WorkflowUpdateFailedError) as info:
            await enroll_result(env.client, queue, user, 9801, **kwargs)  # type: ignore[arg-type]
        cause = info.value.cause
        assert isinstance(cause, ApplicationError) and cause.type == ERR_REFUSED
        assert expected in cause.message, cause.message
    st = await env.client.get_workflow_handle_for(UserWarmupWorkflow.run, f"user-{user}").query(
        UserWarmupWorkflow.status
    )
    assert st.mailbox_ids == [9800], "a refused mailbox was adopted"
    assert await _updates(env.client, f"user-{user}") == ["enroll_mailbox"], "a refusal entered history"
    with pytest.raises(Exception, match="not found"):
        await env.client.get_workflow_handle(mailbox_workflow_id(9801)).describe()
    await env.client.get_workflow_handle(mailbox_workflow_id(9800)).terminate()
    await env.client.get_workflow_handle(f"user-{user}").terminate()


async def test_a_plan_change_is_validated_and_reaches_the_mailboxes(rig: Rig) -> None:
    env, _, queue = rig
    user = f"plan-{uuid.uuid4().hex[:6]}"
    h = await _enroll(env.client, queue, user, 9900)
    with pytest.raises(WorkflowUpdateFailedError) as info:
        await h.execute_update(UserWarmupWorkflow.change_plan, UserPlan("pro", daily_limit=-1, weight=0))
    cause = info.value.cause
    assert isinstance(cause, ApplicationError) and "daily_limit must be 0 or more" in cause.message
    assert "weight must be above 0" in cause.message
    assert (await h.query(UserWarmupWorkflow.status)).plan == "free"

    await h.execute_update(UserWarmupWorkflow.change_plan, UserPlan("pro", daily_limit=None, weight=3.0))
    assert (await h.query(UserWarmupWorkflow.status)).plan == "pro"
    # The new weight goes on to the mailbox (Temporal fairness), in one settings signal.
    mailbox = mailbox_workflow_id(9900)
    await env.sleep(dt.timedelta(seconds=5))
    assert await _signals(env.client, mailbox) == ["update_settings"]
    await env.client.get_workflow_handle(mailbox).terminate()
    await h.terminate()


async def test_a_mailbox_waiting_for_its_plan_allowance_says_so(rig: Rig) -> None:
    env, _, queue = rig
    user = f"silent-{uuid.uuid4().hex[:6]}"
    # A user workflow that does not know the mailbox never answers its allowance request.
    parent = await env.client.start_workflow(
        UserWarmupWorkflow.run,
        UserWorkflowInput(user, UserPlan(daily_limit=5), search_attributes=False),
        id=f"user-{user}",
        task_queue=queue,
    )
    mailbox = await env.client.start_workflow(
        MailboxWarmupWorkflow.run,
        MailboxWorkflowInput(9950, user, FIXED_TEN, plan_parent_id=parent.id, search_attributes=False),
        id=f"{mailbox_workflow_id(9950)}-{uuid.uuid4().hex[:6]}",
        task_queue=queue,
    )
    await env.sleep(dt.timedelta(hours=6))  # the window opens at 06:00; the first send is due after
    for _ in range(6 * 16):  # the wait for an answer lasts an hour: a look every 10 minutes sees it
        st = await mailbox.query(MailboxWarmupWorkflow.status)
        if st.waiting_for:
            break
        await env.sleep(dt.timedelta(minutes=10))
    assert st.sent_today == 0 and st.next_send_at is not None
    assert st.waiting_for.startswith(f"the plan's allowance from {parent.id}"), st.waiting_for
    await env.sleep(dt.timedelta(hours=1))  # no answer within the hour: the ramp alone decides
    st = await mailbox.query(MailboxWarmupWorkflow.status)
    assert st.waiting_for == "" and st.sent_today > 0, st
    await mailbox.terminate()
    await parent.terminate()


async def test_a_batch_of_mailboxes_starts_together_and_is_answered_once_all_run(rig: Rig) -> None:
    """A bulk import's batch (`enroll_mailboxes`): one Update, its mailbox workflows started in one
    workflow task, a mailbox already enrolled updated in place, and a refusal refuses the batch whole."""
    env, _, queue = rig
    user = f"batch-{uuid.uuid4().hex[:6]}"
    await enroll_result(env.client, queue, user, 9900)
    ids = list(range(9900, 9920))
    start = WithStartWorkflowOperation(
        UserWarmupWorkflow.run,
        UserWorkflowInput(user, UserPlan(), search_attributes=False),
        id=f"user-{user}",
        task_queue=queue,
        id_conflict_policy=WorkflowIDConflictPolicy.USE_EXISTING,
    )
    batch = MailboxEnrollments([MailboxEnrollment(i, FIXED_TEN, user_id=user) for i in ids])
    results = await env.client.execute_update_with_start_workflow(
        UserWarmupWorkflow.enroll_mailboxes, batch, start_workflow_operation=start
    )
    assert results == [EnrollResult(i, started=i != 9900) for i in ids]
    for i in ids:
        desc = await env.client.get_workflow_handle(mailbox_workflow_id(i)).describe()
        assert desc.parent_id == f"user-{user}" and desc.status is not None and desc.status.name == "RUNNING"
    history = await env.client.get_workflow_handle(f"user-{user}").fetch_history()
    tasks = [
        e.event_id for e in history.events if e.event_type == EventType.EVENT_TYPE_WORKFLOW_TASK_COMPLETED
    ]
    starts = [
        e.event_id
        for e in history.events
        if e.event_type == EventType.EVENT_TYPE_START_CHILD_WORKFLOW_EXECUTION_INITIATED
    ]
    # The batch's starts (19 new, and 9900's, which finds it running) follow one completed workflow task.
    batch_starts = starts[1:]
    assert len(batch_starts) == 20
    assert len({max(t for t in tasks if t < s) for s in batch_starts}) == 1, "not started together"

    crossed = MailboxEnrollments(
        [
            MailboxEnrollment(9950, FIXED_TEN, user_id=user),
            MailboxEnrollment(9951, ScheduleSettings(window_start_hour=20, window_end_hour=8), user_id=user),
        ]
    )
    with pytest.raises(WorkflowUpdateFailedError) as info:
        await env.client.get_workflow_handle_for(UserWarmupWorkflow.run, f"user-{user}").execute_update(
            UserWarmupWorkflow.enroll_mailboxes, crossed
        )
    assert "mailbox 9951: window_start_hour (20) must be before" in str(info.value.cause)
    with pytest.raises(Exception, match="not found"):
        await env.client.get_workflow_handle(mailbox_workflow_id(9950)).describe()
    for i in ids:
        await env.client.get_workflow_handle(mailbox_workflow_id(i)).terminate()
    await env.client.get_workflow_handle(f"user-{user}").terminate()
