"""UserWarmupWorkflow on the time-skipping server: enrollment, plan limits, pause, continue-as-new."""

from __future__ import annotations

import datetime as dt
import uuid
from collections import Counter
from collections.abc import AsyncIterator

import pytest
from temporalio.client import Client, WorkflowHandle
from temporalio.testing import WorkflowEnvironment
from temporalio.worker import Worker

from tests.helpers.workflows import skip_to
from tests.test_mailbox_workflow import Recorder
from warmup.mailboxes import workflow_id_for
from warmup.models import (
    MailboxEnrollment,
    PauseRequest,
    RampSettings,
    ScheduleSettings,
    UserPlan,
    UserWorkflowInput,
)
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
    # Signal-with-start: the first enrollment starts the user's workflow, later ones reach it.
    return await client.start_workflow(
        UserWarmupWorkflow.run,
        UserWorkflowInput(
            user, plan or UserPlan(), search_attributes=False, continue_as_new_after_events=cas_after
        ),
        id=f"user-{user}",
        task_queue=queue,
        start_signal="enroll",
        start_signal_args=[MailboxEnrollment(mailbox_id, schedule)],
    )


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
    mb = await env.client.get_workflow_handle(workflow_id_for(ids[0])).query(MailboxWarmupWorkflow.status)
    assert "plan allows" in mb.capped_reason

    # The next day the plan applies again, and no more than that.
    await env.sleep(dt.timedelta(hours=24))
    assert sum(_sent_per_mailbox(rec).values()) == 64
    for m in ids:
        await env.client.get_workflow_handle(workflow_id_for(m)).terminate()
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
        await env.client.get_workflow_handle(workflow_id_for(m)).terminate()
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
        await env.client.get_workflow_handle(workflow_id_for(m)).query(MailboxWarmupWorkflow.status)
        for m in ids
    ]
    assert all(s.paused and s.pause_reason == "user on holiday" for s in statuses)

    await h.signal(UserWarmupWorkflow.resume)
    await h.signal(UserWarmupWorkflow.remove_mailbox, ids[2])
    await env.sleep(dt.timedelta(hours=11))
    assert _sent_per_mailbox(rec) == Counter({ids[0]: 10, ids[1]: 10}), "resume or remove missed a mailbox"
    removed = env.client.get_workflow_handle(workflow_id_for(ids[2]))
    await removed.result()  # the removed mailbox's workflow completed
    st = await h.query(UserWarmupWorkflow.status)
    assert (st.mailbox_ids, st.removed_ids, st.paused) == (ids[:2], [ids[2]], False)
    for m in ids[:2]:
        await env.client.get_workflow_handle(workflow_id_for(m)).terminate()
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
        await env.client.get_workflow_handle(workflow_id_for(m)).terminate()
    await h.terminate()


async def test_a_vanished_mailbox_does_not_fail_its_user(rig: Rig) -> None:
    env, _, queue = rig
    user = f"gone-{uuid.uuid4().hex[:6]}"
    ids = [9500, 9501]
    for m in ids:
        h = await _enroll(env.client, queue, user, m)
    await env.sleep(dt.timedelta(minutes=1))
    await env.client.get_workflow_handle(workflow_id_for(ids[0])).terminate("operator cleanup")
    await h.signal(UserWarmupWorkflow.pause, PauseRequest("holiday"))
    await env.sleep(dt.timedelta(minutes=1))
    st = await h.query(UserWarmupWorkflow.status)  # a failed user workflow would not answer
    assert (st.mailbox_ids, st.removed_ids, st.paused) == ([ids[1]], [ids[0]], True)
    live = await env.client.get_workflow_handle(workflow_id_for(ids[1])).query(MailboxWarmupWorkflow.status)
    assert live.paused
    await env.client.get_workflow_handle(workflow_id_for(ids[1])).terminate()
    await h.terminate()


async def test_a_plan_limited_mailbox_keeps_warming_when_its_user_workflow_is_gone(rig: Rig) -> None:
    env, rec, queue = rig
    user = f"orphan-{uuid.uuid4().hex[:6]}"
    h = await _enroll(env.client, queue, user, 9600, plan=UserPlan(daily_limit=4))
    await env.sleep(dt.timedelta(hours=23))
    assert _sent_per_mailbox(rec)[9600] == 4, "the plan's allowance was not applied"
    await h.terminate("user workflow lost")
    await env.sleep(dt.timedelta(hours=24))
    child = env.client.get_workflow_handle(workflow_id_for(9600))
    st = await child.query(MailboxWarmupWorkflow.status)  # still running, not failed
    assert _sent_per_mailbox(rec)[9600] == 4 + 10, "without its parent the mailbox follows its ramp"
    assert st.sent_today == 10
    await child.terminate()
