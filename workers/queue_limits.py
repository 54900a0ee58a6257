"""Sets the Temporal task queue's activity dispatch rate from the global caps, at worker start.

Every worker computes the same rate from the same settings, so whichever polls last agrees with
the rest. The exact windows are kept by the database gate in the send activity; this server-side
rate keeps the backlog waiting in Temporal instead of in retries.
"""

from __future__ import annotations

import logging

from temporalio.api.enums.v1 import TaskQueueType
from temporalio.api.taskqueue.v1 import RateLimit
from temporalio.api.workflowservice.v1 import UpdateTaskQueueConfigRequest
from temporalio.client import Client
from temporalio.service import RPCError

from warmup import caps
from warmup.config import Settings

log = logging.getLogger("warmup.worker")


def capacity_line(settings: Settings) -> str:
    per_day = caps.daily_capacity(settings)
    binding = min(per_day, key=lambda k: per_day[k])
    return f"the global caps allow at most {per_day[binding]:,.0f} emails a day ({binding} binds)"


async def apply_queue_rate_limit(client: Client, settings: Settings) -> float | None:
    """Returns the rate set, or None when the server does not support task-queue config."""
    rate = caps.queue_rate_per_second(settings)
    request = UpdateTaskQueueConfigRequest(
        namespace=settings.TEMPORAL_NAMESPACE,
        identity="warmup-worker",
        task_queue=settings.TASK_QUEUE,
        task_queue_type=TaskQueueType.TASK_QUEUE_TYPE_ACTIVITY,
        update_queue_rate_limit=UpdateTaskQueueConfigRequest.RateLimitUpdate(
            rate_limit=RateLimit(requests_per_second=rate),
            reason="warmup global caps (WARMUP_GLOBAL_SENDS_PER_MINUTE / _PER_HOUR)",
        ),
    )
    try:
        await client.workflow_service.update_task_queue_config(request)
    except RPCError as err:
        log.warning(
            "could not set the task queue's rate limit (%s); the database gate alone keeps the caps",
            err.message,
        )
        return None
    log.info(
        "task queue %r dispatches at most %.3f sends/s; %s",
        settings.TASK_QUEUE,
        rate,
        capacity_line(settings),
    )
    return rate
