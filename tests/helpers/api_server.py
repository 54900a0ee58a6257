"""The HTTP API (api/app.py) served by uvicorn on a free loopback port inside the test's event loop,
against the test's real PostgreSQL and Temporal; and an httpx client for it."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import json
from collections.abc import AsyncIterator

import httpx
import uvicorn

from api.app import create_app
from tests.helpers.operator_cli import Op, free_port
from warmup.config import load_settings


@dataclasses.dataclass
class Api:
    url: str
    op: Op

    def client(self, token: str | None = None) -> httpx.AsyncClient:
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        return httpx.AsyncClient(base_url=self.url, headers=headers, timeout=30)

    async def token(self, *who: str) -> str:
        """A new token from `starter token create` (who: "--user", U or "--operator")."""
        run = await self.op.ok("token", "create", *who, "--json")
        data = json.loads(run.out)
        assert isinstance(data, dict)
        return str(data["token"])


@contextlib.asynccontextmanager
async def serve_api(op: Op) -> AsyncIterator[Api]:
    port = free_port()
    config = uvicorn.Config(
        create_app(load_settings(dict(op.env))),
        host="127.0.0.1",
        port=port,
        log_level="warning",
        lifespan="on",
    )
    server = uvicorn.Server(config)
    task = asyncio.create_task(server.serve())
    try:
        for _ in range(200):
            if server.started:
                break
            if task.done():
                task.result()  # raises the startup failure
            await asyncio.sleep(0.05)
        assert server.started, "uvicorn did not start within 10 s"
        yield Api(f"http://127.0.0.1:{port}", op)
    finally:
        server.should_exit = True
        await asyncio.wait_for(task, 15)
