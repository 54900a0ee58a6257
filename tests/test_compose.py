"""docker-compose.yml cannot run here (no Docker engine): check it against the code instead."""

from __future__ import annotations

import http.server
import re
import shutil
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
import yaml

from devstack.temporal import DYNAMIC_CONFIG, SEARCH_ATTRIBUTES
from tests.helpers.deploy_env import environment_problems
from warmup.config import Settings, load_settings

ROOT = Path(__file__).resolve().parent.parent
COMPOSE_FILE = ROOT / "docker-compose.yml"

# Task-queue fairness (priority by plan: workflows/mailbox.py) is generally available, with the
# dynamic config this stack sets, from Temporal server 1.31.0 (docs.temporal.io, "Task Queue Priority
# and Fairness", rewritten for the v1.31.0 GA); 1.29 had it as a pre-release. The caps' queue rate
# (UpdateTaskQueueConfig, workers/queue_limits.py) is older than that.
MIN_SERVER_VERSION = (1, 31, 0)
# What a SIGTERMed worker needs after its grace: stop polling, report the cancelled sends, close.
MIN_STOP_MARGIN_SECONDS = 15


def load_compose(path: Path = COMPOSE_FILE) -> dict[str, Any]:
    data = yaml.safe_load(path.read_text())
    assert isinstance(data, dict)
    return data


def _compose() -> dict[str, Any]:
    return load_compose()


REQUIRED_AT_RUN_TIME = "value-given-at-run-time"


def interpolate(value: object) -> str:
    """What compose makes of ${VAR:-default}, ${VAR:?message} and ${VAR} when VAR is unset (a
    ${VAR:?...} is one the operator must give: a stand-in here)."""

    def one(match: re.Match[str]) -> str:
        op, arg = match.group(2), match.group(3)
        if op in (":-", "-"):
            return arg
        if op in (":?", "?"):
            return REQUIRED_AT_RUN_TIME
        return ""

    return re.sub(r"\$\{([A-Z0-9_]+)(?:(:?[-?])([^}]*))?\}", one, str(value))


def service_env(service: dict[str, Any]) -> dict[str, str]:
    env = service.get("environment", {})
    if isinstance(env, list):  # the KEY=VALUE form
        env = dict(str(item).split("=", 1) for item in env)
    return {str(k): interpolate(v) for k, v in env.items()}


def _seconds(duration: str) -> float:
    """A compose duration such as 230s, 3m50s or 1m."""
    total = 0.0
    parts = re.findall(r"(\d+(?:\.\d+)?)(h|ms|m|s|us)", str(duration))
    assert parts and "".join(n + u for n, u in parts) == str(duration), f"not a duration: {duration!r}"
    scale = {"h": 3600, "m": 60, "s": 1, "ms": 0.001, "us": 1e-6}
    for number, unit in parts:
        total += float(number) * scale[unit]
    return total


def _image_version(image: str) -> tuple[int, ...]:
    tag = image.partition(":")[2]
    assert tag and tag != "latest", f"{image}: pin a version"
    found = re.fullmatch(r"v?(\d+)\.(\d+)\.(\d+)", tag)
    assert found, f"{image}: the tag is not a full version (x.y.z)"
    return tuple(int(n) for n in found.groups())


# --- the worker's environment against the settings model and envconfig ------------------------


def compose_problems(path: Path = COMPOSE_FILE) -> list[str]:
    """What is wrong with the worker service of a compose file, as the tests below see it."""
    compose = load_compose(path)
    worker = compose["services"]["worker"]
    env = service_env(worker)
    problems = environment_problems(env, f"{path.name} worker")
    raw = worker.get("environment", {})
    if ":?" not in str(raw.get("WARMUP_SECRET_KEYS", "")):
        problems.append(
            "WARMUP_SECRET_KEYS must use ${WARMUP_SECRET_KEYS:?...}: compose refuses to start without it"
        )
    grace = float(
        env.get("WARMUP_SHUTDOWN_GRACE_SECONDS", Settings.model_fields["SHUTDOWN_GRACE_SECONDS"].default)
    )
    stop = _seconds(worker.get("stop_grace_period", "10s"))
    if stop < grace + MIN_STOP_MARGIN_SECONDS:
        problems.append(
            f"stop_grace_period {stop:g}s leaves less than {MIN_STOP_MARGIN_SECONDS}s beyond "
            f"WARMUP_SHUTDOWN_GRACE_SECONDS={grace:g}: Docker would SIGKILL sends still finishing"
        )
    return problems


