"""The ramp's reaction to placement (issue #15) as pure functions: what each spam share does to the ramp
day and the spacing, and how a day's schedule applies it."""

from __future__ import annotations

import datetime as dt
import itertools

from hypothesis import given
from hypothesis import strategies as st

from warmup.day_schedule import DaySchedule
from warmup.models import (
    MailboxWorkflowState,
    Placement,
    PlacementReport,
    RampSettings,
    ReactionSettings,
    ScheduleSettings,
)
from warmup.ramp_reaction import Reaction, react

S = ReactionSettings()


def report(inbox: int, junk: int, other: int = 0, missing: int = 0) -> PlacementReport:
    return PlacementReport(Placement(inbox, junk, other, missing), days=7, settings=S)


def test_each_band_of_spam_share_has_its_reaction() -> None:
    assert react(report(5, 0), 4, 5, 1.0).reaction is Reaction.NO_DATA  # 5 judged < 10
    climb = react(report(95, 5), 4, 5, 1.5)
    assert (climb.reaction, climb.ramp_day, climb.spacing_factor, climb.reason) == (
        Reaction.CLIMB,
        5,
        1.0,
        "",
    )
    hold = react(report(82, 18), 4, 5, 1.0)
    assert (hold.reaction, hold.ramp_day) == (Reaction.HOLD, 4)
    assert hold.reason == "held at ramp day 4: 18% in spam over 7 days (18 of 100)"
    down = react(report(70, 30), 4, 5, 1.0)
    assert (down.reaction, down.ramp_day, down.spacing_factor) == (Reaction.STEP_DOWN, 2, 1.5)
    assert down.reason == "stepped down to ramp day 2, spacing x1.5: 30% in spam over 7 days (30 of 100)"
    pause = react(report(40, 60), 4, 5, 1.0)
    assert pause.reaction is Reaction.PAUSE and pause.reason.startswith("placement critical: 60% in spam")
    # Missing mail is judged but is not spam; another folder (a category tab) is not spam either.
    assert react(report(50, 0, other=30, missing=20), 4, 5, 1.0).reaction is Reaction.CLIMB


shares = st.integers(0, 200)


@given(
    inbox=shares,
    junk=shares,
    other=shares,
    missing=shares,
    previous=st.integers(0, 60),
    advanced=st.booleans(),
    factor=st.floats(1.0, S.max_spacing_factor),
)
def test_the_ramp_never_climbs_faster_than_configured_and_spacing_stays_bounded(
    inbox: int, junk: int, other: int, missing: int, previous: int, advanced: bool, factor: float
) -> None:
    climbed = previous + int(advanced)
    d = react(report(inbox, junk, other, missing), previous, climbed, factor)
    assert 0 <= d.ramp_day <= climbed
    assert 1.0 <= d.spacing_factor <= S.max_spacing_factor
    judged = inbox + junk + other + missing
    if judged < S.min_judged:
        assert (d.reaction, d.ramp_day, d.spacing_factor) == (Reaction.NO_DATA, climbed, factor)
        return
    share = junk / judged
    expected = (
        Reaction.PAUSE
        if share >= S.pause_share
        else Reaction.STEP_DOWN
        if share >= S.step_down_share
        else Reaction.HOLD
        if share >= S.hold_share
        else Reaction.CLIMB
    )
    assert d.reaction is expected
    if expected in (Reaction.STEP_DOWN, Reaction.PAUSE):
        assert d.ramp_day == max(0, previous - S.step_down_days) and d.spacing_factor >= factor
    if expected is Reaction.CLIMB:
        assert d.ramp_day == climbed and d.spacing_factor <= factor and d.reason == ""
    if expected is Reaction.HOLD:
        assert d.ramp_day == previous and d.reason


@given(junk=st.integers(0, 100))
def test_more_spam_never_means_more_volume(junk: int) -> None:
    lower, higher = react(report(100 - junk, junk), 8, 9, 1.0), react(report(99 - junk, junk + 1), 8, 9, 1.0)
    assert higher.ramp_day <= lower.ramp_day and higher.spacing_factor >= lower.spacing_factor


@given(
    inbox=shares,
    junk=shares,
    bounces=st.integers(0, 20),
    previous=st.integers(0, 60),
    factor=st.floats(1.0, S.max_spacing_factor),
)
def test_a_run_of_sender_bounces_pauses_and_fewer_change_nothing(
    inbox: int, junk: int, bounces: int, previous: int, factor: float
) -> None:
    bounced = PlacementReport(Placement(inbox, junk), 7, S, bounces, "bounced 5.7.1 (smtp; 550 5.7.1 spam)")
    d = react(bounced, previous, previous + 1, factor)
    if bounces >= S.bounce_pause:  # whatever the placement, and with no placement data at all
        assert (d.reaction, d.ramp_day) == (Reaction.PAUSE, max(0, previous - S.step_down_days))
        assert f"{bounces} of its emails bounced" in d.reason and "550 5.7.1 spam" in d.reason
        assert d.spacing_factor >= factor
    else:  # below the run, bounces are no signal: the decision is placement's alone
        assert d == react(report(inbox, junk), previous, previous + 1, factor)


def _day_at(ramp_day: int, now: float) -> DaySchedule:
    settings = ScheduleSettings(
        timezone="UTC", ramp=RampSettings(start_volume=5, daily_increment=5, ceiling=100)
    )
    state = MailboxWorkflowState(ramp_day=ramp_day)
    state.today.slot = 3  # yesterday sent: the new day advances the ramp
    day = DaySchedule(7, settings, state)
    assert day.start_day_if_new(now)
    return day


def test_a_step_down_lowers_todays_quota_and_widens_its_spacing_at_the_next_respread() -> None:
    now = dt.datetime(2026, 12, 3, 6, 30, tzinfo=dt.UTC).timestamp()
    day = _day_at(6, now)
    climbed_quota = day.state.today.quota
    assert day.state.ramp_day == 7 and day.state.today.ramp_advanced
    decision = day.apply_placement(report(70, 30))
    assert decision.reaction is Reaction.STEP_DOWN and day.state.ramp_day == 4 and day.respread_needed
    day.respread(now)
    assert day.state.today.quota < climbed_quota and day.state.today.ramp_note == decision.reason
    plan = day.state.today.plan
    gaps = [b - a for a, b in itertools.pairwise(plan)]
    assert min(gaps) >= day.settings.delay_min_minutes * 60 * 1.5 - 1e-6

    held = _day_at(6, now)
    held.apply_placement(report(85, 15))
    assert held.state.ramp_day == 6, "holding takes back the day yesterday would have added"
    same = _day_at(6, now)
    same.apply_placement(report(99, 1))
    assert same.state.ramp_day == 7 and same.state.today.ramp_note == ""
