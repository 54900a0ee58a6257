"""`starter enroll --check`: log in to the mailbox's SMTP server before anything is stored.

The client is the send activity's (warmup.smtp_client), so the check obeys the same TLS rule.
"""

from __future__ import annotations

import aiosmtplib

from activities.smtp_errors import Stage, classify
from warmup.mailboxes import SmtpAccount
from warmup.smtp_client import log_in, quit_or_drop, smtp_client


class SmtpCheckError(Exception):
    """The login did not work; the message holds the server's reply, never the password."""


async def check_login(
    account: SmtpAccount, password: str, *, command_timeout: float = 30.0, oauth2: bool = False
) -> str:
    """Connect and authenticate (`oauth2`: XOAUTH2 with `password` as the access token); returns the
    server's reply to AUTH or raises SmtpCheckError."""
    where = f"{account.host}:{account.port} ({account.security.value})"
    client = await smtp_client(account, command_timeout)
    stage = Stage.CONNECT
    try:
        await client.connect()
        stage = Stage.AUTH
        reply = await log_in(client, account.username, password, oauth2=oauth2)
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
        fix = (
            "the server refused the OAuth2 access token: check that the application has the provider's "
            "SMTP scope and that SMTP AUTH is allowed for the mailbox"
            if oauth2
            else "check --username and the password given with --secret-env/--secret-stdin"
        )
        raise SmtpCheckError(
            f"SMTP login as {account.username!r} at {where} failed: {reply_text}; {fix}"
        ) from None
    finally:
        await quit_or_drop(client)
    return f"{reply.code} {reply.message}"
