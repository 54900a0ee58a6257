"""Workers share the workflow modules with the sandbox (less memory), so lint guards determinism.

With WARMUP_WORKFLOW_SANDBOX=shared the sandbox no longer intercepts datetime.now() and friends in
workflow code at run time (workers/sandbox.py); ruff's banned-api rules for workflows/ must then
refuse them, and the workflow tests run the isolated sandbox, which does intercept them.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


def _ruff(source: str, filename: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "ruff", "check", "--no-cache", "--stdin-filename", filename, "-"],
        input=source,
        capture_output=True,
        text=True,
        cwd=ROOT,
        check=False,
    )


@pytest.mark.parametrize(
    ("source", "banned"),
    [
        ("from datetime import datetime\n\nx = datetime.now()\n", "datetime.datetime.now"),
        ("import random\n\nx = random.random()\n", "random"),
        ("import time\n\nx = time.time()\n", "time"),
        ("import uuid\n\nx = uuid.uuid4()\n", "uuid.uuid4"),
        ("import asyncio\n\n\nasync def f() -> None:\n    await asyncio.sleep(1)\n", "asyncio.sleep"),
    ],
)
def test_a_non_deterministic_call_in_workflow_code_fails_lint(source: str, banned: str) -> None:
    result = _ruff(source, "workflows/probe.py")
    assert result.returncode == 1, result.stdout + result.stderr
    assert f"`{banned}` is banned" in result.stdout


def test_the_same_call_outside_workflows_is_allowed() -> None:
    result = _ruff("import random\n\nx = random.random()\n", "activities/probe.py")
    assert result.returncode == 0, result.stdout + result.stderr


def test_the_worker_default_shares_workflow_modules_and_tests_isolate_them() -> None:
    from warmup.config import load_settings
    from workers.sandbox import workflow_runner

    assert load_settings({}).WORKFLOW_SANDBOX == "shared"
    shared = workflow_runner("shared").restrictions.passthrough_modules
    isolated = workflow_runner("isolated").restrictions.passthrough_modules
    assert "workflows" in shared and "workflows" not in isolated
