"""`make dev`: PostgreSQL, the Temporal dev server, an SMTP sink and workers, with a running demo.

Everything listens on 127.0.0.1 and keeps its state in the data folder (`.data/`), so a second run
picks up where the first stopped. Ctrl-C or SIGTERM stops what was started, newest first.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TextIO

import asyncpg

from devstack import demo
from devstack.devenv import load_or_create
from devstack.postgres import PgServer
from devstack.processes import PidRegistry, die_with_parent_prefix
from devstack.smtp_sink import ReceivedMessage, SmtpSink
from devstack.temporal import DevServer, temporal_cli

DATABASE = "warmup"
WORKER_STOP_SECONDS = 20.0


class StackError(Exception):
    """The stack cannot start; the message says which part and where its log is."""


class _Interrupted(Exception):
    """Stop was requested while starting: skip the remaining steps, go to cleanup."""


@dataclass(frozen=True)
class StackOptions:
    data_dir: Path
    pg_port: int = 5433
    temporal_port: int = 7233
    ui_port: int = 8233
    smtp_port: int = 2525
    workers: int | None = None  # None: WARMUP_WORKER_COUNT if set, else demo.DEFAULT_WORKER_COUNT
    exit_after_mails: int | None = None
    timeout: float | None = None


def _shown(path: Path) -> str:
    """A path relative to the working directory when it is inside it (shorter to read and to copy)."""
    try:
        return str(path.relative_to(Path.cwd()))
    except ValueError:
        return str(path)


class DevStack:
    def __init__(self, opts: StackOptions, out: TextIO = sys.stdout) -> None:
        self.opts = opts
        self.data_dir = opts.data_dir.absolute()
        self.out = out
        self.exit_code = 0
        self._stop = asyncio.Event()
        self._stop_reason = ""
        self._stopping = False
        self._cleanups: list[tuple[str, Callable[[], object]]] = []
        self._workers: list[asyncio.subprocess.Process] = []
        self._registry = PidRegistry(self.data_dir / "dev.pids")
        self._started = time.monotonic()
        self._sink: SmtpSink | None = None

    # --- output ----------------------------------------------------------------------------

    def say(self, text: str) -> None:
        print(text, file=self.out, flush=True)

    def _print_mail(self, msg: ReceivedMessage) -> None:
        stamp = time.strftime("%H:%M:%S", time.localtime(msg.received_at))
        subject = str(msg.message.get("Subject", "")).replace("\n", " ")
        self.say(f"{stamp}  mail  {msg.mail_from} -> {', '.join(msg.rcpt_tos)}  {subject}")
        wanted = self.opts.exit_after_mails
        if wanted is not None and self._sink is not None and len(self._sink.messages) >= wanted:
            self.request_stop(f"{wanted} demo mails arrived", 0)

    def request_stop(self, reason: str, code: int | None = None) -> None:
        if self._stop.is_set():
            return
        self._stop_reason = reason
        if code is not None:
            self.exit_code = code
        self._stop.set()

    # --- run -------------------------------------------------------------------------------

    async def run(self) -> int:
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, self._on_signal, sig)
        timeout_task = None
        if self.opts.timeout is not None:
            timeout_task = loop.create_task(self._timeout(self.opts.timeout))
        try:
            with self._lock():
                try:
                    await self._start()
                    if not self._stop.is_set():
                        await self._stop.wait()
                except StackError as exc:
                    self.say(f"[dev] cannot start: {exc}")
                    self.exit_code = 1
                except Exception as exc:  # still stop what did start, then report
                    self.say(f"[dev] cannot start: {type(exc).__name__}: {exc}")
                    self.exit_code = 1
                finally:
                    if self._stop_reason:
                        self.say(f"[dev] stopping: {self._stop_reason}")
                    await self._cleanup()
        except StackError as exc:
            self.say(f"[dev] {exc}")
            return 1
        finally:
            if timeout_task is not None:
                timeout_task.cancel()
        return self.exit_code

    def _on_signal(self, sig: int) -> None:
        if self._stop.is_set():
            self.say("[dev] already stopping, please wait")
            return
        self.request_stop(f"received {signal.Signals(sig).name}", 0)

    async def _timeout(self, seconds: float) -> None:
        await asyncio.sleep(seconds)
        got = len(self._sink.messages) if self._sink is not None else 0
        wanted = f" of {self.opts.exit_after_mails}" if self.opts.exit_after_mails is not None else ""
        self.request_stop(f"timeout after {seconds:.0f}s with {got}{wanted} mails", 1)

    @contextlib.contextmanager
    def _lock(self) -> Iterator[None]:
        """One `make dev` per data folder: a second one would fight over ports and files."""
        self.data_dir.mkdir(parents=True, exist_ok=True)
        path = self.data_dir / "dev.lock"
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                other = os.pread(fd, 32, 0).decode(errors="replace").strip() or "?"
                raise StackError(
                    f"another `make dev` (pid {other}) is running on {_shown(self.data_dir)}; "
                    "stop it first (Ctrl-C in its terminal)"
                ) from None
            os.ftruncate(fd, 0)
            os.pwrite(fd, str(os.getpid()).encode(), 0)
            yield
        finally:
            os.close(fd)

    def _step_done(self, what: str, since: float) -> None:
        self.say(f"[dev] {what} ({time.monotonic() - since:.1f}s)")
        if self._stop.is_set():
            raise _Interrupted

    async def _start(self) -> None:
        try:
            await self._start_parts()
        except _Interrupted:
            pass

    async def _start_parts(self) -> None:
        opts = self.opts
        leftovers = self._registry.stop_leftovers()
        if leftovers:
            self.say(f"[dev] stopped {len(leftovers)} process(es) left running by a killed earlier run")

        t = time.monotonic()
        pg = PgServer(self.data_dir / "pg", opts.pg_port)
        try:
            pg.start()
        except Exception as exc:
            raise StackError(f"PostgreSQL: {exc}") from None
        self._track("PostgreSQL", pg.stop, pg.pid)
        created = await pg.create_database(DATABASE)
        note = " (created)" if created else ""
        self._step_done(f"PostgreSQL on 127.0.0.1:{pg.port}, database {DATABASE}{note}", t)

        t = time.monotonic()
        temporal = DevServer(self.data_dir / "temporal.db", port=opts.temporal_port, ui_port=opts.ui_port)
        try:
            temporal.start()
        except Exception as exc:
            raise StackError(f"Temporal: {exc}") from None
        self._track("Temporal dev server", temporal.stop, temporal.pid)
        self._step_done(f"Temporal dev server on {temporal.address}, Web UI {temporal.ui_url}", t)

        env = self._child_env(pg, temporal)

        t = time.monotonic()
        self._sink = sink = SmtpSink(
            "127.0.0.1",
            opts.smtp_port,
            credentials={m.address: env[demo.SECRET_ENV] for m in demo.DEMO_MAILBOXES},
            on_message=self._print_mail,
        )
        try:
            await sink.start()
        except OSError as exc:
            raise StackError(f"SMTP sink on 127.0.0.1:{opts.smtp_port}: {exc}") from None
        self._cleanups.append(("SMTP sink", sink.stop))
        self._step_done(f"SMTP sink on 127.0.0.1:{sink.port}", t)

        t = time.monotonic()
        count = opts.workers or int(os.environ.get("WARMUP_WORKER_COUNT") or demo.DEFAULT_WORKER_COUNT)
        logs = self.data_dir / "logs"
        logs.mkdir(exist_ok=True)
        worker_env = {k: v for k, v in env.items() if k != demo.SECRET_ENV}
        for i in range(1, count + 1):
            await self._start_worker(i, worker_env, logs / f"worker-{i}.log")
        self._cleanups.append(("workers", self._stop_workers))
        self._step_done(f"{count} worker process(es), logs in {_shown(logs)}/", t)

        # Enroll once the workers run: `starter enroll` is an Update a worker answers (its validator
        # can refuse). A first send that comes before the row commits is retried by the activity.
        t = time.monotonic()
        await self._enroll(env, sink.port)
        ids = await self._mailbox_ids(pg.dsn(DATABASE))
        self._step_done(f"enrolled {len(demo.DEMO_MAILBOXES)} demo mailboxes", t)
        self._banner(temporal, pg, sink, ids)

    def _track(self, name: str, stop: Callable[[], object], pid: int | None) -> None:
        if pid is not None:
            self._registry.add(pid)
        self._cleanups.append((name, stop))

    def _child_env(self, pg: PgServer, temporal: DevServer) -> dict[str, str]:
        run_values = {
            "TEMPORAL_ADDRESS": temporal.address,
            "TEMPORAL_NAMESPACE": "default",
            "WARMUP_DATABASE_URL": pg.dsn(DATABASE),
            "WARMUP_TEMPORAL_UI_URL": temporal.ui_url,
        }
        kept = load_or_create(self.data_dir / "dev.env", run_values)
        user_keys = os.environ.get("WARMUP_SECRET_KEYS")
        if user_keys and user_keys != kept["WARMUP_SECRET_KEYS"]:
            where = _shown(self.data_dir / "dev.env")
            self.say(f"[dev] note: WARMUP_SECRET_KEYS comes from {where}, not from your environment")
        env = dict(os.environ)
        for name, value in demo.DEMO_TIMING.items():
            env.setdefault(name, value)
        env.update(run_values)
        env.update(kept)
        return env

    async def _start_worker(self, n: int, env: dict[str, str], log_path: Path) -> None:
        with open(log_path, "ab") as log:  # noqa: ASYNC230 - a local append, microseconds
            log.write(f"--- worker {n} starting at {time.ctime()}\n".encode())
            log.flush()
            proc = await asyncio.create_subprocess_exec(
                *die_with_parent_prefix(),
                sys.executable,
                "-m",
                "workers.run",
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # Ctrl-C reaches us only; we stop workers first, in order
            )
        self._registry.add(proc.pid)
        self._workers.append(proc)
        asyncio.get_running_loop().create_task(self._watch_worker(n, proc, log_path))

    async def _watch_worker(self, n: int, proc: asyncio.subprocess.Process, log_path: Path) -> None:
        code = await proc.wait()
        if not self._stopping:
            tail = _tail(log_path)
            self.say(f"[dev] worker {n} exited with status {code}; last lines of {_shown(log_path)}:\n{tail}")
            self.request_stop(f"worker {n} died", 1)

    async def _stop_workers(self) -> None:
        running = [p for p in self._workers if p.returncode is None]
        for proc in running:
            with contextlib.suppress(ProcessLookupError):
                proc.send_signal(signal.SIGINT)  # finish in-flight sends, then exit

        async def wait(proc: asyncio.subprocess.Process) -> None:
            try:
                await asyncio.wait_for(proc.wait(), WORKER_STOP_SECONDS)
            except TimeoutError:
                with contextlib.suppress(ProcessLookupError):
                    proc.kill()
                await proc.wait()
            self._registry.remove(proc.pid)

        await asyncio.gather(*(wait(p) for p in running))

    async def _enroll(self, env: dict[str, str], smtp_port: int) -> None:
        async def one(mailbox: demo.DemoMailbox) -> tuple[demo.DemoMailbox, int, str]:
            proc = await asyncio.create_subprocess_exec(
                *demo.enroll_command(mailbox, smtp_port),
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.STDOUT,
            )
            output, _ = await proc.communicate()
            return mailbox, await proc.wait(), output.decode(errors="replace").strip()

        # The first alone, so that on a fresh database demo1 is mailbox-1; the rest side by side.
        first, *rest = demo.DEMO_MAILBOXES
        results = [await one(first), *await asyncio.gather(*(one(m) for m in rest))]
        failed = [(m, code, text) for m, code, text in results if code != 0]
        for mailbox, code, text in failed:
            self.say(f"[dev] `starter enroll --mailbox {mailbox.address}` failed with status {code}:\n{text}")
        if failed:
            raise StackError("enrolling the demo mailboxes failed (see above)")

    async def _mailbox_ids(self, dsn: str) -> dict[str, int]:
        conn = await asyncpg.connect(dsn)
        try:
            rows = await conn.fetch(
                "SELECT address, id FROM mailboxes WHERE address = ANY($1::text[])",
                [m.address for m in demo.DEMO_MAILBOXES],
            )
        finally:
            await conn.close()
        return {r["address"]: int(r["id"]) for r in rows}

    def _banner(self, temporal: DevServer, pg: PgServer, sink: SmtpSink, ids: dict[str, int]) -> None:
        first = demo.DEMO_MAILBOXES[0].address
        wf = f"mailbox-{ids.get(first, 1)}"
        venv_bin = _shown(Path(sys.executable).parent)
        cli = _shown(Path(temporal_cli()))
        env_file = _shown(self.data_dir / "dev.env")
        workflows = ", ".join(f"mailbox-{i}" for i in sorted(ids.values()))
        self.say(
            "\n"
            f"The warmup dev stack is up ({time.monotonic() - self._started:.1f}s). Demo mails print below.\n"
            f"  Temporal Web UI  {temporal.ui_url}  (workflows {workflows})\n"
            f"  PostgreSQL       {pg.dsn(DATABASE)}\n"
            f"  SMTP sink        127.0.0.1:{sink.port}\n"
            f"  Logs             {_shown(self.data_dir)}/logs/, pg.log, temporal.log\n"
            "\n"
            "Try, in another terminal:\n"
            f"  . {env_file}\n"
            f"  {venv_bin}/starter status --mailbox {first}\n"
            f'  {venv_bin}/starter pause --mailbox {first} --reason "trying it out"\n'
            f"  {venv_bin}/starter resume --mailbox {first}\n"
            f"  {cli} workflow signal --address {temporal.address} --workflow-id {wf} --name pause "
            '--input \'{"reason": "from the CLI"}\'\n'
            "\n"
            "Ctrl-C stops everything; the next `make dev` continues with the same data.\n"
        )

    async def _cleanup(self) -> None:
        self._stopping = True
        for name, stop in reversed(self._cleanups):
            t = time.monotonic()
            try:
                result = stop()
                if asyncio.iscoroutine(result):
                    await result
            except Exception as exc:  # keep stopping the rest
                self.say(f"[dev] stopping {name} failed: {type(exc).__name__}: {exc}")
                self.exit_code = self.exit_code or 1
            else:
                self.say(f"[dev] stopped {name} ({time.monotonic() - t:.1f}s)")
        self._cleanups.clear()
        self._registry.path.unlink(missing_ok=True)


def _tail(path: Path, lines: int = 15) -> str:
    try:
        with open(path, "rb") as f:
            f.seek(0, os.SEEK_END)
            f.seek(max(0, f.tell() - 4000))
            text = f.read().decode(errors="replace")
    except OSError:
        return "(no log)"
    return "\n".join("    " + line for line in text.splitlines()[-lines:])