def test_worker_environment_is_what_the_code_reads() -> None:
    assert compose_problems() == []


def _edited_copy(tmp_path: Path, old: str, new: str) -> Path:
    text = COMPOSE_FILE.read_text()
    assert old in text, old
    copy = tmp_path / "docker-compose.yml"
    copy.write_text(text.replace(old, new, 1))
    return copy


def test_a_misspelt_variable_is_caught(tmp_path: Path) -> None:
    copy = _edited_copy(tmp_path, "WARMUP_WORKER_CONCURRENCY:", "WARMUP_WORKER_CONCURENCY:")
    (problem,) = compose_problems(copy)
    assert "WARMUP_WORKER_CONCURENCY is not a setting (did you mean WARMUP_WORKER_CONCURRENCY?)" in problem


def test_a_misspelt_temporal_variable_is_caught(tmp_path: Path) -> None:
    copy = _edited_copy(
        tmp_path,
        "      TEMPORAL_NAMESPACE: default\n      WARMUP_",
        "      TEMPORAL_NAMESPCE: default\n      WARMUP_",
    )
    (problem,) = compose_problems(copy)
    assert "TEMPORAL_NAMESPCE is not read by Temporal's environment configuration" in problem


def test_a_missing_required_variable_or_a_bad_value_is_caught(tmp_path: Path) -> None:
    copy = _edited_copy(tmp_path, '      WARMUP_HEALTH_PORT: "8080"\n', "")
    assert any("WARMUP_HEALTH_PORT is not set" in p for p in compose_problems(copy))
    copy = _edited_copy(tmp_path, "${WARMUP_WORKER_CONCURRENCY:-10}", "${WARMUP_WORKER_CONCURRENCY:-ten}")
    (problem,) = compose_problems(copy)
    assert "WARMUP_WORKER_CONCURRENCY='ten' is invalid" in problem


def test_a_stop_grace_shorter_than_the_shutdown_grace_is_caught(tmp_path: Path) -> None:
    copy = _edited_copy(tmp_path, "stop_grace_period: 230s", "stop_grace_period: 60s")
    (problem,) = compose_problems(copy)
    assert "stop_grace_period 60s" in problem and "WARMUP_SHUTDOWN_GRACE_SECONDS=200" in problem


# --- services, images and the start-up order ---------------------------------------------------


def test_stack_has_the_services_the_readme_promises() -> None:
    assert set(_compose()["services"]) >= {
        "postgres",
        "temporal-schema",
        "temporal",
        "temporal-setup",
        "temporal-ui",
        "worker",
    }


def test_every_image_is_pinned_and_temporal_is_the_current_server_image() -> None:
    services = _compose()["services"]
    for name, service in services.items():
        if "image" in service:
            image = str(service["image"])
            assert ":" in image and not image.endswith(":latest"), f"{name}: pin {image}"
    assert not any("auto-setup" in str(s.get("image", "")) for s in services.values()), (
        "temporalio/auto-setup is deprecated: temporalio/server with admin-tools doing the schema"
    )
    server = str(services["temporal"]["image"])
    assert server.split(":")[0] == "temporalio/server"
    version = _image_version(server)
    assert version >= MIN_SERVER_VERSION, (
        f"{server}: task-queue fairness (priority by plan) needs Temporal server "
        f">= {'.'.join(map(str, MIN_SERVER_VERSION))}"
    )
    # The schema the admin-tools apply is the one their version carries: it must be the server's.
    for tools in ("temporal-schema", "temporal-setup"):
        image = str(services[tools]["image"])
        assert image.split(":")[0] == "temporalio/admin-tools"
        assert _image_version(image) == version, f"{tools} runs {image}, the server {server}"


def _condition(service: dict[str, Any], dependency: str) -> str:
    depends = service.get("depends_on", {})
    assert isinstance(depends, dict), "depends_on with conditions"
    assert dependency in depends, f"does not wait for {dependency}"
    return str(depends[dependency]["condition"])


