"""The demo that `make dev` enrolls: five mailboxes of two users, in five time zones, sending fast, and on
the mail lab reading their mail and answering it."""

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


# On the mail lab, the lab (not the product) files this mailbox's mail into Junk, as a provider's filter
# does with a cold sender's; the receivers' sessions then rescue it.
JUNKED_SENDERS = ("demo5@demo.test",)
# How often `make dev` asks each demo mailbox for an inbox session (`starter read-inbox`), where a real
# one reads its mail a few times a day; and the engagement timing that makes a demo minute show it all.
READ_EVERY_SECONDS = 20.0
DEMO_ENGAGEMENT = (
    "--dwell-min", "1", "--dwell-max", "4",  # seconds a person looks at a message
    "--reply-rate", "0.5", "--reply-delay-min", "0", "--reply-delay-max", "1",  # minutes
)  # fmt: skip


@dataclass(frozen=True)
class MailTarget:
    """Where the demo mailboxes send from (and read from, on the lab)."""

    smtp_host: str
    smtp_port: int
    smtp_security: str  # "none" on the sink, "starttls" on the lab
    imap_host: str | None = None
    imap_port: int | None = None  # implicit TLS


def enroll_command(mailbox: DemoMailbox, target: MailTarget) -> list[str]:
    # The password travels in the DEMO_SMTP_SECRET variable, never on the command line.
    command = [
        sys.executable, "-m", "starter", "enroll",
        "--mailbox", mailbox.address, "--user", mailbox.user,
        "--smtp-host", target.smtp_host, "--smtp-port", str(target.smtp_port),
        "--smtp-security", target.smtp_security,
        "--username", mailbox.address, "--secret-env", SECRET_ENV,
        "--timezone", mailbox.timezone,
    ]  # fmt: skip
    if target.imap_host is not None and target.imap_port is not None:
        # The IMAP login defaults to the SMTP username and password: the lab's are the same.
        imap = [
            "--imap-host",
            target.imap_host,
            "--imap-port",
            str(target.imap_port),
            "--imap-security",
            "tls",
        ]
        command += [*imap, *DEMO_ENGAGEMENT]
    return command
