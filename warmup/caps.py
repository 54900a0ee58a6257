"""Cap arithmetic: the four sliding windows of the audit's rate limits, as plain functions.

The send activity counts permits per window in PostgreSQL and asks `wait_before_send` how long
to defer; workers derive the server-side task-queue rate from `queue_rate_per_second`.
"""

from __future__ import annotations

from dataclasses import dataclass

from warmup.config import Settings


@dataclass(frozen=True)
class Window:
    name: str  # the setting that defines it, shown to the user when it binds
    scope: str  # "user" or "global"
    seconds: float
    cap: int


@dataclass(frozen=True)
class WindowCount:
    window: Window
    count: int  # permits inside (now - seconds, now]
    oldest: float | None  # epoch seconds of the oldest permit inside, if any


def windows(settings: Settings) -> list[Window]:
    hour = settings.CAP_HOUR_SECONDS
    return [
        Window("USER_SENDS_PER_MINUTE", "user", 60.0, settings.USER_SENDS_PER_MINUTE),
        Window("USER_SENDS_PER_HOUR", "user", hour, settings.USER_SENDS_PER_HOUR),
        Window("GLOBAL_SENDS_PER_MINUTE", "global", 60.0, settings.GLOBAL_SENDS_PER_MINUTE),
        Window("GLOBAL_SENDS_PER_HOUR", "global", hour, settings.GLOBAL_SENDS_PER_HOUR),
    ]


def wait_before_send(counts: list[WindowCount], now: float) -> tuple[float, Window | None]:
    """Seconds until every window has room for one more send, and the window that binds longest.

    A full window frees a place when its oldest permit leaves it: at oldest + seconds.
    """
    wait, binding = 0.0, None
    for c in counts:
        if c.count < c.window.cap:
            continue
        # With count > cap (caps lowered at run time) the oldest permit leaving is not enough, but
        # waiting for it and checking again is: the next check recounts.
        frees_at = (c.oldest if c.oldest is not None else now) + c.window.seconds
        if frees_at - now > wait:
            wait, binding = max(frees_at - now, 0.001), c.window
    return wait, binding


def queue_rate_per_second(settings: Settings) -> float:
    """The task-queue dispatch rate that keeps the global caps: the tighter of the two windows.

    A slightly lower rate than the cap leaves room for the server's one-second burst, so the
    database gate, which is exact, rarely has to turn a dispatched send away.
    """
    per_minute = settings.GLOBAL_SENDS_PER_MINUTE / 61.0
    per_hour = settings.GLOBAL_SENDS_PER_HOUR / (settings.CAP_HOUR_SECONDS + 1.0)
    return min(per_minute, per_hour)


def daily_capacity(settings: Settings) -> dict[str, float]:
    """How many emails a day each cap allows at most (a 24-hour day): the smallest one binds."""
    day = 86_400.0
    return {
        "GLOBAL_SENDS_PER_MINUTE": settings.GLOBAL_SENDS_PER_MINUTE * day / 60,
        "GLOBAL_SENDS_PER_HOUR": settings.GLOBAL_SENDS_PER_HOUR * day / settings.CAP_HOUR_SECONDS,
    }
