"""Headless Chromium from Debian, driven over the DevTools protocol: load pages, type into forms and
click as a person would, read what the page shows, take screenshots at a desktop's or a phone's size.

Chromium is installed with apt when missing (devstack/debian.py); a test skips, saying why, only where
it cannot be installed.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import itertools
import json
import shutil
import subprocess
import urllib.request
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import websockets

from devstack.debian import DebianInstallError, ensure_commands
from tests.helpers.operator_cli import free_port

SCREENSHOTS = Path(__file__).resolve().parents[2] / ".data" / "screenshots"


def chromium() -> str:
    """The chromium command, installed from Debian if missing; skips the test where it cannot be."""
    try:
        ensure_commands({"chromium": "chromium"})
    except DebianInstallError as exc:
        pytest.skip(f"headless Chromium is needed to test the dashboard: {exc}")
    found = shutil.which("chromium")
    assert found is not None
    return found


class Page:
    def __init__(self, ws: Any) -> None:
        self._ws = ws
        self._ids = itertools.count(1)

    async def call(self, method: str, **params: Any) -> dict[str, Any]:
        call_id = next(self._ids)
        await self._ws.send(json.dumps({"id": call_id, "method": method, "params": params}))
        while True:
            message = json.loads(await asyncio.wait_for(self._ws.recv(), 30))
            if message.get("id") == call_id:
                if "error" in message:
                    raise RuntimeError(f"{method}: {message['error']}")
                result: dict[str, Any] = message.get("result", {})
                return result

    async def eval(self, expression: str) -> Any:
        result = await self.call(
            "Runtime.evaluate", expression=expression, returnByValue=True, awaitPromise=True
        )
        if "exceptionDetails" in result:
            raise RuntimeError(f"{expression}: {result['exceptionDetails']}")
        return result["result"].get("value")

    async def _settled(self, before: str | None = None) -> None:
        for _ in range(200):
            href = await self.eval("location.href")
            if href != before and await self.eval("document.readyState") == "complete":
                return
            await asyncio.sleep(0.05)
        raise AssertionError(f"the page did not load (still at {before})")

    async def goto(self, url: str) -> None:
        await self.call("Page.navigate", url=url)
        await asyncio.sleep(0.1)
        await self._settled()

    async def submit(self, selector: str) -> None:
        """Click the submit button of the form at `selector` and wait for the next page."""
        before = await self.eval("location.href")
        await self.eval(f"document.querySelector({json.dumps(selector)}).querySelector('button').click()")
        for _ in range(200):
            await asyncio.sleep(0.05)
            if await self.eval("document.readyState") == "complete" and (
                await self.eval("location.href") != before
                or await self.eval("!!document.querySelector('.error')")
            ):
                return
        raise AssertionError("submitting the form loaded no page")

    async def type(self, selector: str, text: str) -> None:
        await self.eval(f"document.querySelector({json.dumps(selector)}).focus()")
        await self.call("Input.insertText", text=text)

    async def size(self, width: int, height: int, *, mobile: bool = False) -> None:
        await self.call(
            "Emulation.setDeviceMetricsOverride",
            width=width,
            height=height,
            deviceScaleFactor=2 if mobile else 1,
            mobile=mobile,
        )

    async def screenshot(self, name: str) -> Path:
        SCREENSHOTS.mkdir(parents=True, exist_ok=True)
        shot = await self.call("Page.captureScreenshot", format="png", captureBeyondViewport=True)
        path = SCREENSHOTS / name
        path.write_bytes(base64.b64decode(shot["data"]))
        return path


def _start(profile: Path, port: int) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [
            chromium(),
            "--headless",
            "--no-sandbox",  # root in a container: Chromium's sandbox needs user namespaces
            "--disable-gpu",
            "--no-first-run",
            f"--user-data-dir={profile}",
            f"--remote-debugging-port={port}",
            "about:blank",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )


def _pages(port: int) -> list[dict[str, Any]]:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/json/list", timeout=2) as r:
            return [t for t in json.load(r) if t.get("type") == "page"]
    except OSError:
        return []


def _stop(proc: subprocess.Popen[bytes]) -> None:
    proc.terminate()
    try:
        proc.wait(10)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


@contextlib.asynccontextmanager
async def browser(profile: Path) -> AsyncIterator[Page]:
    port = free_port()
    proc = await asyncio.to_thread(_start, profile, port)
    try:
        targets: list[dict[str, Any]] = []
        for _ in range(300):
            targets = await asyncio.to_thread(_pages, port)
            if targets:
                break
            await asyncio.sleep(0.1)
        assert targets, "Chromium's DevTools endpoint did not come up within 30 s"
        async with websockets.connect(targets[0]["webSocketDebuggerUrl"], max_size=64 * 2**20) as ws:
            page = Page(ws)
            await page.call("Page.enable")
            yield page
    finally:
        await asyncio.to_thread(_stop, proc)
