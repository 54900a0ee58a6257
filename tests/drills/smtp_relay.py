"""An SMTP relay between a worker and the mail lab's real Postfix, able to stall one connection at a
chosen point of the dialogue, so a drill can SIGKILL the worker exactly there.

The lab requires STARTTLS, so the relay cannot just forward bytes and still see the commands: it answers
the client's STARTTLS with the lab's own certificate (valid for 127.0.0.1, trusted through the lab CA)
and opens its own TLS session to Postfix. Everything else is passed through unchanged, line by line; the
message itself is delivered by Postfix, rspamd and Dovecot as any other.
"""

from __future__ import annotations

import asyncio
import contextlib
import ssl
from enum import Enum

from devstack.mail_lab import MailLab


class Fault(Enum):
    NONE = "pass"
    STALL_RCPT = "stall at RCPT"  # the ledger row is still PENDING: nothing was sent yet
    HOLD_250 = "hold the 250 after DATA"  # Postfix has the message; the client never hears so


class SmtpRelay:
    """Listens on 127.0.0.1; the n-th connection gets the n-th fault of `script` (then none)."""

    def __init__(self, lab: MailLab, script: list[Fault]) -> None:
        self._lab = lab
        self._script = list(script)
        self._server: asyncio.Server | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self.port = 0
        self.connections = 0
        self.stalled = asyncio.Event()  # a STALL_RCPT connection reached RCPT
        self.held = asyncio.Event()  # a HOLD_250 connection got Postfix's reply to the message

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._accept, "127.0.0.1", 0)
        self.port = int(self._server.sockets[0].getsockname()[1])

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        if self._server is not None:
            await self._server.wait_closed()

    async def _accept(self, client_r: asyncio.StreamReader, client_w: asyncio.StreamWriter) -> None:
        fault = self._script.pop(0) if self._script else Fault.NONE
        self.connections += 1
        task = asyncio.current_task()
        assert task is not None
        self._tasks.add(task)
        upstream_w: asyncio.StreamWriter | None = None
        try:
            upstream_r, upstream_w = await asyncio.open_connection(self._lab.host, self._lab.submission_port)
            await self._relay(fault, client_r, client_w, upstream_r, upstream_w)
        except (OSError, ssl.SSLError, asyncio.IncompleteReadError):
            pass  # the worker was killed mid-dialogue: that is the point
        finally:
            self._tasks.discard(task)
            # No QUIT for Postfix: like a client that died. A message it answered 250 to is kept.
            for w in (client_w, upstream_w):
                if w is not None:
                    w.close()

    async def _relay(
        self,
        fault: Fault,
        client_r: asyncio.StreamReader,
        client_w: asyncio.StreamWriter,
        up_r: asyncio.StreamReader,
        up_w: asyncio.StreamWriter,
    ) -> None:
        # The product's client sends one command and awaits its reply (no PIPELINING), so a lock-step
        # relay sees each reply next to its command.
        await _forward(await _reply(up_r), client_w)  # the greeting
        while line := await client_r.readline():
            command = line[:8].upper()
            if fault is Fault.STALL_RCPT and command.startswith(b"RCPT"):
                self.stalled.set()
                await client_r.read()  # until the client is gone; Postfix never sees the RCPT
                return
            up_w.write(line)
            reply = await _reply(up_r)
            if command.startswith(b"DATA") and reply.startswith(b"354"):
                await _forward(reply, client_w)
                while body := await client_r.readline():
                    up_w.write(body)
                    if body == b".\r\n":
                        break
                reply = await _reply(up_r)
                if fault is Fault.HOLD_250:
                    self.held.set()
                    await client_r.read()
                    return
            if command.startswith(b"STARTTLS") and reply.startswith(b"220"):
                # Postfix's side first: once the client has the 220 it sends its ClientHello at once, and
                # bytes read before the client side is upgraded would be lost to the handshake.
                await up_w.start_tls(self._lab.ssl_context(), server_hostname=self._lab.host)
                client_w.write(reply)
                await client_w.start_tls(self._server_context())  # no await point before it pauses reading
                continue
            await _forward(reply, client_w)
            if command.startswith(b"QUIT"):
                return

    def _server_context(self) -> ssl.SSLContext:
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        tls = self._lab.base_dir / "tls"
        context.load_cert_chain(tls / "server.pem", tls / "server.key")
        return context


async def _reply(reader: asyncio.StreamReader) -> bytes:
    """One SMTP reply, all its lines ("250-..." continues, "250 ..." ends)."""
    lines = b""
    while True:
        line = await reader.readline()
        if not line:
            raise asyncio.IncompleteReadError(lines, None)
        lines += line
        if line[3:4] != b"-":
            return lines


async def _forward(data: bytes, writer: asyncio.StreamWriter) -> None:
    writer.write(data)
    with contextlib.suppress(ConnectionError):
        await writer.drain()
