"""The simulation's schedule against the real workflow's: the same mailboxes (same ids, seeds, ramp
days) run their simulated day on the time-skipping Temporal server, with a recording `send_email`,
and every dispatch is compared per (mailbox, day, slot) with the discrete-event simulation's."""

from __future__ import annotations

import datetime as dt
import time
import uuid
from dataclasses import dataclass, field

from temporalio import activity
from temporalio.api.enums.v1 import IndexedValueType
from temporalio.api.history.v1 import HistoryEvent
from temporalio.api.operatorservice.v1 import AddSearchAttributesRequest
from temporalio.testing import WorkflowEnvironment
from temporalio.worker import Worker

from bench.costs import CostSummary, before, summarize
from bench.fleet import SimMailbox
from bench.warmup_sim import simulate_day
from devstack.temporal import test_server_binary
from warmup import search_attributes
from warmup.models import SendRequest, SendResult, SendStatus
from warmup.workflow_ids import mailbox_workflow_id
from workers.sandbox import workflow_runner
from workflows.mailbox import MailboxWarmupWorkflow

# Workflow time on the time-skipping server runs on by a few milliseconds of real time while a
# workflow task or the recording activity executes; the plan itself must match exactly.
DISPATCH_TOLERANCE_SECONDS = 1.0


@dataclass
class Recorder:
    requests: list[SendRequest] = field(default_factory=list)

    @activity.defn(name="send_email")
    async def send_email(self, req: SendRequest) -> SendResult:
        self.requests.append(req)
        return SendResult(SendStatus.SENT, recipient_id=0, message_id=f"<{req.idempotency_key}@bench>")


@dataclass(frozen=True)
class CrossCheck:
    mailboxes: int
    timezones: int
    sends: int  # dispatches of the simulated day in each run
    missing: list[str]  # (mailbox, day, slot) keys one run has and the other lacks
    max_planned_diff: float  # seconds; 0.0 when the plans are identical
    max_dispatch_diff: float  # seconds
    wall_seconds: float
    costs: CostSummary  # the real workflows' histories over exactly the simulated day

    @property
    def identical(self) -> bool:
        return (
            not self.missing
            and self.max_planned_diff == 0.0
            and (self.max_dispatch_diff <= DISPATCH_TOLERANCE_SECONDS)
        )


async def _skip_to(env: WorkflowEnvironment, when: float) -> None:
    now = (await env.get_current_time()).timestamp()
    if when > now:
        await env.sleep(when - now)


async def run_crosscheck(
    subset: list[SimMailbox], day: dt.date, env: WorkflowEnvironment | None = None
) -> CrossCheck:
    """Run `subset`'s day both ways; starts its own time-skipping server unless `env` is given."""
    began = time.perf_counter()
    own = env is None
    if env is None:
        env = await WorkflowEnvironment.start_time_skipping(test_server_existing_path=test_server_binary())
    try:
        recorded, histories = await _real_day(env, subset, day)
    finally:
        if own:
            await env.shutdown()
    simulated = simulate_day(subset, day)
    return compare(
        [(s.key, s.planned_at, s.dispatched_at) for s in simulated.sends],
        [((r.mailbox_id, r.day, r.slot), r.planned_at, r.dispatched_at) for r in recorded],
        day,
        mailboxes=len(subset),
        timezones=len({m.schedule.timezone for m in subset}),
        wall_seconds=time.perf_counter() - began,
        costs=summarize("time-skipping server, one whole day", histories, mailbox_days=len(subset)),
    )


Dispatch = tuple[tuple[int, str, int], float, float]  # ((mailbox, day, slot), planned_at, dispatched_at)


def compare(
    simulated: list[Dispatch],
    real: list[Dispatch],
    day: dt.date,
    *,
    mailboxes: int,
    timezones: int,
    wall_seconds: float,
    costs: CostSummary,
) -> CrossCheck:
    """Match the two runs' dispatches of `day` by (mailbox, day, slot)."""
    des = {k: (p, d) for k, p, d in simulated if k[1] == day.isoformat()}
    got = {k: (p, d) for k, p, d in real if k[1] == day.isoformat()}
    missing = sorted(f"{k[0]}:{k[1]}:{k[2]}" for k in des.keys() ^ got.keys())
    common = des.keys() & got.keys()
    return CrossCheck(
        mailboxes=mailboxes,
        timezones=timezones,
        sends=len(common),
        missing=missing,
        max_planned_diff=max((abs(des[k][0] - got[k][0]) for k in common), default=0.0),
        max_dispatch_diff=max((abs(des[k][1] - got[k][1]) for k in common), default=0.0),
        wall_seconds=wall_seconds,
        costs=costs,
    )


async def _register_search_attributes(env: WorkflowEnvironment) -> None:
    # So the workflows keep them current exactly as in production (their upserts are in the costs).
    keyword = IndexedValueType.INDEXED_VALUE_TYPE_KEYWORD
    await env.client.operator_service.add_search_attributes(
        AddSearchAttributesRequest(
            namespace=env.client.namespace,
            search_attributes={name: keyword for name in search_attributes.NAMES},
        )
    )


async def _real_day(
    env: WorkflowEnvironment, subset: list[SimMailbox], day: dt.date
) -> tuple[list[SendRequest], list[list[HistoryEvent]]]:
    """The recorded sends, and each workflow's history events up to the end of its simulated day."""
    await _register_search_attributes(env)
    rec = Recorder()
    queue = f"crosscheck-{uuid.uuid4().hex[:8]}"
    suffix = uuid.uuid4().hex[:6]
    handles = []
    horizons = []
    async with Worker(
        env.client,
        task_queue=queue,
        workflows=[MailboxWarmupWorkflow],
        activities=[rec.send_email],
        workflow_runner=workflow_runner(),
        max_cached_workflows=len(subset) + 10,
    ):
        # Each mailbox is enrolled at its local midnight, as in the simulation.
        for m in sorted(subset, key=lambda m: m.enrolled_at(day)):
            await _skip_to(env, m.enrolled_at(day))
            horizons.append(m.horizon(day))
            handles.append(
                await env.client.start_workflow(
                    MailboxWarmupWorkflow.run,
                    m.workflow_input(),
                    id=f"{mailbox_workflow_id(m.mailbox_id)}-{suffix}",
                    task_queue=queue,
                )
            )
        await _skip_to(env, max(horizons))
        histories = []
        for h, horizon in zip(handles, horizons, strict=True):
            histories.append(before((await h.fetch_history()).events, horizon))
            await h.terminate()
    return rec.requests, histories
