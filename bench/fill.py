"""Fill rate of a simulated day: legacy vs Phase 1 vs this system on the same mailboxes and quotas,
with every send of this system checked against its window and spacing, and the peak send rates
compared with the caps of the scale profile."""

from __future__ import annotations

import bisect
import itertools
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import asdict, dataclass
from typing import Any

from bench.fleet import MAX_RAMP_DAY, SIM_DAY, SimMailbox, make_fleet
from bench.legacy import simulate_loop
from bench.profile import SCALE_PROFILE
from bench.warmup_sim import SimDay, simulate_day
from warmup import schedule
from warmup.models import RampSettings


@dataclass(frozen=True)
class ModelFill:
    model: str  # "legacy", "phase1", "warmup"
    mailboxes: int
    quota: int
    sent: int  # emails counted towards quota (at most the quota per mailbox)
    full: int  # mailboxes at 100% of quota
    outside_window: int  # sends outside the mailbox's local sending window
    min_gap_seconds: float | None  # closest two sends of one mailbox
    spacing_violations: int  # consecutive sends of one mailbox closer than its delay_min
    wall_seconds: float

    @property
    def fill(self) -> float:
        return self.sent / self.quota if self.quota else 1.0

    @property
    def full_share(self) -> float:
        return self.full / self.mailboxes if self.mailboxes else 1.0


@dataclass(frozen=True)
class CapPeaks:
    global_per_minute: int
    global_per_hour: int
    user_per_minute: int
    user_per_hour: int

    def binding(self, caps: dict[str, int]) -> list[str]:
        """The scale-profile caps these peaks would reach (empty: the caps never bind)."""
        return [
            name
            for name, peak in (
                ("GLOBAL_SENDS_PER_MINUTE", self.global_per_minute),
                ("GLOBAL_SENDS_PER_HOUR", self.global_per_hour),
                ("USER_SENDS_PER_MINUTE", self.user_per_minute),
                ("USER_SENDS_PER_HOUR", self.user_per_hour),
            )
            if peak > caps[name]
        ]


@dataclass(frozen=True)
class FillRun:
    label: str
    mailboxes: int
    models: list[ModelFill]
    peaks: CapPeaks
    binding_caps: list[str]
    sim_events: int

    def as_dict(self) -> dict[str, Any]:
        out = asdict(self)
        for m, d in zip(self.models, out["models"], strict=True):
            d["fill"], d["full_share"] = m.fill, m.full_share
        return out


def _gaps(times: list[float]) -> list[float]:
    return [b - a for a, b in itertools.pairwise(sorted(times))]


def _judge(
    model: str,
    fleet: list[SimMailbox],
    quotas: dict[int, int],
    counted: dict[int, int],
    all_times: dict[int, list[float]],
    wall: float,
) -> ModelFill:
    outside = violations = 0
    min_gap: float | None = None
    for m in fleet:
        times = all_times.get(m.mailbox_id, [])
        for t in times:
            start, end = schedule.window_bounds(schedule.local_day(t, m.schedule.timezone), m.schedule)
            outside += not start <= t < end
        gaps = _gaps(times)
        if gaps:
            min_gap = min(gaps) if min_gap is None else min(min_gap, *gaps)
        floor = m.schedule.delay_min_minutes * 60 - 1e-6
        violations += sum(g < floor for g in gaps)
    sent = sum(min(counted.get(m.mailbox_id, 0), quotas[m.mailbox_id]) for m in fleet)
    full = sum(counted.get(m.mailbox_id, 0) >= quotas[m.mailbox_id] for m in fleet)
    return ModelFill(model, len(fleet), sum(quotas.values()), sent, full, outside, min_gap, violations, wall)


def peak_in_window(times: list[float], seconds: float) -> int:
    """Most sends inside any window (t - seconds, t]."""
    ordered = sorted(times)
    best = 0
    for i, t in enumerate(ordered):
        best = max(best, i + 1 - bisect.bisect_right(ordered, t - seconds))
    return best


def cap_peaks(fleet: list[SimMailbox], day: SimDay) -> CapPeaks:
    user_of = {m.mailbox_id: m.user_id for m in fleet}
    everyone = [s.dispatched_at for s in day.sends]
    per_user: dict[str, list[float]] = defaultdict(list)
    for s in day.sends:
        per_user[user_of[s.mailbox_id]].append(s.dispatched_at)
    return CapPeaks(
        peak_in_window(everyone, 60),
        peak_in_window(everyone, 3600),
        max((peak_in_window(ts, 60) for ts in per_user.values()), default=0),
        max((peak_in_window(ts, 3600) for ts in per_user.values()), default=0),
    )


def run_fill(label: str, fleet: list[SimMailbox], *, seed: str = "bench", latency: float = 0.0) -> FillRun:
    day = simulate_day(fleet, SIM_DAY, latency=latency)
    ours_times: dict[int, list[float]] = defaultdict(list)
    ours_counted: dict[int, int] = defaultdict(int)
    for s in day.sends:
        ours_times[s.mailbox_id].append(s.dispatched_at)
        ours_counted[s.mailbox_id] += s.day == SIM_DAY.isoformat()
    models = []
    events = day.steps
    for model in ("legacy", "phase1"):
        loop = simulate_loop(model, fleet, day.quotas, SIM_DAY, seed)
        counted = {m: len(ts) for m, ts in loop.sends.items()}
        models.append(_judge(model, fleet, day.quotas, counted, loop.sends, loop.wall_seconds))
    models.append(_judge("warmup", fleet, day.quotas, ours_counted, ours_times, day.wall_seconds))
    peaks = cap_peaks(fleet, day)
    return FillRun(label, len(fleet), models, peaks, peaks.binding(SCALE_PROFILE.caps()), events)


def standard_fleets(
    sizes: Iterable[int], max_ramp_day: int = MAX_RAMP_DAY
) -> list[tuple[str, list[SimMailbox]]]:
    """The audit's own case (48 mailboxes, 10 a day, one timezone), then each size with ramp quotas."""
    fleets = [("audit: 48 x 10/day", make_fleet(48, ramp=RampSettings(10, 0, 10), zones=("UTC",)))]
    fleets += [(f"{n:,} mailboxes, ramp quotas", make_fleet(n, max_ramp_day=max_ramp_day)) for n in sizes]
    return fleets
