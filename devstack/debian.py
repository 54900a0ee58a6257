"""Debian packages that the dev stack and the tests need (promtool, the mail lab, nginx), installed on demand.

One `apt-get update` per process, then `apt-get install --no-install-recommends`. Debian's packages do not
start their daemons here (no init system, or policy-rc.d blocks it), so installing never starts a service.
"""

from __future__ import annotations

import functools
import os
import shutil
import subprocess
from collections.abc import Iterable

_APT_ENV = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}


class DebianInstallError(RuntimeError):
    """Packages could not be installed; the message says why (no root, no apt, a failed step)."""


def can_install() -> str | None:
    """None when apt-get can install here, else the reason it cannot."""
    if shutil.which("apt-get") is None:
        return "apt-get is not available (not a Debian-based system)"
    if os.geteuid() != 0:
        return "installing Debian packages needs root"
    return None


@functools.cache
def _updated() -> None:
    _run(["apt-get", "update", "-qq"])


def _run(step: list[str]) -> None:
    result = subprocess.run(step, env=_APT_ENV, capture_output=True, text=True, timeout=900, check=False)
    if result.returncode != 0:
        raise DebianInstallError(f"`{' '.join(step)}` failed:\n{result.stderr[-2000:]}")


def ensure_commands(commands: dict[str, str]) -> None:
    """Make every command (name -> the Debian package that ships it) available, installing what is missing.

    Raises DebianInstallError naming the packages and the reason when they cannot be installed.
    """
    missing = sorted({package for command, package in commands.items() if not _have(command)})
    if not missing:
        return
    reason = can_install()
    if reason is not None:
        raise DebianInstallError(f"{', '.join(missing)} missing and cannot be installed: {reason}")
    _updated()
    install(missing)
    still = sorted(command for command in commands if not _have(command))
    if still:
        raise DebianInstallError(f"installed {', '.join(missing)} but {', '.join(still)} is still missing")


def install(packages: Iterable[str]) -> None:
    _run(["apt-get", "install", "-y", "-qq", "--no-install-recommends", *packages])


def _have(command: str) -> bool:
    # Daemons live in sbin, which a non-login PATH may lack.
    return shutil.which(command) is not None or any(
        os.access(os.path.join(d, command), os.X_OK) for d in ("/usr/sbin", "/sbin", "/usr/lib/dovecot")
    )
