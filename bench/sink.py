"""`python -m bench.sink`: the receiving SMTP server in its own process, so its CPU is measured apart.

It stands for the receivers' servers, which in production run on other machines: on the benchmark's
two shared cores every millisecond it spends is taken from what is measured. So it is the least SMTP
server that the send path's client (aiosmtplib) completes a delivery with: a greeting, EHLO/HELO,
AUTH (PLAIN, LOGIN, XOAUTH2, any credentials), MAIL, RCPT, DATA, RSET, NOOP and QUIT, each answered
without parsing addresses or messages, as one `asyncio.Protocol` (aiosmtpd, which tests use for the
faults they script, spent about 1.9 ms of CPU per email here; this one about half of that,
docs/benchmarks.md). It counts what it accepted.

It prints its port on the first line of stdout and stops on SIGINT/SIGTERM, printing how many
messages it received.
"""

from __future__ import annotations

import asyncio
import signal
import sys

_END_OF_DATA = b"\r\n.\r\n"
_EHLO = (
    b"250-sink.warmup.test\r\n250-8BITMIME\r\n250-SIZE 33554432\r\n250-SMTPUTF8\r\n"
    b"250 AUTH PLAIN LOGIN XOAUTH2\r\n"
)
_OK = b"250 2.0.0 OK\r\n"
_AUTHENTICATED = b"235 2.7.0 Authentication successful\r\n"
_USERNAME = b"334 VXNlcm5hbWU6\r\n"  # "Username:"
_PASSWORD = b"334 UGFzc3dvcmQ6\r\n"  # "Password:"
_REPLIES = {
    b"HELO": b"250 sink.warmup.test\r\n",
    b"MAIL": _OK,
    b"RCPT": _OK,
    b"RSET": _OK,
    b"NOOP": _OK,
    b"DATA": b"354 End data with <CR><LF>.<CR><LF>\r\n",
    b"QUIT": b"221 2.0.0 Bye\r\n",
}


class Counter:
    """How many messages the sink accepted (a 250 after DATA)."""

    def __init__(self) -> None:
        self.received = 0


class _Session(asyncio.Protocol):
    def __init__(self, counter: Counter) -> None:
        self._counter = counter
        self._transport: asyncio.Transport | None = None
        self._buffer = b""
        self._in_data = False
        self._auth_steps = 0  # client lines an AUTH in progress still expects

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self._transport = transport
        transport.write(b"220 sink.warmup.test ESMTP\r\n")

    def data_received(self, data: bytes) -> None:
        self._buffer += data
        replies = []
        closing = False
        while not closing:
            if self._in_data:
                end = self._buffer.find(_END_OF_DATA)
                if end < 0:
                    # Keep what could be the start of the end marker split across two chunks.
                    self._buffer = self._buffer[-(len(_END_OF_DATA) - 1) :]
                    break
                self._buffer = self._buffer[end + len(_END_OF_DATA) :]
                self._in_data = False
                self._counter.received += 1
                replies.append(b"250 2.0.0 OK queued as m%d\r\n" % self._counter.received)
                continue
            line, found, rest = self._buffer.partition(b"\r\n")
            if not found:
                break
            self._buffer = rest
            reply, closing = self._reply(line)
            replies.append(reply)
        if self._transport is not None:
            if replies:
                self._transport.write(b"".join(replies))
            if closing:
                self._transport.close()

    def _reply(self, line: bytes) -> tuple[bytes, bool]:
        """The reply to one command line, and whether the session ends after it."""
        if self._auth_steps:
            self._auth_steps -= 1
            return (_PASSWORD if self._auth_steps else _AUTHENTICATED), False
        verb, _, argument = line.partition(b" ")
        verb = verb.upper()
        if verb == b"EHLO":
            return _EHLO, False
        if verb == b"AUTH":
            mechanism, _, initial = argument.partition(b" ")
            login = mechanism.upper() == b"LOGIN"
            self._auth_steps = (2 if login else 1) - (1 if initial else 0)
            if not self._auth_steps:
                return _AUTHENTICATED, False
            if not login:
                return b"334 \r\n", False
            return (_USERNAME if self._auth_steps == 2 else _PASSWORD), False
        if verb == b"DATA":
            # The message starts here; an empty one is just ".", so the marker's CRLF is DATA's own.
            self._buffer = b"\r\n" + self._buffer
            self._in_data = True
        return _REPLIES.get(verb, b"502 5.5.2 Command not recognized\r\n"), verb == b"QUIT"

    def connection_lost(self, exc: Exception | None) -> None:
        self._transport = None


async def start_sink(host: str = "127.0.0.1", port: int = 0) -> tuple[asyncio.Server, Counter]:
    counter = Counter()
    loop = asyncio.get_running_loop()
    server = await loop.create_server(lambda: _Session(counter), host=host, port=port, reuse_address=True)
    return server, counter


async def serve() -> int:
    server, counter = await start_sink()
    print(server.sockets[0].getsockname()[1], flush=True)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    server.close()
    print(f"received {counter.received}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(asyncio.run(serve()))
