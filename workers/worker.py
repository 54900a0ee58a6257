"""Builds the Temporal worker: which workflows and activities run, and with what limits."""

from __future__ import annotations

from datetime import timedelta

from temporalio.client import Client
from temporalio.worker import Worker

from activities.engagement import EngagementActivities
from activities.send import SendActivities
from warmup.config import Settings
from warmup.workflow_ids import inbox_task_queue
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


def build_inbox_worker(client: Client, settings: Settings, activities: EngagementActivities) -> Worker:
    """The inbox sessions' worker (and the daily placement checks): their own task queue, outside the send
    queue's rate limit (the global send cap), and slots of their own (WARMUP_INBOX_CONCURRENCY): a session
    is mostly waiting on IMAP and a human's dwell, and takes a pooled connection only to record an action."""
    return Worker(
        client,
        task_queue=inbox_task_queue(settings.TASK_QUEUE),
        activities=[activities.inbox_session, activities.placement_check],
        max_concurrent_activities=settings.inbox_concurrency(),
        graceful_shutdown_timeout=timedelta(seconds=settings.SHUTDOWN_GRACE_SECONDS),
    )
