"""The bare Temporal loop the throughput phase compares with: a timer, then a no-op activity, forever.

Kept as light as workflows/mailbox.py (the sandbox re-imports a workflow's module per instance),
so the comparison is the loop's machinery, not import costs.
"""

from __future__ import annotations

from datetime import timedelta

from temporalio import workflow


@workflow.defn(name="BareLoop")
class BareLoopWorkflow:
    @workflow.run
    async def run(self, delay_seconds: float) -> None:
        while True:
            if workflow.info().is_continue_as_new_suggested():
                workflow.continue_as_new(delay_seconds)
            await workflow.sleep(timedelta(seconds=delay_seconds))
            await workflow.execute_activity("noop", start_to_close_timeout=timedelta(seconds=30))
