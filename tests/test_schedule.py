"""Property tests of the pure schedule arithmetic the workflow and the benchmark share."""

from __future__ import annotations

import datetime as dt
import itertools
import random
import statistics

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from warmup import schedule
from warmup.models import RampSettings, ScheduleSettings

EPS = 1e-6


@st.composite
def plans(draw: st.DrawFn) -> tuple[float, float, int, float, float, int, bool]:
    start = draw(st.floats(min_value=1.7e9, max_value=1.8e9))
    length = draw(st.floats(min_value=10.0, max_value=86_400.0))
    dmin = draw(st.floats(min_value=1.0, max_value=1200.0))
    dmax = dmin + draw(st.floats(min_value=0.0, max_value=1800.0))
    fits = schedule.max_sends(length, dmin)
    count = draw(st.integers(min_value=0, max_value=max(0, min(fits, 400))))
    return start, start + length, count, dmin, dmax, draw(st.integers(0, 2**32)), draw(st.booleans())


@given(plans())
@settings(max_examples=400, deadline=None)
def test_plan_fills_the_quota_inside_the_window_with_spacing(
    p: tuple[float, float, int, float, float, int, bool],
) -> None:
    start, end, count, dmin, dmax, seed, spread = p
    times = schedule.spread_sends(start, end, count, dmin, dmax, random.Random(seed), spread=spread)
    assert len(times) == count
    assert all(start - EPS <= t < end for t in times)
    gaps = [b - a for a, b in itertools.pairwise(times)]
    assert all(g >= dmin - 1e-6 for g in gaps), "same-mailbox sends closer than delay_min"
    long_gaps = [g for g in gaps if g > dmax + 1e-6]
    if not spread:
        assert not long_gaps, "without spreading every gap stays within [delay_min, delay_max]"
    else:
        assert len(long_gaps) <= max(1, round(count / 2.5)), "more breaks than bursts"


@given(
    length=st.floats(min_value=0, max_value=86_400),
    dmin=st.floats(min_value=1, max_value=3600),
)
def test_one_more_than_max_sends_does_not_fit(length: float, dmin: float) -> None:
    n = schedule.max_sends(length, dmin)
    with pytest.raises(ValueError):
        schedule.spread_sends(0, length, n + 1, dmin, dmin * 5, random.Random(1))


def test_spread_day_is_not_front_loaded() -> None:
    """Over many mailbox-days, sends sit across the whole window, not bunched at its start."""
    start, end = 0.0, 16 * 3600.0
    positions: list[float] = []
    for seed in range(300):
        times = schedule.spread_sends(start, end, 5, 120, 600, random.Random(seed))
        positions += [(t - start) / (end - start) for t in times]
    assert 0.4 < statistics.mean(positions) < 0.6
    assert sum(p >= 0.75 for p in positions) / len(positions) > 0.15, "last quarter of the window starved"
    assert sum(p < 0.25 for p in positions) / len(positions) > 0.15, "first quarter of the window starved"


def test_dense_quota_is_compressed_not_dropped() -> None:
    # 200 sends at 2-10 min do not fit a chain of random gaps in 16 h: gaps shrink toward 2 min.
    times = schedule.spread_sends(0, 16 * 3600, 200, 120, 600, random.Random(7))
    assert len(times) == 200 and times[-1] < 16 * 3600


@given(
    start=st.integers(0, 100),
    inc=st.integers(0, 20),
    extra=st.integers(0, 200),
    days=st.integers(0, 120),
)
def test_ramp_grows_by_increment_until_the_ceiling(start: int, inc: int, extra: int, days: int) -> None:
    ramp = RampSettings(start_volume=start, daily_increment=inc, ceiling=start + extra)
    q = [schedule.ramp_quota(ramp, d, "m:x") for d in range(days + 2)]
    assert q[0] == start
    assert all(b >= a for a, b in itertools.pairwise(q))
    assert all(x <= ramp.ceiling for x in q)
    assert q[days] == min(ramp.ceiling, start + inc * days)


@given(variance=st.floats(0.01, 0.5), day=st.integers(0, 60), seed=st.text(max_size=8))
def test_ramp_variance_stays_within_its_band(variance: float, day: int, seed: str) -> None:
    ramp = RampSettings(start_volume=10, daily_increment=2, ceiling=60, daily_variance=variance)
    base = min(60, 10 + 2 * day)
    q = schedule.ramp_quota(ramp, day, seed)
    assert base * (1 - variance) - 1 <= q <= min(60, base * (1 + variance) + 1)
    assert q == schedule.ramp_quota(ramp, day, seed), "same seed, same quota"


def test_audit_fixed_quota_is_reachable_by_configuration() -> None:
    ramp = RampSettings(start_volume=10, daily_increment=0, ceiling=10)
    assert {schedule.ramp_quota(ramp, d, "m") for d in range(30)} == {10}


@pytest.mark.parametrize(
    ("day", "start", "end", "hours"),
    [
        (dt.date(2026, 3, 8), 0, 24, 23),  # New York springs forward: a 23-hour day
        (dt.date(2026, 11, 1), 0, 24, 25),  # and falls back: a 25-hour day
        (dt.date(2026, 3, 8), 6, 22, 16),  # 6am-10pm is still 16 hours: the jump is at 2am
        (dt.date(2026, 11, 1), 1, 3, 3),  # 1am-3am holds the repeated hour
    ],
)
def test_window_length_follows_dst(day: dt.date, start: int, end: int, hours: int) -> None:
    s = ScheduleSettings(timezone="America/New_York", window_start_hour=start, window_end_hour=end)
    a, b = schedule.window_bounds(day, s)
    assert b - a == hours * 3600
    assert dt.datetime.fromtimestamp(a, schedule.zone(s.timezone)).hour == start


def test_next_window_start_is_tomorrows_opening_in_local_time() -> None:
    s = ScheduleSettings(timezone="Asia/Tokyo", window_start_hour=6, window_end_hour=22)
    late = dt.datetime(2026, 5, 1, 23, 30, tzinfo=schedule.zone("Asia/Tokyo")).timestamp()
    nxt = dt.datetime.fromtimestamp(schedule.next_window_start(late, s), schedule.zone("Asia/Tokyo"))
    assert (nxt.date(), nxt.hour) == (dt.date(2026, 5, 2), 6)
