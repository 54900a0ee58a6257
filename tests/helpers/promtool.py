"""`promtool` from Debian's prometheus package, installed with apt-get the first time a test needs it."""

from __future__ import annotations

import functools
import shutil
import subprocess

import pytest

from devstack.debian import DebianInstallError, ensure_commands


@functools.cache
def _install() -> str:
    """Path of promtool, installing the package if needed; the reason as an error if impossible."""
    ensure_commands({"promtool": "prometheus"})
    found = shutil.which("promtool")
    if found is None:
        raise DebianInstallError("prometheus installed but promtool is not on PATH")
    return found


def promtool() -> str:
    """The promtool binary, or skip the test saying why it cannot be had."""
    try:
        return _install()
    except DebianInstallError as exc:
        pytest.skip(f"promtool (Debian's prometheus package) is needed to check the alert rules: {exc}")


def run_promtool(*args: str, cwd: str | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [promtool(), *args], capture_output=True, text=True, timeout=60, check=False, cwd=cwd
    )
