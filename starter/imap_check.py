"""`starter enroll --check`: log in to the mailbox's IMAP server too, before anything is stored.

The client is engagement's (activities.imap_client), so the check obeys the same TLS rule.
"""

from __future__ import annotations

import asyncio

from activities.imap_client import ImapAccount, ImapAuthError, ImapError, ImapSession
from warmup.mailboxes import ImapServer


class ImapCheckError(Exception):
    """The login did not work; the message holds the server's answer, never the password."""


async def check_imap_login(
    server: ImapServer,
    username: str,
    password: str,
    *,
    verify_tls: bool,
    command_timeout: float,
    oauth2: bool = False,
) -> str:
    """Log in and list the folders; returns what was found or raises ImapCheckError."""
    where = f"{server.host}:{server.port} ({server.security.value})"
    account = ImapAccount(
        host=server.host,
        port=server.port,
        username=username,
        security=server.security,
        verify_tls=verify_tls,
        timeout_seconds=command_timeout,
    )

    def login() -> str:
        with ImapSession(account, password, oauth2=oauth2) as imap:
            junk = imap.junk_folder()
            return f"{len(imap.folders())} folders, spam in {junk!r}" if junk else "no Junk folder found"

    try:
        return await asyncio.to_thread(login)
    except ImapAuthError as exc:
        if oauth2:
            raise ImapCheckError(
                f"IMAP login as {username!r} at {where} failed: {exc}; the server refused the OAuth2 access "
                "token: check that the application has the provider's IMAP scope"
            ) from None
        raise ImapCheckError(
            f"IMAP login as {username!r} at {where} failed: {exc}; check --imap-username (default "
            "--username) and the password (--imap-secret-env/--imap-secret-stdin, default the SMTP one)"
        ) from None
    except ImapError as exc:
        raise ImapCheckError(
            f"IMAP server {where}: {exc}; check --imap-host, --imap-port and --imap-security"
        ) from None
