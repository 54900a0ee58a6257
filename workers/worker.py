"""Builds the Temporal worker: which workflows and activities run, and with what limits."""

from __future__ import annotations

from datetime import timedelta

from temporalio.client import Client
from temporalio.worker import Worker

from activities.send import SendActivities
from warmup.config import Settings
from workers.sandbox import workflow_runner
from workflows.mailbox import MailboxWarmupWorkflow
from workflows.user import UserWarmupWorkflow


def build_worker(client: Client, settings: Settings, activities: SendActivities) -> Worker:
    return Worker(
        client,
        task_queue=settings.TASK_QUEUE,
        workflows=[MailboxWarmupWorkflow, UserWarmupWorkflow],
        activities=[activities.send_email],
        workflow_runner=workflow_runner(settings.WORKFLOW_SANDBOX),
        max_concurrent_activities=settings.WORKER_CONCURRENCY,
        max_cached_workflows=settings.MAX_CACHED_WORKFLOWS,
        # Eager activities skip the server's task-queue rate limits, which the caps rely on.
        disable_eager_activity_execution=True,
        # On shutdown the worker stops polling at once but lets running sends finish for this long:
        # a send cancelled during DATA leaves its row SENDING, and the retry must call it UNKNOWN.
        graceful_shutdown_timeout=timedelta(seconds=settings.SHUTDOWN_GRACE_SECONDS),
    )
