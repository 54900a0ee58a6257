"""`python -m bench.bare`: a worker process for the bare loop, configured like workers/worker.py
(same sandbox, activity slots, cache and eager setting), that appends "epoch-seconds count" of
completed no-op activities to `--count-file` twice a second."""

from __future__ import annotations

import argparse
import asyncio
import signal
import time

from temporalio import activity
from temporalio.worker import Worker

from bench.bare_workflow import NOOP_SEND, BareLoopWorkflow, BareSendLoopWorkflow
from warmup import temporal_connection
from warmup.models import SendRequest, SendResult, SendStatus
from warmup.process_exit import exit_skipping_teardown
from warmup.temporal_connection import TemporalConnection
from workers.sandbox import workflow_runner

_completed = 0


@activity.defn(name="noop")
async def noop() -> None:
    global _completed
    _completed += 1


@activity.defn(name=NOOP_SEND)
async def noop_send(req: SendRequest) -> SendResult:
    global _completed
    _completed += 1
    return SendResult(SendStatus.SENT, 1, f"<{req.idempotency_key}@bare.test>")


async def serve(args: argparse.Namespace) -> None:
    # The bench's own dev server: plaintext, whatever TEMPORAL_* the shell holds.
    client = await temporal_connection.connect(TemporalConnection.plain(args.address))
    worker = Worker(
        client,
        task_queue=args.task_queue,
        workflows=[BareLoopWorkflow, BareSendLoopWorkflow],
        activities=[noop, noop_send],
        workflow_runner=workflow_runner(),
        max_concurrent_activities=args.concurrency,
        max_cached_workflows=args.cache,
        disable_eager_activity_execution=True,
    )
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    async with worker:
        while not stop.is_set():
            _append(args.count_file, f"{time.time():.3f} {_completed}\n")
            try:
                await asyncio.wait_for(stop.wait(), 0.5)
            except TimeoutError:
                pass


def _append(path: str, line: str) -> None:
    with open(path, "a", encoding="utf-8") as out:
        out.write(line)


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.bare")
    parser.add_argument("--address", required=True)
    parser.add_argument("--task-queue", required=True)
    parser.add_argument("--count-file", required=True)
    parser.add_argument("--concurrency", type=int, default=10)
    parser.add_argument("--cache", type=int, default=2000)
    asyncio.run(serve(parser.parse_args()))
    exit_skipping_teardown(0)


if __name__ == "__main__":
    main()
