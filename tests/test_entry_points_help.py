"""Every entry point answers --help with its usage and the environment it reads, with no configuration."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from warmup.config import Settings

# (module, what its help must name)
ENTRY_POINTS = [
    ("workers.run", ["WARMUP_SECRET_KEYS", "WARMUP_DATABASE_URL", "TEMPORAL_ADDRESS", "TEMPORAL_API_KEY"]),
    ("starter", ["enroll", "status", "TEMPORAL_ADDRESS", "WARMUP_"]),
    ("devstack", ["--data-dir"]),
    ("bench", ["--tiny"]),
    ("api", ["--openapi", "WARMUP_API_PORT", "TEMPORAL_ADDRESS"]),
]


@pytest.mark.parametrize(("module", "names"), ENTRY_POINTS)
def test_help_needs_no_configuration(module: str, names: list[str]) -> None:
    # Nothing configured: no WARMUP_* and no TEMPORAL_* at all (WARMUP_SECRET_KEYS is empty).
    env = {k: v for k, v in os.environ.items() if not k.startswith(("WARMUP_", "TEMPORAL_"))}
    result = subprocess.run(
        [sys.executable, "-m", module, "--help"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("usage:"), result.stdout[:200]
    for name in names:
        assert name in result.stdout, f"{module} --help does not mention {name}"


def test_worker_help_lists_every_setting() -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("WARMUP_", "TEMPORAL_"))}
    out = subprocess.run(
        [sys.executable, "-m", "workers.run", "--help"], env=env, capture_output=True, text=True, timeout=60
    ).stdout
    missing = [n for n in Settings.model_fields if not n.startswith("TEMPORAL_") and f"WARMUP_{n}" not in out]
    assert not missing
