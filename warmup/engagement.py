"""What a mailbox does with one warmup email it received: pure and deterministic (issue #11).

Every decision is drawn from the email's own idempotency key and the mailbox's engagement settings, so a
retried session, a replay and a test all make the same decisions for the same email. Nothing here does I/O.
"""

from __future__ import annotations

import datetime as dt
import random
from dataclasses import dataclass

from warmup.models import EngagementSettings

# An email not found this long after it was delivered is counted as missing (not looked for again):
# long enough for a provider's delayed delivery and for a few sessions (a day has several).
MISSING_AFTER = dt.timedelta(hours=48)


@dataclass(frozen=True)
class EmailDecision:
    read: bool  # mark it \Seen
    rescue: bool  # move it to INBOX, when it was found in Junk
    important: bool  # mark it \Flagged
    reply: bool  # answer it
    dwell_seconds: float  # the pause between finding it and acting on it
    reply_delay_seconds: float  # how long after reading it the answer is due


def decide(email_key: str, s: EngagementSettings) -> EmailDecision:
    """One fixed draw per decision, in a fixed order: changing one rate never changes the others."""
    rng = random.Random(f"{email_key}:engage")
    read, rescue, important, reply = (rng.random() for _ in range(4))
    dwell = rng.uniform(s.dwell_min_seconds, s.dwell_max_seconds)
    delay = rng.uniform(s.reply_delay_min_minutes, s.reply_delay_max_minutes) * 60
    flag, answer = important < s.important_rate, reply < s.reply_rate
    return EmailDecision(
        # A person opens what they flag or answer.
        read=read < s.read_rate or flag or answer,
        rescue=rescue < s.rescue_rate,
        important=flag,
        reply=answer,
        dwell_seconds=dwell,
        reply_delay_seconds=delay,
    )


def is_missing(sent_at: dt.datetime, now: dt.datetime) -> bool:
    return now - sent_at >= MISSING_AFTER