def test_services_start_in_order() -> None:
    services = _compose()["services"]
    assert _condition(services["temporal-schema"], "postgres") == "service_healthy"
    assert _condition(services["temporal"], "temporal-schema") == "service_completed_successfully"
    assert "healthcheck" in services["temporal"] and "healthcheck" in services["postgres"]
    assert _condition(services["temporal-setup"], "temporal") == "service_healthy"
    # The UI and the workers start once the namespace and the search attributes exist.
    assert _condition(services["temporal-ui"], "temporal-setup") == "service_completed_successfully"
    assert _condition(services["worker"], "temporal-setup") == "service_completed_successfully"
    assert _condition(services["worker"], "postgres") == "service_healthy"
    for one_shot in ("temporal-schema", "temporal-setup"):
        # A one-shot may retry while its dependency settles, but must end for the next to start.
        assert str(services[one_shot].get("restart", "no")).startswith(("no", "on-failure")), one_shot


# --- schema, dynamic config, namespace and search attributes -----------------------------------


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


def _script(service: dict[str, Any]) -> Path:
    assert service["entrypoint"] == ["/bin/sh"]
    (path,) = service["command"]
    script = _local(service, path)
    assert script.is_file(), script
    return script


def test_admin_tools_set_up_the_schema_on_the_stacks_postgres() -> None:
    services = _compose()["services"]
    schema = services["temporal-schema"]
    script = _script(schema).read_text()
    assert "temporal-sql-tool --plugin postgres12" in script
    for database in ("temporal", "temporal_visibility"):
        assert database in script
    assert "update-schema" in script
    env = service_env(schema)
    pg_env = service_env(services["postgres"])
    server_env = service_env(services["temporal"])
    assert env["POSTGRES_SEEDS"] == server_env["POSTGRES_SEEDS"] == "postgres"
    assert env["POSTGRES_USER"] == server_env["POSTGRES_USER"] == pg_env["POSTGRES_USER"]
    assert env["SQL_PASSWORD"] == server_env["POSTGRES_PWD"] == pg_env["POSTGRES_PASSWORD"]


def dynamic_config_file(compose: dict[str, Any]) -> Path:
    server = compose["services"]["temporal"]
    path = service_env(server)["DYNAMIC_CONFIG_FILE_PATH"]
    assert path.startswith("/"), "an absolute path: the image's working directory may change"
    file = _local(server, path)
    assert file.is_file(), f"{path} (mounted from {file}) does not exist"
    return file


def dynamic_config_value(config: dict[str, Any], key: str, task_queue: str) -> object:
    """The value the server uses for `key` on the task queue (an entry for that queue, else the
    unconstrained one; the server prefers the more specific), or None if the file does not set it."""
    entries = config.get(key) or []
    for wanted in ({"taskQueueName": task_queue}, {}):
        for entry in entries:
            if (entry.get("constraints") or {}) == wanted:
                return entry["value"]
    return None


def test_dynamic_config_is_mounted_and_has_what_the_dev_server_gets() -> None:
    compose = _compose()
    config = yaml.safe_load(dynamic_config_file(compose).read_text())
    task_queue = service_env(compose["services"]["worker"])["WARMUP_TASK_QUEUE"]
    assert dynamic_config_value(config, "matching.enableFairness", task_queue) is True
    # Everything devstack/temporal.py gives the dev server, for the queue the workers poll.
    for setting in DYNAMIC_CONFIG:
        key, raw = setting.split("=", 1)
        expected = yaml.safe_load(raw)
        assert dynamic_config_value(config, key, task_queue) == expected, f"{key} should be {raw}"


def test_the_dynamic_config_check_fails_without_fairness() -> None:
    assert (
        dynamic_config_value(
            {"matching.enableFairness": [{"value": False}]}, "matching.enableFairness", "warmup"
        )
        is False
    )
    other_queue = {
        "matching.numTaskqueueReadPartitions": [{"value": 1, "constraints": {"taskQueueName": "x"}}]
    }
    assert dynamic_config_value(other_queue, "matching.numTaskqueueReadPartitions", "warmup") is None


