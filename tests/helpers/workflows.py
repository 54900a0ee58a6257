"""Helpers for driving mailbox workflows on the time-skipping server."""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Sequence

from temporalio.client import Client, WorkflowHandle
from temporalio.testing import WorkflowEnvironment

from warmup import schedule
from warmup.models import MailboxStatus, MailboxWorkflowInput, ScheduleSettings
from warmup.workflow_ids import mailbox_workflow_id
from workflows.mailbox import MailboxWarmupWorkflow


def next_dst_change_day(after: dt.datetime, tz: str) -> dt.date:
    """The first local day after `after` whose length is not 24 hours (a DST change)."""
    day = after.astimezone(schedule.zone(tz)).date() + dt.timedelta(days=1)
    for _ in range(400):
        s = ScheduleSettings(timezone=tz, window_start_hour=0, window_end_hour=24)
        a, b = schedule.window_bounds(day, s)
        if b - a != 86_400:
            return day
        day += dt.timedelta(days=1)
    raise AssertionError(f"no DST change within 400 days in {tz}")


# One time-skipping call may not outlast the RPC's timeout: a day of many busy mailboxes is skipped in
# steps, each of which the server finishes quickly even on a loaded machine.
_SKIP_STEP = dt.timedelta(minutes=30)


async def skip_to(env: WorkflowEnvironment, when: dt.datetime) -> None:
    now = await env.get_current_time()
    while when > now:
        step = min(when - now, _SKIP_STEP)
        await env.sleep(step)
        now += step


async def start_mailboxes(
    client: Client,
    task_queue: str,
    schedules: Sequence[tuple[int, ScheduleSettings]],
    *,
    user_id: str = "u1",
    continue_as_new_after_sends: int | None = None,
) -> list[WorkflowHandle[MailboxWarmupWorkflow, None]]:
    handles = []
    suffix = uuid.uuid4().hex[:6]
    for mailbox_id, sched in schedules:
        handles.append(
            await client.start_workflow(
                MailboxWarmupWorkflow.run,
                MailboxWorkflowInput(
                    mailbox_id=mailbox_id,
                    user_id=user_id,
                    schedule=sched,
                    continue_as_new_after_sends=continue_as_new_after_sends,
                    search_attributes=False,  # the time-skipping server has none registered
                ),
                id=f"{mailbox_workflow_id(mailbox_id)}-{suffix}",
                task_queue=task_queue,
            )
        )
    return handles


async def status(handle: WorkflowHandle[MailboxWarmupWorkflow, None]) -> MailboxStatus:
    return await handle.query(MailboxWarmupWorkflow.status)
