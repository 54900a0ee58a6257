"""The HTTP API's latency (issue #16), on the benchmark's real stack (bench/stack.py: PostgreSQL,
the Temporal dev server, one worker process, `python -m api`): `GET /v1/mailboxes/{address}` (one
mailbox's status: a workflow query, its engagement days and placement) and `GET /v1/status` of a user
with N mailboxes (N queries, 20 at a time), each asked `--repeat` times one after another; and how fast
the bulk endpoint and `starter enroll --csv` enroll (rows/s). Not part of `make bench`: run
`python -m bench.api_latency`.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

import httpx

from bench.bulk_enroll import import_csv, write_csv
from bench.stack import Stack
from devstack.postgres import free_port
from warmup.process_exit import exit_skipping_teardown

NO_SENDS = {"ramp_start": 0, "ramp_increment": 0, "ramp_ceiling": 0}


def _body(address: str, port: int) -> dict[str, object]:
    return {
        "address": address,
        "smtp_host": "127.0.0.1",
        "smtp_port": port,
        "smtp_security": "none",
        "username": address,
        "timezone": "Europe/Lisbon",
        "secret": "bench-password",
        **NO_SENDS,
    }


async def _timed(api: httpx.AsyncClient, path: str, repeat: int) -> list[float]:
    times = []
    for _ in range(repeat):
        t = time.perf_counter()
        r = await api.get(path)
        times.append((time.perf_counter() - t) * 1000)
        assert r.status_code == 200, r.text
    return times


def _row(what: str, times: list[float]) -> str:
    ordered = sorted(times)
    p95 = ordered[max(math.ceil(0.95 * len(ordered)) - 1, 0)]  # nearest rank
    return f"{what:<44} {len(times):>5} {statistics.median(times):>9.1f} {p95:>9.1f} {ordered[-1]:>9.1f}"


async def run(mailboxes: int, repeat: int, csv_rows: int, workdir: Path) -> None:
    async with Stack(workdir) as stack:
        queue = f"api-bench-{uuid.uuid4().hex[:8]}"
        env = stack.worker_env(queue, {})
        stack.spawn([sys.executable, "-m", "workers.run"], env, "worker")
        port = free_port()
        stack.spawn(
            [sys.executable, "-m", "api"],
            {**env, "WARMUP_API_PORT": str(port), "WARMUP_API_HOST": "127.0.0.1"},
            "api",
        )
        user = f"bench-{uuid.uuid4().hex[:6]}"
        created = await asyncio.to_thread(
            subprocess.run,
            [sys.executable, "-m", "starter", "token", "create", "--user", user, "--json"],
            env=env,
            capture_output=True,
            text=True,
            check=True,
        )
        token = json.loads(created.stdout)["token"]
        async with httpx.AsyncClient(
            base_url=f"http://127.0.0.1:{port}", headers={"Authorization": f"Bearer {token}"}, timeout=120
        ) as api:
            for _ in range(300):
                try:
                    if (await api.get("/healthz")).status_code == 200:
                        break
                except httpx.TransportError:
                    pass
                await asyncio.sleep(0.1)
            boxes = [f"m{i}-{user}@bench.test" for i in range(mailboxes)]
            t = time.perf_counter()
            r = await api.post(
                "/v1/mailboxes/bulk", json={"mailboxes": [_body(b, stack.sink_port) for b in boxes]}
            )
            bulk_s = time.perf_counter() - t
            assert r.status_code == 200 and r.json()["counts"]["enrolled"] == mailboxes, r.text
            await _timed(api, f"/v1/mailboxes/{boxes[0]}", 3)  # warm up
            one = await _timed(api, f"/v1/mailboxes/{boxes[0]}", repeat)
            whole = await _timed(api, "/v1/status", max(repeat // 5, 3))
            listing = await _timed(api, "/v1/mailboxes", repeat)
        csv_first, csv_again = await _csv_enroll(env, workdir, csv_rows, stack.sink_port)
    print(f"{'request':<44} {'n':>5} {'p50 ms':>9} {'p95 ms':>9} {'max ms':>9}")
    print(_row("GET /v1/mailboxes/{address} (one status)", one))
    print(_row(f"GET /v1/status (user with {mailboxes} mailboxes)", whole))
    print(_row(f"GET /v1/mailboxes (list of {mailboxes})", listing))
    rate = mailboxes / bulk_s
    print(f"POST /v1/mailboxes/bulk: {mailboxes} mailboxes of one user in {bulk_s:.1f} s ({rate:.1f} rows/s)")
    for what, secs in (("new", csv_first), ("again (every row already enrolled)", csv_again)):
        print(
            f"starter enroll --csv, {csv_rows} rows of {csv_rows // 10} users, {what}: {secs:.1f} s "
            f"({csv_rows / secs:.1f} rows/s)"
        )


async def _csv_enroll(env: dict[str, str], workdir: Path, rows: int, port: int) -> tuple[float, float]:
    """`starter enroll --csv` of `rows` mailboxes, ten per user, twice (the second run finds them
    enrolled)."""
    path = workdir / "mailboxes.csv"
    write_csv(path, rows, 10, port)
    first, _ = await import_csv(env, path)
    again, _ = await import_csv(env, path)
    return first, again


def main() -> int:
    p = argparse.ArgumentParser(prog="python -m bench.api_latency", description=__doc__)
    p.add_argument("--mailboxes", type=int, default=100, help="mailboxes of the measured user (100)")
    p.add_argument("--repeat", type=int, default=50, help="requests per measurement (50)")
    p.add_argument("--csv-rows", type=int, default=200, help="rows of the `enroll --csv` file (200)")
    a = p.parse_args()
    with tempfile.TemporaryDirectory(prefix="api-bench-", dir=Path.cwd() / ".data") as tmp:
        asyncio.run(run(a.mailboxes, a.repeat, a.csv_rows, Path(tmp)))
    return 0


if __name__ == "__main__":
    exit_skipping_teardown(main())
