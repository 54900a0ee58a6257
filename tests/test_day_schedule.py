"""The mailbox's day as a pure state machine: weekday-only sending (a property over start dates)."""

from __future__ import annotations

import datetime as dt

from hypothesis import given, settings
from hypothesis import strategies as st

from warmup import schedule
from warmup.day_schedule import DaySchedule
from warmup.models import MailboxWorkflowState, RampSettings, ScheduleSettings


def _run_days(sched: ScheduleSettings, first: dt.date, days: int) -> list[tuple[dt.date, int, int, str]]:
    """Drive the DaySchedule through `days` local days, sending every planned slot.

    One (day, quota, ramp day, capped reason) per day.
    """
    day_schedule = DaySchedule(7, sched, MailboxWorkflowState())
    out = []
    for n in range(days):
        day = first + dt.timedelta(days=n)
        start, _ = schedule.window_bounds(day, sched)
        day_schedule.start_day_if_new(start + 1)
        today = day_schedule.state.today
        out.append((day, today.quota, day_schedule.state.ramp_day, today.capped_reason))
        while (due := day_schedule.next_send_at()) is not None:
            req = day_schedule.take_slot(due)
            assert req.quota == today.quota, "each send carries its day's quota to the ledger"
            day_schedule.record_sent(due + 1)
    return out


@settings(max_examples=30, deadline=None)
@given(
    first=st.dates(min_value=dt.date(2026, 1, 1), max_value=dt.date(2030, 12, 31)),
    zone=st.sampled_from(["UTC", "America/New_York", "Asia/Tokyo", "Pacific/Auckland"]),
)
def test_weekdays_only_sends_nothing_at_weekends_and_the_ramp_waits(first: dt.date, zone: str) -> None:
    sched = ScheduleSettings(timezone=zone, ramp=RampSettings(3, 2, 40), weekdays_only=True)
    days = _run_days(sched, first, 15)
    weekday_ramp = []
    for day, quota, ramp_day, reason in days:
        if day.weekday() >= 5:
            assert quota == 0 and "weekdays only" in reason, (day, quota, reason)
        else:
            assert quota == 3 + 2 * ramp_day
            weekday_ramp.append(ramp_day)
    # Each weekday warms one more ramp day; the weekend in between adds none.
    assert weekday_ramp == list(range(len(weekday_ramp)))


def test_every_day_sends_when_weekdays_only_is_off() -> None:
    sched = ScheduleSettings(ramp=RampSettings(3, 2, 40))
    days = _run_days(sched, dt.date(2026, 11, 28), 3)  # a Saturday
    assert [q for _, q, _, _ in days] == [3, 5, 7]


def test_turning_weekdays_only_off_on_a_saturday_plans_that_day_at_once() -> None:
    sched = ScheduleSettings(ramp=RampSettings(4, 0, 4), weekdays_only=True)
    day_schedule = DaySchedule(7, sched, MailboxWorkflowState())
    saturday = dt.date(2026, 11, 28)
    start, _ = schedule.window_bounds(saturday, sched)
    day_schedule.start_day_if_new(start + 60)
    assert day_schedule.state.today.quota == 0 and day_schedule.next_send_at() is None

    day_schedule.settings = ScheduleSettings(ramp=RampSettings(4, 0, 4), weekdays_only=False)
    day_schedule.respread(start + 120)
    assert day_schedule.state.today.quota == 4 and day_schedule.state.today.capped_reason == ""
    assert day_schedule.next_send_at() is not None
