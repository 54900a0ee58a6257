"""The webhook delivery workflow: one per task queue, for ever, calling `deliver_webhooks` whenever
deliveries are due (warmup/webhooks.py, activities/webhooks.py). Deliveries are rows written with their
events, so this loop only decides when to look: at once while some are due, at the next retry's time,
and otherwise every `poll_seconds`."""

from __future__ import annotations

import datetime as dt

from temporalio import workflow
from temporalio.common import RetryPolicy

with workflow.unsafe.imports_passed_through():
    from activities.webhooks import WebhookActivities
    from warmup.models import WebhookDeliveryInput
    from warmup.workflow_ids import inbox_task_queue


@workflow.defn
class WebhookDeliveryWorkflow:
    @workflow.run
    async def run(self, inp: WebhookDeliveryInput) -> None:
        for _ in range(inp.rounds_per_run):
            done = await workflow.execute_activity_method(
                WebhookActivities.deliver_webhooks,
                inp.batch,
                # The side queue: the send queue's dispatch rate is the global send cap.
                task_queue=inbox_task_queue(workflow.info().task_queue),
                start_to_close_timeout=dt.timedelta(minutes=15),
                heartbeat_timeout=dt.timedelta(minutes=1),
                retry_policy=RetryPolicy(maximum_interval=dt.timedelta(minutes=1)),
            )
            if done.next_due_in == 0 and (done.sent or done.failed):
                continue  # more are due: the next batch at once
            wait = inp.poll_seconds if done.next_due_in is None else min(done.next_due_in, inp.poll_seconds)
            await workflow.sleep(dt.timedelta(seconds=max(wait, 1.0)))
        workflow.continue_as_new(inp)