def test_namespace_and_search_attributes_are_created_for_the_workers() -> None:
    services = _compose()["services"]
    setup = services["temporal-setup"]
    env = service_env(setup)
    worker_env = service_env(services["worker"])
    assert env["TEMPORAL_ADDRESS"] == worker_env["TEMPORAL_ADDRESS"]
    assert env["TEMPORAL_NAMESPACE"] == worker_env["TEMPORAL_NAMESPACE"]
    assert tuple(env["SEARCH_ATTRIBUTES"].split()) == SEARCH_ATTRIBUTES
    assert re.fullmatch(r"\d+[dh]", env["NAMESPACE_RETENTION"])
    script = _script(setup).read_text()
    assert "namespace create" in script and "--retention" in script
    assert '--name "$NAME" --type Keyword' in script and "for NAME in $SEARCH_ATTRIBUTES" in script


def test_worker_runs_the_module_the_docs_name_and_the_dockerfile_installs_it() -> None:
    worker = _compose()["services"]["worker"]
    assert worker["command"] == ["python", "-m", "workers.run"]
    assert (ROOT / "workers" / "run.py").is_file()
    dockerfile = (ROOT / "Dockerfile").read_text()
    assert 'CMD ["python", "-m", "workers.run"]' in dockerfile
    for package in ("warmup", "workflows", "activities", "workers", "starter"):
        assert f"COPY {package} ./{package}" in dockerfile, package
    assert "replicas" not in worker and "container_name" not in worker, "would block --scale worker=N"


def test_addresses_point_at_services_and_ports_that_exist() -> None:
    services = _compose()["services"]
    worker_env = service_env(services["worker"])
    host, port = worker_env["TEMPORAL_ADDRESS"].split(":")
    assert host == "temporal" and f"{port}:{port}" in services["temporal"]["ports"]
    assert service_env(services["temporal-ui"])["TEMPORAL_ADDRESS"] == worker_env["TEMPORAL_ADDRESS"]
    dsn = urlsplit(worker_env["WARMUP_DATABASE_URL"])
    pg_env = service_env(services["postgres"])
    assert (dsn.hostname, dsn.port) == ("postgres", 5432)
    assert (dsn.username, dsn.password, dsn.path) == (
        pg_env["POSTGRES_USER"],
        pg_env["POSTGRES_PASSWORD"],
        "/" + pg_env["POSTGRES_DB"],
    )


# --- the worker's healthcheck, run for real against a stand-in /readyz ---------------------------


class _Readyz(http.server.BaseHTTPRequestHandler):
    status = 200

    def do_GET(self) -> None:
        self.send_response(type(self).status if self.path == "/readyz" else 404)
        self.end_headers()

    def log_message(self, format: str, *args: Any) -> None:
        pass


@pytest.fixture
def readyz() -> Iterator[tuple[int, type[_Readyz]]]:
    handler = type("Handler", (_Readyz,), {"status": 200})
    server = http.server.HTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server.server_address[1], handler
    server.shutdown()
    server.server_close()


def test_worker_healthcheck_passes_on_ready_and_fails_on_503(readyz: tuple[int, type[_Readyz]]) -> None:
    worker = _compose()["services"]["worker"]
    port = int(service_env(worker)["WARMUP_HEALTH_PORT"])
    assert load_settings({"WARMUP_HEALTH_PORT": str(port)}).HEALTH_HOST == "0.0.0.0"
    assert str(port) in [str(p) for p in worker["expose"]]
    test = worker["healthcheck"]["test"]
    assert test[0] == "CMD" and test[1] == "python", "the image has Python, not curl"
    assert f"127.0.0.1:{port}/readyz" in test[3]
    local_port, handler = readyz
    command = [sys.executable, *test[2:-1], test[-1].replace(f":{port}/", f":{local_port}/")]
    assert subprocess.run(command, capture_output=True, timeout=30).returncode == 0
    handler.status = 503
    assert subprocess.run(command, capture_output=True, timeout=30).returncode != 0


# --- monitoring: Prometheus scrapes every worker, loads the alert rules; Grafana shows the dashboard ---

DEPLOY = ROOT / "deploy"


def test_the_stack_has_prometheus_and_grafana() -> None:
    assert set(_compose()["services"]) >= {"prometheus", "grafana"}


