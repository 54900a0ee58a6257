"""`promtool` from Debian's prometheus package, installed with apt-get the first time a test needs it."""

from __future__ import annotations

import functools
import os
import shutil
import subprocess

import pytest

_APT_ENV = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}


@functools.cache
def _install() -> str | None:
    """Path of promtool, installing the package if needed; None with the reason printed if impossible."""
    found = shutil.which("promtool")
    if found:
        return found
    if shutil.which("apt-get") is None or os.geteuid() != 0:
        return None
    for step in (
        ["apt-get", "update", "-qq"],
        ["apt-get", "install", "-y", "-qq", "--no-install-recommends", "prometheus"],
    ):
        # Debian's packages do not start the daemon here: policy-rc.d or the missing init system blocks it.
        result = subprocess.run(step, env=_APT_ENV, capture_output=True, text=True, timeout=600, check=False)
        if result.returncode != 0:
            print(f"{' '.join(step)} failed:\n{result.stderr[-2000:]}")
            return None
    return shutil.which("promtool")


def promtool() -> str:
    """The promtool binary, or skip the test saying why it cannot be had."""
    path = _install()
    if path is None:
        pytest.skip(
            "promtool is missing and `apt-get install prometheus` (Debian's package, which ships it) "
            "could not run or failed here; install it to check the alert rules"
        )
    return path


def run_promtool(*args: str, cwd: str | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [promtool(), *args], capture_output=True, text=True, timeout=60, check=False, cwd=cwd
    )
