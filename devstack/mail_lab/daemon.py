"""One lab daemon (Postfix's master, Dovecot, rspamd): started in the foreground, stopped with every process
it forked, waited for until it answers."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import time
from collections.abc import Callable, Sequence
from pathlib import Path

from devstack.processes import _start_time, die_with_parent_prefix


class MailLabError(RuntimeError):
    """The mail lab could not start, reload or stop; the message says which daemon and where its log is."""


class Daemon:
    def __init__(self, name: str, command: Sequence[str], output: Path, logs: Sequence[Path] = ()) -> None:
        self.name = name
        self.command = list(command)
        self.output = output  # the daemon's stdout/stderr (startup errors land here)
        self.logs = [output, *logs]  # where to look when it fails
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def pid(self) -> int | None:
        return self.proc.pid if self.proc is not None else None

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def start(self, *, die_with_parent: bool, privileges: Sequence[str] = ()) -> None:
        """`privileges`: setpriv options (--reuid ...) to drop root; the parent-death signal survives them
        only when setpriv sets both, since the kernel clears it on a change of credentials."""
        prefix = list(die_with_parent_prefix()) if die_with_parent else []
        if privileges and not prefix:
            prefix = ["setpriv"]
        with self.output.open("ab") as out:
            self.proc = subprocess.Popen(
                [*prefix, *privileges, *self.command],
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                # Its own session: a Ctrl-C in the terminal reaches `make dev`, which stops the lab in order.
                start_new_session=True,
                cwd="/",
            )

    def signal(self, signum: int) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signum)

    def descendants(self) -> dict[int, str]:
        """Every process forked from this daemon, by pid -> kernel start time (tells a reused pid apart)."""
        if self.pid is None:
            return {}
        children: dict[int, list[int]] = {}
        for entry in Path("/proc").iterdir():
            if not entry.name.isdigit():
                continue
            try:
                ppid = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
            children.setdefault(ppid, []).append(int(entry.name))
        found: dict[int, str] = {}
        todo = [self.pid]
        while todo:
            for child in children.get(todo.pop(), []):
                start = _start_time(child)
                if start is not None and child not in found:
                    found[child] = start
                    todo.append(child)
        return found

    def stop(self, timeout: float = 15.0) -> None:
        """SIGTERM (every one of these daemons then stops its children), wait, and make sure that every
        process it had forked is gone too; SIGKILL only what is left after `timeout`."""
        if self.proc is None:
            return
        forked = self.descendants()
        self.signal(signal.SIGTERM)
        deadline = time.monotonic() + timeout
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.proc.wait(max(0.1, deadline - time.monotonic()))
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        while time.monotonic() < deadline and _alive(forked):
            time.sleep(0.05)
        for pid in _alive(forked):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)

    def failure(self, what: str) -> MailLabError:
        tails = []
        for log in self.logs:
            with contextlib.suppress(OSError):
                tails.append(f"--- {log} (last lines)\n" + "\n".join(log.read_text().splitlines()[-15:]))
        return MailLabError(f"{self.name}: {what}\n" + "\n".join(tails))

    def wait_until(self, ready: Callable[[], bool], what: str, deadline: float) -> None:
        while not ready():
            if not self.running:
                code = self.proc.returncode if self.proc is not None else None
                raise self.failure(f"exited (status {code}) before {what}")
            if time.monotonic() > deadline:
                raise self.failure(f"not {what} in time")
            time.sleep(0.05)


def _alive(processes: dict[int, str]) -> list[int]:
    return [pid for pid, start in processes.items() if _start_time(pid) == start]


def port_open(port: int, host: str = "127.0.0.1") -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.settimeout(0.5)
        return sock.connect_ex((host, port)) == 0
