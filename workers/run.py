"""`python -m workers.run`: one worker process. Run as many side by side as the load needs."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import sys

from temporalio.client import Client

from activities.send import SendActivities
from warmup import metrics
from warmup.config import ConfigError, load_settings
from warmup.db import DatabaseError, connect_pool
from warmup.secrets import SecretBox, SecretKeyError
from workers.queue_limits import apply_queue_rate_limit
from workers.worker import build_worker

log = logging.getLogger("warmup.worker")


async def serve() -> None:
    settings = load_settings()
    secrets = SecretBox(settings.secret_keys())  # fail at start, not on the first send
    # Metrics: the runtime serves Temporal's and our series on WARMUP_METRICS_PORT (0 = off), and the
    # interceptor, given to the client, reaches every worker built on it.
    runtime = metrics.runtime_for(settings)
    instruments = (
        None if runtime is None else metrics.Instruments(runtime.metric_meter, settings.WORKER_CONCURRENCY)
    )
    client = await Client.connect(
        settings.TEMPORAL_ADDRESS,
        namespace=settings.TEMPORAL_NAMESPACE,
        runtime=runtime,
        interceptors=[] if instruments is None else [metrics.MetricsInterceptor(instruments)],
    )
    pool = await connect_pool(
        settings.DATABASE_URL.get_secret_value(), max_size=settings.WORKER_CONCURRENCY + 2
    )
    try:
        await apply_queue_rate_limit(client, settings)
        worker = build_worker(client, settings, SendActivities(pool, secrets, settings))
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        collector = None
        if instruments is not None:
            collector = asyncio.create_task(metrics.FleetCollector(settings, client, instruments).run())
            log.info("metrics on %s:%d/metrics", settings.METRICS_HOST, settings.METRICS_PORT)
        async with worker:
            log.info(
                "worker polling task queue %r on %s (concurrency %d)",
                settings.TASK_QUEUE,
                settings.TEMPORAL_ADDRESS,
                settings.WORKER_CONCURRENCY,
            )
            await stop.wait()
            log.info("shutting down: finishing in-flight activities")
            if collector is not None:
                collector.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await collector
    finally:
        await pool.close()


def main() -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        asyncio.run(serve())
    except (ConfigError, SecretKeyError, metrics.MetricsError) as exc:
        print(f"worker: {exc}", file=sys.stderr)
        return 2
    except DatabaseError as exc:
        print(f"worker: {exc}", file=sys.stderr)
        return 1
    except RuntimeError as exc:  # Temporal connection failures surface as RuntimeError
        print(f"worker: cannot reach Temporal: {exc}; check TEMPORAL_ADDRESS", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    code = main()
    sys.stdout.flush()
    sys.stderr.flush()
    # temporalio may abort during interpreter teardown after a clean shutdown (sdk-python #300):
    # leave with the real status instead.
    os._exit(code)
