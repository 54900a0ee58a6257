"""The real components every measured phase runs on, started by the benchmark on loopback:
PostgreSQL (durable settings, not the tests' fsync=off), the Temporal dev server on an on-disk
SQLite file (WAL pragmas; without fsync only while the scale phase enrolls), an SMTP sink process,
and worker processes per phase."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Mapping, Sequence
from pathlib import Path
from types import TracebackType

import asyncpg
from temporalio.client import Client

from devstack.postgres import PgServer, free_port
from devstack.processes import die_with_parent_prefix
from devstack.temporal import SQLITE_PRAGMAS, DevServer, TemporalBinaryError
from warmup import temporal_connection
from warmup.db import connect_pool
from warmup.secrets import SecretBox, generate_key
from warmup.temporal_connection import TemporalConnection

DATABASE = "warmup"
REPO = Path(__file__).resolve().parent.parent
# For setup only: enrolling 100,000 workflows, the dev server starts them about 1.4x faster without
# fsync (measured 2026-12-08: 308-360/s against 199-253/s). Measured spans run on SQLITE_PRAGMAS.
SETUP_PRAGMAS = (*(p for p in SQLITE_PRAGMAS if not p.startswith("synchronous=")), "synchronous=off")


class Stack:
    def __init__(self, workdir: Path) -> None:
        self.workdir = workdir
        self.logs = workdir / "logs"
        self.pg = PgServer(workdir / "pg", fast=False)
        self.temporal = DevServer(
            workdir / "temporal.db",
            port=free_port(),
            ui_port=free_port(),
            log_path=self.logs / "temporal.log",
        )
        self.secret_key = generate_key()
        self.box = SecretBox([self.secret_key])
        self.sink: subprocess.Popen[bytes] | None = None
        self.sink_port = 0
        self._client: Client | None = None
        self._pool: asyncpg.Pool | None = None
        self._children: list[subprocess.Popen[bytes]] = []

    # --- lifecycle ------------------------------------------------------------------------------

    async def __aenter__(self) -> Stack:
        self.logs.mkdir(parents=True, exist_ok=True)
        try:
            # Started from this (the main) thread: a child's parent-death signal is tied to the thread
            # that forked it, and an executor thread may end before we do.
            self.pg.start()
            await self.pg.create_database(DATABASE)
            self._pool = await connect_pool(self.dsn, max_size=8)
            self._start_temporal()
            self._client = await temporal_connection.connect(TemporalConnection.plain(self.temporal.address))
            self._start_sink()
        except BaseException:
            await self.close()
            raise
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.close()

    async def close(self) -> None:
        for proc in reversed(self._children):
            stop_process(proc)
        self._children.clear()
        if self._pool is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._pool.close(), 10)
            self._pool = None
        await asyncio.to_thread(self.temporal.stop)
        await asyncio.to_thread(self.pg.stop)

    @contextlib.asynccontextmanager
    async def unsynced_temporal(self) -> AsyncIterator[None]:
        """The dev server restarted without fsync for a setup step (no measured span may run in it),
        then restarted on its durable pragmas, on the same file and ports (clients reconnect)."""
        await self._restart_temporal(SETUP_PRAGMAS)
        try:
            yield
        finally:
            await self._restart_temporal(SQLITE_PRAGMAS)

    async def _restart_temporal(self, pragmas: Sequence[str]) -> None:
        await asyncio.to_thread(self.temporal.stop)
        self.temporal.pragmas = tuple(pragmas)  # read by the command start() runs
        await asyncio.to_thread(self.temporal.start)

    def _start_temporal(self, attempts: int = 3) -> None:
        for attempt in range(attempts):
            try:
                self.temporal.start()
                return
            except TemporalBinaryError:
                # Its internal ports are picked at random and can collide with another server's.
                if attempt == attempts - 1:
                    raise
                self.temporal = DevServer(
                    self.temporal.db_file,
                    port=free_port(),
                    ui_port=free_port(),
                    log_path=self.temporal.log_path,
                )

    def _start_sink(self) -> None:
        self.sink = self.spawn(
            [sys.executable, "-m", "bench.sink"], dict(os.environ), "sink", pipe_stdout=True
        )
        assert self.sink.stdout is not None
        line = self.sink.stdout.readline().decode().strip()
        if not line.isdigit():
            raise RuntimeError(f"the SMTP sink did not start (said {line!r}); see {self.logs / 'sink.log'}")
        self.sink_port = int(line)

    # --- access ---------------------------------------------------------------------------------

    @property
    def dsn(self) -> str:
        return self.pg.dsn(DATABASE)

    @property
    def client(self) -> Client:
        assert self._client is not None, "the stack is not started"
        return self._client

    @property
    def pool(self) -> asyncpg.Pool:
        assert self._pool is not None, "the stack is not started"
        return self._pool

    def pids(self) -> dict[str, list[int]]:
        """The long-lived processes by role, for the CPU meter (workers are added by each phase)."""
        roles: dict[str, list[int]] = {"bench": [os.getpid()]}
        if self.temporal.pid:
            roles["temporal"] = [self.temporal.pid]
        if self.pg.pid:
            roles["postgres"] = [self.pg.pid]
        if self.sink is not None:
            roles["smtp sink"] = [self.sink.pid]
        return roles

    def worker_env(self, task_queue: str, settings: Mapping[str, str]) -> dict[str, str]:
        """The environment of a `python -m workers.run` for this stack; `settings` are WARMUP_* values."""
        # A developer's own WARMUP_*/TEMPORAL_* (a Cloud API key, TLS files) must not reach local workers.
        env = {k: v for k, v in os.environ.items() if not k.startswith(("WARMUP_", "TEMPORAL_"))}
        env.update(
            TEMPORAL_ADDRESS=self.temporal.address,
            WARMUP_DATABASE_URL=self.dsn,
            WARMUP_SECRET_KEYS=self.secret_key,
            WARMUP_TASK_QUEUE=task_queue,
            PYTHONPATH=str(REPO),
        )
        env.update(settings)
        return env

    def spawn(
        self, argv: list[str], env: dict[str, str], name: str, *, pipe_stdout: bool = False
    ) -> subprocess.Popen[bytes]:
        """A child that dies with us (SIGINT on our death) and logs to logs/<name>.log."""
        log = (self.logs / f"{name}.log").open("ab")
        proc = subprocess.Popen(
            [*die_with_parent_prefix(), *argv],
            env=env,
            cwd=REPO,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE if pipe_stdout else log,
            stderr=log,
        )
        log.close()
        self._children.append(proc)
        return proc

    async def polling(self, name: str, ready: Path | None = None, patience: float = 120.0) -> None:
        """Until the worker spawned as `name` logs that it polls (workers/run.py says so once it does),
        or until it writes `ready`: a measurement must not time the worker's start."""
        log = self.logs / f"{name}.log"
        deadline = time.monotonic() + patience
        while not _started(log, ready):
            if time.monotonic() > deadline:
                raise RuntimeError(f"the worker {name} did not start polling in {patience:.0f} s; see {log}")
            await asyncio.sleep(0.05)

    def stop_child(self, proc: subprocess.Popen[bytes], timeout: float = 30.0) -> int | None:
        stop_process(proc, timeout)
        with contextlib.suppress(ValueError):
            self._children.remove(proc)
        return proc.returncode


def _started(log: Path, ready: Path | None) -> bool:
    if ready is not None:
        return ready.exists()
    return "worker polling task queue" in (log.read_text() if log.exists() else "")


def stop_process(proc: subprocess.Popen[bytes], timeout: float = 30.0) -> None:
    """SIGTERM (workers finish in-flight sends), then SIGKILL after `timeout`."""
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
