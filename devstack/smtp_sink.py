"""A real SMTP server (aiosmtpd) that keeps what it receives: the receiving end for tests and `make dev`.

It runs in the caller's asyncio loop (not aiosmtpd's threaded Controller) so a test can await it,
and it can misbehave on purpose: scripted DATA replies (451, 550...) and a DATA reply that never comes.
"""

from __future__ import annotations

import asyncio
import email
import email.policy
import hmac
import logging
import ssl
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from email.message import EmailMessage
from types import TracebackType
from typing import Any

from aiosmtpd.smtp import SMTP, AuthResult, Envelope, LoginPassword, Session

AUTH_INVALID = "535 5.7.8 Authentication credentials invalid"
AUTH_REQUIRED = "530 5.7.0 Authentication required"


class _QuietLoginDataWarning(logging.Filter):
    """aiosmtpd 1.4 itself sets the deprecated Session.login_data on every AUTH and warns about it."""

    def filter(self, record: logging.LogRecord) -> bool:
        return "login_data is deprecated" not in record.getMessage()


logging.getLogger("mail.log").addFilter(_QuietLoginDataWarning())


@dataclass
class ReceivedMessage:
    mail_from: str
    rcpt_tos: list[str]
    raw: bytes
    message: EmailMessage
    message_id: str
    received_at: float  # time.time() when DATA ended
    auth_login: str | None = None  # the AUTH username of the session, if it logged in
    peer: str = ""
    ehlo: str = ""  # the name the client greeted with (EHLO/HELO)


@dataclass
class _Behaviour:
    replies: deque[str | None] = field(default_factory=deque)
    stall_seconds: float | None = None
    stall_rcpt_seconds: float | None = None


class SmtpSink:
    """Accepts mail on `host`:`port` and appends it to `.messages`.

    `credentials` maps username -> password for AUTH PLAIN/LOGIN; empty accepts any login and mail
    without login. When it is not empty, MAIL FROM needs a successful AUTH first (530 otherwise) and
    a wrong login gets a real 535 reply. `tls_context` enables STARTTLS (or implicit TLS with
    `implicit_tls=True`); without it the sink speaks clear text, which is fine on loopback only.
    """

    def __init__(
        self,
        host: str = "127.0.0.1",
        port: int = 0,
        *,
        credentials: dict[str, str] | None = None,
        on_message: Callable[[ReceivedMessage], None] | None = None,
        tls_context: ssl.SSLContext | None = None,
        implicit_tls: bool = False,
        hostname: str = "sink.warmup.test",
    ) -> None:
        self.host = host
        self.port = port
        self.credentials: dict[str, str] = dict(credentials or {})
        self.messages: list[ReceivedMessage] = []
        self.on_message = on_message
        self.tls_context = tls_context
        self.implicit_tls = implicit_tls
        self.hostname = hostname
        self.auth_failures = 0
        # RCPT replies by recipient address (lowercase): "550 5.1.1 No such user" refuses that address.
        self.rcpt_replies: dict[str, str] = {}
        self.sessions = 0  # connections accepted: how many times a client tried at all
        self._behaviour = _Behaviour()
        self._server: asyncio.Server | None = None
        self._connections: set[SMTP] = set()
        self._arrived = asyncio.Event()
        # Set when a stalled reply (before or after DATA) begins, so a test can act while it lasts.
        self.stalled = asyncio.Event()

    # --- test controls ---------------------------------------------------------------------

    def script_data_replies(self, replies: list[str | None]) -> None:
        """Queue the replies to the next DATA commands, in order; None means the normal 250.

        A reply not starting with 2 means the message was refused, so it is not kept.
        """
        self._behaviour.replies.extend(replies)

    def stall_after_data(self, seconds: float) -> None:
        """The next DATA is received and kept, but its reply is withheld for `seconds`.

        This is the "sent but no answer" case: the message did arrive, the client cannot know it.
        """
        self._behaviour.stall_seconds = seconds

    def stall_before_data(self, seconds: float) -> None:
        """The reply to the next RCPT is withheld for `seconds`: the send hangs before DATA.

        Nothing has been delivered then, so a client that gives up (or dies) may safely try again.
        """
        self._behaviour.stall_rcpt_seconds = seconds

    async def wait_for(self, n: int, timeout: float = 10.0) -> list[ReceivedMessage]:  # noqa: ASYNC109
        """Wait until at least `n` messages have arrived; TimeoutError says how many did."""
        deadline = asyncio.get_running_loop().time() + timeout
        while len(self.messages) < n:
            remaining = deadline - asyncio.get_running_loop().time()
            if remaining <= 0:
                raise TimeoutError(f"only {len(self.messages)} of {n} messages arrived within {timeout}s")
            self._arrived.clear()
            try:
                await asyncio.wait_for(self._arrived.wait(), remaining)
            except TimeoutError:
                continue
        return self.messages[:n]

    # --- lifecycle -------------------------------------------------------------------------

    async def start(self) -> None:
        if self._server is not None:
            return
        loop = asyncio.get_running_loop()
        self._arrived = asyncio.Event()
        self.stalled = asyncio.Event()
        self._server = await loop.create_server(
            self._protocol,
            host=self.host,
            port=self.port,
            ssl=self.tls_context if self.implicit_tls else None,
            reuse_address=True,
        )
        self.port = self._server.sockets[0].getsockname()[1]

    async def stop(self) -> None:
        server, self._server = self._server, None
        if server is None:
            return
        server.close()
        # Python 3.11's Server.close leaves open connections alone; a stalled one would linger.
        for conn in list(self._connections):
            if conn.transport is not None:
                conn.transport.close()
        await server.wait_closed()
        # Let aiosmtpd's connection_lost cancel the handler tasks before the loop moves on.
        await asyncio.sleep(0)

    async def __aenter__(self) -> SmtpSink:
        await self.start()
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.stop()

    # --- aiosmtpd plumbing -----------------------------------------------------------------

    def _protocol(self) -> SMTP:
        conn = _TrackedSMTP(
            _Handler(self),
            sink=self,
            hostname=self.hostname,
            authenticator=self._authenticate,
            auth_require_tls=False,
            tls_context=None if self.implicit_tls else self.tls_context,
            loop=asyncio.get_running_loop(),
        )
        self._connections.add(conn)
        self.sessions += 1
        return conn

    def _authenticate(
        self, server: SMTP, session: Session, envelope: Envelope, mechanism: str, auth_data: Any
    ) -> AuthResult:
        if not isinstance(auth_data, LoginPassword):
            return AuthResult(success=False, handled=False)
        login = auth_data.login.decode("utf-8", "replace")
        if not self.credentials:
            return AuthResult(success=True, auth_data=auth_data)
        expected = self.credentials.get(login)
        if expected is not None and hmac.compare_digest(expected.encode("utf-8"), auth_data.password):
            return AuthResult(success=True, auth_data=auth_data)
        self.auth_failures += 1
        # handled=False makes aiosmtpd send the standard "535 5.7.8 Authentication credentials invalid".
        return AuthResult(success=False, handled=False)

    def _record(self, session: Session, envelope: Envelope) -> None:
        raw = envelope.original_content or b""
        if not raw and isinstance(envelope.content, bytes):
            raw = envelope.content
        parsed = email.message_from_bytes(raw, policy=email.policy.default)
        assert isinstance(parsed, EmailMessage)
        auth = session.auth_data
        login = auth.login.decode("utf-8", "replace") if isinstance(auth, LoginPassword) else None
        received = ReceivedMessage(
            mail_from=envelope.mail_from or "",
            rcpt_tos=list(envelope.rcpt_tos),
            raw=raw,
            message=parsed,
            message_id=str(parsed.get("Message-ID", "")).strip(),
            received_at=time.time(),
            auth_login=login,
            peer=str(session.peer),
            ehlo=session.host_name or "",
        )
        self.messages.append(received)
        self._arrived.set()
        if self.on_message is not None:
            self.on_message(received)


