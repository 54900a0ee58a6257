"""The ledger upkeep workflow: one per task queue, for ever, calling `ledger_upkeep` every
`interval_seconds` (activities/ledger_upkeep.py): the send ledger's partitions made ahead, old message
bodies cleared and old days dropped (warmup/ledger_retention.py)."""

from __future__ import annotations

import datetime as dt

from temporalio import workflow
from temporalio.common import RetryPolicy

with workflow.unsafe.imports_passed_through():
    from warmup.models import LedgerUpkeep, LedgerUpkeepInput
    from warmup.workflow_ids import inbox_task_queue


@workflow.defn
class LedgerUpkeepWorkflow:
    @workflow.run
    async def run(self, inp: LedgerUpkeepInput) -> None:
        for _ in range(inp.rounds_per_run):
            await workflow.execute_activity(
                "ledger_upkeep",  # activities/ledger_upkeep.py (by name: keeps this module's imports light)
                result_type=LedgerUpkeep,
                # The side queue: the send queue's dispatch rate is the global send cap.
                task_queue=inbox_task_queue(workflow.info().task_queue),
                # A first round on a large old ledger clears many days; each batch heartbeats.
                start_to_close_timeout=dt.timedelta(hours=2),
                heartbeat_timeout=dt.timedelta(minutes=5),
                retry_policy=RetryPolicy(maximum_interval=dt.timedelta(minutes=10)),
            )
            await workflow.sleep(dt.timedelta(seconds=inp.interval_seconds))
        workflow.continue_as_new(inp)
