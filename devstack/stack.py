"""`make dev`: PostgreSQL, the Temporal dev server, the mail lab (or an SMTP sink) and workers, with a
running demo.

Everything listens on loopback and keeps its state in the data folder (`.data/`), so a second run
picks up where the first stopped. The demo mailboxes live on the mail lab (real Postfix, Dovecot and
rspamd) where it can run; where it cannot (no root, not Debian), `make dev` says why and sends the demo
mail to an SMTP sink instead. Ctrl-C or SIGTERM stops what was started, newest first.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import json
import os
import signal
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TextIO

import asyncpg
from temporalio.client import Client, WorkflowUpdateFailedError
from temporalio.service import RPCError

from devstack import demo
from devstack.devenv import load_or_create
from devstack.mail_lab import LabPorts, MailLab, MailLabError, unavailable_reason
from devstack.mail_watch import MailEvent, MailWatch
from devstack.postgres import PgServer
from devstack.processes import PidRegistry, die_with_parent_prefix
from devstack.smtp_sink import ReceivedMessage, SmtpSink
from devstack.temporal import DevServer, temporal_cli
from warmup.workflow_ids import mailbox_workflow_id
from workflows.mailbox import MailboxWarmupWorkflow

DATABASE = "warmup"
WORKER_STOP_SECONDS = 20.0
MAIL_MODES = ("auto", "lab", "sink")  # auto: the lab where it can run, else the sink
DEFAULT_LAB_PORTS = LabPorts(submission=2587, imap=2143, imaps=2993)


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
    api_port: int = 8000  # the HTTP API and dashboard (`python -m api`)
    smtp_port: int = 2525
    mail: str = "auto"  # one of MAIL_MODES
    lab_ports: LabPorts = DEFAULT_LAB_PORTS
    workers: int | None = None  # None: WARMUP_WORKER_COUNT if set, else demo.DEFAULT_WORKER_COUNT
    exit_after_mails: int | None = None
    exit_after_replies: int | None = None  # on the lab: stop (exit 0) once this many answers landed
    timeout: float | None = None
    read_every: float = demo.READ_EVERY_SECONDS


def mail_choice(mode: str, lab_problem: str | None) -> tuple[bool, str]:
    """Whether to run the mail lab, and the line that says so (or why not)."""
    if mode == "sink":
        return False, "demo mail goes to the SMTP sink (--mail sink)"
    if lab_problem is None:
        return True, ""
    if mode == "lab":
        raise StackError(f"mail lab (--mail lab): {lab_problem}")
    return False, f"the mail lab cannot run here ({lab_problem}); demo mail goes to the SMTP sink instead"


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
        self._lab: MailLab | None = None
        self._arrived = 0  # demo mails that landed (answers included)
        self._answers = 0  # answers that landed (on the lab)
        self._tasks: list[asyncio.Task[None]] = []

    # --- output ----------------------------------------------------------------------------

    def say(self, text: str) -> None:
        print(text, file=self.out, flush=True)

    def _print_mail(self, msg: ReceivedMessage) -> None:
        stamp = time.strftime("%H:%M:%S", time.localtime(msg.received_at))
        subject = str(msg.message.get("Subject", "")).replace("\n", " ")
        self.say(f"{stamp}  mail  {msg.mail_from} -> {', '.join(msg.rcpt_tos)}  {subject}")
        self._count(arrived=1)

    def _print_lab_event(self, event: MailEvent) -> None:
        self.say(event.line(time.strftime("%H:%M:%S")))
        if event.kind in ("mail", "reply"):
            self._count(arrived=1, answers=int(event.kind == "reply"))

    def _count(self, arrived: int = 0, answers: int = 0) -> None:
        self._arrived += arrived
        self._answers += answers
        mails, replies = self.opts.exit_after_mails, self.opts.exit_after_replies
        if mails is not None and self._arrived >= mails:
            self.request_stop(f"{mails} demo mails arrived", 0)
        if replies is not None and self._answers >= replies:
            self.request_stop(f"{replies} answer(s) arrived", 0)

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
        wanted = f" of {self.opts.exit_after_mails}" if self.opts.exit_after_mails is not None else ""
        answers = f" and {self._answers} answers" if self._lab is not None else ""
        self.request_stop(f"timeout after {seconds:.0f}s with {self._arrived}{wanted} mails{answers}", 1)

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
        use_lab, why = mail_choice(opts.mail, None if opts.mail == "sink" else unavailable_reason())
        if why:
            self.say(f"[dev] {why}")
        if not use_lab and opts.exit_after_replies is not None:
            raise StackError("--exit-after-replies needs the mail lab: only its mailboxes read and answer")
        target = await (self._start_lab(env) if use_lab else self._start_sink(env))

        t = time.monotonic()
        count = opts.workers or int(os.environ.get("WARMUP_WORKER_COUNT") or demo.DEFAULT_WORKER_COUNT)
        logs = self.data_dir / "logs"
        logs.mkdir(exist_ok=True)
        worker_env = {k: v for k, v in env.items() if k != demo.SECRET_ENV}
        for i in range(1, count + 1):
            await self._start_worker(i, worker_env, logs / f"worker-{i}.log")
        self._cleanups.append(("workers", self._stop_workers))
        self._step_done(f"{count} worker process(es), logs in {_shown(logs)}/", t)

        t = time.monotonic()
        token = await self._start_api(worker_env, logs / "api.log")
        self._step_done(f"HTTP API and dashboard on {self._api_url}, log in {_shown(logs)}/api.log", t)

        # Enroll once the workers run: `starter enroll` is an Update a worker answers (its validator
        # can refuse). A first send that comes before the row commits is retried by the activity.
        t = time.monotonic()
        await self._enroll(env, target)
        ids = await self._mailbox_ids(pg.dsn(DATABASE))
        self._step_done(f"enrolled {len(demo.DEMO_MAILBOXES)} demo mailboxes", t)

        self._banner(temporal, pg, target, ids, token)
        if self._lab is not None:
            self._tasks.append(asyncio.get_running_loop().create_task(self._ask_to_read(temporal, ids)))

    async def _start_sink(self, env: dict[str, str]) -> demo.MailTarget:
        t = time.monotonic()
        self._sink = sink = SmtpSink(
            "127.0.0.1",
            self.opts.smtp_port,
            credentials={m.address: env[demo.SECRET_ENV] for m in demo.DEMO_MAILBOXES},
            on_message=self._print_mail,
        )
        try:
            await sink.start()
        except OSError as exc:
            raise StackError(f"SMTP sink on 127.0.0.1:{self.opts.smtp_port}: {exc}") from None
        self._cleanups.append(("SMTP sink", sink.stop))
        self._step_done(f"SMTP sink on 127.0.0.1:{sink.port}", t)
        return demo.MailTarget("127.0.0.1", sink.port, "none")

    async def _start_lab(self, env: dict[str, str]) -> demo.MailTarget:
        """Postfix, Dovecot and rspamd with a mailbox per demo address (password: DEMO_SMTP_SECRET), the
        Maildirs kept across runs, and a watch that prints what lands and moves in them."""
        t = time.monotonic()
        ports = self.opts.lab_ports
        lab = MailLab(self.data_dir / "mail-lab", ports=ports, keep_mail=True)
        for m in demo.DEMO_MAILBOXES:
            lab.add_mailbox(m.address, env[demo.SECRET_ENV])
        lab.force_junk_from(demo.JUNKED_SENDERS)
        try:
            await asyncio.to_thread(lab.start)
        except MailLabError as exc:
            raise StackError(f"mail lab: {exc}") from None
        self._lab = lab
        for pid in lab.pids:
            self._registry.add(pid)
        self._cleanups.append(("mail lab", lab.stop))
        # Workers and the starter verify the lab's certificates against its CA.
        env.update(lab.client_env())
        self._step_done(
            f"mail lab on {lab.host}: Postfix submission {lab.submission_port}, Dovecot IMAP "
            f"{lab.imap_port} (STARTTLS) and {lab.imaps_port} (TLS), rspamd",
            t,
        )
        watch = MailWatch({m.address: lab.home(m.address) for m in demo.DEMO_MAILBOXES})
        watch.prime()
        self._tasks.append(asyncio.get_running_loop().create_task(self._watch_mail(watch)))
        return demo.MailTarget(lab.host, lab.submission_port, "starttls", lab.host, lab.imaps_port)

    async def _watch_mail(self, watch: MailWatch) -> None:
        while True:
            for event in await asyncio.to_thread(watch.scan):
                self._print_lab_event(event)
            await asyncio.sleep(1.0)

    async def _ask_to_read(self, temporal: DevServer, ids: dict[str, int]) -> None:
        """The demo's clock: each mailbox reads its mail every `read_every` seconds instead of a few
        times a day, through the same Update as `starter read-inbox` (refusals, e.g. paused, are fine)."""
        try:
            client = await Client.connect(temporal.address, namespace="default")
        except RuntimeError as exc:
            self.say(f"[dev] the demo cannot ask mailboxes to read their mail: {exc}")
            return
        while True:
            await asyncio.sleep(self.opts.read_every)
            for mailbox_id in ids.values():
                handle = client.get_workflow_handle_for(
                    MailboxWarmupWorkflow.run, mailbox_workflow_id(mailbox_id)
                )
                with contextlib.suppress(WorkflowUpdateFailedError, RPCError, TimeoutError):
                    async with asyncio.timeout(10):
                        await handle.execute_update(MailboxWarmupWorkflow.read_inbox_now)

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

    async def _enroll(self, env: dict[str, str], target: demo.MailTarget) -> None:
        async def one(mailbox: demo.DemoMailbox) -> tuple[demo.DemoMailbox, int, str]:
            proc = await asyncio.create_subprocess_exec(
                *demo.enroll_command(mailbox, target),
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

    @property
    def _api_url(self) -> str:
        return f"http://127.0.0.1:{self.opts.api_port}"

    async def _start_api(self, env: dict[str, str], log_path: Path) -> str:
        """`python -m api` on 127.0.0.1, once it answers; a new API token for the first demo user."""
        api_env = {**env, "WARMUP_API_HOST": "127.0.0.1", "WARMUP_API_PORT": str(self.opts.api_port)}
        with open(log_path, "ab") as log:  # noqa: ASYNC230 - a local append, microseconds
            proc = await asyncio.create_subprocess_exec(
                *die_with_parent_prefix(),
                sys.executable,
                "-m",
                "api",
                env=api_env,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        self._registry.add(proc.pid)

        async def stop() -> None:
            if proc.returncode is None:
                with contextlib.suppress(ProcessLookupError):
                    proc.terminate()
                try:
                    await asyncio.wait_for(proc.wait(), 10)
                except TimeoutError:
                    proc.kill()
                    await proc.wait()
            self._registry.remove(proc.pid)

        self._cleanups.append(("HTTP API", stop))
        for _ in range(300):
            if proc.returncode is not None:
                raise StackError(f"the HTTP API exited ({proc.returncode}):\n{_tail(log_path)}")
            if await asyncio.to_thread(_answers, f"{self._api_url}/healthz"):
                break
            await asyncio.sleep(0.1)
        else:
            raise StackError(f"the HTTP API did not answer within 30 s:\n{_tail(log_path)}")
        user = demo.DEMO_MAILBOXES[0].user
        created = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "starter", "token", "create", "--user", user, "--label", "make dev",
            "--json",
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )  # fmt: skip
        out, err = await created.communicate()
        if created.returncode != 0:
            raise StackError(f"`starter token create --user {user}` failed: {err.decode(errors='replace')}")
        token: str = json.loads(out)["token"]
        return token

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

    def _banner(
        self, temporal: DevServer, pg: PgServer, target: demo.MailTarget, ids: dict[str, int], token: str
    ) -> None:
        first = demo.DEMO_MAILBOXES[0].address
        wf = f"mailbox-{ids.get(first, 1)}"
        venv_bin = _shown(Path(sys.executable).parent)
        cli = _shown(Path(temporal_cli()))
        env_file = _shown(self.data_dir / "dev.env")
        workflows = ", ".join(f"mailbox-{i}" for i in sorted(ids.values()))
        lab = self._lab
        if lab is None:
            mail = f"  SMTP sink        {target.smtp_host}:{target.smtp_port}\n"
            what, imap = "Demo mails print below", ""
        else:
            ca = _shown(lab.ca_file)
            mail = (
                f"  Mail lab         Postfix {lab.host}:{lab.submission_port} (STARTTLS + AUTH), "
                f"Dovecot IMAP {lab.host}:{lab.imaps_port} (TLS) and :{lab.imap_port} (STARTTLS), rspamd\n"
                f"  Demo mailboxes   demo1..demo{len(demo.DEMO_MAILBOXES)}@demo.test, password "
                f"${demo.SECRET_ENV} from {env_file}; the lab files mail from "
                f"{', '.join(demo.JUNKED_SENDERS)} into Junk\n"
            )
            what = (
                "Below: demo mail landing (INBOX or Junk), rescued, read, flagged and answered; every "
                f"{self.opts.read_every:g}s each mailbox is asked to read its mail (`starter read-inbox`), "
                "where a real one reads it a few times a day"
            )
            imap = (
                f"  {imap_look_command(lab, first)}   # a demo mailbox over IMAP\n"
                f"  (or a mail client: IMAP {lab.host}, port {lab.imaps_port}, SSL/TLS, user {first}, "
                f"that password, trusting {ca})\n"
                f"  {venv_bin}/starter read-inbox --mailbox {first}\n"
            )
        self.say(
            "\n"
            f"The warmup dev stack is up ({time.monotonic() - self._started:.1f}s). {what}.\n"
            f"  Temporal Web UI  {temporal.ui_url}  (workflows {workflows})\n"
            f"  PostgreSQL       {pg.dsn(DATABASE)}\n"
            f"  Dashboard        {self._api_url}/dashboard  (sign in with the demo token below)\n"
            f"  HTTP API         {self._api_url}/v1  (OpenAPI at {self._api_url}/docs)\n"
            f"  Demo token       {token}  (user {demo.DEMO_MAILBOXES[0].user})\n"
            f"{mail}"
            f"  Logs             {_shown(self.data_dir)}/logs/, pg.log, temporal.log\n"
            "\n"
            "Try, in another terminal:\n"
            f"  . {env_file}\n"
            f"{imap}"
            f"  {venv_bin}/starter status --mailbox {first}\n"
            f'  curl -s -H "Authorization: Bearer {token}" {self._api_url}/v1/mailboxes/{first}\n'
            f'  {venv_bin}/starter pause --mailbox {first} --reason "trying it out"\n'
            f"  {venv_bin}/starter resume --mailbox {first}\n"
            f"  {cli} workflow signal --address {temporal.address} --workflow-id {wf} --name pause "
            '--input \'{"reason": "from the CLI"}\'\n'
            "\n"
            "Ctrl-C stops everything; the next `make dev` continues with the same data.\n"
        )

    async def _cleanup(self) -> None:
        self._stopping = True
        for task in self._tasks:  # the demo's watch and clock first: they read what stops next
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
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


def imap_look_command(lab: MailLab, address: str) -> str:
    """A shell command that lists a lab mailbox's INBOX (flags; date, subject, addresses) over IMAPS, with the
    password from the DEMO_SMTP_SECRET variable that `. .data/dev.env` sets."""
    return (
        f"curl -s --cacert {_shown(lab.ca_file)} -u {address}:${demo.SECRET_ENV} "
        f"imaps://{lab.host}:{lab.imaps_port}/INBOX "
        "-X 'FETCH 1:* (FLAGS ENVELOPE)'"
    )


def _answers(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=2) as r:
            return bool(r.status == 200)
    except OSError:
        return False


def _tail(path: Path, lines: int = 15) -> str:
    try:
        with open(path, "rb") as f:
            f.seek(0, os.SEEK_END)
            f.seek(max(0, f.tell() - 4000))
            text = f.read().decode(errors="replace")
    except OSError:
        return "(no log)"
    return "\n".join("    " + line for line in text.splitlines()[-lines:])
