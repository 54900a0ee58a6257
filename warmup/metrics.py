"""Prometheus metrics of a worker process: Temporal's SDK metrics and the audit's six, one port.

Everything goes through the Temporal runtime's own Prometheus exporter (`WARMUP_METRICS_PORT`), so
each worker is one scrape target serving both the SDK's `temporal_*` series and ours:

- per worker, from an interceptor around the `send_email` activity (and the workflow's
  `start_activity`): `warmup_emails_sent_total`, `warmup_sends_dispatched_total`,
  `warmup_cycle_duration_seconds`, `warmup_worker_utilization`;
- fleet-wide gauges, computed every `WARMUP_METRICS_INTERVAL_SECONDS` by exactly one worker (the
  one holding a PostgreSQL advisory lock; another takes over within one interval if it dies):
  `warmup_quota_fill_rate_per_mailbox`, `warmup_queue_depth`, `warmup_errors_per_hour`.

No series carries a per-mailbox or per-user label. The README ("Metrics") defines each one.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import math
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import asyncpg
from temporalio import activity, workflow
from temporalio.client import Client
from temporalio.client import Interceptor as ClientInterceptor
from temporalio.common import MetricMeter
from temporalio.exceptions import ApplicationError
from temporalio.runtime import PrometheusConfig, Runtime, TelemetryConfig
from temporalio.worker import (
    ActivityInboundInterceptor,
    ExecuteActivityInput,
    StartActivityInput,
    WorkflowInboundInterceptor,
    WorkflowInterceptorClassInput,
    WorkflowOutboundInterceptor,
)
from temporalio.worker import Interceptor as WorkerInterceptor

from warmup import fleet
from warmup.config import Settings
from warmup.errors import ERR_CAP_DEFERRED
from warmup.models import DELIVERED_STATUSES, InboxSessionReport, MailboxState, SendRequest, SendResult
from warmup.placement import OTHER

log = logging.getLogger("warmup.metrics")

SEND_ACTIVITY = "send_email"
INBOX_ACTIVITY = "inbox_session"


@dataclass(frozen=True)
class MetricDef:
    name: str
    kind: str  # counter, gauge, histogram (as Prometheus shows it)
    labels: tuple[str, ...]
    source: str  # "worker": every worker its own; "fleet": the collecting worker only
    help: str


SENT = MetricDef(
    "warmup_emails_sent_total",
    "counter",
    (),
    "worker",
    "warmup emails this worker delivered (SMTP 250), each once: a retry finding the send done is not counted",
)
DISPATCHED = MetricDef(
    "warmup_sends_dispatched_total",
    "counter",
    (),
    "worker",
    "sends whose planned time came and that a mailbox workflow dispatched: the throughput to expect",
)
FILL = MetricDef(
    "warmup_quota_fill_rate_per_mailbox",
    "gauge",
    ("quantile",),
    "fleet",
    "delivered / quota today, over active mailboxes whose day's slots are all used; quantiles 0, 0.1, 0.5",
)
FILL_COUNT = MetricDef(
    "warmup_quota_fill_rate_per_mailbox_count", "gauge", (), "fleet", "mailboxes in the fill-rate quantiles"
)
FILL_SUM = MetricDef(
    "warmup_quota_fill_rate_per_mailbox_sum",
    "gauge",
    (),
    "fleet",
    "sum of their fill rates (mean = sum/count)",
)
QUEUE = MetricDef(
    "warmup_queue_depth",
    "gauge",
    ("task_queue_type",),
    "fleet",
    "Temporal's approximate backlog of the warmup task queue: tasks waiting for a worker",
)
UTILIZATION = MetricDef(
    "warmup_worker_utilization",
    "gauge",
    ("resource",),
    "worker",
    "activity_slots: sends running / WARMUP_WORKER_CONCURRENCY; cpu: process CPU seconds per second",
)
ERRORS = MetricDef(
    "warmup_errors_per_hour",
    "gauge",
    ("kind",),
    "fleet",
    "sends that met an error in the last 60 minutes, from the ledger, by kind",
)
CYCLE = MetricDef(
    "warmup_cycle_duration_seconds",
    "histogram",
    ("outcome",),
    "worker",
    "seconds from a send's planned time to its final outcome (queue wait, cap waits, retries, SMTP)",
)
ENGAGEMENT = MetricDef(
    "warmup_engagement_actions_total",
    "counter",
    ("action", "family"),
    "worker",
    "what this worker's inbox sessions found (inbox, junk, other, missing) and did (rescued, read, flagged, "
    "replies_due), each once, by the receiving mailbox's provider family (google, microsoft, lab, other)",
)
COLLECTOR = MetricDef(
    "warmup_fleet_collector", "gauge", (), "worker", "1 on the worker that computes the fleet gauges, else 0"
)
ALL: tuple[MetricDef, ...] = (
    SENT,
    DISPATCHED,
    FILL,
    FILL_COUNT,
    FILL_SUM,
    QUEUE,
    UTILIZATION,
    ERRORS,
    CYCLE,
    ENGAGEMENT,
    COLLECTOR,
)
# The audit's six, under its names.
AUDIT_SIX = (SENT.name, FILL.name, QUEUE.name, UTILIZATION.name, ERRORS.name, CYCLE.name)

FILL_QUANTILES = (0.0, 0.1, 0.5)
CYCLE_BUCKETS = (1.0, 5.0, 15.0, 30.0, 60.0, 120.0, 300.0, 600.0, 1800.0, 3600.0, 7200.0)
# The fleet collector's lock: one advisory lock key for the whole database ("WMET").
COLLECTOR_LOCK = 0x574D4554


class MetricsError(Exception):
    """The metrics endpoint cannot start; the message names the setting to fix."""


def runtime_for(settings: Settings) -> Runtime | None:
    """A Temporal runtime exporting Prometheus on WARMUP_METRICS_HOST:PORT, or None when it is 0."""
    if settings.METRICS_PORT == 0:
        return None
    host = settings.METRICS_HOST
    address = f"[{host}]:{settings.METRICS_PORT}" if ":" in host else f"{host}:{settings.METRICS_PORT}"
    try:
        return Runtime(
            telemetry=TelemetryConfig(
                metrics=PrometheusConfig(
                    bind_address=address, histogram_bucket_overrides={CYCLE.name: list(CYCLE_BUCKETS)}
                ),
                attach_service_name=False,
            )
        )
    except ValueError as exc:
        if "in use" in str(exc):
            raise MetricsError(
                f"cannot serve metrics on {address}: the port is in use; give each worker on a host its own "
                "WARMUP_METRICS_PORT (or 0 to turn metrics off)"
            ) from None
        raise MetricsError(
            f"cannot serve metrics on {address} ({exc}); WARMUP_METRICS_HOST must be an IP address such as "
            "0.0.0.0 or 127.0.0.1"
        ) from None


class Instruments:
    """The process's instruments, created once from the runtime's meter."""

    def __init__(self, meter: MetricMeter, concurrency: int) -> None:
        self.sent = meter.create_counter(SENT.name, SENT.help)
        self.cycle = meter.create_histogram_float(CYCLE.name, CYCLE.help, "s")
        self.utilization = meter.create_gauge_float(UTILIZATION.name, UTILIZATION.help)
        self.fill = meter.create_gauge_float(FILL.name, FILL.help)
        self.fill_count = meter.create_gauge_float(FILL_COUNT.name, FILL_COUNT.help)
        self.fill_sum = meter.create_gauge_float(FILL_SUM.name, FILL_SUM.help)
        self.queue = meter.create_gauge_float(QUEUE.name, QUEUE.help)
        self.errors = meter.create_gauge_float(ERRORS.name, ERRORS.help)
        self.collector = meter.create_gauge(COLLECTOR.name, COLLECTOR.help)
        self.engagement = meter.create_counter(ENGAGEMENT.name, ENGAGEMENT.help)
        self.concurrency = max(concurrency, 1)
        self.in_flight = 0
        self.utilization.set(0.0, {"resource": "activity_slots"})
        self.collector.set(0)

    def slots_changed(self, delta: int) -> None:
        self.in_flight += delta
        self.utilization.set(self.in_flight / self.concurrency, {"resource": "activity_slots"})


# --- per worker: the interceptor -------------------------------------------------------------------


def _final(exc: BaseException, info: activity.Info) -> bool:
    """Whether this failed attempt is the send's last (Temporal will not run it again)."""
    if isinstance(exc, asyncio.CancelledError):
        return False  # the worker is stopping; another attempt follows
    if isinstance(exc, ApplicationError):
        if exc.non_retryable:
            return True
        if exc.type == ERR_CAP_DEFERRED:  # waiting for a cap is not an outcome
            return False
    policy = info.retry_policy
    if policy is None:
        return False
    if policy.maximum_attempts > 0 and info.attempt >= policy.maximum_attempts:
        return True
    kind = exc.type if isinstance(exc, ApplicationError) else type(exc).__name__
    return kind in (policy.non_retryable_error_types or ())


