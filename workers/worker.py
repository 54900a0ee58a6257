"""Builds the Temporal worker: which workflows and activities run, and with what limits."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from datetime import timedelta

from temporalio.client import Client
from temporalio.common import WorkflowIDConflictPolicy
from temporalio.service import RPCError
from temporalio.worker import Worker

from activities.engagement import EngagementActivities
from activities.ledger_upkeep import LedgerActivities
from activities.send import SendActivities
from activities.webhooks import WebhookActivities
from warmup.config import Settings
from warmup.models import LedgerUpkeepInput, WebhookDeliveryInput
from warmup.workflow_ids import inbox_task_queue, ledger_upkeep_workflow_id, webhook_delivery_workflow_id
from workers.sandbox import workflow_runner
from workflows.ledger_upkeep import LedgerUpkeepWorkflow
from workflows.mailbox import MailboxWarmupWorkflow
from workflows.user import UserWarmupWorkflow
from workflows.webhook_delivery import WebhookDeliveryWorkflow

log = logging.getLogger(__name__)


def build_worker(client: Client, settings: Settings, activities: SendActivities) -> Worker:
    return Worker(
        client,
        task_queue=settings.TASK_QUEUE,
        workflows=[MailboxWarmupWorkflow, UserWarmupWorkflow, WebhookDeliveryWorkflow, LedgerUpkeepWorkflow],
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


def build_inbox_worker(
    client: Client,
    settings: Settings,
    activities: EngagementActivities,
    webhooks: WebhookActivities | None = None,
    ledger: LedgerActivities | None = None,
) -> Worker:
    """The inbox sessions' worker (and the daily placement checks, webhook deliveries, the ledger's upkeep):
    their own task
    queue, outside the send queue's rate limit (the global send cap), and slots of their own
    (WARMUP_INBOX_CONCURRENCY): a session is mostly waiting on IMAP and a human's dwell, and takes a pooled
    connection only to record an action."""
    extra: list[Callable[..., Awaitable[object]]] = []
    if webhooks is not None:
        extra.append(webhooks.deliver_webhooks)
    if ledger is not None:
        extra.append(ledger.ledger_upkeep)
    return Worker(
        client,
        task_queue=inbox_task_queue(settings.TASK_QUEUE),
        activities=[activities.inbox_session, activities.placement_check, *extra],
        max_concurrent_activities=settings.inbox_concurrency(),
        graceful_shutdown_timeout=timedelta(seconds=settings.SHUTDOWN_GRACE_SECONDS),
    )


async def start_side_workflows(client: Client, settings: Settings) -> None:
    """Start the task queue's webhook delivery and ledger upkeep workflows unless they run (every worker
    asks; one of each runs). A refusal is logged, not fatal: sending does not depend on either (the
    ledger's partitions are made days ahead), and the next worker start asks again."""
    side: list[tuple[str, object, str, str]] = [
        (
            WebhookDeliveryWorkflow.__name__,
            WebhookDeliveryInput(poll_seconds=settings.WEBHOOK_POLL_SECONDS),
            webhook_delivery_workflow_id(settings.TASK_QUEUE),
            "webhooks wait until a worker can",
        ),
        (
            LedgerUpkeepWorkflow.__name__,
            LedgerUpkeepInput(),
            ledger_upkeep_workflow_id(settings.TASK_QUEUE),
            "the ledger's upkeep waits until a worker can",
        ),
    ]
    for workflow_type, arg, workflow_id, meanwhile in side:
        try:
            await client.start_workflow(
                workflow_type,
                arg,
                id=workflow_id,
                task_queue=settings.TASK_QUEUE,
                id_conflict_policy=WorkflowIDConflictPolicy.USE_EXISTING,
            )
        except RPCError as exc:
            log.warning("could not start the workflow %s (%s); %s", workflow_id, exc.message, meanwhile)
