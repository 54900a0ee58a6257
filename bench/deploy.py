"""A deploy, measured: every worker restarted at once, and what the fleet needs to come back.

The aged phase prices a deploy from the Replayer (the mean miss times the fleet). This phase measures
one on the dev server. `mailboxes` mailbox workflows send their day's `sends` on compressed timing (as in
the throughput phase: 0.3-0.6 s apart), so each run holds the history of a mailbox `sends` emails into
its day. That is the history a cache miss finds on average under the bound (issue #13): one local day
per run, 40 a day at the ramp's ceiling, a deploy at a random moment of the day.

Then the worker is stopped as Kubernetes stops a pod in a rollout (SIGTERM: in-flight work finishes and
the SDK tells the server its sticky queue is gone) and a new one is started. Every workflow is asked for
its status at once. A query is a workflow task that must replay the run first, as the workflow's next
timer would. Measured:
- the new worker's start, until it polls;
- the wall time until every workflow has answered;
- worker and server CPU per workflow;
- the same queries again, now cache hits, so the replay is what the miss adds;
- a crash: that worker SIGKILLed and replaced. The server still routes each workflow's task to the dead
  worker's sticky queue until the sticky schedule-to-start timeout (the SDK's default: 10 s) sends it on.
From those, a deploy of `fleet` workflows on `workers` worker processes.
"""

from __future__ import annotations

import asyncio
import statistics
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from bench.costs import fetch_events
from bench.enroll import insert_mailboxes, start_workflows
from bench.procstat import CpuMeter
from bench.scale import zone_for_local_hour
from bench.stack import Stack
from bench.throughput import e2e_settings, terminate_all
from warmup.config import load_settings
from warmup.models import MailboxWorkflowInput
from warmup.workflow_ids import mailbox_workflow_id
from workflows.mailbox import MailboxWarmupWorkflow

QUERY_CONCURRENCY = 100  # queries in flight at once: enough to keep the new worker's every slot busy


@dataclass(frozen=True)
class QueryRound:
    seconds: float  # wall time from the first query to the last answer
    cores: dict[str, float]  # CPU cores per process role over the round

    def cpu_ms_per_workflow(self, role: str, workflows: int) -> float:
        return self.cores.get(role, 0.0) * self.seconds * 1000 / workflows if workflows else 0.0


@dataclass(frozen=True)
class Deploy:
    mailboxes: int
    sends: int  # each mailbox's sends before the deploy
    history_events: float  # mean history of a run at the deploy
    worker_start_seconds: float  # the new worker's process start until it polls
    misses: QueryRound  # every workflow evicted: each answer replays its run
    hits: QueryRound  # the same queries again, every workflow cached
    crash_start_seconds: float
    crash: QueryRound  # after a SIGKILL: misses, behind the sticky queue's timeout
    fleet: int
    workers: int
    wall_seconds: float

    def replay_ms(self, role: str) -> float:
        """CPU a workflow's return costs `role` beyond answering from the cache."""
        return max(
            0.0,
            self.misses.cpu_ms_per_workflow(role, self.mailboxes)
            - self.hits.cpu_ms_per_workflow(role, self.mailboxes),
        )

    def fleet_recovery(self) -> tuple[float, float]:
        """(worker CPU seconds, minutes on `workers` processes) to bring `fleet` workflows back."""
        cpu = self.fleet * self.misses.cpu_ms_per_workflow("worker", self.mailboxes) / 1000
        return cpu, cpu / self.workers / 60


async def run_deploy(
    stack: Stack,
    *,
    mailboxes: int,
    sends: int,
    fleet: int,
    workers: int = 1,
    say: Callable[[str], None] = print,
) -> Deploy:
    began = time.perf_counter()
    queue = f"dep-{uuid.uuid4().hex[:6]}"
    settings = e2e_settings(mailboxes, concurrency=50, quota=sends)
    env = stack.worker_env(queue, settings)
    cfg = load_settings(env)
    # Mid-morning in the mailboxes' zone: the day cannot end (and the run continue as new) during the phase.
    sched = cfg.default_schedule(zone_for_local_hour(time.time(), 10))
    enrolled = await insert_mailboxes(
        stack.pool,
        f"dep{queue[4:]}",
        [(f"dep{queue[4:]}-u{i // 100}", sched) for i in range(mailboxes)],
        stack.sink_port,
        stack.box.encrypt("bench-password"),
    )
    ids = [mailbox_workflow_id(m.mailbox_id) for m in enrolled]
    worker = stack.spawn([sys.executable, "-m", "workers.run"], env, "deploy-worker-old")
    retry = cfg.send_retry()
    await start_workflows(
        stack.client,
        queue,
        enrolled,
        lambda m: MailboxWorkflowInput(m.mailbox_id, m.user_id, m.schedule, retry),
    )
    await _sent_all(stack, [m.mailbox_id for m in enrolled], sends, say)
    await asyncio.sleep(3.0)  # the workflow task after each last send: every run at rest, timer set
    histories = await fetch_events(stack.client, ids)
    events = statistics.fmean(len(h) for h in histories)
    say(f"  deploy: {mailboxes} workflows at {events:.0f} events each; restarting the worker")

    stack.stop_child(worker)  # SIGTERM, as a rollout stops a pod
    new, worker_start = await _start_worker(stack, env, "deploy-worker-new")
    misses = await _query_all(stack, ids, new.pid)
    hits = await _query_all(stack, ids, new.pid)
    # Queries leave a workflow's sticky queue as it was: a no-op signal (`resume` of a running
    # mailbox) gives each a workflow task on this worker, so the crash below finds them sticky to it.
    await _signal_all(stack, ids)
    await asyncio.sleep(3.0)
    new.kill()  # a crash: nothing tells the server that this worker's sticky queue is gone
    stack.stop_child(new)  # reaps it
    last, crash_start = await _start_worker(stack, env, "deploy-worker-after-crash")
    crash = await _query_all(stack, ids, last.pid)
    stack.stop_child(last)
    await terminate_all(stack, ids)
    result = Deploy(
        mailboxes,
        sends,
        events,
        worker_start,
        misses,
        hits,
        crash_start,
        crash,
        fleet,
        workers,
        time.perf_counter() - began,
    )
    cpu, minutes = result.fleet_recovery()
    say(
        f"  deploy: back in {misses.seconds:.1f} s after a {worker_start:.1f} s start "
        f"({result.misses.cpu_ms_per_workflow('worker', mailboxes):.0f} ms worker CPU each); "
        f"{fleet:,} workflows: {cpu:,.0f} CPU-s, {minutes:.1f} min on {workers} worker(s); "
        f"after a crash: {crash.seconds:.1f} s"
    )
    return result


