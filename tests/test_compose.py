"""docker-compose.yml cannot run here (no Docker engine): check it against the code instead."""

from __future__ import annotations

import re
import shlex
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import yaml

from devstack.temporal import SEARCH_ATTRIBUTES
from warmup.config import Settings, load_settings

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


# --- monitoring: Prometheus scrapes every worker, loads the alert rules; Grafana shows the dashboard ---

DEPLOY = ROOT / "deploy"


def _mounts(service: dict[str, Any]) -> dict[str, str]:
    """host path -> container path of a service's bind mounts."""
    found = {}
    for volume in service.get("volumes", []):
        source, target = str(volume).split(":")[:2]
        if source.startswith("./"):
            found[source] = target
    return found


def _local(service: dict[str, Any], container_path: str) -> Path:
    """The file in this repository that a bind mount puts at `container_path`."""
    for source, target in _mounts(service).items():
        if container_path == target or container_path.startswith(target.rstrip("/") + "/"):
            return ROOT / source.removeprefix("./") / container_path.removeprefix(target).lstrip("/")
    raise AssertionError(f"{container_path} is not inside any bind mount of the service")


def test_the_stack_has_prometheus_and_grafana() -> None:
    assert set(_compose()["services"]) >= {"prometheus", "grafana"}


def test_prometheus_scrapes_every_worker_on_the_port_the_workers_serve() -> None:
    services = _compose()["services"]
    worker = services["worker"]
    port = int(worker["environment"]["WARMUP_METRICS_PORT"])
    # A value the worker accepts, listening beyond loopback (Prometheus is another container).
    assert load_settings({"WARMUP_METRICS_PORT": str(port)}).METRICS_PORT == port > 0
    host = worker["environment"].get("WARMUP_METRICS_HOST", Settings.model_fields["METRICS_HOST"].default)
    assert host == "0.0.0.0"
    assert str(port) in [str(p) for p in worker["expose"]]
    config = yaml.safe_load(_local(services["prometheus"], "/etc/prometheus/prometheus.yml").read_text())
    job = next(j for j in config["scrape_configs"] if j["job_name"] == "warmup-workers")
    # DNS service discovery: the service name resolves to every replica of `--scale worker=N`.
    (sd,) = job["dns_sd_configs"]
    assert sd["names"] == ["worker"] and sd["type"] == "A" and sd["port"] == port


def test_prometheus_runs_this_config_with_the_alert_rules() -> None:
    services = _compose()["services"]
    prometheus = services["prometheus"]
    flags = dict(str(f).split("=", 1) for f in prometheus["command"])
    config_file = _local(prometheus, flags["--config.file"])
    assert config_file == DEPLOY / "prometheus" / "prometheus.yml"
    config = yaml.safe_load(config_file.read_text())
    rule_files = [p for pattern in config["rule_files"] for p in config_file.parent.glob(pattern)]
    assert DEPLOY / "prometheus" / "rules" / "warmup.rules.yml" in rule_files
    assert "9090:9090" in prometheus["ports"]
    # Temporal's own metrics: the endpoint the server is told to serve is the one scraped.
    temporal_port = services["temporal"]["environment"]["PROMETHEUS_ENDPOINT"].rsplit(":", 1)[1]
    job = next(j for j in config["scrape_configs"] if j["job_name"] == "temporal-server")
    assert job["static_configs"][0]["targets"] == [f"temporal:{temporal_port}"]


def test_grafana_provisions_prometheus_and_the_warmup_dashboard() -> None:
    services = _compose()["services"]
    grafana = services["grafana"]
    provisioning = _local(grafana, "/etc/grafana/provisioning")
    (source,) = yaml.safe_load((provisioning / "datasources" / "prometheus.yml").read_text())["datasources"]
    host_port = urlsplit(source["url"]).netloc
    assert host_port == "prometheus:9090" and "prometheus" in services
    (provider,) = yaml.safe_load((provisioning / "dashboards" / "warmup.yml").read_text())["providers"]
    dashboards = _local(grafana, provider["options"]["path"])
    assert (dashboards / "warmup.json").is_file()
    home = grafana["environment"]["GF_DASHBOARDS_DEFAULT_HOME_DASHBOARD_PATH"]
    assert _local(grafana, home) == dashboards / "warmup.json"
