"""A worker warns at start when its workflow cache is far below its share of the running mailbox workflows.

Against a real dev server: the mailbox workflows are started with a start delay, so they count as
running in visibility but give no worker a task during the test.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator, Callable
from datetime import timedelta
from pathlib import Path

import pytest_asyncio
from temporalio.client import Client
from temporalio.testing import WorkflowEnvironment
from temporalio.worker import Worker

from tests.helpers.worker_procs import start_worker, stop_worker, worker_env
from warmup.config import Settings
from warmup.models import MailboxWorkflowInput
from workers.cache_check import check_cache
from workers.sandbox import workflow_runner
from workflows.mailbox import MailboxWarmupWorkflow

FLEET = 6


@pytest_asyncio.fixture
async def fleet_queue(temporal_env: WorkflowEnvironment) -> AsyncIterator[str]:
    """A task queue with FLEET running (delayed) mailbox workflows, terminated afterwards."""
    client = temporal_env.client
    queue = f"cache-{uuid.uuid4().hex[:8]}"
    handles = [
        await client.start_workflow(
            MailboxWarmupWorkflow.run,
            MailboxWorkflowInput(i, "u1", search_attributes=False),
            id=f"{queue}-{i}",
            task_queue=queue,
            start_delay=timedelta(hours=1),
        )
        for i in range(FLEET)
    ]
    await _until_counted(client, queue, FLEET)
    yield queue
    for h in handles:
        await h.terminate()


async def _until_counted(client: Client, queue: str, n: int) -> None:
    query = f"TaskQueue = '{queue}' AND ExecutionStatus = 'Running'"
    for _ in range(100):  # visibility is eventually consistent
        if (await client.count_workflows(query)).count == n:
            return
        await asyncio.sleep(0.1)
    raise AssertionError(f"visibility never counted {n} running workflows on {queue}")


async def test_cache_fit_counts_the_fleet_and_the_workers_sharing_it(
    temporal_env: WorkflowEnvironment, fleet_queue: str, make_settings: Callable[..., Settings]
) -> None:
    client = temporal_env.client
    alone = await check_cache(client, make_settings(TASK_QUEUE=fleet_queue, MAX_CACHED_WORKFLOWS=2))
    assert (alone.running, alone.workers, alone.share) == (FLEET, 1, FLEET)
    assert alone.far_below, "2 cached places for 6 running workflows is under half"
    ample = await check_cache(client, make_settings(TASK_QUEUE=fleet_queue, MAX_CACHED_WORKFLOWS=3))
    assert not ample.far_below, "half the share is not far below"
    # Another worker polling the queue takes half of the fleet: 2 places are then enough.
    other = Worker(
        client,
        task_queue=fleet_queue,
        workflows=[MailboxWarmupWorkflow],
        workflow_runner=workflow_runner(),
        identity="other-worker",
    )
    async with other:
        shared = alone
        for _ in range(100):  # its first poll reaches the server's poller list shortly
            shared = await check_cache(client, make_settings(TASK_QUEUE=fleet_queue, MAX_CACHED_WORKFLOWS=2))
            if shared.workers == 2:
                break
            await asyncio.sleep(0.1)
        assert (shared.workers, shared.share, shared.far_below) == (2, 3, False)


async def test_a_worker_with_a_small_cache_warns_naming_the_setting_and_the_fix(
    temporal_env: WorkflowEnvironment,
    fleet_queue: str,
    make_settings: Callable[..., Settings],
    tmp_path: Path,
) -> None:
    settings = make_settings(TASK_QUEUE=fleet_queue, MAX_CACHED_WORKFLOWS=2)
    log = tmp_path / "worker.log"
    proc = start_worker(worker_env(settings, temporal_env.client.service_client.config.target_host), log)
    try:
        began = time.monotonic()
        while "worker polling task queue" not in log.read_text() and time.monotonic() - began < 60:
            assert proc.poll() is None, log.read_text()
            await asyncio.sleep(0.2)
        text = log.read_text()
        assert "worker polling task queue" in text, text
    finally:
        stop_worker(proc)
    warning = next((line for line in text.splitlines() if "WARNING" in line and "CACHED" in line), "")
    assert "WARMUP_MAX_CACHED_WORKFLOWS=2 is far below the 6 running mailbox workflows" in warning, text
    assert "Fix: set WARMUP_MAX_CACHED_WORKFLOWS=6" in warning, warning
