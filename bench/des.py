"""A small discrete-event engine: a heap of (wake time, process) on a simulated clock.

A process is a generator that yields the simulated time it wants to wake at (a time in the past
means "now"), or a `Join` to wait until child processes have all finished, like `Promise.all`.
"""

from __future__ import annotations

import heapq
import itertools
from collections.abc import Generator
from dataclasses import dataclass

Process = Generator["float | Join", None, None]


@dataclass
class Join:
    children: list[Process]


@dataclass
class _Waiter:
    parent: Process
    parent_waiter: _Waiter | None  # the join the parent itself belongs to
    remaining: int


class Sim:
    def __init__(self, start: float) -> None:
        self.now = start
        self.steps = 0
        self._heap: list[tuple[float, int, Process, _Waiter | None]] = []
        self._seq = itertools.count()

    def spawn(self, proc: Process, at: float | None = None) -> None:
        self._push(proc, self.now if at is None else at, None)

    def _push(self, proc: Process, at: float, waiter: _Waiter | None) -> None:
        heapq.heappush(self._heap, (max(at, self.now), next(self._seq), proc, waiter))

    def run(self, until: float) -> None:
        """Advance the clock, waking processes in time order, until nothing is due before `until`."""
        heap = self._heap
        while heap and heap[0][0] < until:
            at, _, proc, waiter = heapq.heappop(heap)
            self.now = at
            self.steps += 1
            try:
                wanted = next(proc)
            except StopIteration:
                self._finished(waiter)
                continue
            if isinstance(wanted, Join):
                join = _Waiter(proc, waiter, len(wanted.children))
                if not wanted.children:
                    self._push(proc, at, waiter)
                for child in wanted.children:
                    self._push(child, at, join)
            else:
                self._push(proc, wanted, waiter)
        self.now = max(self.now, until)

    def _finished(self, waiter: _Waiter | None) -> None:
        if waiter is None:
            return
        waiter.remaining -= 1
        if waiter.remaining == 0:
            self._push(waiter.parent, self.now, waiter.parent_waiter)
