"""warmup.engagement: every decision drawn from the email's own key, at the configured rates."""

from __future__ import annotations

import datetime as dt

from hypothesis import given, settings
from hypothesis import strategies as st

from warmup.engagement import MISSING_AFTER, decide, is_missing
from warmup.models import EngagementSettings

rate = st.floats(0, 1)


@st.composite
def engagement(draw: st.DrawFn) -> EngagementSettings:
    dwell = sorted(draw(st.lists(st.floats(0, 3600), min_size=2, max_size=2)))
    delay = sorted(draw(st.lists(st.floats(0, 10080), min_size=2, max_size=2)))
    return EngagementSettings(
        enabled=True,
        read_rate=draw(rate),
        rescue_rate=draw(rate),
        important_rate=draw(rate),
        reply_rate=draw(rate),
        dwell_min_seconds=dwell[0],
        dwell_max_seconds=dwell[1],
        reply_delay_min_minutes=delay[0],
        reply_delay_max_minutes=delay[1],
    )


@given(key=st.text(min_size=1, max_size=80), s=engagement())
def test_a_retry_repeats_the_same_decisions_within_bounds(key: str, s: EngagementSettings) -> None:
    d = decide(key, s)
    assert d == decide(key, s)
    assert s.dwell_min_seconds <= d.dwell_seconds <= s.dwell_max_seconds
    assert s.reply_delay_min_minutes * 60 <= d.reply_delay_seconds <= s.reply_delay_max_minutes * 60
    # A person opens what they flag or answer.
    assert d.read or not (d.important or d.reply)


@settings(max_examples=25, deadline=None)
@given(s=engagement(), salt=st.integers(0, 10**6))
def test_over_many_emails_each_rate_is_what_was_set(s: EngagementSettings, salt: int) -> None:
    n = 4000
    ds = [decide(f"{salt}:{i}:2026-12-02:{i % 7}", s) for i in range(n)]
    tolerance = 4 * (0.25 / n) ** 0.5 + 1e-9  # four standard deviations at worst (p = 0.5)
    for measured, wanted in (
        (sum(d.rescue for d in ds) / n, s.rescue_rate),
        (sum(d.important for d in ds) / n, s.important_rate),
        (sum(d.reply for d in ds) / n, s.reply_rate),
    ):
        assert abs(measured - wanted) <= tolerance
    # read also counts what is flagged or answered: at least its own rate.
    assert sum(d.read for d in ds) / n >= s.read_rate - tolerance


@given(s=engagement())
def test_changing_one_rate_leaves_the_other_decisions_alone(s: EngagementSettings) -> None:
    other = EngagementSettings(**{**s.__dict__, "rescue_rate": 1 - s.rescue_rate})
    for i in range(50):
        a, b = decide(f"k{i}", s), decide(f"k{i}", other)
        assert (a.important, a.reply, a.dwell_seconds) == (b.important, b.reply, b.dwell_seconds)


def test_missing_after_the_documented_time() -> None:
    sent = dt.datetime(2026, 12, 1, 9, tzinfo=dt.UTC)
    assert not is_missing(sent, sent + MISSING_AFTER - dt.timedelta(seconds=1))
    assert is_missing(sent, sent + MISSING_AFTER)