class _TrackedSMTP(SMTP):
    """aiosmtpd's SMTP protocol, forgetting itself from the sink's connection set when closed."""

    def __init__(self, handler: Any, *, sink: SmtpSink, **kwargs: Any) -> None:
        super().__init__(handler, **kwargs)
        self._sink = sink

    def connection_lost(self, exc: Exception | None) -> None:
        self._sink._connections.discard(self)
        super().connection_lost(exc)


class _Handler:
    def __init__(self, sink: SmtpSink) -> None:
        self._sink = sink

    async def handle_MAIL(
        self, server: SMTP, session: Session, envelope: Envelope, address: str, mail_options: list[str]
    ) -> str:
        if self._sink.credentials and not session.authenticated:
            return AUTH_REQUIRED
        envelope.mail_from = address
        envelope.mail_options.extend(mail_options)
        return "250 OK"

    async def handle_RCPT(
        self, server: SMTP, session: Session, envelope: Envelope, address: str, rcpt_options: list[str]
    ) -> str:
        behaviour = self._sink._behaviour
        stall, behaviour.stall_rcpt_seconds = behaviour.stall_rcpt_seconds, None
        if stall:
            self._sink.stalled.set()
            await asyncio.sleep(stall)
        refusal = self._sink.rcpt_replies.get(address.lower())
        if refusal is not None:
            return refusal
        envelope.rcpt_tos.append(address)
        envelope.rcpt_options.extend(rcpt_options)
        return "250 OK"

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        behaviour = self._sink._behaviour
        reply = behaviour.replies.popleft() if behaviour.replies else None
        if reply is not None and not reply.startswith("2"):
            if reply.startswith("421") and server.transport is not None:
                # 421 means "closing the channel": a real server hangs up right after the reply.
                asyncio.get_running_loop().call_later(0.05, server.transport.close)
            return reply  # refused: nothing was delivered
        self._sink._record(session, envelope)
        stall, behaviour.stall_seconds = behaviour.stall_seconds, None
        if stall:
            self._sink.stalled.set()
            await asyncio.sleep(stall)
        return reply or f"250 2.0.0 OK queued as m{len(self._sink.messages)}"
