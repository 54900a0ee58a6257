"""The simulated mailboxes: the same fleet, seeds and quotas for every model that runs a day on it.

Mailbox `i` draws its timezone and ramp position from a generator seeded by (seed, i), so the first
1,000 mailboxes of the 10,000 fleet are the 1,000 fleet, and any subset is the same mailboxes.
"""

from __future__ import annotations

import datetime as dt
import random
from dataclasses import dataclass

from warmup import schedule
from warmup.models import MailboxWorkflowInput, MailboxWorkflowState, RampSettings, ScheduleSettings

# A fixed day so every run plans the same schedule: the EU's spring DST change (a 23-hour day in
# Berlin), in the future of any clock this runs on for years, so the time-skipping server can reach it.
SIM_DAY = dt.date(2030, 3, 31)

ZONES = (
    "America/New_York",
    "America/Los_Angeles",
    "America/Sao_Paulo",
    "UTC",
    "Europe/Berlin",
    "Asia/Kolkata",
    "Asia/Tokyo",
    "Australia/Sydney",
)
MAILBOXES_PER_USER = 100  # the audit's target: 1,000+ users with 100 mailboxes each
MAX_RAMP_DAY = 20  # warmed days so far: with the default ramp (5, +2, ceiling 40) quotas of 5..40


@dataclass(frozen=True)
class SimMailbox:
    mailbox_id: int
    user_id: str
    schedule: ScheduleSettings
    ramp_day: int  # warmed days before the simulated day: sets today's ramp quota

    def initial_state(self) -> MailboxWorkflowState:
        return MailboxWorkflowState(ramp_day=self.ramp_day)

    def workflow_input(self) -> MailboxWorkflowInput:
        """What the real workflow starts with for this mailbox (the cross-check, the engagement phase)."""
        return MailboxWorkflowInput(
            mailbox_id=self.mailbox_id,
            user_id=self.user_id,
            schedule=self.schedule,
            state=self.initial_state(),
        )

    def enrolled_at(self, day: dt.date) -> float:
        """Local midnight of `day`: the workflow starts before its window opens, so its plan begins
        exactly at the window's opening wherever (and however late) it is started."""
        return dt.datetime.combine(day, dt.time(), tzinfo=schedule.zone(self.schedule.timezone)).timestamp()

    def horizon(self, day: dt.date) -> float:
        """Local midnight after `day`: the end of the simulated day for this mailbox."""
        return self.enrolled_at(day + dt.timedelta(days=1))


def make_fleet(
    count: int,
    *,
    seed: str = "bench",
    max_ramp_day: int = MAX_RAMP_DAY,
    ramp: RampSettings | None = None,
    zones: tuple[str, ...] = ZONES,
    first_id: int = 1,
) -> list[SimMailbox]:
    """`count` mailboxes with the default window (6-22 local) and spacing (2-10 minutes).

    A user's 100 mailboxes share the user's timezone (users take the zones in turn), which is what
    makes per-user caps bind if anything does. Without `ramp`, the default ramp and a ramp day drawn
    in 0..max_ramp_day; with `ramp`, that ramp from day 0 (the audit's fixed 10/day is
    RampSettings(10, 0, 10)).
    """
    fleet = []
    for i in range(count):
        mailbox_id = first_id + i
        rng = random.Random(f"{seed}:{mailbox_id}")
        user = i // MAILBOXES_PER_USER
        tz = zones[user % len(zones)]
        ramp_day = 0 if ramp is not None else rng.randint(0, max_ramp_day)
        sched = ScheduleSettings(timezone=tz, ramp=ramp or RampSettings())
        fleet.append(SimMailbox(mailbox_id, f"user{user}", sched, ramp_day))
    return fleet


def spread_subset(fleet: list[SimMailbox], count: int) -> list[SimMailbox]:
    """`count` mailboxes picked evenly across the fleet, so every user (and timezone) is represented."""
    if count >= len(fleet):
        return list(fleet)
    step = len(fleet) / count
    return [fleet[int(k * step)] for k in range(count)]
