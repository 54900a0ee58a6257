"""The SMTP client of a mailbox, with its TLS rule, for the send activity and `starter enroll --check`.

The rule: implicit TLS for `tls`; STARTTLS required for `starttls` (a server that does not offer it
fails the connection, never a silent fall-back to clear text); clear text only for `none`, chosen
explicitly. Certificates are validated unless the mailbox turned `verify_tls` off.
"""

from __future__ import annotations

import asyncio
import socket

import aiosmtplib

from warmup.mailboxes import SmtpAccount
from warmup.models import SmtpSecurity

QUIT_TIMEOUT = 5.0  # seconds: a polite QUIT must not hold anything up

_ehlo_name: str | None = None


async def ehlo_name() -> str:
    """The name this host greets servers with (EHLO): its fully qualified name, looked up once.

    aiosmtplib looks it up on every connection otherwise (`socket.getfqdn` on a thread): a thread hop
    and a resolver lookup per email, and on a host whose reverse DNS does not answer, the resolver's
    timeout on every send.
    """
    global _ehlo_name
    if _ehlo_name is None:
        _ehlo_name = await asyncio.to_thread(socket.getfqdn)
    return _ehlo_name


async def smtp_client(account: SmtpAccount, command_timeout: float) -> aiosmtplib.SMTP:
    """An unconnected client for `account`; `command_timeout` bounds the connection and each command."""
    return aiosmtplib.SMTP(
        hostname=account.host,
        port=account.port,
        use_tls=account.security is SmtpSecurity.TLS,
        start_tls=account.security is SmtpSecurity.STARTTLS,  # True: required, not opportunistic
        validate_certs=account.verify_tls,
        timeout=command_timeout,
        local_hostname=await ehlo_name(),
    )


async def log_in(
    client: aiosmtplib.SMTP, username: str, secret: str, *, oauth2: bool
) -> aiosmtplib.SMTPResponse:
    """AUTH with the password, or XOAUTH2 with an OAuth2 access token (Google's and Microsoft's SASL
    mechanism for SMTP; Dovecot's SASL offers it to Postfix too)."""
    if oauth2:
        return await client.auth_xoauth2(username, secret)
    return await client.login(username, secret)


async def quit_or_drop(client: aiosmtplib.SMTP) -> None:
    """QUIT politely when the connection is still usable; otherwise just drop it."""
    if not client.is_connected:
        return
    try:
        await client.quit(timeout=QUIT_TIMEOUT)
    except Exception:  # whatever was to happen has happened; a failed goodbye changes nothing
        client.close()
