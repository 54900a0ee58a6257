"""Each worker serves Prometheus metrics; after a run, the audit's six agree with the send ledger.

Two real `python -m workers.run` processes with WARMUP_METRICS_PORT set, the real Temporal dev
server, PostgreSQL and an SMTP sink that refuses one login and answers one DATA with a 451.
"""

from __future__ import annotations

import asyncio
import math
import socket
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import asyncpg
import pytest
from temporalio.testing import WorkflowEnvironment

from devstack.smtp_sink import SmtpSink
from tests.helpers.operator_cli import (
    PASSWORD,
    Samples,
    enroll_argv,
    free_port,
    scrape,
    starter,
    total,
    unique_mailbox_ids,
    value,
)
from tests.helpers.worker_procs import Workers, worker_env
from warmup import metrics
from warmup.config import Settings, load_settings
from warmup.errors import ERR_TRANSIENT

GOOD = [f"m{i}@metrics.test" for i in range(3)]
LOCKED = "locked@metrics.test"
QUOTA = 4


@pytest.fixture
async def two_workers(
    temporal_env: WorkflowEnvironment,
    smtp_sink: SmtpSink,
    make_settings: Callable[..., Settings],
    db_dsn: str,
    tmp_path: Path,
) -> AsyncIterator[tuple[dict[str, str], list[int]]]:
    await unique_mailbox_ids(db_dsn)
    address = temporal_env.client.service_client.config.target_host
    base = worker_env(
        make_settings(),
        address,
        RAMP_START_VOLUME=str(QUOTA),
        SAME_MAILBOX_DELAY_MIN="0.01",  # 0.6-1.2 s between one mailbox's sends
        SAME_MAILBOX_DELAY_MAX="0.02",
        SEND_RETRY_MAX_ATTEMPTS="1",  # the scripted 451 uses the slot up at once
        METRICS_HOST="127.0.0.1",
        METRICS_INTERVAL_SECONDS="0.3",
    )
    ports = [free_port(), free_port()]
    groups = []
    for i, port in enumerate(ports):
        (tmp_path / f"w{i}").mkdir()
        group = Workers({**base, "WARMUP_METRICS_PORT": str(port)}, tmp_path / f"w{i}")
        group.start(1)
        groups.append(group)
    smtp_sink.credentials.update({m: PASSWORD for m in GOOD})
    smtp_sink.credentials[LOCKED] = "not-the-password"
    try:
        yield {**base, "SMTP_PASSWORD": PASSWORD}, ports
    finally:
        for group in groups:
            group.stop_all()


async def _ledger(dsn: str) -> list[asyncpg.Record]:
    conn = await asyncpg.connect(dsn)
    try:
        return await conn.fetch(
            "SELECT m.address, l.status::text AS status, l.error FROM send_ledger l"
            " JOIN mailboxes m ON m.id = l.sender_id"
        )
    finally:
        await conn.close()


async def _scrape_until(
    ports: list[int], ready: Callable[[list[Samples]], bool], seconds: float = 30
) -> list[Samples]:
    deadline = asyncio.get_running_loop().time() + seconds
    while True:
        scraped = [await asyncio.to_thread(scrape, p) for p in ports]
        if ready(scraped) or asyncio.get_running_loop().time() > deadline:
            return scraped
        await asyncio.sleep(0.3)


