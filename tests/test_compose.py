"""docker-compose.yml cannot run here (no Docker engine): check it against the code instead."""

from __future__ import annotations

import re
import shlex
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import yaml

from warmup.config import Settings
from warmup.devstack.temporal import SEARCH_ATTRIBUTES

ROOT = Path(__file__).resolve().parent.parent


def _compose() -> dict[str, Any]:
    data = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    assert isinstance(data, dict)
    return data


def _default(value: str) -> str:
    """Resolve ${VAR:-default} the way compose does when VAR is unset."""
    return re.sub(r"\$\{[A-Z_]+:-([^}]*)\}", r"\1", value)


def test_stack_has_the_services_the_readme_promises() -> None:
    assert set(_compose()["services"]) >= {"postgres", "temporal", "temporal-ui", "worker"}


def test_worker_runs_the_module_the_docs_name_and_the_dockerfile_installs_it() -> None:
    worker = _compose()["services"]["worker"]
    assert worker["command"] == ["python", "-m", "workers.run"]
    assert (ROOT / "workers" / "run.py").is_file()
    dockerfile = (ROOT / "Dockerfile").read_text()
    assert 'CMD ["python", "-m", "workers.run"]' in dockerfile
    for package in ("warmup", "workflows", "activities", "workers", "starter"):
        assert f"COPY {package} ./{package}" in dockerfile, package
    assert "replicas" not in worker and "container_name" not in worker, "would block --scale worker=N"


def test_worker_environment_names_are_settings_the_code_reads() -> None:
    env = _compose()["services"]["worker"]["environment"]
    for name in env:
        if name.startswith("WARMUP_"):
            assert name.removeprefix("WARMUP_") in Settings.model_fields, f"{name} is read by nothing"
        else:
            assert name in {"TEMPORAL_ADDRESS", "TEMPORAL_NAMESPACE"}, name
    assert ":?" in env["WARMUP_SECRET_KEYS"], "compose must refuse to start without a secret key"


def test_addresses_point_at_services_and_ports_that_exist() -> None:
    services = _compose()["services"]
    worker_env = services["worker"]["environment"]
    host, port = worker_env["TEMPORAL_ADDRESS"].split(":")
    assert host == "temporal" and f"{port}:{port}" in services["temporal"]["ports"]
    assert services["temporal-ui"]["environment"]["TEMPORAL_ADDRESS"] == worker_env["TEMPORAL_ADDRESS"]
    dsn = urlsplit(_default(worker_env["WARMUP_DATABASE_URL"]))
    pg_env = {k: _default(v) for k, v in services["postgres"]["environment"].items()}
    assert (dsn.hostname, dsn.port) == ("postgres", 5432)
    assert (dsn.username, dsn.password, dsn.path) == (
        pg_env["POSTGRES_USER"],
        pg_env["POSTGRES_PASSWORD"],
        "/" + pg_env["POSTGRES_DB"],
    )
    temporal_env = {k: _default(str(v)) for k, v in services["temporal"]["environment"].items()}
    assert temporal_env["POSTGRES_SEEDS"] == "postgres"
    assert temporal_env["POSTGRES_PWD"] == pg_env["POSTGRES_PASSWORD"]


def test_search_attributes_registered_match_the_dev_server() -> None:
    command = _compose()["services"]["temporal-setup"]["command"]
    words = shlex.split(command.split("search-attribute create", 1)[1].split("||")[0])
    names = [words[i + 1] for i, w in enumerate(words) if w == "--name"]
    assert tuple(names) == SEARCH_ATTRIBUTES