def test_prometheus_scrapes_every_worker_on_the_port_the_workers_serve() -> None:
    services = _compose()["services"]
    worker = services["worker"]
    port = int(service_env(worker)["WARMUP_METRICS_PORT"])
    # A value the worker accepts, listening beyond loopback (Prometheus is another container).
    assert load_settings({"WARMUP_METRICS_PORT": str(port)}).METRICS_PORT == port > 0
    host = service_env(worker).get("WARMUP_METRICS_HOST", Settings.model_fields["METRICS_HOST"].default)
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
    temporal_port = service_env(services["temporal"])["PROMETHEUS_ENDPOINT"].rsplit(":", 1)[1]
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


@pytest.mark.skipif(shutil.which("sh") is None, reason="no POSIX shell")
def test_setup_scripts_are_valid_shell() -> None:
    for script in (DEPLOY / "temporal" / "scripts").glob("*.sh"):
        result = subprocess.run(["sh", "-n", str(script)], capture_output=True, text=True)
        assert result.returncode == 0, f"{script.name}: {result.stderr}"


# --- the HTTP API (issue #16) ----------------------------------------------------------------------


def api_problems(path: Path = COMPOSE_FILE) -> list[str]:
    """What is wrong with the api service: its environment against the settings, and the engine it
    talks to against the workers' (the same database, keys and task queue, or it enrolls into a void)."""
    services = load_compose(path)["services"]
    api, worker = services["api"], services["worker"]
    env = service_env(api)
    # WARMUP_HEALTH_PORT is the workers' probe port; the API's probe is its own /healthz.
    problems = [p for p in environment_problems(env, f"{path.name} api") if "WARMUP_HEALTH_PORT" not in p]
    worker_env = service_env(worker)
    for name in ("TEMPORAL_ADDRESS", "TEMPORAL_NAMESPACE", "WARMUP_DATABASE_URL", "WARMUP_TASK_QUEUE"):
        if env.get(name) != worker_env.get(name):
            problems.append(
                f"api {name}={env.get(name)!r} differs from the workers' {worker_env.get(name)!r}"
            )
    if api.get("environment", {}).get("WARMUP_SECRET_KEYS") != worker.get("environment", {}).get(
        "WARMUP_SECRET_KEYS"
    ):
        problems.append("api WARMUP_SECRET_KEYS differs from the workers': they could not read its passwords")
    port = int(env.get("WARMUP_API_PORT", Settings.model_fields["API_PORT"].default))
    if not any(str(p).endswith(f":{port}") for p in api.get("ports", [])):
        problems.append(f"api publishes {api.get('ports')}, not its WARMUP_API_PORT {port}")
    if f"127.0.0.1:{port}/healthz" not in " ".join(api.get("healthcheck", {}).get("test", [])):
        problems.append(f"api healthcheck does not ask /healthz on its port {port}")
    return problems


def test_api_service_runs_the_api_on_the_workers_engine() -> None:
    assert api_problems() == []
    api = _compose()["services"]["api"]
    assert api["command"] == ["python", "-m", "api"]
    assert (ROOT / "api" / "__main__.py").is_file()
    assert "COPY api ./api" in (ROOT / "Dockerfile").read_text()
    assert _condition(api, "postgres") == "service_healthy"
    assert _condition(api, "temporal-setup") == "service_completed_successfully"


def test_an_api_on_another_task_queue_or_port_is_caught(tmp_path: Path) -> None:
    text = COMPOSE_FILE.read_text()
    api_block = text.index("  api:\n")
    edited = text[:api_block] + text[api_block:].replace(
        "WARMUP_TASK_QUEUE: warmup", "WARMUP_TASK_QUEUE: other", 1
    )
    copy = tmp_path / "docker-compose.yml"
    copy.write_text(edited)
    assert any("WARMUP_TASK_QUEUE" in p for p in api_problems(copy))
    copy.write_text(
        text[:api_block] + text[api_block:].replace('WARMUP_API_PORT: "8000"', 'WARMUP_API_PORT: "9000"', 1)
    )
    problems = api_problems(copy)
    assert any("not its WARMUP_API_PORT 9000" in p for p in problems) and any(
        "healthz" in p for p in problems
    )


def test_api_healthcheck_command_is_valid_python() -> None:
    test = _compose()["services"]["api"]["healthcheck"]["test"]
    assert test[:3] == ["CMD", "python", "-c"]
    compile(test[3], "healthcheck", "exec")
