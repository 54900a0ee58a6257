"""`python -m workers.run`: one worker process. Run as many side by side as the load needs."""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import sys

from temporalio.client import Client

from activities.send import SendActivities
from warmup.config import ConfigError, load_settings
from warmup.db import DatabaseError, connect_pool
from warmup.secrets import SecretBox, SecretKeyError
from workers.queue_limits import apply_queue_rate_limit
from workers.worker import build_worker

log = logging.getLogger("warmup.worker")


async def serve() -> None:
    settings = load_settings()
    secrets = SecretBox(settings.secret_keys())  # fail at start, not on the first send
    client = await Client.connect(settings.TEMPORAL_ADDRESS, namespace=settings.TEMPORAL_NAMESPACE)
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
        async with worker:
            log.info(
                "worker polling task queue %r on %s (concurrency %d)",
                settings.TASK_QUEUE,
                settings.TEMPORAL_ADDRESS,
                settings.WORKER_CONCURRENCY,
            )
            await stop.wait()
            log.info("shutting down: finishing in-flight activities")
    finally:
        await pool.close()


def main() -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        asyncio.run(serve())
    except (ConfigError, SecretKeyError) as exc:
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
