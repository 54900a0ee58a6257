"""Pure schedule arithmetic: local windows, ramp-up quotas and the day's send times.

No Temporal here: the workflow calls these with its own clock, and the benchmark's simulation
calls the very same functions, so both produce the same schedule for the same seeds. Times are
epoch seconds (UTC) so workflow state stays plain numbers.
"""

from __future__ import annotations

import datetime as dt
import math
import random
from zoneinfo import ZoneInfo

from warmup.models import RampSettings, ScheduleSettings

# A send planned this close to the window's end would risk landing after it once dispatched.
END_MARGIN_SECONDS = 1.0


def zone(tz: str) -> ZoneInfo:
    return ZoneInfo(tz)


def local_day(epoch: float, tz: str) -> dt.date:
    return dt.datetime.fromtimestamp(epoch, zone(tz)).date()


def _local_epoch(day: dt.date, hour: int, tz: str) -> float:
    # Hour 24 is the next day's midnight. A wall time inside a DST gap maps through fold=0,
    # which lands it just after the gap: the window still opens once and never twice.
    if hour == 24:
        day, hour = day + dt.timedelta(days=1), 0
    return dt.datetime.combine(day, dt.time(hour), tzinfo=zone(tz)).timestamp()


def window_bounds(day: dt.date, s: ScheduleSettings) -> tuple[float, float]:
    """[start, end) of the sending window on a local day, in epoch seconds (DST-aware length)."""
    return _local_epoch(day, s.window_start_hour, s.timezone), _local_epoch(
        day, s.window_end_hour, s.timezone
    )


def next_window_start(epoch: float, s: ScheduleSettings) -> float:
    """The first window opening strictly after the local day of `epoch`."""
    day = local_day(epoch, s.timezone) + dt.timedelta(days=1)
    return window_bounds(day, s)[0]


def ramp_quota(ramp: RampSettings, ramp_day: int, seed: str) -> int:
    """Volume for the `ramp_day`-th warmed day (0-based): start + increment * day, at most the ceiling,
    jittered by +/- daily_variance with a generator seeded per mailbox-day."""
    base = min(ramp.ceiling, ramp.start_volume + ramp.daily_increment * ramp_day)
    if ramp.daily_variance > 0 and base > 0:
        jitter = random.Random(f"{seed}:quota").uniform(-ramp.daily_variance, ramp.daily_variance)
        base = round(base * (1 + jitter))
    return max(0, min(ramp.ceiling, base))


def max_sends(span_seconds: float, delay_min_seconds: float) -> int:
    """How many sends fit in a span when consecutive sends must be delay_min apart."""
    usable = span_seconds - END_MARGIN_SECONDS
    if usable < 0:
        return 0
    return math.floor(usable / delay_min_seconds) + 1


def spread_sends(
    start: float,
    end: float,
    count: int,
    delay_min_seconds: float,
    delay_max_seconds: float,
    rng: random.Random,
    *,
    spread: bool = True,
) -> list[float]:
    """Times for `count` sends in [start, end), consecutive ones at least delay_min apart.

    Sends come in bursts whose inner gaps are drawn from [delay_min, delay_max]; when the bursts
    leave room in the window (spread=True) the slack goes to the breaks between bursts and to the
    lead and tail, at random, so the day is covered rather than front-loaded. Where the window is
    too short for [delay_min, delay_max] gaps, the gaps shrink towards delay_min (never below).
    The caller caps `count` with max_sends; a count that cannot fit raises ValueError.
    """
    if count <= 0:
        return []
    span = end - start - END_MARGIN_SECONDS
    if count > max_sends(end - start, delay_min_seconds):
        raise ValueError(f"{count} sends do not fit in {end - start:.0f}s at {delay_min_seconds:.0f}s apart")
    gaps = [rng.uniform(delay_min_seconds, delay_max_seconds) for _ in range(count - 1)]
    extra = sum(g - delay_min_seconds for g in gaps)
    room = span - delay_min_seconds * (count - 1)  # >= 0 by the check above
    lead = 0.0
    if extra > room:
        # Too dense: shrink every gap's excess over delay_min by the same factor.
        factor = room / extra if extra > 0 else 0.0
        gaps = [delay_min_seconds + (g - delay_min_seconds) * factor for g in gaps]
    elif spread:
        slack = span - sum(gaps)
        breaks = rng.sample(range(len(gaps)), k=min(len(gaps), _burst_breaks(count)))
        weights = [rng.expovariate(1.0) * 0.5, rng.expovariate(1.0) * 0.5]  # lead, tail
        weights += [rng.expovariate(1.0) for _ in breaks]
        total = sum(weights) or 1.0
        lead = slack * weights[0] / total
        for i, w in zip(breaks, weights[2:], strict=True):
            gaps[i] += slack * w / total
    times = [start + lead]
    for g in gaps:
        times.append(times[-1] + g)
    return times


def _burst_breaks(count: int) -> int:
    # About 2.5 sends per burst: a person answers a few emails, then does something else.
    return max(1, round(count / 2.5))


def day_seed(mailbox_id: int, day: dt.date | str) -> str:
    return f"{mailbox_id}:{day}"


def spread_rng(mailbox_id: int, day: dt.date | str, replans: int) -> random.Random:
    """Deterministic per mailbox-day and re-spread: replay-safe here, reproducible in a simulation.
    The seed's text ("plan") is part of every recorded schedule: changing it changes them all."""
    return random.Random(f"{day_seed(mailbox_id, day)}:plan:{replans}")


def session_times(start: float, end: float, count: int, rng: random.Random) -> list[float]:
    """When a mailbox reads its mail today: `count` times in [start, end), one in each equal part of the
    window at a random point of its middle half, so sessions are neither clumped nor on the hour."""
    if count <= 0 or end <= start:
        return []
    part = (end - start) / count
    return [start + part * (i + rng.uniform(0.25, 0.75)) for i in range(count)]


def session_rng(mailbox_id: int, day: dt.date | str) -> random.Random:
    return random.Random(f"{day_seed(mailbox_id, day)}:inbox")