class _SendMetrics(ActivityInboundInterceptor):
    def __init__(self, next: ActivityInboundInterceptor, instruments: Instruments) -> None:
        super().__init__(next)
        self._m = instruments

    async def execute_activity(self, input: ExecuteActivityInput) -> Any:
        info = activity.info()
        if info.activity_type == INBOX_ACTIVITY:
            report = await super().execute_activity(input)
            if isinstance(report, InboxSessionReport):
                for action, n in dataclasses.asdict(report.found).items():
                    if n and action != "sessions":
                        self._m.engagement.add(n, {"action": action, "family": report.family or OTHER})
            return report
        if info.activity_type != SEND_ACTIVITY:
            return await super().execute_activity(input)
        req = input.args[0] if input.args and isinstance(input.args[0], SendRequest) else None
        self._m.slots_changed(+1)
        try:
            result = await super().execute_activity(input)
        except BaseException as exc:
            if req is not None and _final(exc, info):
                self._m.cycle.record(max(0.0, time.time() - req.planned_at), {"outcome": "not_sent"})
            raise
        finally:
            self._m.slots_changed(-1)
        if isinstance(result, SendResult) and result.status in DELIVERED_STATUSES and not result.already_done:
            self._m.sent.add(1)
        if req is not None:
            self._m.cycle.record(max(0.0, time.time() - req.planned_at), {"outcome": "sent"})
        return result


