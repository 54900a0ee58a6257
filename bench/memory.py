"""Worker memory per resident mailbox workflow: the RSS of a real `python -m workers.run` with N
mailbox workflows in its cache (each asleep until its next window opens) against the same worker
with none."""

from __future__ import annotations

import asyncio
import sys
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass

from bench.enroll import insert_mailboxes, start_workflows
from bench.procstat import CpuMeter, rss_bytes
from bench.scale import wait_for_first_tasks, wait_for_ready, zone_for_local_hour
from bench.stack import Stack
from bench.throughput import LIFTED_CAPS
from warmup.config import load_settings
from warmup.models import MailboxWorkflowInput, RampSettings, ScheduleSettings


@dataclass(frozen=True)
class Memory:
    sandbox: str  # WARMUP_WORKFLOW_SANDBOX: "shared" (the default) or "isolated" (the comparison)
    workflows: int
    rss_idle_mb: float
    rss_mb: float
    # Enrolling them, each started and at once given its first workflow task:
    enroll_per_second: float  # from the first start until no first task was waiting
    enroll_cpu_ms: dict[str, float]  # CPU per enrolled mailbox, by process role

    @property
    def kb_per_workflow(self) -> float:
        return (self.rss_mb - self.rss_idle_mb) * 1024 / self.workflows if self.workflows else 0.0


async def run_memory(
    stack: Stack, *, workflows: int, sandbox: str = "shared", say: Callable[[str], None] = print
) -> Memory:
    queue = f"mem-{uuid.uuid4().hex[:6]}"
    # It is 23:00 in this zone: every workflow plans tomorrow's window and sleeps, resident in the cache.
    sched = ScheduleSettings(timezone=zone_for_local_hour(time.time(), 23), ramp=RampSettings(10, 0, 10))
    enrolled = await insert_mailboxes(
        stack.pool,
        f"mem{queue[4:]}",
        [(f"mem{queue[4:]}-u{i // 100}", sched) for i in range(workflows)],
        stack.sink_port,
        stack.box.encrypt("bench-password"),
    )
    env = stack.worker_env(
        queue,
        {
            **LIFTED_CAPS,
            "WARMUP_MAX_CACHED_WORKFLOWS": str(workflows + 1000),
            "WARMUP_WORKFLOW_SANDBOX": sandbox,
        },
    )
    retry = load_settings(env).send_retry()
    name = f"memory-worker-{sandbox}"
    proc = stack.spawn([sys.executable, "-m", "workers.run"], env, name)
    await wait_for_ready(stack.logs / f"{name}.log")
    await asyncio.sleep(1.0)
    idle = rss_bytes(proc.pid) / 2**20
    meter = CpuMeter({**stack.pids(), "worker": [proc.pid]})
    a, began = meter.sample(), time.perf_counter()
    await start_workflows(
        stack.client,
        queue,
        enrolled,
        lambda m: MailboxWorkflowInput(m.mailbox_id, m.user_id, m.schedule, retry),
    )
    await wait_for_first_tasks(stack, queue, within=600)
    b, took = meter.sample(), time.perf_counter() - began
    await asyncio.sleep(2.0)  # the last tasks' completions
    loaded = rss_bytes(proc.pid) / 2**20
    stack.stop_child(proc, timeout=10)
    cpu = {role: round((b.seconds[role] - a.seconds[role]) * 1000 / workflows, 2) for role in b.seconds}
    result = Memory(
        sandbox,
        workflows,
        round(idle, 1),
        round(loaded, 1),
        round(workflows / took, 1),
        {role: ms for role, ms in cpu.items() if ms >= 0.05},
    )
    say(f"  memory ({result.sandbox}): {result.kb_per_workflow:.0f} KB per resident workflow ({workflows:,})")
    return result
