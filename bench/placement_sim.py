"""The reactive ramp against the fixed ramp over weeks, on a placement model (issue #15 item 6).

Each mailbox has a hidden reputation `r`: the share of its mail a provider files in the inbox. Healthy
sending improves it, more volume than it can carry and sudden jumps worsen it (`next_reputation`, the
whole model, pure). Both ramps run the workflow's own `DaySchedule` day after day on the same fleet: the
fixed one climbs as configured whatever happens; the reactive one gets, at each new day, the
`PlacementReport` its receivers' sessions would have made of the last `PLACEMENT_DAYS` days (every
warmup email judged: each lands in Junk with probability 1 - r, drawn from a seed of the mailbox and
day) and reacts through `DaySchedule.apply_placement`, the workflow's code. A mailbox paused by
placement is resumed by its owner `RESUME_AFTER_DAYS` later, as the README tells them to.

The model is an assumption, not a measurement of any provider: its constants are below, and the table
shows what the reaction does under it, not what Gmail will do.
"""

from __future__ import annotations

import datetime as dt
import random
import statistics
import time
from collections import deque
from dataclasses import dataclass, field

from bench.fleet import ZONES
from warmup import schedule
from warmup.day_schedule import DaySchedule
from warmup.models import (
    MailboxWorkflowState,
    Placement,
    PlacementReport,
    RampSettings,
    ReactionSettings,
    ScheduleSettings,
)
from warmup.ramp_reaction import Reaction

# --- the placement model (assumed; the one place its constants live) ---------------------------------

REPUTATION_LOW, REPUTATION_HIGH = 0.55, 0.95  # a new mailbox's inbox rate, drawn uniformly
CARRY_AT_FULL = 50.0  # emails a day a mailbox of reputation 1.0 carries without harm (r^2 scales it)
GAIN = 0.05  # a healthy day closes this share of the gap to 1.0
OVERLOAD = 0.30  # a day over what it carries loses this share of r, times the excess share
JUMP_RATIO, JUMP_COST = 1.5, 0.03  # a day over 1.5x yesterday's volume costs 0.03 more
FLOOR, CEILING = 0.05, 0.99

PLACEMENT_DAYS = 7  # the window of the report, WARMUP_PLACEMENT_DAYS's default
RESUME_AFTER_DAYS = 2  # a paused mailbox's owner resumes it this many days later
RAMP = RampSettings()  # the default ramp: 5, +2 a day, ceiling 40


def carries(r: float) -> float:
    """The volume a mailbox of reputation `r` sends without harm."""
    return CARRY_AT_FULL * r * r


def next_reputation(r: float, sent: int, sent_before: int) -> float:
    """Tomorrow's reputation after a day of `sent` emails (yesterday `sent_before`)."""
    if sent == 0:
        return r
    load = carries(r)
    if sent <= load:
        r += GAIN * (1.0 - r)
    else:
        r -= OVERLOAD * r * (sent - load) / sent
    if sent_before and sent > JUMP_RATIO * sent_before:
        r -= JUMP_COST
    return min(CEILING, max(FLOOR, r))


# --- one mailbox, many days ----------------------------------------------------------------------------


@dataclass
class Track:
    """One mailbox under one ramp: what it sent and where its mail landed, day by day."""

    mailbox_id: int
    reputation: float
    days: DaySchedule
    sent: list[int] = field(default_factory=list)
    junk: list[int] = field(default_factory=list)
    paused_days: int = 0
    resume_on: int | None = None  # the day index its owner resumes it
    reactions: dict[str, int] = field(default_factory=dict)

    def report(self) -> PlacementReport:
        recent = deque(zip(self.sent, self.junk, strict=True), maxlen=PLACEMENT_DAYS)
        junk = sum(j for _, j in recent)
        inbox = sum(s for s, _ in recent) - junk
        return PlacementReport(Placement(inbox=inbox, junk=junk), PLACEMENT_DAYS, ReactionSettings())


def _window_open(day: dt.date, settings: ScheduleSettings) -> float:
    return schedule.window_bounds(day, settings)[0]


def run_track(t: Track, first: dt.date, days: int, reactive: bool) -> None:
    """`days` days of `t` from `first`: the workflow's new-day step, the reaction, the day's sends."""
    s = t.days.state
    for n in range(days):
        day = first + dt.timedelta(days=n)
        now = _window_open(day, t.days.settings)
        t.days.start_day_if_new(now)
        if s.paused and t.resume_on == n:
            s.paused, t.resume_on = False, None
        if reactive and not s.paused:
            decision = t.days.apply_placement(t.report())
            t.reactions[decision.reaction.value] = t.reactions.get(decision.reaction.value, 0) + 1
            if decision.reaction is Reaction.PAUSE:
                s.paused, t.resume_on = True, n + RESUME_AFTER_DAYS
        t.days.respread(now)
        sent = 0
        if s.paused:
            t.paused_days += 1
        else:
            while t.days.next_send_at() is not None:
                at = t.days.next_send_at() or now
                t.days.take_slot(at)
                t.days.record_sent(at)
                sent += 1
        rng = random.Random(f"placement:{t.mailbox_id}:{day.isoformat()}")
        junk = sum(1 for _ in range(sent) if rng.random() >= t.reputation)
        t.reputation = next_reputation(t.reputation, sent, t.sent[-1] if t.sent else 0)
        t.sent.append(sent)
        t.junk.append(junk)


