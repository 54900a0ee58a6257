"""`make dev` end to end: the real stack starts, demo mail arrives, Ctrl-C stops everything, data stays."""

from __future__ import annotations

import os
import re
import signal
import stat
import subprocess
import sys
import time
from pathlib import Path

import pytest

from devstack.devenv import read_env_file
from devstack.postgres import free_port

MAIL_LINE = re.compile(r"^\d\d:\d\d:\d\d  mail  (demo\d@demo\.test) -> (demo\d@demo\.test)  \S", re.MULTILINE)


def _command(data_dir: Path, *extra: str) -> list[str]:
    ports = [free_port() for _ in range(4)]
    return [
        sys.executable, "-m", "devstack", "--data-dir", str(data_dir),
        "--pg-port", str(ports[0]), "--temporal-port", str(ports[1]), "--ui-port", str(ports[2]),
        "--smtp-port", str(ports[3]), *extra,
    ]  # fmt: skip


def _clean_env() -> dict[str, str]:
    # The developer's own WARMUP_* / TEMPORAL_* settings must not steer this test.
    return {k: v for k, v in os.environ.items() if not k.startswith(("WARMUP_", "TEMPORAL_"))}


def _processes_using(path: Path) -> list[str]:
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            argv = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            state = (entry / "stat").read_text().rsplit(")", 1)[1].split()[0]
        except (OSError, IndexError):
            continue
        if str(path) in argv and state != "Z":
            found.append(f"{entry.name}: {argv[:200]}")
    return found


@pytest.mark.timeout(300)
def test_make_dev_delivers_demo_mail_then_stops_and_restarts_on_the_same_data(tmp_path: Path) -> None:
    data = tmp_path / "data"

    # First run: fresh folder, stops by itself once three demo mails arrived.
    first = subprocess.run(
        _command(data, "--exit-after-mails", "3", "--timeout", "120"),
        capture_output=True,
        text=True,
        timeout=180,
        env=_clean_env(),
        check=False,
    )
    assert first.returncode == 0, first.stdout + first.stderr
    assert "database warmup (created)" in first.stdout
    assert "http://localhost:" in first.stdout  # the Web UI address is shown
    mails = MAIL_LINE.findall(first.stdout)
    assert len(mails) >= 3, first.stdout
    assert all(sender != rcpt for sender, rcpt in mails)  # a mailbox does not warm up with itself
    assert "stopped PostgreSQL" in first.stdout
    assert _processes_using(data) == []

    env_file = data / "dev.env"
    assert stat.S_IMODE(env_file.stat().st_mode) == 0o600
    key = read_env_file(env_file)["WARMUP_SECRET_KEYS"]
    assert key and key not in first.stdout + first.stderr  # the key never appears in the output

    # Second run on the same folder: reuses database and key, keeps sending; Ctrl-C stops it cleanly.
    proc = subprocess.Popen(
        _command(data, "--timeout", "120"),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env=_clean_env(),
    )
    assert proc.stdout is not None
    lines: list[str] = []
    deadline = time.monotonic() + 120
    try:
        for line in proc.stdout:
            lines.append(line)
            if MAIL_LINE.match(line) or time.monotonic() > deadline:
                break
        proc.send_signal(signal.SIGINT)
        rest, _ = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    output = "".join(lines) + rest
    assert MAIL_LINE.search(output), output
    assert proc.returncode == 0, output
    assert "database warmup (created)" not in output
    assert "received SIGINT" in output
    # Reverse order: workers before the sink before Temporal before PostgreSQL.
    order = [output.index(f"stopped {name}") for name in ("workers", "SMTP sink", "Temporal", "PostgreSQL")]
    assert order == sorted(order), output
    assert read_env_file(env_file)["WARMUP_SECRET_KEYS"] == key
    assert _processes_using(data) == []
