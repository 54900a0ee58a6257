"""Real worker processes for tests: the environment they read, and starting/stopping them."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from warmup.config import Settings

# Compressed time: each mailbox sends every 1-3 s, all day, chained rather than spread.
FAST_TIMING = {
    "SAME_MAILBOX_DELAY_MIN": "0.02",
    "SAME_MAILBOX_DELAY_MAX": "0.05",
    "SEND_WINDOW_START_HOUR": "0",
    "SEND_WINDOW_END_HOUR": "24",
    "SPREAD_OVER_WINDOW": "false",
    "SEND_RETRY_INITIAL_SECONDS": "0.5",
    "SMTP_TIMEOUT_SECONDS": "5",
}


def worker_env(settings: Settings, temporal_address: str, **overrides: str) -> dict[str, str]:
    """The process environment for `python -m workers.run` / `python -m starter` against `settings`."""
    # A developer's own WARMUP_*/TEMPORAL_* (a Cloud API key, TLS files) must not reach local workers.
    env = {k: v for k, v in os.environ.items() if not k.startswith(("WARMUP_", "TEMPORAL_"))}
    env["TEMPORAL_ADDRESS"] = temporal_address
    for name in Settings.model_fields:
        if name.startswith("TEMPORAL_"):
            continue
        value = getattr(settings, name)
        env[f"WARMUP_{name}"] = value.get_secret_value() if hasattr(value, "get_secret_value") else str(value)
    env.update({f"WARMUP_{k}": v for k, v in {**FAST_TIMING, **overrides}.items()})
    return env


class Workers:
    """Worker processes sharing one environment; each logs to its own file, shown when a test fails."""

    def __init__(self, env: dict[str, str], log_dir: Path) -> None:
        self.env = env
        self.log_dir = log_dir
        self.procs: list[subprocess.Popen[bytes]] = []

    def start(self, count: int = 1) -> None:
        for _ in range(count):
            log = self.log_dir / f"worker{len(self.procs)}.log"
            with log.open("wb") as out:
                self.procs.append(
                    subprocess.Popen(
                        [sys.executable, "-m", "workers.run"], env=self.env, stdout=out, stderr=out
                    )
                )

    def stop_all(self) -> None:
        for p in self.procs:
            if p.poll() is None:
                p.kill()
            p.wait()
        for log in sorted(self.log_dir.glob("worker*.log")):  # pytest shows this only for a failed test
            print(f"--- {log.name}\n{log.read_text(errors='replace')[-3000:]}")


def start_worker(env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    """One `python -m workers.run`, its output in `log`."""
    with log.open("wb") as out:
        return subprocess.Popen([sys.executable, "-m", "workers.run"], env=env, stdout=out, stderr=out)


def stop_worker(proc: subprocess.Popen[bytes]) -> int:
    """SIGTERM (the worker drains), SIGKILL after 30 s; its exit code."""
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    return proc.returncode