async def _start_worker(
    stack: Stack, env: dict[str, str], name: str
) -> tuple[subprocess.Popen[bytes], float]:
    """A new worker process, once it polls; and how long that took."""
    began = time.perf_counter()
    proc = stack.spawn([sys.executable, "-m", "workers.run"], env, name)
    await stack.polling(name)
    return proc, time.perf_counter() - began


async def _sent_all(stack: Stack, mailbox_ids: list[int], sends: int, say: Callable[[str], None]) -> None:
    want = len(mailbox_ids) * sends
    deadline = time.monotonic() + max(300.0, want / 5)  # at worst 5 sends/s on a loaded machine
    while True:
        n = int(
            await stack.pool.fetchval(
                "SELECT count(*) FROM send_ledger WHERE status = 'SENT' AND sender_id = ANY($1::bigint[])",
                mailbox_ids,
            )
        )
        if n >= want:
            return
        if time.monotonic() > deadline:
            raise RuntimeError(f"deploy phase: only {n} of {want} sends went out; see the worker's log")
        await asyncio.sleep(1.0)


async def _query_all(stack: Stack, ids: Sequence[str], worker_pid: int) -> QueryRound:
    sem = asyncio.Semaphore(QUERY_CONCURRENCY)

    async def one(wid: str) -> None:
        async with sem:
            await stack.client.get_workflow_handle(wid).query(MailboxWarmupWorkflow.status)

    meter = CpuMeter({**stack.pids(), "worker": [worker_pid]})
    a, t1 = meter.sample(), time.perf_counter()
    await asyncio.gather(*(one(w) for w in ids))
    b, t2 = meter.sample(), time.perf_counter()
    return QueryRound(t2 - t1, CpuMeter.cores(a, b))


async def _signal_all(stack: Stack, ids: Sequence[str]) -> None:
    sem = asyncio.Semaphore(QUERY_CONCURRENCY)

    async def one(wid: str) -> None:
        async with sem:
            await stack.client.get_workflow_handle(wid).signal(MailboxWarmupWorkflow.resume)

    await asyncio.gather(*(one(w) for w in ids))


def markdown(d: Deploy) -> list[str]:
    cpu, minutes = d.fleet_recovery()
    m, h, c = d.misses, d.hits, d.crash
    per = d.mailboxes
    return [
        f"### A deploy, measured: {d.mailboxes} workflows {d.sends} sends into their day",
        "",
        f"Every workflow's run held {d.history_events:.0f} history events, the mean a cache miss finds "
        "under the bound (the aged phase). The worker was stopped as a rollout stops a pod (SIGTERM) "
        "and a new one started; then every workflow was queried at once (each answer replays the run "
        "first, as its next timer would), and queried again from the cache. Then that worker was "
        "SIGKILLed and replaced, and every workflow queried again: each waits out the dead worker's "
        f"sticky queue (10 s by default). {d.wall_seconds:.0f} s.",
        "",
        "| | after the deploy (misses) | again (hits) | the replay | after a crash (SIGKILL) |",
        "|---|---|---|---|---|",
        f"| new worker: start until it polls | {d.worker_start_seconds:.1f} s | | "
        f"| {d.crash_start_seconds:.1f} s |",
        f"| every workflow answered in | {m.seconds:.1f} s ({per / m.seconds:.0f}/s) "
        f"| {h.seconds:.1f} s ({per / h.seconds:.0f}/s) | | {c.seconds:.1f} s |",
        f"| worker CPU per workflow | {m.cpu_ms_per_workflow('worker', per):.1f} ms "
        f"| {h.cpu_ms_per_workflow('worker', per):.1f} ms | {d.replay_ms('worker'):.1f} ms "
        f"| {c.cpu_ms_per_workflow('worker', per):.1f} ms |",
        f"| server CPU per workflow | {m.cpu_ms_per_workflow('temporal', per):.1f} ms "
        f"| {h.cpu_ms_per_workflow('temporal', per):.1f} ms | {d.replay_ms('temporal'):.1f} ms "
        f"| {c.cpu_ms_per_workflow('temporal', per):.1f} ms |",
        "",
        f"A deploy of {d.fleet:,} workflows at that cost: {cpu:,.0f} worker CPU-seconds, "
        f"{minutes:.1f} minutes on {d.workers} worker process(es) if every workflow woke at once "
        "(in a real fleet the wakes spread over each mailbox's 2-10 minutes of spacing, so the first "
        "minutes after a deploy run at this rate and the rest as before).",
        "",
    ]
