"""The demo that `make dev` enrolls: five mailboxes of two users, in five time zones, sending fast."""

from __future__ import annotations

import sys
from dataclasses import dataclass


@dataclass(frozen=True)
class DemoMailbox:
    address: str
    user: str
    timezone: str


DEMO_MAILBOXES = (
    DemoMailbox("demo1@demo.test", "demo-a", "UTC"),
    DemoMailbox("demo2@demo.test", "demo-a", "America/New_York"),
    DemoMailbox("demo3@demo.test", "demo-a", "Europe/Berlin"),
    DemoMailbox("demo4@demo.test", "demo-b", "Asia/Tokyo"),
    DemoMailbox("demo5@demo.test", "demo-b", "Australia/Sydney"),
)

# Demo timing: a send every 3-15 s per mailbox, chained rather than spread over the day, all day in
# every zone, quick retries. A user's own WARMUP_* values win.
DEMO_TIMING = {
    "WARMUP_SPREAD_OVER_WINDOW": "false",
    "WARMUP_SAME_MAILBOX_DELAY_MIN": "0.05",
    "WARMUP_SAME_MAILBOX_DELAY_MAX": "0.25",
    "WARMUP_SEND_WINDOW_START_HOUR": "0",
    "WARMUP_SEND_WINDOW_END_HOUR": "24",
    "WARMUP_RAMP_START_VOLUME": "20",
    "WARMUP_SEND_RETRY_INITIAL_SECONDS": "2",
}
DEFAULT_WORKER_COUNT = 2
SECRET_ENV = "DEMO_SMTP_SECRET"


def enroll_command(mailbox: DemoMailbox, smtp_port: int) -> list[str]:
    # The password travels in the DEMO_SMTP_SECRET variable, never on the command line.
    return [
        sys.executable,
        "-m",
        "starter",
        "enroll",
        "--mailbox",
        mailbox.address,
        "--user",
        mailbox.user,
        "--smtp-host",
        "127.0.0.1",
        "--smtp-port",
        str(smtp_port),
        "--smtp-security",
        "none",
        "--username",
        mailbox.address,
        "--secret-env",
        SECRET_ENV,
        "--timezone",
        mailbox.timezone,
    ]
