"""A mailbox's day as a pure state machine: which day it is, its quota, when the next send is due.

The workflow drives it with workflow time; the benchmark's discrete-event simulation drives the
very same class with simulated time, so both produce the same schedule for the same mailbox.
It only mutates the `MailboxWorkflowState` it is given (which travels across continue-as-new).
"""

from __future__ import annotations

import bisect
import datetime as dt

from warmup import schedule
from warmup.models import (
    DayProgress,
    InboxSessionRequest,
    MailboxWorkflowState,
    PlacementReport,
    ScheduleSettings,
    SendRequest,
)
from warmup.ramp_reaction import RampDecision, react

_SATURDAY = 5  # date.weekday(): Monday is 0
_DAY_OFF = "weekdays only: no sends on Saturday and Sunday"


class DaySchedule:
    def __init__(self, mailbox_id: int, settings: ScheduleSettings, state: MailboxWorkflowState) -> None:
        self.mailbox_id = mailbox_id
        self.settings = settings
        self.state = state
        self.respread_needed = False

    # --- days and their send times ---------------------------------------------------------------------

    def is_new_day(self, now: float) -> bool:
        """Whether `now` is past the current local day (start_day_if_new would open one)."""
        return self.state.today.day != schedule.local_day(now, self.settings.timezone).isoformat()

    def start_day_if_new(self, now: float) -> bool:
        """Open a new local day when `now` is past the current one; True if it did."""
        day = schedule.local_day(now, self.settings.timezone)
        if self.state.today.day == day.isoformat():
            return False
        # Only days that actually warmed advance the ramp, and not a day the provider cut short: its
        # limit says the volume is high enough for now.
        advanced = self.state.today.slot > 0 and not self.state.today.provider_limit
        if advanced:
            self.state.ramp_day += 1
        start, end = schedule.window_bounds(day, self.settings)
        self.state.today = DayProgress(
            day=day.isoformat(), window_end=end, quota=self._ramp_quota(day), ramp_advanced=advanced
        )
        if self._day_off(day):
            self.state.today.capped_reason = _DAY_OFF
        elif now >= end:
            # Enrolled (or resumed) after today's window closed: today has nothing left to send.
            self.state.today.quota = 0
            self.state.today.capped_reason = "today's window had already closed"
        self._spread(max(now, start))
        self.respread_needed = False
        return True

    def apply_placement(self, report: PlacementReport) -> RampDecision:
        """Today's placement check came back (issue #15): the ramp reacts; today's quota and spacing
        follow at the next re-spread. PAUSE is the caller's to carry out."""
        t, s = self.state.today, self.state
        previous = s.ramp_day - int(t.ramp_advanced)
        decision = react(report, previous, s.ramp_day, s.spacing_factor)
        s.ramp_day, s.spacing_factor, t.ramp_note = (
            decision.ramp_day,
            decision.spacing_factor,
            decision.reason,
        )
        t.ramp_advanced = decision.ramp_day > previous  # a second check today must not count it twice
        self.respread_needed = True
        return decision

    def respread(self, now: float) -> None:
        """Re-spread what is left of today's quota after a resume or a settings change."""
        t = self.state.today
        day = dt.date.fromisoformat(t.day)
        start, t.window_end = schedule.window_bounds(day, self.settings)
        t.quota = t.slot if t.provider_limit else self._ramp_quota(day)
        if self._day_off(day):
            t.capped_reason = _DAY_OFF
        elif t.capped_reason == _DAY_OFF:  # weekdays-only was just turned off
            t.capped_reason = ""
        if t.allowance is not None:
            t.quota = min(t.quota, t.allowance)
        t.replans += 1
        self._spread(max(now, start, self.earliest_next_send()))
        self.respread_needed = False

    def next_send_at(self) -> float | None:
        times = self.state.today.plan
        return times[0] if times else None

    def next_wake(self, now: float) -> float:
        """When to look again: the next planned send, or tomorrow's window."""
        due = self.next_send_at()
        return due if due is not None else schedule.next_window_start(now, self.settings)

    # --- sends ----------------------------------------------------------------------------------

    def take_slot(self, now: float) -> SendRequest:
        """Consume the next planned slot: once dispatched, a retry reuses its key, never a new slot."""
        t = self.state.today
        planned_at = t.plan.pop(0)
        req = SendRequest(
            self.mailbox_id,
            t.day,
            t.slot,
            planned_at=planned_at,
            dispatched_at=now,
            not_after=t.window_end,
            quota=t.quota,
        )
        t.slot += 1
        self.state.last_sent_at = now
        return req

    def record_sent(self, now: float, binding_cap: str = "") -> None:
        self.state.today.sent += 1
        self.state.sent_total += 1
        if binding_cap:
            self.state.today.binding_cap = binding_cap
        self._sent_at(now)

    def record_failed(self, now: float, error: str, *, unknown: bool = False) -> None:
        if unknown:
            self.state.today.unknown += 1
        else:
            self.state.today.failed += 1
        self.state.last_error = error
        self._sent_at(now)

    def stop_today(self, reply: str) -> None:
        """The sender's provider refused more mail today (a daily or rate limit): what is left of today
        is given up, and sending starts again at the next window (not a pause: nothing to fix)."""
        t = self.state.today
        t.provider_limit, t.quota, t.plan = reply, t.slot, []
        t.capped_reason = (
            f"the provider's limit for today was reached ({reply}); sending again at the next window"
        )

    def limit_quota(self, allowance: int) -> None:
        """The user's plan grants this mailbox `allowance` sends today: schedule no more than that."""
        t = self.state.today
        t.allowance = allowance
        if allowance < t.quota:
            t.quota = allowance
            t.capped_reason = f"the user's plan allows {allowance} today"
            self.respread_needed = True

    def earliest_next_send(self) -> float:
        last = self.state.last_sent_at
        return last + self._delays()[0] if last else 0.0

    def _delays(self) -> tuple[float, float]:
        """Today's spacing in seconds: the settings' own, widened after placement step-downs."""
        f, s = self.state.spacing_factor, self.settings
        return s.delay_min_minutes * 60 * f, s.delay_max_minutes * 60 * f

    # --- internals ------------------------------------------------------------------------------

    def _sent_at(self, now: float) -> None:
        # Spacing counts from when the send finished: a send that waited for a cap or a retry
        # must not be followed by one closer than delay_min.
        self.state.last_sent_at = now
        times = self.state.today.plan
        if times and times[0] < self.earliest_next_send():
            self.respread_needed = True

    def _day_off(self, day: dt.date) -> bool:
        return self.settings.weekdays_only and day.weekday() >= _SATURDAY

    def _ramp_quota(self, day: dt.date) -> int:
        if self._day_off(day):
            return 0
        return schedule.ramp_quota(
            self.settings.ramp, self.state.ramp_day, schedule.day_seed(self.mailbox_id, day)
        )

    def _spread(self, begin: float) -> None:
        """Plan the rest of today's quota from `begin` to the window's end."""
        t, s = self.state.today, self.settings
        delay_min, delay_max = self._delays()
        wanted = max(0, t.quota - t.slot)
        fits = schedule.max_sends(t.window_end - begin, delay_min)
        count = min(wanted, fits)
        if count < wanted:
            t.capped_reason = f"the window left room for {fits} of {wanted} sends today"
        t.plan = schedule.spread_sends(
            begin,
            t.window_end,
            count,
            delay_min,
            delay_max,
            schedule.spread_rng(self.mailbox_id, t.day, t.replans),
            spread=s.spread_over_window,
        )

    # --- inbox sessions (issue #11) -------------------------------------------------------------

    def schedule_sessions(self, now: float) -> None:
        """Today's inbox sessions, over the window (the same hours a person of this mailbox works),
        weekends included; those already past at `now` (enrolled mid-day) are left out."""
        t = self.state.today
        start, end = schedule.window_bounds(dt.date.fromisoformat(t.day), self.settings)
        times = schedule.session_times(
            start, end, self.settings.engagement.inbox_sessions, schedule.session_rng(self.mailbox_id, t.day)
        )
        t.sessions = [x for x in times if x >= now]

    def add_session(self, when: float) -> None:
        """One more session today at `when` (asked for by an operator), in time order."""
        bisect.insort(self.state.today.sessions, when)

    def next_session_at(self) -> float | None:
        sessions = self.state.today.sessions
        return sessions[0] if sessions else None

    def take_session(self) -> InboxSessionRequest:
        t = self.state.today
        t.sessions.pop(0)
        t.sessions_done += 1
        return InboxSessionRequest(self.mailbox_id, t.day, t.sessions_done - 1)
