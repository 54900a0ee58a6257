"""`python -m workers.run`: one worker process. Run as many side by side as the load needs.

SIGTERM or SIGINT: /readyz turns 503, the worker stops polling, the sends in flight finish (for up to
WARMUP_SHUTDOWN_GRACE_SECONDS; then they are cancelled), and the process exits 0.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import signal
import sys
import time

from pydantic import SecretStr
from temporalio.client import Client
from temporalio.service import RPCError
from temporalio.worker import Worker

from activities.engagement import EngagementActivities
from activities.ledger_upkeep import LedgerActivities
from activities.send import SendActivities
from activities.webhooks import WebhookActivities
from warmup import metrics, temporal_connection
from warmup.config import ConfigError, Settings, load_settings
from warmup.db import DatabaseError, connect_pool
from warmup.oauth_tokens import TokenSource
from warmup.process_exit import EXIT_FAILURE, EXIT_OK, EXIT_USAGE, exit_skipping_teardown
from warmup.secrets import SecretBox, SecretKeyError
from warmup.temporal_connection import TemporalConnectError
from workers import health
from workers.cache_check import check_cache
from workers.queue_limits import apply_queue_rate_limit
from workers.worker import build_inbox_worker, build_worker, start_side_workflows

log = logging.getLogger("warmup.worker")


def _longest_send_seconds(settings: Settings) -> float:
    # The send activity's start-to-close timeout, as workflows/mailbox.py sets it: no attempt runs longer.
    return settings.SMTP_TIMEOUT_SECONDS * 6 + 10


def _stop_on_signals(stop: asyncio.Event, settings: Settings) -> None:
    loop = asyncio.get_running_loop()

    def on_signal(sig: signal.Signals) -> None:
        if stop.is_set():
            log.info(
                "%s again: still letting in-flight sends finish (at most %gs after the first signal)",
                sig.name,
                settings.SHUTDOWN_GRACE_SECONDS,
            )
        stop.set()

    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, on_signal, sig)


async def serve() -> None:
    settings = load_settings()
    secrets = SecretBox(settings.secret_keys())  # fail at start, not on the first send
    stop = asyncio.Event()
    _stop_on_signals(stop, settings)  # from the start: a SIGTERM during start-up is a clean exit too
    readiness = health.Readiness()
    health_server = await health.start(settings, readiness)
    try:
        await _run_worker(settings, secrets, readiness, stop)
    finally:
        if health_server is not None:
            await health_server.close()


async def _run_worker(
    settings: Settings, secrets: SecretBox, readiness: health.Readiness, stop: asyncio.Event
) -> None:
    if settings.SHUTDOWN_GRACE_SECONDS < _longest_send_seconds(settings):
        log.warning(
            "WARMUP_SHUTDOWN_GRACE_SECONDS=%g is shorter than a send may take (%gs with "
            "WARMUP_SMTP_TIMEOUT_SECONDS=%g): a send still running when it ends is cancelled and may be "
            "recorded UNKNOWN",
            settings.SHUTDOWN_GRACE_SECONDS,
            _longest_send_seconds(settings),
            settings.SMTP_TIMEOUT_SECONDS,
        )
    # Metrics: the runtime serves Temporal's and our series on WARMUP_METRICS_PORT (0 = off), and the
    # interceptor, given to the client, reaches every worker built on it.
    runtime = metrics.runtime_for(settings)
    instruments = (
        None if runtime is None else metrics.Instruments(runtime.metric_meter, settings.WORKER_CONCURRENCY)
    )
    target = settings.temporal_connection()
    client = await temporal_connection.connect(
        target,
        runtime=runtime,
        interceptors=[] if instruments is None else [metrics.MetricsInterceptor(instruments)],
    )
    readiness.client = client
    pool = await connect_pool(
        settings.DATABASE_URL.get_secret_value(),
        max_size=settings.WORKER_CONCURRENCY + 2,
        generic_plans=True,
    )
    collector: asyncio.Task[None] | None = None
    try:
        if stop.is_set():
            return
        await apply_queue_rate_limit(client, settings)
        await _warn_if_cache_far_below_fleet(client, settings)
        # One OAuth2 token cache per process: the sends and the inbox sessions of a mailbox share a token.
        tokens = TokenSource(
            pool,
            secrets,
            margin_seconds=settings.OAUTH_TOKEN_MARGIN_SECONDS,
            timeout=settings.OAUTH_TIMEOUT_SECONDS,
        )
        worker = build_worker(client, settings, SendActivities(pool, secrets, settings, tokens))
        inbox = build_inbox_worker(
            client,
            settings,
            EngagementActivities(pool, secrets, settings, tokens),
            WebhookActivities(pool, secrets),
            LedgerActivities(pool, settings),
        )
        readiness.worker = worker
        if instruments is not None:
            collector = asyncio.create_task(metrics.FleetCollector(settings, client, instruments).run())
            log.info("metrics on %s:%d/metrics", settings.METRICS_HOST, settings.METRICS_PORT)
        running = asyncio.create_task(_run_both(worker, inbox))
        await start_side_workflows(client, settings)
        stopping = asyncio.create_task(stop.wait())
        log.info(
            "worker polling task queue %r on %s (concurrency %d)",
            settings.TASK_QUEUE,
            target.describe(),
            settings.WORKER_CONCURRENCY,
        )
        await asyncio.wait({running, stopping}, return_when=asyncio.FIRST_COMPLETED)
        if running.done():  # the worker gave up by itself (namespace gone, credentials revoked, ...)
            stopping.cancel()
            readiness.stopping = True
            try:
                running.result()
            except Exception as exc:
                raise TemporalConnectError(
                    "the worker stopped: " + temporal_connection.explain(exc, target)
                ) from None
            return
        readiness.stopping = True
        began = time.monotonic()
        log.info(
            "shutting down: polling stopped, in-flight sends have up to %gs to finish "
            "(WARMUP_SHUTDOWN_GRACE_SECONDS)",
            settings.SHUTDOWN_GRACE_SECONDS,
        )
        await asyncio.gather(worker.shutdown(), inbox.shutdown())
        with contextlib.suppress(Exception):  # its failure, if any, was logged by the SDK
            await running
        log.info("worker stopped %.1fs after the signal", time.monotonic() - began)
    finally:
        if collector is not None:
            collector.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await collector
        await pool.close()


async def _warn_if_cache_far_below_fleet(client: Client, settings: Settings) -> None:
    try:
        fit = await check_cache(client, settings)
    except RPCError as exc:  # a namespace without visibility access still runs; the check is advice
        log.info("cache size check skipped: %s", exc.message)
        return
    if fit.far_below:
        log.warning(fit.warning())


_TEMPORAL_ENV = (
    "TEMPORAL_ADDRESS, TEMPORAL_NAMESPACE, TEMPORAL_API_KEY, TEMPORAL_TLS_*, TEMPORAL_CONFIG_FILE, "
    "TEMPORAL_PROFILE: the Temporal connection (the SDK's envconfig)"
)


def _parse_args(argv: list[str]) -> None:
    """`--help` needs no configuration: it lists the environment a worker reads, from the settings model."""
    lines = []
    for name, info in Settings.model_fields.items():
        if name.startswith("TEMPORAL_"):
            continue  # read by the SDK's envconfig, listed below
        default = (
            ""
            if info.default is None or isinstance(info.default, SecretStr)
            else f" (default {info.default})"
        )
        lines.append(f"  WARMUP_{name}{default}: {info.description or ''}".rstrip(": "))
    parser = argparse.ArgumentParser(
        prog="python -m workers.run",
        description="One warmup worker process: runs the mailbox and user workflows and the send activity "
        "on the task queue WARMUP_TASK_QUEUE. Run as many side by side as the load needs; SIGTERM or SIGINT "
        "lets in-flight sends finish (WARMUP_SHUTDOWN_GRACE_SECONDS).",
        epilog="Environment:\n" + "\n".join(lines) + "\n  " + _TEMPORAL_ENV,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.parse_args(argv)


def main() -> int:
    _parse_args(sys.argv[1:])
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        asyncio.run(serve())
    except (ConfigError, SecretKeyError, metrics.MetricsError, health.HealthError) as exc:
        print(f"worker: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except (DatabaseError, TemporalConnectError) as exc:
        print(f"worker: {exc}", file=sys.stderr)
        return EXIT_FAILURE
    return EXIT_OK


async def _run_both(worker: Worker, inbox: Worker) -> None:
    """The send worker and the inbox-session worker run and stop together."""
    await asyncio.gather(worker.run(), inbox.run())


if __name__ == "__main__":
    exit_skipping_teardown(main())
