"""The worker's health endpoint for Kubernetes and compose: `GET /livez` and `GET /readyz`.

- `/livez`: 200 while the process and its event loop run (this server runs on that loop, so an
  answer proves it turns). It stays 200 during a graceful shutdown: the sends still in flight
  must not be killed by a liveness probe.
- `/readyz`: 200 once connected to Temporal and the worker polls, while the server still answers;
  503 before that, when Temporal stops answering, and from the moment shutdown begins (so
  Kubernetes takes the pod out of rotation before it goes).

A tiny HTTP/1.1 server on asyncio streams, no framework: two paths, GET or HEAD, one request per
connection. Off unless WARMUP_HEALTH_PORT is set.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from datetime import timedelta

from temporalio.api.workflowservice.v1 import GetSystemInfoRequest
from temporalio.client import Client
from temporalio.worker import Worker

from warmup.config import Settings

log = logging.getLogger("warmup.worker")

# A probe every few seconds must not become a request to Temporal every few seconds per pod.
SERVER_CHECK_INTERVAL = 5.0
SERVER_CHECK_TIMEOUT = timedelta(seconds=2)
_REQUEST_TIMEOUT = 5.0
_MAX_REQUEST_BYTES = 8192


class HealthError(Exception):
    """The health port cannot be served (e.g. already in use); the message names the variable."""


class Readiness:
    """What /readyz reports, updated by workers/run.py as the worker starts and stops."""

    def __init__(self) -> None:
        self.client: Client | None = None
        self.worker: Worker | None = None
        self.stopping = False
        self._checked_at = float("-inf")
        self._server_ok = False
        self._lock = asyncio.Lock()

    async def check(self) -> tuple[bool, str]:
        """(ready, reason in a few words)."""
        if self.stopping:
            return False, "shutting down"
        if self.client is None:
            return False, "connecting to Temporal"
        if self.worker is None or not self.worker.is_running:
            return False, "worker not polling yet"
        if not await self._server_answers(self.client):
            return False, "Temporal does not answer"
        return True, "polling"

    async def _server_answers(self, client: Client) -> bool:
        async with self._lock:  # concurrent probes share one request
            if time.monotonic() - self._checked_at < SERVER_CHECK_INTERVAL:
                return self._server_ok
            try:
                await client.workflow_service.get_system_info(
                    GetSystemInfoRequest(), retry=False, timeout=SERVER_CHECK_TIMEOUT
                )
                self._server_ok = True
            except Exception as exc:  # any failure: not ready; the reason is in the worker's log
                if self._server_ok or self._checked_at == float("-inf"):
                    log.warning("readiness: Temporal does not answer (%s)", type(exc).__name__)
                self._server_ok = False
            self._checked_at = time.monotonic()
            return self._server_ok


class HealthServer:
    def __init__(self, readiness: Readiness, host: str, port: int) -> None:
        self.readiness = readiness
        self.host = host
        self.port = port
        self._server: asyncio.Server | None = None

    async def start(self) -> None:
        try:
            self._server = await asyncio.start_server(self._handle, self.host, self.port)
        except OSError as exc:
            raise HealthError(
                f"WARMUP_HEALTH_PORT={self.port} on WARMUP_HEALTH_HOST={self.host}: cannot listen "
                f"({exc.strerror or exc}); pick a free port, or 0 to turn the endpoint off"
            ) from None
        log.info("health on %s:%d (/livez, /readyz)", self.host, self.port)

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._server.wait_closed(), 2)
            self._server = None

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            async with asyncio.timeout(_REQUEST_TIMEOUT):
                head = await reader.readuntil(b"\r\n\r\n")
            status, body = await self._answer(head)
        except (TimeoutError, asyncio.IncompleteReadError, asyncio.LimitOverrunError, ConnectionError):
            writer.close()
            return
        method = head.split(b" ", 1)[0]
        payload = b"" if method == b"HEAD" else body.encode()
        reason = {200: "OK", 404: "Not Found", 405: "Method Not Allowed", 503: "Service Unavailable"}[status]
        writer.write(
            f"HTTP/1.1 {status} {reason}\r\nContent-Type: text/plain; charset=utf-8\r\n"
            f"Content-Length: {len(body.encode())}\r\nConnection: close\r\n\r\n".encode()
            + payload
        )
        with contextlib.suppress(ConnectionError):
            await writer.drain()
        writer.close()

    async def _answer(self, head: bytes) -> tuple[int, str]:
        if len(head) > _MAX_REQUEST_BYTES:
            return 404, "request too large\n"
        parts = head.split(b"\r\n", 1)[0].split(b" ")
        if len(parts) != 3:
            return 404, "not an HTTP request\n"
        method, target = parts[0], parts[1].split(b"?", 1)[0]
        if target not in (b"/livez", b"/readyz"):
            return 404, "try /livez or /readyz\n"
        if method not in (b"GET", b"HEAD"):
            return 405, "GET or HEAD\n"
        if target == b"/livez":
            return 200, "ok\n"
        ready, reason = await self.readiness.check()
        return (200 if ready else 503), reason + "\n"


async def start(settings: Settings, readiness: Readiness) -> HealthServer | None:
    """The running server, or None when WARMUP_HEALTH_PORT is 0."""
    if not settings.HEALTH_PORT:
        return None
    server = HealthServer(readiness, settings.HEALTH_HOST, settings.HEALTH_PORT)
    await server.start()
    return server
