"""Child processes that must not outlive the process that started them."""

from __future__ import annotations

import contextlib
import functools
import json
import os
import shutil
import signal
import subprocess
import time
from pathlib import Path


@functools.cache
def die_with_parent_prefix() -> tuple[str, ...]:
    """A command prefix that sends SIGINT to the child when its parent dies, even by SIGKILL.

    SIGINT is a clean, fast shutdown for postgres, the Temporal CLI and our workers. Linux ties the
    parent-death signal to the thread that forked the child, so start children from the main thread
    (or another thread that lives as long as they should). Without util-linux's `setpriv` the prefix
    is empty and only an orderly stop ends the children.
    """
    setpriv = shutil.which("setpriv")
    if setpriv is None:
        return ()
    probe = subprocess.run([setpriv, "--pdeathsig", "INT", "true"], capture_output=True, check=False)
    return (setpriv, "--pdeathsig", "INT") if probe.returncode == 0 else ()


def _start_time(pid: int) -> str | None:
    """The kernel's start time of `pid` (field 22 of /proc/PID/stat): tells a reused pid apart."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return None
    if fields[0] == "Z":
        return None  # a zombie is already gone
    return fields[19]


class PidRegistry:
    """The children `make dev` started, on disk, so the next run can stop those a SIGKILL left behind."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def _load(self) -> dict[int, str]:
        try:
            raw = json.loads(self.path.read_text())
            return {int(pid): str(start) for pid, start in raw.items()}
        except (OSError, ValueError, AttributeError):
            return {}

    def _save(self, entries: dict[int, str]) -> None:
        tmp = self.path.with_suffix(".tmp")
        tmp.write_text(json.dumps({str(pid): start for pid, start in entries.items()}))
        tmp.replace(self.path)

    def add(self, pid: int) -> None:
        start = _start_time(pid)
        if start is not None:
            entries = self._load()
            entries[pid] = start
            self._save(entries)

    def remove(self, pid: int) -> None:
        entries = self._load()
        if entries.pop(pid, None) is not None:
            self._save(entries)

    def stop_leftovers(self, timeout: float = 30.0) -> list[int]:
        """SIGINT every recorded process that still runs (same pid AND start time), then SIGKILL."""
        alive = [pid for pid, start in self._load().items() if _start_time(pid) == start]
        for pid in alive:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGINT)
        deadline = time.monotonic() + timeout
        while any(_start_time(pid) is not None for pid in alive) and time.monotonic() < deadline:
            time.sleep(0.05)
        for pid in alive:
            if _start_time(pid) is not None:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
        self.path.unlink(missing_ok=True)
        return alive
