"""What a schedule must satisfy for the planner to work with it, checked where settings enter a workflow.

The workflows' Update validators run this before a change enters history, so it is pure and
deterministic: no clock and no I/O beyond reading the pinned tzdata that planning reads anyway.
The starter checks the user's input first, with its own flags and bounds (warmup/mailbox_settings.py);
this is the workflow's own guard, for any client (another tool, the Temporal CLI) that skips that.
"""

from __future__ import annotations

import math
from zoneinfo import ZoneInfoNotFoundError

from warmup import schedule
from warmup.models import ScheduleSettings


def _positive(value: float) -> bool:
    return math.isfinite(value) and value > 0


def schedule_problems(s: ScheduleSettings) -> list[str]:
    """Every problem with `s`, one line each naming the ScheduleSettings field and a valid value."""
    problems: list[str] = []
    try:
        schedule.zone(s.timezone)
    except (ZoneInfoNotFoundError, ValueError, TypeError):
        problems.append(f"timezone {s.timezone!r} is not an IANA time zone: use e.g. Europe/Berlin or UTC")
    if not 0 <= s.window_start_hour <= 23:
        problems.append(f"window_start_hour must be a whole hour from 0 to 23, got {s.window_start_hour}")
    if not 1 <= s.window_end_hour <= 24:
        problems.append(f"window_end_hour must be a whole hour from 1 to 24, got {s.window_end_hour}")
    if s.window_start_hour >= s.window_end_hour:
        problems.append(
            f"window_start_hour ({s.window_start_hour}) must be before window_end_hour ({s.window_end_hour})"
        )
    for name, delay in (
        ("delay_min_minutes", s.delay_min_minutes),
        ("delay_max_minutes", s.delay_max_minutes),
    ):
        if not _positive(delay):
            problems.append(f"{name} must be a number of minutes above 0, got {delay}")
    if s.delay_min_minutes > s.delay_max_minutes:
        problems.append(
            f"delay_min_minutes ({s.delay_min_minutes:g}) must not exceed "
            f"delay_max_minutes ({s.delay_max_minutes:g})"
        )
    r = s.ramp
    for name, count in (
        ("ramp.start_volume", r.start_volume),
        ("ramp.daily_increment", r.daily_increment),
        ("ramp.ceiling", r.ceiling),
    ):
        if count < 0:
            problems.append(f"{name} must be 0 or more, got {count}")
    if r.start_volume > r.ceiling:
        problems.append(f"ramp.start_volume ({r.start_volume}) must not exceed ramp.ceiling ({r.ceiling})")
    if not (math.isfinite(r.daily_variance) and 0 <= r.daily_variance < 1):
        problems.append(f"ramp.daily_variance must be a fraction from 0 to below 1, got {r.daily_variance}")
    return problems