class _DispatchCounter(WorkflowOutboundInterceptor):
    def start_activity(self, input: StartActivityInput) -> workflow.ActivityHandle[Any]:
        if input.activity == SEND_ACTIVITY:
            # The workflow meter records nothing while a workflow replays, so each send counts once.
            workflow.metric_meter().create_counter(DISPATCHED.name, DISPATCHED.help).add(1)
        return super().start_activity(input)


class _WorkflowMetrics(WorkflowInboundInterceptor):
    def init(self, outbound: WorkflowOutboundInterceptor) -> None:
        super().init(_DispatchCounter(outbound))


class MetricsInterceptor(ClientInterceptor, WorkerInterceptor):
    """Given to `Client.connect(interceptors=...)`: every worker built on that client uses it too."""

    def __init__(self, instruments: Instruments) -> None:
        self._m = instruments

    def intercept_activity(self, next: ActivityInboundInterceptor) -> ActivityInboundInterceptor:
        return _SendMetrics(next, self._m)

    def workflow_interceptor_class(
        self, input: WorkflowInterceptorClassInput
    ) -> type[WorkflowInboundInterceptor] | None:
        return _WorkflowMetrics


# --- fleet-wide: the collector ---------------------------------------------------------------------


def quantile(sorted_values: Sequence[float], q: float) -> float:
    """The value at rank floor(q * (n - 1)) of an ascending list (q=0 is the lowest); NaN when empty."""
    if not sorted_values:
        return math.nan
    return sorted_values[math.floor(q * (len(sorted_values) - 1))]


