"""The fault drills' stack and bookkeeping: real worker processes, real SMTP sinks, the starter CLI,
and the figures each drill reports (collected for the table `conftest.py` prints and writes).

Delivered is counted where it matters, at the receiving SMTP server, by Message-ID; the ledger is
read straight from PostgreSQL. Nothing here mocks Temporal, PostgreSQL or SMTP.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections import Counter
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import asyncpg
from temporalio.client import Client
from temporalio.service import RPCError

from devstack.smtp_sink import SmtpSink
from tests.helpers.operator_cli import PASSWORD, enroll_argv, starter, unique_mailbox_ids
from tests.helpers.worker_procs import Workers, worker_env
from warmup.config import Settings
from warmup.workflow_ids import user_workflow_id

FINAL = ("SENT", "UNKNOWN", "FAILED")

# Compressed timing shared by the drills (on top of tests.helpers.worker_procs.FAST_TIMING): a short SMTP
# timeout keeps the activity's start-to-close (6 x timeout + 10 s) at 22 s, which is how long a
# SIGKILLed worker's send waits before Temporal retries it; a low backoff ceiling brings sends back
# within seconds once an outage ends.
DRILL_TIMING = {
    "SMTP_TIMEOUT_SECONDS": "2",
    "SEND_RETRY_INITIAL_SECONDS": "0.5",
    "SEND_RETRY_MAX_SECONDS": "3",
}


@dataclass
class Figures:
    """What one drill measured. `expected` is what the design promises to deliver."""

    drill: str
    expected: int
    delivered: int  # distinct Message-IDs the SMTP server received
    duplicates: int  # arrivals beyond the first of the same Message-ID
    lost: int  # promised deliveries that never arrived
    ledger: dict[str, int]  # send_ledger rows by status
    outcome: str  # what else the drill checked, in a few words
    seconds: float = 0.0

    def ledger_text(self) -> str:
        return ", ".join(f"{k} {v}" for k, v in sorted(self.ledger.items())) or "none"


# Every drill of the session, in the order they finished: read by conftest's terminal summary.
RESULTS: list[Figures] = []


@dataclass
class Sender:
    address: str
    mailbox_id: int
    sink: SmtpSink
    quota: int


@dataclass
class DrillStack:
    """One drill's world: a database, a Temporal address, worker processes and SMTP sinks."""

    settings: Settings
    temporal_address: str
    log_dir: Path
    namespace: str = "default"
    overrides: Mapping[str, str] = field(default_factory=dict)
    extra_env: Mapping[str, str] = field(default_factory=dict)  # not WARMUP_*: e.g. the lab's SSL_CERT_FILE
    user: str = field(default_factory=lambda: f"drill-{uuid.uuid4().hex[:10]}")

    @classmethod
    def on(
        cls,
        client: Client,
        settings: Settings,
        log_dir: Path,
        extra_env: Mapping[str, str] | None = None,
        **overrides: str,
    ) -> DrillStack:
        """A drill's world on the Temporal server `client` talks to, `overrides` as WARMUP_* settings."""
        target = client.service_client.config.target_host
        return cls(settings, target, log_dir, client.namespace, overrides, dict(extra_env or {}))

    def __post_init__(self) -> None:
        self.env = {
            **worker_env(self.settings, self.temporal_address, **{**DRILL_TIMING, **self.overrides}),
            "SMTP_PASSWORD": PASSWORD,
            "TEMPORAL_NAMESPACE": self.namespace,
            **self.extra_env,
        }
        self.dsn = self.settings.DATABASE_URL.get_secret_value()
        self.workers = Workers(self.env, self.log_dir)
        self.sinks: list[SmtpSink] = []
        self.senders: list[Sender] = []
        self.started = time.monotonic()

    async def prepare(self) -> None:
        """Mailbox ids of our own (the session's dev server is shared) and one mailbox to write to."""
        await unique_mailbox_ids(self.dsn)
        # The pool needs another active mailbox; this one sends nothing itself (quota 0).
        await self._enroll(f"inbox@{self.user}.test", await self.sink(), 0)

    async def sink(self, credentials: dict[str, str] | None = None) -> SmtpSink:
        sink = SmtpSink(credentials=credentials)
        await sink.start()
        self.sinks.append(sink)
        return sink

    async def sender(
        self,
        name: str,
        quota: int,
        credentials: dict[str, str] | None = None,
        arm: Callable[[SmtpSink], None] | None = None,
    ) -> Sender:
        """A mailbox sending `quota` emails today through an SMTP sink of its own.

        `arm` sets up the sink's misbehaviour before the mailbox is enrolled: its first send may
        start a moment after enrolment, too soon for the test to arm the sink afterwards.
        """
        sink = await self.sink(credentials)
        if arm is not None:
            arm(sink)
        address = f"{name}@{self.user}.test"
        sender = Sender(address, await self._enroll(address, sink, quota), sink, quota)
        self.senders.append(sender)
        return sender

    async def _enroll(self, address: str, sink: SmtpSink, quota: int) -> int:
        ramp = ("--ramp-start", str(quota), "--ramp-increment", "0", "--ramp-ceiling", str(quota))
        run = await starter(self.env, *enroll_argv(address, self.user, sink.port, *ramp), "--json")
        assert run.code == 0, run.err
        data = run.json()
        assert isinstance(data, dict)
        return int(data["mailbox_id"])

    async def wait_worker_ready(self, index: int = -1, within: float = 30) -> None:
        """Until the worker's log says it polls (its start-up: imports, migrations, connection)."""
        log = self.log_dir / f"worker{len(self.workers.procs) - 1 if index < 0 else index}.log"
        deadline = time.monotonic() + within
        while "worker polling task queue" not in log.read_text(errors="replace"):
            proc = self.workers.procs[index]
            assert proc.poll() is None, f"the worker exited with {proc.returncode}: {log.read_text()[-2000:]}"
            assert time.monotonic() < deadline, f"the worker did not start within {within}s"
            await asyncio.sleep(0.1)

    def worker_log(self) -> str:
        return "\n".join(p.read_text(errors="replace") for p in sorted(self.log_dir.glob("worker*.log")))

    async def status(self, sender: Sender) -> dict[str, Any]:
        """`starter status --mailbox A --json`, as an operator would read it."""
        run = await starter(self.env, "status", "--mailbox", sender.address, "--json")
        assert run.code == 0, run.err
        data = run.json()
        assert isinstance(data, dict)
        return data

    async def ledger(self, sender: Sender) -> list[asyncpg.Record]:
        conn = await asyncpg.connect(self.dsn)
        try:
            return await conn.fetch(
                "SELECT slot, status::text AS status, message_id, transient_failures, error"
                " FROM send_ledger WHERE sender_id = $1 ORDER BY slot",
                sender.mailbox_id,
            )
        finally:
            await conn.close()

    async def settle(
        self,
        done: Callable[[], Awaitable[bool]],
        within: float,
        quiet: float = 2.0,
    ) -> None:
        """Wait until `done()`, then `quiet` seconds more so a late duplicate would still show."""
        deadline = time.monotonic() + within
        while not await done():
            assert time.monotonic() < deadline, f"the drill did not settle within {within}s"
            await asyncio.sleep(0.25)
        await asyncio.sleep(quiet)

    async def all_final(self, *senders: Sender) -> bool:
        """Every slot of every sender's day has a final ledger status (and the day is planned out)."""
        for s in senders or self.senders:
            rows = await self.ledger(s)
            if len(rows) < s.quota or any(r["status"] not in FINAL for r in rows):
                return False
        return True

    async def figures(self, drill: str, sender: Sender, expected: int, outcome: str) -> Figures:
        return await self.figures_of(drill, [sender], expected, outcome)

    async def figures_of(self, drill: str, senders: list[Sender], expected: int, outcome: str) -> Figures:
        arrivals: Counter[str] = Counter()
        ledger: Counter[str] = Counter()
        promised: set[str] = set()
        known: set[str] = set()
        for s in senders:
            arrivals.update(m.message_id for m in s.sink.messages)
            for r in await self.ledger(s):
                ledger[r["status"]] += 1
                known.add(r["message_id"])
                if r["status"] == "SENT":
                    promised.add(r["message_id"])
        strays = set(arrivals) - known
        assert not strays, f"{drill}: messages arrived that the ledger never recorded: {strays}"
        delivered = len(arrivals)
        lost = max(expected - delivered, len(promised - set(arrivals)))
        figures = Figures(
            drill=drill,
            expected=expected,
            delivered=delivered,
            duplicates=sum(arrivals.values()) - delivered,
            lost=lost,
            ledger=dict(ledger),
            outcome=outcome,
            seconds=round(time.monotonic() - self.started, 1),
        )
        RESULTS.append(figures)
        return figures

    async def close(self, client: Client | None) -> None:
        """Workers first, then the workflows this drill started (a shared dev server outlives it)."""
        self.workers.stop_all()
        if client is not None:
            conn = await asyncpg.connect(self.dsn)
            try:
                ids = [r["id"] for r in await conn.fetch("SELECT id FROM mailboxes")]
            finally:
                await conn.close()
            for wid in [user_workflow_id(self.user), *(f"mailbox-{i}" for i in ids)]:
                try:
                    await client.get_workflow_handle(wid).terminate("drill over")
                except RPCError:
                    pass  # finished already
        for sink in self.sinks:
            await sink.stop()


def assert_clean(f: Figures) -> None:
    """The promise every drill checks: nothing lost, nothing twice."""
    assert f.duplicates == 0, f"{f.drill}: an email arrived twice: {f}"
    assert f.lost == 0, f"{f.drill}: a promised email never arrived: {f}"
    assert f.delivered == f.expected, f"{f.drill}: {f}"