async def test_the_six_metrics_match_the_ledger_after_a_run(
    two_workers: tuple[dict[str, str], list[int]], smtp_sink: SmtpSink, db_dsn: str
) -> None:
    env, ports = two_workers
    smtp_sink.script_data_replies(["451 4.3.0 try again later"])
    for address in [*GOOD, LOCKED]:
        run = await starter(env, *enroll_argv(address, "metrics", smtp_sink.port))
        assert run.code == 0, run.err

    await smtp_sink.wait_for(QUOTA * len(GOOD) - 1, timeout=90)
    # The last message can reach the server a moment before its ledger row says SENT.
    for _ in range(50):
        rows = await _ledger(db_dsn)
        sent = sum(1 for r in rows if r["status"] == "SENT")
        if sent >= QUOTA * len(GOOD) - 1:
            break
        await asyncio.sleep(0.1)
    assert sent == QUOTA * len(GOOD) - 1

    def settled(scraped: list[Samples]) -> bool:
        return (
            sum(total(s, metrics.SENT.name) for s in scraped) == sent
            and any(value(s, metrics.FILL_COUNT.name) == len(GOOD) for s in scraped)
            and sum(total(s, "warmup_cycle_duration_seconds_count") for s in scraped) == len(rows)
            # Temporal's backlog figure is approximate and refreshed with a delay: wait for it to drain.
            and sum(total(s, metrics.QUEUE.name) for s in scraped) == 0
        )

    scraped = await _scrape_until(ports, settled)

    # Both endpoints serve Temporal's own SDK metrics and this worker's series.
    for s in scraped:
        assert any(name.startswith("temporal_") for name, _ in s), "no Temporal SDK metrics"
        assert value(s, metrics.UTILIZATION.name, resource="activity_slots") == 0.0  # idle now
        cpu = value(s, metrics.UTILIZATION.name, resource="cpu")
        assert cpu is not None and cpu >= 0

    # warmup_emails_sent_total: the two workers together delivered exactly what the ledger says.
    assert sum(total(s, metrics.SENT.name) for s in scraped) == sent
    # Every dispatched send has one ledger row, and one final outcome in the cycle histogram.
    assert sum(total(s, metrics.DISPATCHED.name) for s in scraped) == len(rows)
    cycle = {
        o: sum(total(s, "warmup_cycle_duration_seconds_count", outcome=o) for s in scraped)
        for o in ("sent", "not_sent")
    }
    assert cycle == {"sent": sent, "not_sent": len(rows) - sent}

    # The fleet gauges come from exactly one worker: the collector.
    leaders = [s for s in scraped if value(s, metrics.COLLECTOR.name) == 1]
    assert len(leaders) == 1
    fleet = leaders[0]
    others = [s for s in scraped if s is not fleet]
    assert all(value(s, metrics.QUEUE.name, task_queue_type="activity") is None for s in others)

    # warmup_errors_per_hour: the 535 (refused, mailbox paused) and the 451 that used up its attempts.
    refused = [r for r in rows if r["status"] == "FAILED" and not r["error"].startswith(ERR_TRANSIENT)]
    gave_up = [r for r in rows if r["status"] == "FAILED" and r["error"].startswith(ERR_TRANSIENT)]
    assert (len(refused), len(gave_up)) == (1, 1)
    assert value(fleet, metrics.ERRORS.name, kind="refused") == len(refused)
    assert value(fleet, metrics.ERRORS.name, kind="gave_up") == len(gave_up)
    assert value(fleet, metrics.ERRORS.name, kind="unknown") == 0

    # warmup_quota_fill_rate_per_mailbox: delivered / quota of the three active mailboxes (the locked
    # one is paused, so it is not counted), straight from the ledger.
    fills = sorted(sum(1 for r in rows if r["address"] == a and r["status"] == "SENT") / QUOTA for a in GOOD)
    assert fills == [(QUOTA - 1) / QUOTA, 1.0, 1.0]
    assert value(fleet, metrics.FILL.name, quantile="0") == pytest.approx(fills[0])
    assert value(fleet, metrics.FILL.name, quantile="0.5") == pytest.approx(fills[1])
    assert value(fleet, metrics.FILL_COUNT.name) == len(GOOD)
    assert value(fleet, metrics.FILL_SUM.name) == pytest.approx(sum(fills))

    # warmup_queue_depth: Temporal's backlog, empty once every send is done.
    assert value(fleet, metrics.QUEUE.name, task_queue_type="activity") == 0
    assert value(fleet, metrics.QUEUE.name, task_queue_type="workflow") == 0


def test_quantiles_are_nearest_rank_from_below() -> None:
    assert math.isnan(metrics.quantile([], 0.5))
    assert metrics.quantile([0.2, 0.5, 1.0], 0.0) == 0.2
    assert metrics.quantile([0.2, 0.5, 1.0], 0.5) == 0.5
    assert metrics.quantile([0.1 * i for i in range(11)], 0.1) == pytest.approx(0.1)


def test_metrics_are_off_by_default_and_a_taken_port_is_a_clear_start_up_error() -> None:
    assert metrics.runtime_for(load_settings({})) is None
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        settings = load_settings({"WARMUP_METRICS_PORT": str(port), "WARMUP_METRICS_HOST": "127.0.0.1"})
        with pytest.raises(metrics.MetricsError, match=r"in use.*WARMUP_METRICS_PORT"):
            metrics.runtime_for(settings)
    named = load_settings({"WARMUP_METRICS_PORT": str(port), "WARMUP_METRICS_HOST": "metrics.example"})
    with pytest.raises(metrics.MetricsError, match="WARMUP_METRICS_HOST must be an IP address"):
        metrics.runtime_for(named)
