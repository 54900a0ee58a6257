"""A ramp that reacts to inbox placement (issue #15), as a pure function beside `schedule.ramp_quota`.

At each new local day the mailbox workflow reads its placement (what engaging receivers' sessions
found of its warmup mail over the last days) and asks `react` what to do with the ramp:

- too little data (no engaging receivers yet): ramp as configured, and say so;
- healthy: climb as configured, and spacing widened by earlier step-downs narrows back step by step;
- a rising spam share (>= hold): hold today's volume where it is;
- a high spam share (>= step down): take ramp days back and widen the spacing, until placement recovers;
- a critical share (>= pause): step down and pause the mailbox with the reason;
- a run of bounces that are a verdict on the sender's mail (`bounce_pause` over the window, whatever
  the placement and however little of it is known yet): step down and pause, with the latest bounce.

The spam share is junk / judged (judged: found in INBOX, Junk or another folder, or given up as missing).
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

from warmup.models import PlacementReport


class Reaction(enum.StrEnum):
    NO_DATA = "no_data"
    CLIMB = "climb"
    HOLD = "hold"
    STEP_DOWN = "step_down"
    PAUSE = "pause"


@dataclass(frozen=True)
class RampDecision:
    reaction: Reaction
    ramp_day: int  # the ramp day today's quota is computed from (days that count toward the ceiling)
    spacing_factor: float  # today's delay_min/delay_max multiplier (1.0 = as configured)
    reason: str  # shown in status and the workflow's current details ("" when climbing normally)


def spam_seen(report: PlacementReport) -> tuple[float, str] | None:
    """The spam share over the report's window and how status says it, or None while fewer than
    `min_judged` emails were judged (too little to react to)."""
    p = report.placement
    if p.judged < report.settings.min_judged:
        return None
    share = p.junk / p.judged
    return share, f"{share * 100:.0f}% in spam over {report.days} days ({p.junk} of {p.judged})"


def placement_low(report: PlacementReport) -> str | None:
    """What an embedding product is told when the ramp steps down or pauses on placement, else None."""
    seen = spam_seen(report)
    if seen is None or seen[0] < report.settings.step_down_share:
        return None
    return f"placement low: {seen[1]}; the ramp steps down (pauses from {report.settings.pause_share:.0%})"


def react(report: PlacementReport, previous: int, climbed: int, spacing_factor: float) -> RampDecision:
    """Today's ramp day and spacing. `previous` is yesterday's ramp day, `climbed` the one the configured
    ramp gives today (previous + 1 after a day that sent, else previous)."""
    s, p = report.settings, report.placement
    over = f"over {report.days} days"
    # A step down, paused or not: a resume starts lower, not where the trouble began.
    down = max(0, previous - s.step_down_days)
    wider = min(s.max_spacing_factor, spacing_factor * s.spacing_step)
    if report.bounces >= s.bounce_pause:
        reason = (
            f"{report.bounces} of its emails bounced {over}, refused by the receiving servers "
            f"(latest: {report.bounce_reply}); paused at {s.bounce_pause}: check its SPF, DKIM and DMARC "
            "and what it sends, then resume it"
        )
        return RampDecision(Reaction.PAUSE, down, wider, reason)
    found = spam_seen(report)
    if found is None:
        reason = (
            f"ramping as configured today: when the day began, {p.judged} of its emails had been judged "
            f"by engaging receivers {over} (it reacts from {s.min_judged})"
        )
        return RampDecision(Reaction.NO_DATA, climbed, spacing_factor, reason)
    share, seen = found
    if share >= s.step_down_share:
        if share >= s.pause_share:
            reason = f"placement critical: {seen}; paused at {s.pause_share * 100:.0f}% (resume to go on)"
            return RampDecision(Reaction.PAUSE, down, wider, reason)
        reason = f"stepped down to ramp day {down}, spacing x{wider:g}: {seen}"
        return RampDecision(Reaction.STEP_DOWN, down, wider, reason)
    if share >= s.hold_share:
        return RampDecision(Reaction.HOLD, previous, spacing_factor, f"held at ramp day {previous}: {seen}")
    narrower = max(1.0, spacing_factor / s.spacing_step)
    return RampDecision(Reaction.CLIMB, climbed, narrower, "")
