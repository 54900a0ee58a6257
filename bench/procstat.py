"""CPU and memory of the processes a benchmark runs, by role: the measured profile of where a
machine's cores go (Temporal server, worker, PostgreSQL, SMTP sink, the benchmark itself)."""

from __future__ import annotations

import contextlib
import time
from dataclasses import dataclass

import psutil  # type: ignore[import-untyped]


def _tree(pid: int) -> list[psutil.Process]:
    try:
        root = psutil.Process(pid)
        return [root, *root.children(recursive=True)]
    except psutil.NoSuchProcess:
        return []


def cpu_seconds(pid: int, *, tree: bool = False) -> float:
    """User + system CPU of `pid`, with `tree` also of its live children (postgres backends)."""
    total = 0.0
    for p in _tree(pid) if tree else _tree(pid)[:1]:
        with contextlib.suppress(psutil.NoSuchProcess, psutil.AccessDenied):
            t = p.cpu_times()
            total += t.user + t.system
    return total


def rss_bytes(pid: int, *, tree: bool = False) -> int:
    total = 0
    for p in _tree(pid) if tree else _tree(pid)[:1]:
        with contextlib.suppress(psutil.NoSuchProcess, psutil.AccessDenied):
            total += p.memory_info().rss
    return total


@dataclass(frozen=True)
class CpuSample:
    at: float
    seconds: dict[str, float]


# Roles whose CPU includes their children: PostgreSQL works in one backend process per connection.
TREE_ROLES = frozenset({"postgres"})


class CpuMeter:
    """Snapshots of CPU seconds per role; `cores(a, b)` is the CPU each role used between two of them."""

    def __init__(self, roles: dict[str, list[int]]) -> None:
        self.roles = roles

    def sample(self) -> CpuSample:
        return CpuSample(
            time.monotonic(),
            {
                role: sum(cpu_seconds(p, tree=role in TREE_ROLES) for p in pids)
                for role, pids in self.roles.items()
            },
        )

    @staticmethod
    def cores(a: CpuSample, b: CpuSample) -> dict[str, float]:
        span = max(b.at - a.at, 1e-9)
        return {role: round((b.seconds[role] - a.seconds.get(role, 0.0)) / span, 3) for role in b.seconds}


def machine() -> dict[str, object]:
    freq = psutil.cpu_freq()
    return {
        "cpus": psutil.cpu_count(),
        "cpu_mhz": round(freq.current) if freq else None,
        "memory_gb": round(psutil.virtual_memory().total / 2**30, 1),
        "cpu_model": _cpu_model(),
        "load_before": [round(x, 2) for x in psutil.getloadavg()],
    }


def _cpu_model() -> str:
    with contextlib.suppress(OSError):
        for line in open("/proc/cpuinfo", encoding="utf-8"):
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return "unknown"


FIXED_WORK = 2_000_000  # multiply-adds: about 0.1 s of CPU on these machines


def fixed_work_seconds() -> float:
    """CPU seconds a fixed piece of Python takes now: a reading of the machine's speed of the moment,
    which drifts with what shares its host (docs/benchmarks.md, 2026-12-07). Only a reading: it did not
    track the loops' drift, and a rate multiplied by it spread wider than the rate alone."""
    began = time.thread_time()
    x = 0
    for i in range(FIXED_WORK):
        x += i * i
    return time.thread_time() - began