class FleetCollector:
    """Samples this process's CPU, and, while it holds the collector lock, the fleet gauges."""

    def __init__(self, settings: Settings, client: Client, instruments: Instruments) -> None:
        self._settings = settings
        self._client = client
        self._m = instruments
        self._conn: asyncpg.Connection | None = None
        self._leading = False
        self._cpu_at = (time.monotonic(), time.process_time())

    async def run(self) -> None:
        try:
            while True:
                await self.tick()
                await asyncio.sleep(self._settings.METRICS_INTERVAL_SECONDS)
        finally:
            await self._drop_connection()

    async def tick(self) -> None:
        self._sample_cpu()
        if not await self._lead():
            return
        assert self._conn is not None
        try:
            await self._collect(self._conn)
        except (OSError, asyncpg.InterfaceError, asyncpg.PostgresConnectionError) as exc:
            log.warning("fleet metrics: lost PostgreSQL (%s); retrying next interval", type(exc).__name__)
            await self._drop_connection()
        except Exception:
            log.exception("fleet metrics: collection failed; retrying next interval")

    def _sample_cpu(self) -> None:
        wall, cpu = time.monotonic(), time.process_time()
        last_wall, last_cpu = self._cpu_at
        if wall > last_wall:
            self._m.utilization.set((cpu - last_cpu) / (wall - last_wall), {"resource": "cpu"})
        self._cpu_at = (wall, cpu)

    async def _lead(self) -> bool:
        """Hold (or try to take) the collector lock on a connection of our own."""
        try:
            if self._conn is None or self._conn.is_closed():
                self._leading = False
                self._conn = await asyncpg.connect(self._settings.DATABASE_URL.get_secret_value(), timeout=10)
            if not self._leading:
                self._leading = bool(
                    await self._conn.fetchval("SELECT pg_try_advisory_lock($1)", COLLECTOR_LOCK)
                )
                if self._leading:
                    log.info("this worker now computes the fleet metrics")
        except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError, TimeoutError) as exc:
            log.warning("fleet metrics: cannot reach PostgreSQL (%s)", type(exc).__name__)
            await self._drop_connection()
        self._m.collector.set(1 if self._leading else 0)
        return self._leading

    async def _drop_connection(self) -> None:
        if self._leading:
            self._blank()  # another worker may take over: stale values must not linger here
        self._leading = False
        self._m.collector.set(0)
        conn, self._conn = self._conn, None
        if conn is not None:
            with contextlib.suppress(Exception):
                await conn.close(timeout=5)

    def _blank(self) -> None:
        nan = math.nan
        for q in FILL_QUANTILES:
            self._m.fill.set(nan, {"quantile": f"{q:g}"})
        self._m.fill_count.set(nan)
        self._m.fill_sum.set(nan)
        for kind in fleet.ERROR_KINDS:
            self._m.errors.set(nan, {"kind": kind})
        for t in ("workflow", "activity"):
            self._m.queue.set(nan, {"task_queue_type": t})

    async def _collect(self, conn: asyncpg.Connection) -> None:
        for b in await fleet.task_queue_backlog(self._client, self._settings.TASK_QUEUE):
            self._m.queue.set(float(b.count), {"task_queue_type": b.task_queue_type})
        for kind, n in (await fleet.errors_last_hour(conn)).items():
            self._m.errors.set(float(n), {"kind": kind})
        active = await fleet.list_mailboxes(conn, state=MailboxState.ACTIVE)
        days = await fleet.mailbox_days(self._client, conn, active, rpc_seconds=5.0)
        fills = sorted(d.fill for d in days if d.day_done and d.fill is not None)
        for q in FILL_QUANTILES:
            self._m.fill.set(quantile(fills, q), {"quantile": f"{q:g}"})
        self._m.fill_count.set(float(len(fills)))
        self._m.fill_sum.set(float(sum(fills)))
