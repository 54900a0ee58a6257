"""`starter enroll --check`: log in to the mailbox's SMTP server before anything is stored.

The client is the send activity's (warmup.smtp_client), so the check obeys the same TLS rule.
"""

from __future__ import annotations

import aiosmtplib

from activities.smtp_errors import Stage, classify
from warmup.mailboxes import SmtpAccount
from warmup.smtp_client import quit_or_drop, smtp_client


class SmtpCheckError(Exception):
    """The login did not work; the message holds the server's reply, never the password."""


async def check_login(account: SmtpAccount, password: str, *, command_timeout: float = 30.0) -> str:
    """Connect and authenticate; returns the server's reply to AUTH or raises SmtpCheckError."""
    where = f"{account.host}:{account.port} ({account.security.value})"
    client = smtp_client(account, command_timeout)
    stage = Stage.CONNECT
    try:
        await client.connect()
        stage = Stage.AUTH
        reply = await client.login(account.username, password)
    except (aiosmtplib.SMTPException, OSError, TimeoutError) as exc:
        failure = classify(exc, stage)
        if stage is Stage.CONNECT:
            detail, hint = failure.detail, "check --smtp-host, --smtp-port and --smtp-security"
            if detail.startswith("TLS certificate rejected"):
                # The shared classifier's advice speaks of the stored setting; here the flag is what counts.
                detail = detail.split(";", 1)[0]
                hint = "fix the server certificate, or pass --no-verify-tls for a test server"
            raise SmtpCheckError(f"cannot connect to SMTP server {where}: {detail}; {hint}") from None
        reply_text = f"{failure.code} {' '.join(failure.detail.split())}" if failure.code else failure.detail
        raise SmtpCheckError(
            f"SMTP login as {account.username!r} at {where} failed: {reply_text}; "
            "check --username and the password given with --secret-env/--secret-stdin"
        ) from None
    finally:
        await quit_or_drop(client)
    return f"{reply.code} {reply.message}"
