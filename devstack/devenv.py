"""`.data/dev.env`: the dev stack's generated secrets plus the variables the CLIs need.

The secrets (the Fernet key, the demo SMTP password) are made once and kept, so a second `make dev`
can still decrypt what the first one stored. The file is mode 0600 and can be sourced by a shell
(`. .data/dev.env`) to use `starter` against the running stack.
"""

from __future__ import annotations

import os
import secrets
import shlex
from collections.abc import Callable
from pathlib import Path

from warmup.secrets import generate_key

# Generated once, then reused.
PERSISTENT: dict[str, Callable[[], str]] = {
    "WARMUP_SECRET_KEYS": generate_key,
    "DEMO_SMTP_SECRET": lambda: secrets.token_urlsafe(18),
}


def read_env_file(path: Path) -> dict[str, str]:
    values: dict[str, str] = {}
    for line in path.read_text(encoding="utf-8").splitlines():
        line = line.strip()
        if not line or line.startswith("#") or "=" not in line:
            continue
        name, value = line.removeprefix("export ").split("=", 1)
        parts = shlex.split(value)
        values[name.strip()] = parts[0] if parts else ""
    return values


def write_env_file(path: Path, values: dict[str, str]) -> None:
    body = "# Written by `make dev`; source it to use the CLIs against the dev stack: . .data/dev.env\n"
    body += "".join(f"export {name}={shlex.quote(value)}\n" for name, value in values.items())
    tmp = path.with_name(path.name + ".tmp")
    # Created 0600 from the start: the secrets are never readable by others, not even briefly.
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as f:
        f.write(body)
    os.chmod(tmp, 0o600)
    tmp.replace(path)


def load_or_create(path: Path, current: dict[str, str]) -> dict[str, str]:
    """The persistent secrets from `path` (creating the missing ones), saved back with `current`.

    Returns the persistent values; `current` holds this run's other variables (addresses, ports).
    """
    stored = read_env_file(path) if path.exists() else {}
    kept = {name: stored.get(name) or make() for name, make in PERSISTENT.items()}
    write_env_file(path, {**kept, **current})
    return kept