# --- the comparison ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class RampOutcome:
    ramp: str  # "fixed" or "reactive"
    mailboxes: int
    days: int
    sent: int
    junk: int
    reached_ceiling: int  # mailboxes whose daily volume reached the ramp's ceiling
    median_days_to_ceiling: float | None  # among those
    final_inbox_rate: float  # mean hidden reputation on the last day
    final_placement: float  # inbox share of the last PLACEMENT_DAYS days' mail
    at_risk_end: int  # mailboxes ending under 70% inbox
    paused_days: int
    reactions: dict[str, int]

    @property
    def junk_share(self) -> float:
        return self.junk / self.sent if self.sent else 0.0


@dataclass(frozen=True)
class RampComparison:
    mailboxes: int
    days: int
    first_day: str
    fixed: RampOutcome
    reactive: RampOutcome
    wall_seconds: float


def _outcome(ramp: str, tracks: list[Track], days: int) -> RampOutcome:
    ceiling = RAMP.ceiling
    reached = [next((n for n, v in enumerate(t.sent) if v >= ceiling), None) for t in tracks]
    hit = [n + 1 for n in reached if n is not None]
    last_sent = sum(sum(t.sent[-PLACEMENT_DAYS:]) for t in tracks)
    last_junk = sum(sum(t.junk[-PLACEMENT_DAYS:]) for t in tracks)
    reactions: dict[str, int] = {}
    for t in tracks:
        for k, v in t.reactions.items():
            reactions[k] = reactions.get(k, 0) + v
    return RampOutcome(
        ramp=ramp,
        mailboxes=len(tracks),
        days=days,
        sent=sum(sum(t.sent) for t in tracks),
        junk=sum(sum(t.junk) for t in tracks),
        reached_ceiling=len(hit),
        median_days_to_ceiling=statistics.median(hit) if hit else None,
        final_inbox_rate=statistics.fmean(t.reputation for t in tracks),
        final_placement=(1 - last_junk / last_sent) if last_sent else 0.0,
        at_risk_end=sum(1 for t in tracks if t.reputation < 0.7),
        paused_days=sum(t.paused_days for t in tracks),
        reactions=reactions,
    )


def _tracks(mailboxes: int, seed: str) -> list[Track]:
    out = []
    for i in range(mailboxes):
        mailbox_id = i + 1
        rng = random.Random(f"{seed}:{mailbox_id}")
        settings = ScheduleSettings(timezone=ZONES[i % len(ZONES)], ramp=RAMP)
        r = rng.uniform(REPUTATION_LOW, REPUTATION_HIGH)
        out.append(Track(mailbox_id, r, DaySchedule(mailbox_id, settings, MailboxWorkflowState())))
    return out


def compare_ramps(
    mailboxes: int, days: int, *, first: dt.date = dt.date(2030, 1, 7), seed: str = "ramp"
) -> RampComparison:
    """The same fleet (same starting reputations, same draws) under both ramps for `days` days."""
    began = time.perf_counter()
    outcomes = {}
    for ramp, reactive in (("fixed", False), ("reactive", True)):
        tracks = _tracks(mailboxes, seed)
        for t in tracks:
            run_track(t, first, days, reactive)
        outcomes[ramp] = _outcome(ramp, tracks, days)
    return RampComparison(
        mailboxes,
        days,
        first.isoformat(),
        outcomes["fixed"],
        outcomes["reactive"],
        time.perf_counter() - began,
    )


def markdown(c: RampComparison) -> list[str]:
    def row(o: RampOutcome) -> str:
        median = "-" if o.median_days_to_ceiling is None else f"{o.median_days_to_ceiling:g}"
        cells = [
            o.ramp,
            f"{o.sent:,}",
            f"{o.junk:,} ({o.junk_share:.1%})",
            f"{o.reached_ceiling:,} of {o.mailboxes:,}",
            median,
            f"{o.final_placement:.1%}",
            f"{o.final_inbox_rate:.1%}",
            f"{o.at_risk_end:,}",
            f"{o.paused_days:,}",
        ]
        return "| " + " | ".join(cells) + " |"

    react = ", ".join(f"{k} {v:,}" for k, v in sorted(c.reactive.reactions.items()))
    return [
        "### The reactive ramp against the fixed ramp (simulation)",
        "",
        f"{c.mailboxes:,} mailboxes for {c.days} days from {c.first_day}, the default ramp (5, +2 a day, "
        f"ceiling {RAMP.ceiling}), on the placement model of `bench/placement_sim.py` (an assumption: "
        f"hidden reputation {REPUTATION_LOW:.0%}-{REPUTATION_HIGH:.0%} at the start, better after healthy "
        "days, worse after days over what it carries or sudden jumps). Both ramps run the workflow's "
        f"`DaySchedule`; the reactive one reacts to the last {PLACEMENT_DAYS} days' placement through "
        f"`apply_placement`, and a paused mailbox is resumed {RESUME_AFTER_DAYS} days later. Simulated in "
        f"{c.wall_seconds:.1f} s.",
        "",
        "| ramp | emails sent | into spam | reached the ceiling | median days to it | placement, last 7 days "
        "| hidden inbox rate at the end | mailboxes under 70% | paused mailbox-days |",
        "|---|---|---|---|---|---|---|---|---|",
        row(c.fixed),
        row(c.reactive),
        "",
        f"The reactive ramp's decisions over the run (one per mailbox-day): {react}.",
        "",
    ]
