"""The start-up check that a worker's workflow cache is not far below the fleet it serves.

An evicted mailbox workflow replays its run's whole history at its next timer (about 0.3 ms of worker
CPU per event: 73 ms for the mean miss on a run of one day, against 3.7 ms for a cached send; 1.3 s for
a run started before that bound near its continue-as-new), so a cache much smaller than a worker's
share of the running mailbox workflows turns most sends into replays. Two cheap calls: a visibility
count of the running mailbox workflows on the task queue, and the task queue's recent pollers (the
other workers sharing that fleet).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from temporalio.api.enums.v1 import TaskQueueType
from temporalio.api.taskqueue.v1 import TaskQueue
from temporalio.api.workflowservice.v1 import DescribeTaskQueueRequest
from temporalio.client import Client

from warmup.config import Settings
from warmup.fleet import mailbox_workflows_query

# Worker memory per resident mailbox workflow with the shared sandbox (the default), measured by the
# bench's memory phase (docs/capacity.md), and the process without any.
KB_PER_CACHED_WORKFLOW = 66
IDLE_WORKER_MB = 80
# "Far below": the worker warns when its cache holds under half of its share of the fleet.
SHORTFALL_FACTOR = 2
# A poller that polled within this long is a worker still serving the queue (a poll lasts up to 60 s).
_RECENT_POLL = timedelta(minutes=2)


@dataclass(frozen=True)
class CacheFit:
    running: int  # running mailbox workflows on the task queue
    workers: int  # workers sharing them, this one included
    cache: int  # WARMUP_MAX_CACHED_WORKFLOWS

    @property
    def share(self) -> int:
        return math.ceil(self.running / self.workers)

    @property
    def far_below(self) -> bool:
        return self.cache * SHORTFALL_FACTOR < self.share

    def warning(self) -> str:
        need_mb = IDLE_WORKER_MB + self.share * KB_PER_CACHED_WORKFLOW / 1024
        return (
            f"WARMUP_MAX_CACHED_WORKFLOWS={self.cache} is far below the {self.share:,} running mailbox "
            f"workflows this worker serves ({self.running:,} on the task queue across {self.workers} "
            f"worker(s)): each evicted workflow replays its run's history at its next send. Fix: set "
            f"WARMUP_MAX_CACHED_WORKFLOWS={self.share} (about {need_mb:,.0f} MB of worker memory, "
            f"{KB_PER_CACHED_WORKFLOW} KB per cached workflow) or run more workers (docs/capacity.md)"
        )


async def check_cache(client: Client, settings: Settings) -> CacheFit:
    query = f"{mailbox_workflows_query(settings.TASK_QUEUE)} AND ExecutionStatus = 'Running'"
    running = (await client.count_workflows(query)).count
    described = await client.workflow_service.describe_task_queue(
        DescribeTaskQueueRequest(
            namespace=client.namespace,
            task_queue=TaskQueue(name=settings.TASK_QUEUE),
            task_queue_type=TaskQueueType.TASK_QUEUE_TYPE_WORKFLOW,
        )
    )
    since = datetime.now(UTC) - _RECENT_POLL
    others = {
        p.identity
        for p in described.pollers
        if p.identity != client.identity and p.last_access_time.ToDatetime(UTC) >= since
    }
    return CacheFit(running, len(others) + 1, settings.MAX_CACHED_WORKFLOWS)
