"""A sampling profile of a Python process with py-spy, when it is installed (`pip install py-spy`
into the venv; it is not a dependency of the project): the measured answer to "what limits it"."""

from __future__ import annotations

import shutil
import subprocess
import sys
from collections import Counter
from dataclasses import dataclass
from pathlib import Path


def py_spy() -> str | None:
    beside = Path(sys.executable).parent / "py-spy"
    return str(beside) if beside.is_file() else shutil.which("py-spy")


@dataclass(frozen=True)
class Profile:
    samples: int
    top: list[tuple[float, str]]  # (share of samples, frame) by inclusive time, most first
    raw: str  # path of the folded stacks


def record(pid: int, seconds: float, out: Path) -> subprocess.Popen[bytes] | None:
    """Start sampling `pid` for `seconds` (100 Hz, without pausing it); None without py-spy."""
    exe = py_spy()
    if exe is None:
        return None
    return subprocess.Popen(
        [
            *(exe, "record", "-p", str(pid), "-d", str(max(1, round(seconds))), "-f", "raw"),
            *("-o", str(out), "--nonblocking", "--rate", "100"),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )


# Plumbing every busy sample passes through: it says nothing about what the work is.
_PLUMBING = (
    "asyncio/",
    "threading.py",
    "concurrent/futures/",
    "selectors.py",
    "<frozen runpy>",
    "workers/run.py",
    "bench/bare.py",
)
_IDLE = ("EpollSelector.select", "select (selectors.py")


def summarize(raw: Path, top: int = 25) -> Profile | None:
    """Inclusive share of the busy samples per frame (idle waits and event-loop plumbing left out)."""
    if not raw.exists():
        return None
    inclusive: Counter[str] = Counter()
    busy = 0
    for line in raw.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        if not count.isdigit():
            continue
        frames = [_short(f) for f in stack.split(";")]
        if not frames or frames[-1].startswith(_IDLE):
            continue
        n = int(count)
        busy += n
        for frame in set(frames):
            if frame and not any(p in frame for p in _PLUMBING):
                inclusive[frame] += n
    if not busy:
        return None
    ranked = [(round(n / busy, 3), f) for f, n in inclusive.most_common(top)]
    return Profile(busy, ranked, str(raw))


def _short(frame: str) -> str:
    # "func (path/to/site-packages/pkg/mod.py:12)" -> "func (pkg/mod.py:12)"
    name, _, where = frame.partition(" (")
    for marker in ("site-packages/", "/work/main/", "python3.11/"):
        if marker in where:
            where = where.split(marker, 1)[1]
    return f"{name} ({where}" if where else name
