"""The worker's health endpoint, on a real worker process: WARMUP_HEALTH_PORT, /livez and /readyz.

/readyz is what Kubernetes and compose route and wait on: 503 while the worker connects, 200 once it
polls, 503 when its Temporal server stops answering and 200 again when it is back; /livez stays 200
throughout (a worker waiting for Temporal must not be restarted for it). Readiness during a graceful
shutdown (503 while the sends in flight finish) is checked in test_graceful_shutdown.py.
"""

from __future__ import annotations

import asyncio
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path

from devstack.postgres import free_port
from devstack.temporal import DevServer
from tests.helpers.worker_procs import start_worker, stop_worker, worker_env
from warmup.config import Settings


def get(port: int, path: str, method: str = "GET") -> tuple[int, str]:
    request = urllib.request.Request(f"http://127.0.0.1:{port}{path}", method=method)
    try:
        with urllib.request.urlopen(request, timeout=3) as resp:
            return resp.status, resp.read().decode()
    except urllib.error.HTTPError as err:
        return err.code, err.read().decode()


async def until(
    port: int, path: str, expected: tuple[int, str], within: float, proc: subprocess.Popen[bytes]
) -> float:
    """Seconds until `path` answers `expected` (the worker must stay up meanwhile)."""
    began = time.monotonic()
    last: tuple[int, str] | str = "no answer"
    while time.monotonic() - began < within:
        assert proc.poll() is None, f"the worker exited with {proc.returncode}"
        try:
            last = await asyncio.to_thread(get, port, path)
        except OSError as exc:  # not listening yet
            last = repr(exc)
        if last == expected:
            return time.monotonic() - began
        await asyncio.sleep(0.2)
    raise AssertionError(f"{path} answered {last!r}, not {expected!r}, for {within:.0f}s")


async def test_ready_only_while_polling_a_server_that_answers(
    make_settings: Callable[..., Settings], tmp_path: Path
) -> None:
    server = DevServer(tmp_path / "temporal.db", port=free_port(), ui_port=free_port())
    server.start()
    port = free_port()
    env = worker_env(make_settings(), server.address, HEALTH_PORT=str(port), HEALTH_HOST="127.0.0.1")
    log = tmp_path / "worker.log"
    proc = start_worker(env, log)
    try:
        await until(port, "/readyz", (200, "polling\n"), 60, proc)
        assert get(port, "/livez") == (200, "ok\n")
        assert get(port, "/livez", "HEAD")[0] == 200
        assert get(port, "/metrics")[0] == 404
        assert get(port, "/readyz", "POST")[0] == 405

        server.stop()
        went = await until(port, "/readyz", (503, "Temporal does not answer\n"), 30, proc)
        assert get(port, "/livez") == (200, "ok\n")
        server.start()
        back = await until(port, "/readyz", (200, "polling\n"), 60, proc)
        print(f"/readyz: 503 {went:.1f}s after the server stopped, 200 {back:.1f}s after it returned")
    finally:
        code = stop_worker(proc)
        server.stop()
    assert code == 0, log.read_text()[-3000:]


async def test_not_ready_while_connecting(make_settings: Callable[..., Settings], tmp_path: Path) -> None:
    """A Temporal address that accepts the connection and never answers: alive, not ready, then exit 1."""

    async def silent(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.read()  # until the client gives up
        writer.close()

    black_hole = await asyncio.start_server(silent, "127.0.0.1", 0)
    address = f"127.0.0.1:{black_hole.sockets[0].getsockname()[1]}"
    port = free_port()
    env = worker_env(make_settings(), address, HEALTH_PORT=str(port), HEALTH_HOST="127.0.0.1")
    log = tmp_path / "worker.log"
    proc = start_worker(env, log)
    try:
        await until(port, "/livez", (200, "ok\n"), 30, proc)
        assert get(port, "/readyz") == (503, "connecting to Temporal\n")
        deadline = time.monotonic() + 60
        while proc.poll() is None:
            assert time.monotonic() < deadline, "the worker kept waiting past its connect timeout"
            await asyncio.sleep(0.2)
    finally:
        stop_worker(proc)
        black_hole.close()
    text = log.read_text()
    assert proc.returncode == 1, text
    assert f"cannot reach Temporal at {address}" in text and "TEMPORAL_ADDRESS" in text
    assert "Traceback" not in text


async def test_a_taken_port_is_refused_by_name(
    make_settings: Callable[..., Settings], tmp_path: Path
) -> None:
    taken = await asyncio.start_server(lambda r, w: None, "127.0.0.1", 0)
    port = taken.sockets[0].getsockname()[1]
    env = worker_env(make_settings(), "127.0.0.1:1", HEALTH_PORT=str(port), HEALTH_HOST="127.0.0.1")
    try:
        worker = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "workers.run", env=env, stderr=asyncio.subprocess.PIPE
        )
        _, err = await asyncio.wait_for(worker.communicate(), 60)
    finally:
        taken.close()
    assert worker.returncode == 2
    assert f"WARMUP_HEALTH_PORT={port}" in err.decode() and "cannot listen" in err.decode()
