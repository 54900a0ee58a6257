"""The bare Temporal loops the throughput phase compares with: a timer, then a no-op activity, forever.

`BareLoopWorkflow` is the minimal loop (the activity has a start-to-close timeout and nothing else).
`BareSendLoopWorkflow` pays what the mailbox workflow's sends pay Temporal without doing a send: the
same activity options (`send_activity_options`: timeouts, heartbeat, retry policy, a fairness key per
user) and a SendRequest in, a SendResult out. The gap between the two is Temporal's share of a send;
the gap between it and end to end is the send path's own cost and the mailbox workflow's logic.

Kept as light as workflows/mailbox.py (the sandbox re-imports a workflow's module per instance),
so the comparison is the loop's machinery, not import costs.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta

from temporalio import workflow

with workflow.unsafe.imports_passed_through():
    from warmup.models import SendRequest, SendResult, SendRetrySettings
    from workflows.send_contract import send_activity_options

NOOP_SEND = "noop_send"


@workflow.defn(name="BareLoop")
class BareLoopWorkflow:
    @workflow.run
    async def run(self, delay_seconds: float) -> None:
        while True:
            if workflow.info().is_continue_as_new_suggested():
                workflow.continue_as_new(delay_seconds)
            await workflow.sleep(timedelta(seconds=delay_seconds))
            await workflow.execute_activity("noop", start_to_close_timeout=timedelta(seconds=30))


@dataclass(frozen=True)
class BareSendInput:
    delay_seconds: float
    user_id: str  # the fairness key, as a mailbox's user
    retry: SendRetrySettings
    slot: int = 0


@workflow.defn(name="BareSendLoop")
class BareSendLoopWorkflow:
    @workflow.run
    async def run(self, inp: BareSendInput) -> None:
        slot = inp.slot
        while True:
            if workflow.info().is_continue_as_new_suggested():
                workflow.continue_as_new(BareSendInput(inp.delay_seconds, inp.user_id, inp.retry, slot))
            await workflow.sleep(timedelta(seconds=inp.delay_seconds))
            now = workflow.now().timestamp()
            req = SendRequest(0, "2030-01-01", slot, now, now, not_after=now + 3600, quota=40)
            await workflow.execute_activity(
                NOOP_SEND,
                req,
                result_type=SendResult,
                **send_activity_options(
                    inp.retry, window_left=3600, cap_wait=0, user_id=inp.user_id, weight=1.0
                ),
            )
            slot += 1
