"""deploy/kubernetes/ and deploy/helm/, validated offline: the core objects against Kubernetes' own
schemas (kubernetes-validate), KEDA's objects against a schema written here from KEDA's documented
ScaledObject and `temporal` trigger fields, and everything the objects say against the code (the
environment against the settings model and envconfig, the probes against the health port, the
grace period against the shutdown grace, KEDA's target and cooldown against the audit's keys)."""

from __future__ import annotations

import re
import shutil
from pathlib import Path
from typing import Any

import jsonschema
import kubernetes_validate
import pytest
import yaml
from temporalio.envconfig import ClientConfigProfile

from bench.profile import SCALE_PROFILE
from tests.helpers.deploy_env import ENVCONFIG_PREFIX, ENVCONFIG_VARIABLES, environment_problems
from tests.test_compose import (
    COMPOSE_FILE,
    MIN_SERVER_VERSION,
    MIN_STOP_MARGIN_SECONDS,
    dynamic_config_file,
    load_compose,
)
from warmup import search_attributes
from warmup.config import Settings

ROOT = Path(__file__).resolve().parent.parent
K8S = ROOT / "deploy" / "kubernetes"
HELM_VALUES = ROOT / "deploy" / "helm" / "temporal-values.yaml"
KUBERNETES_VERSION = "1.31.0"  # the oldest release still maintained upstream when this was written

# docs/capacity.md: worker memory per resident workflow and at rest, and PostgreSQL's max_connections
# in the profile for 1,000,000 emails a day (less a reserve for the starter and tools).
KB_PER_CACHED_WORKFLOW = 66
MB_AT_REST = 80
PG_MAX_CONNECTIONS = 300
PG_RESERVED_CONNECTIONS = 20


# --- loading -----------------------------------------------------------------------------------


def load_objects(directory: Path = K8S) -> list[dict[str, Any]]:
    """Every object of every manifest (the kustomization file is not an object)."""
    objects = []
    for path in sorted(directory.glob("*.yaml")):
        if path.name == "kustomization.yaml":
            continue
        objects += [doc for doc in yaml.safe_load_all(path.read_text()) if doc]
    return objects


def one(objects: list[dict[str, Any]], kind: str, name: str | None = None) -> dict[str, Any]:
    found = [o for o in objects if o["kind"] == kind and (name is None or o["metadata"]["name"] == name)]
    assert len(found) == 1, f"expected one {kind} {name or ''}, found {len(found)}"
    return found[0]


def quantity_bytes(value: str) -> float:
    units = {"Ki": 2**10, "Mi": 2**20, "Gi": 2**30, "Ti": 2**40, "K": 1e3, "M": 1e6, "G": 1e9, "T": 1e12}
    number, unit = re.fullmatch(r"(\d+(?:\.\d+)?)([KMGT]i?)?", str(value)).groups()  # type: ignore[union-attr]
    return float(number) * (units[unit] if unit else 1)


# --- the files kustomize applies ----------------------------------------------------------------


def test_kustomization_applies_every_manifest_but_the_examples() -> None:
    kustomization = yaml.safe_load((K8S / "kustomization.yaml").read_text())
    listed = set(kustomization["resources"])
    present = {p.name for p in K8S.glob("*.yaml")} - {"kustomization.yaml"}
    examples = {name for name in present if name.endswith(".example.yaml")}
    assert listed == present - examples, "every manifest is applied; examples (real secrets) are not"
    assert "secret.example.yaml" in examples
    deployment = one(load_objects(), "Deployment")
    (container,) = deployment["spec"]["template"]["spec"]["containers"]
    images = {i["name"] for i in kustomization["images"]}
    assert container["image"] in images, "kustomize sets the worker image's registry and tag"


# --- Kubernetes' own schemas ---------------------------------------------------------------------


def core_objects(objects: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [o for o in objects if not str(o["apiVersion"]).startswith("keda.sh/")]


def test_core_objects_are_valid_kubernetes() -> None:
    objects = core_objects(load_objects())
    assert {o["kind"] for o in objects} >= {
        "Namespace",
        "ConfigMap",
        "Secret",
        "Deployment",
        "PodDisruptionBudget",
        "Job",
    }
    for obj in objects:
        # strict: an unknown (misspelt) field is an error, as `kubectl apply --validate=strict` makes it.
        kubernetes_validate.validate(obj, KUBERNETES_VERSION, strict=True)


def test_the_kubernetes_validator_rejects_a_misspelt_field() -> None:
    deployment = one(load_objects(), "Deployment")
    spec = deployment["spec"]["template"]["spec"]
    spec["terminationGracePeriod"] = spec.pop("terminationGracePeriodSeconds")
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(deployment, KUBERNETES_VERSION, strict=True)


# --- KEDA's objects, against what KEDA documents -------------------------------------------------
# keda.sh/docs/2.18/reference/scaledobject-spec and .../scalers/temporal (fields, types, defaults,
# which are required). KEDA's trigger metadata is map[string]string: every value is a string.

_STRING = {"type": "string"}
_INT_STRING = {"type": "string", "pattern": "^[0-9]+$"}
_BOOL_STRING = {"type": "string", "enum": ["true", "false"]}

TEMPORAL_TRIGGER_METADATA = {
    "type": "object",
    "properties": {
        "endpoint": _STRING,
        "endpointFromEnv": _STRING,
        "namespace": _STRING,
        "taskQueue": _STRING,
        "targetQueueSize": _INT_STRING,
        "activationTargetQueueSize": _INT_STRING,
        "queueTypes": {
            "type": "string",
            "pattern": "^(workflow|activity|nexus)(,(workflow|activity|nexus))*$",
        },
        "workerDeploymentName": _STRING,
        "workerDeploymentBuildId": _STRING,
        "includeRunningWorkflowCount": _BOOL_STRING,
        "workflowTaskQueueForCount": _STRING,
        "apiKeyFromEnv": _STRING,
        "minConnectTimeout": _INT_STRING,
        "unsafeSsl": _BOOL_STRING,
        "tlsServerName": _STRING,
    },
    "required": ["taskQueue"],
    "anyOf": [{"required": ["endpoint"]}, {"required": ["endpointFromEnv"]}],
    "additionalProperties": False,
}

SCALED_OBJECT_SCHEMA: dict[str, Any] = {
    "$schema": "https://json-schema.org/draft/2020-12/schema",
    "type": "object",
    "required": ["apiVersion", "kind", "metadata", "spec"],
    "properties": {
        "apiVersion": {"const": "keda.sh/v1alpha1"},
        "kind": {"const": "ScaledObject"},
        "metadata": {"type": "object", "required": ["name"]},
        "spec": {
            "type": "object",
            "required": ["scaleTargetRef", "triggers"],
            "additionalProperties": False,
            "properties": {
                "scaleTargetRef": {
                    "type": "object",
                    "required": ["name"],
                    "additionalProperties": False,
                    "properties": {
                        "name": _STRING,
                        "apiVersion": _STRING,
                        "kind": _STRING,
                        "envSourceContainerName": _STRING,
                    },
                },
                "pollingInterval": {"type": "integer", "minimum": 1},
                "cooldownPeriod": {"type": "integer", "minimum": 0},
                "initialCooldownPeriod": {"type": "integer", "minimum": 0},
                "idleReplicaCount": {"type": "integer", "minimum": 0},
                "minReplicaCount": {"type": "integer", "minimum": 0},
                "maxReplicaCount": {"type": "integer", "minimum": 1},
                "fallback": {
                    "type": "object",
                    "required": ["failureThreshold", "replicas"],
                    "properties": {
                        "failureThreshold": {"type": "integer"},
                        "replicas": {"type": "integer"},
                        "behavior": {
                            "enum": [
                                "static",
                                "currentReplicas",
                                "currentReplicasIfHigher",
                                "currentReplicasIfLower",
                            ]
                        },
                    },
                },
                "advanced": {
                    "type": "object",
                    "additionalProperties": False,
                    "properties": {
                        "restoreToOriginalReplicaCount": {"type": "boolean"},
                        "horizontalPodAutoscalerConfig": {
                            "type": "object",
                            "additionalProperties": False,
                            "properties": {"name": _STRING, "behavior": {"type": "object"}},
                        },
                    },
                },
                "triggers": {
                    "type": "array",
                    "minItems": 1,
                    "items": {
                        "type": "object",
                        "required": ["type", "metadata"],
                        "additionalProperties": False,
                        "properties": {
                            "type": {"const": "temporal"},  # the only scaler these manifests use
                            "name": _STRING,
                            "metricType": {"enum": ["AverageValue", "Value"]},
                            "useCachedMetrics": {"type": "boolean"},
                            "authenticationRef": {
                                "type": "object",
                                "required": ["name"],
                                "additionalProperties": False,
                                "properties": {
                                    "name": _STRING,
                                    "kind": {
                                        "enum": ["TriggerAuthentication", "ClusterTriggerAuthentication"]
                                    },
                                },
                            },
                            "metadata": TEMPORAL_TRIGGER_METADATA,
                        },
                    },
                },
            },
        },
    },
}

TRIGGER_AUTHENTICATION_SCHEMA: dict[str, Any] = {
    "$schema": "https://json-schema.org/draft/2020-12/schema",
    "type": "object",
    "required": ["apiVersion", "kind", "metadata", "spec"],
    "properties": {
        "apiVersion": {"const": "keda.sh/v1alpha1"},
        "kind": {"const": "TriggerAuthentication"},
        "metadata": {"type": "object", "required": ["name"]},
        "spec": {
            "type": "object",
            "required": ["secretTargetRef"],
            "properties": {
                "secretTargetRef": {
                    "type": "array",
                    "minItems": 1,
                    "items": {
                        "type": "object",
                        "required": ["parameter", "name", "key"],
                        "additionalProperties": False,
                        "properties": {
                            # the temporal scaler's authentication parameters
                            "parameter": {"enum": ["apiKey", "ca", "cert", "key", "keyPassword"]},
                            "name": _STRING,
                            "key": _STRING,
                        },
                    },
                }
            },
        },
    },
}

KEDA_SCHEMAS = {"ScaledObject": SCALED_OBJECT_SCHEMA, "TriggerAuthentication": TRIGGER_AUTHENTICATION_SCHEMA}


def keda_errors(obj: dict[str, Any]) -> list[str]:
    validator = jsonschema.Draft202012Validator(KEDA_SCHEMAS[obj["kind"]])
    return [f"{'/'.join(map(str, e.absolute_path))}: {e.message}" for e in validator.iter_errors(obj)]


def test_the_keda_schemas_are_valid_json_schema() -> None:
    for schema in KEDA_SCHEMAS.values():
        jsonschema.Draft202012Validator.check_schema(schema)


def test_keda_objects_use_only_documented_fields_with_their_types() -> None:
    keda = [o for o in load_objects() if str(o["apiVersion"]).startswith("keda.sh/")]
    assert {o["kind"] for o in keda} == {"ScaledObject", "TriggerAuthentication"}
    for obj in keda:
        assert keda_errors(obj) == [], obj["metadata"]["name"]


@pytest.mark.parametrize(
    ("edit", "complaint"),
    [
        (lambda s: s.update(cooldownPeriods=s.pop("cooldownPeriod")), "'cooldownPeriods' was unexpected"),
        (lambda s: s["triggers"][0]["metadata"].update(targetQueueSize=1000), "1000 is not of type 'string'"),
        (lambda s: s["triggers"][0]["metadata"].pop("taskQueue"), "'taskQueue' is a required property"),
        (lambda s: s["triggers"][0]["metadata"].update(queueTypes="workflows"), "does not match"),
        (lambda s: s.update(minReplicaCount="4"), "'4' is not of type 'integer'"),
    ],
)
def test_the_keda_schema_rejects_what_keda_would(edit: Any, complaint: str) -> None:
    scaled = one(load_objects(), "ScaledObject")
    edit(scaled["spec"])
    errors = keda_errors(scaled)
    assert any(complaint in e for e in errors), errors


# --- the objects against the code ---------------------------------------------------------------


def _config_map_data(objects: list[dict[str, Any]], name: str) -> dict[str, str]:
    data = one(objects, "ConfigMap", name).get("data", {})
    return {str(k): str(v) for k, v in data.items()}


def _secret_keys(objects: list[dict[str, Any]], name: str) -> dict[str, str]:
    secret = one(objects, "Secret", name)
    values = {**secret.get("stringData", {}), **secret.get("data", {})}
    return {str(k): str(v) for k, v in values.items()}


def worker_environment(objects: list[dict[str, Any]]) -> dict[str, str]:
    """The variables the worker container gets: its envFrom ConfigMaps and Secrets, then its env."""
    (container,) = one(objects, "Deployment")["spec"]["template"]["spec"]["containers"]
    env: dict[str, str] = {}
    for source in container.get("envFrom", []):
        if "configMapRef" in source:
            env.update(_config_map_data(objects, source["configMapRef"]["name"]))
        elif "secretRef" in source:
            env.update(_secret_keys(objects, source["secretRef"]["name"]))
    for item in container.get("env", []):
        env[item["name"]] = str(item.get("value", "from-a-reference"))
    return env


def _port(container: dict[str, Any], port: object) -> int:
    if isinstance(port, int):
        return port
    (found,) = [p["containerPort"] for p in container.get("ports", []) if p.get("name") == port]
    return int(found)


def manifest_problems(directory: Path = K8S) -> list[str]:
    """Everything the manifests in `directory` get wrong about the workers, one line each."""
    objects = load_objects(directory)
    problems: list[str] = []
    env = worker_environment(objects)
    problems += environment_problems(env, "worker Deployment")
    settings_defaults = {name: f.default for name, f in Settings.model_fields.items()}

    def setting(name: str) -> float:
        return float(env.get(f"WARMUP_{name}", settings_defaults[name]))

    deployment = one(objects, "Deployment")
    pod = deployment["spec"]["template"]
    (container,) = pod["spec"]["containers"]
    if "replicas" in deployment["spec"]:
        problems.append("the Deployment sets replicas: every apply would undo KEDA's count")
    labels = pod["metadata"]["labels"]
    if deployment["spec"]["selector"]["matchLabels"].items() > labels.items():
        problems.append("the Deployment's selector does not match its pods")

    # SIGTERM: the sends in flight get the worker's grace, the kubelet waits longer than that.
    grace = setting("SHUTDOWN_GRACE_SECONDS")
    termination = float(pod["spec"].get("terminationGracePeriodSeconds", 30))
    if termination < grace + MIN_STOP_MARGIN_SECONDS:
        problems.append(
            f"terminationGracePeriodSeconds {termination:g} leaves less than {MIN_STOP_MARGIN_SECONDS}s "
            f"beyond WARMUP_SHUTDOWN_GRACE_SECONDS={grace:g}: the kubelet would SIGKILL sends still finishing"
        )

    # Probes on the health endpoint the worker serves.
    health_port = int(setting("HEALTH_PORT"))
    for probe, path in (("readinessProbe", "/readyz"), ("livenessProbe", "/livez")):
        get = container.get(probe, {}).get("httpGet")
        if get is None:
            problems.append(f"no {probe} with httpGet")
            continue
        if get.get("path") != path:
            problems.append(f"{probe} asks {get.get('path')}, the worker answers {path}")
        if _port(container, get["port"]) != health_port:
            problems.append(f"{probe} asks port {get['port']}, WARMUP_HEALTH_PORT is {health_port}")
    metrics_port = int(setting("METRICS_PORT"))
    scrape_port = pod["metadata"].get("annotations", {}).get("prometheus.io/port")
    if scrape_port is not None and int(scrape_port) != metrics_port:
        problems.append(f"prometheus.io/port {scrape_port} is not WARMUP_METRICS_PORT {metrics_port}")

    # Memory for the cache the ConfigMap asks for (docs/capacity.md).
    cache = setting("MAX_CACHED_WORKFLOWS")
    need = cache * KB_PER_CACHED_WORKFLOW * 1e3 + MB_AT_REST * 1e6
    request = quantity_bytes(container["resources"]["requests"]["memory"])
    if request < need:
        problems.append(
            f"a memory request of {request / 1e9:.2f} GB is below {need / 1e9:.2f} GB, what "
            f"WARMUP_MAX_CACHED_WORKFLOWS={cache:g} workflows need"
        )

    pdb = one(objects, "PodDisruptionBudget")
    if pdb["spec"]["selector"]["matchLabels"].items() > labels.items():
        problems.append("the PodDisruptionBudget selects no worker pod")

    # KEDA: the audit's keys are its target and its cooldown.
    scaled = one(objects, "ScaledObject")
    spec = scaled["spec"]
    if spec["scaleTargetRef"]["name"] != deployment["metadata"]["name"]:
        problems.append("the ScaledObject scales another Deployment")
    (trigger,) = spec["triggers"]
    meta = trigger["metadata"]
    threshold = int(setting("SCALE_UP_QUEUE_THRESHOLD"))
    target = meta.get("targetQueueSize", "5")  # KEDA's default
    if int(target) != threshold:
        problems.append(f"targetQueueSize {target} is not WARMUP_SCALE_UP_QUEUE_THRESHOLD {threshold}")
    idle = setting("SCALE_DOWN_IDLE_MINUTES") * 60
    cooldown = spec.get("cooldownPeriod", 300)  # KEDA's default
    if cooldown != idle:
        problems.append(f"cooldownPeriod {cooldown} is not WARMUP_SCALE_DOWN_IDLE_MINUTES x 60 = {idle:g}")
    behavior = spec.get("advanced", {}).get("horizontalPodAutoscalerConfig", {}).get("behavior", {})
    window = behavior.get("scaleDown", {}).get("stabilizationWindowSeconds", 300)
    if window != idle:
        problems.append(
            f"the HPA's scale-down window {window} is not WARMUP_SCALE_DOWN_IDLE_MINUTES x 60 = {idle:g}"
        )
    workers = int(setting("WORKER_COUNT"))
    if spec.get("minReplicaCount", 0) != workers:
        problems.append(f"minReplicaCount {spec.get('minReplicaCount')} is not WARMUP_WORKER_COUNT {workers}")
    # At most maxReplicaCount pods, plus a rollout's surge, each with its connection pool.
    per_worker = int(setting("WORKER_CONCURRENCY")) + 2
    surge = int(deployment["spec"].get("strategy", {}).get("rollingUpdate", {}).get("maxSurge", 1))
    pods = spec.get("maxReplicaCount", 100) + surge
    if pods * per_worker > PG_MAX_CONNECTIONS - PG_RESERVED_CONNECTIONS:
        problems.append(
            f"{pods} pods (maxReplicaCount + maxSurge) x {per_worker} PostgreSQL connections exceeds "
            f"max_connections {PG_MAX_CONNECTIONS} less {PG_RESERVED_CONNECTIONS} for the starter and tools"
        )
    if meta.get("taskQueue") != env.get("WARMUP_TASK_QUEUE", settings_defaults["TASK_QUEUE"]):
        problems.append(f"the trigger watches task queue {meta.get('taskQueue')!r}, the workers poll another")
    if meta.get("namespace", "default") != env.get("TEMPORAL_NAMESPACE", "default"):
        problems.append(f"the trigger watches namespace {meta.get('namespace')!r}, the workers use another")
    if "endpointFromEnv" in meta and meta["endpointFromEnv"] not in env:
        problems.append(f"endpointFromEnv {meta['endpointFromEnv']} is not in the worker's environment")
    if "endpoint" in meta and meta["endpoint"] != env.get("TEMPORAL_ADDRESS"):
        problems.append("the trigger's endpoint is not the workers' TEMPORAL_ADDRESS")
    if set(str(meta.get("queueTypes", "workflow")).split(",")) != {"workflow", "activity"}:
        problems.append(
            "the trigger must count both backlogs the workers serve: queueTypes workflow,activity"
        )

    # The search attributes the setup Job registers are the ones the workflows upsert.
    job = one(objects, "Job")
    (setup,) = job["spec"]["template"]["spec"]["containers"]
    names = next((e.get("value", "") for e in setup.get("env", []) if e["name"] == "SEARCH_ATTRIBUTES"), "")
    if tuple(names.split()) != search_attributes.NAMES:
        problems.append(f"the setup Job registers {names!r}, the workflows use {search_attributes.NAMES}")
    return problems


def test_the_manifests_agree_with_the_code() -> None:
    assert manifest_problems() == []


def _edited_copy(tmp_path: Path, file: str, old: str, new: str) -> Path:
    copy = tmp_path / "kubernetes"
    shutil.copytree(K8S, copy)
    text = (copy / file).read_text()
    assert old in text, old
    (copy / file).write_text(text.replace(old, new, 1))
    return copy


@pytest.mark.parametrize(
    ("file", "old", "new", "complaint"),
    [
        (
            "configmap.yaml",
            "WARMUP_MAX_CACHED_WORKFLOWS",
            "WARMUP_MAX_CACHED_WORKFLOW",
            "WARMUP_MAX_CACHED_WORKFLOW is not a setting (did you mean WARMUP_MAX_CACHED_WORKFLOWS?)",
        ),
        (
            "configmap.yaml",
            "TEMPORAL_NAMESPACE:",
            "TEMPORAL_NAMESPCE:",
            "TEMPORAL_NAMESPCE is not read by Temporal's environment configuration",
        ),
        (
            "secret.example.yaml",
            "  WARMUP_SECRET_KEYS: REPLACE-WITH-A-FERNET-KEY\n",
            "",
            "WARMUP_SECRET_KEYS is not set",
        ),
        (
            "configmap.yaml",
            'WARMUP_WORKER_CONCURRENCY: "50"',
            'WARMUP_WORKER_CONCURRENCY: "0"',
            "WARMUP_WORKER_CONCURRENCY='0' is invalid",
        ),
        (
            "worker-deployment.yaml",
            "terminationGracePeriodSeconds: 230",
            "terminationGracePeriodSeconds: 200",
            "terminationGracePeriodSeconds 200",
        ),
        ("worker-deployment.yaml", "path: /readyz", "path: /ready", "readinessProbe asks /ready"),
        (
            "configmap.yaml",
            'WARMUP_HEALTH_PORT: "8080"',
            'WARMUP_HEALTH_PORT: "8081"',
            "WARMUP_HEALTH_PORT is 8081",
        ),
        (
            "configmap.yaml",
            'WARMUP_SCALE_UP_QUEUE_THRESHOLD: "1000"',
            'WARMUP_SCALE_UP_QUEUE_THRESHOLD: "500"',
            "is not WARMUP_SCALE_UP_QUEUE_THRESHOLD 500",
        ),
        (
            "configmap.yaml",
            'WARMUP_SCALE_DOWN_IDLE_MINUTES: "10"',
            'WARMUP_SCALE_DOWN_IDLE_MINUTES: "15"',
            "cooldownPeriod 600 is not WARMUP_SCALE_DOWN_IDLE_MINUTES x 60 = 900",
        ),
        (
            "configmap.yaml",
            'WARMUP_MAX_CACHED_WORKFLOWS: "25000"',
            'WARMUP_MAX_CACHED_WORKFLOWS: "50000"',
            "what WARMUP_MAX_CACHED_WORKFLOWS=50000 workflows need",
        ),
        ("worker-scaledobject.yaml", "maxReplicaCount: 5", "maxReplicaCount: 8", "exceeds max_connections"),
        ("worker-deployment.yaml", "maxSurge: 0", "maxSurge: 1", "6 pods (maxReplicaCount + maxSurge)"),
        (
            "worker-scaledobject.yaml",
            "taskQueue: warmup",
            "taskQueue: warmup-v2",
            "the trigger watches task queue 'warmup-v2'",
        ),
    ],
)
def test_a_wrong_manifest_is_caught(tmp_path: Path, file: str, old: str, new: str, complaint: str) -> None:
    problems = manifest_problems(_edited_copy(tmp_path, file, old, new))
    assert any(complaint in p for p in problems), problems


def test_the_configmap_carries_the_capacity_profile() -> None:
    data = _config_map_data(load_objects(), "warmup-config")
    assert {k: data.get(k) for k in SCALE_PROFILE.env} == SCALE_PROFILE.env


# --- the environment check's list of Temporal variables, against the SDK itself ------------------


def _profile(env: dict[str, str]) -> ClientConfigProfile:
    return ClientConfigProfile.load(override_env_vars=env)


def test_every_temporal_variable_the_check_accepts_is_read_by_envconfig(tmp_path: Path) -> None:
    config = tmp_path / "temporal.toml"
    config.write_text('[profile.default]\naddress = "a:1"\n[profile.other]\naddress = "b:2"\n')
    base = _profile({})
    for name in sorted(ENVCONFIG_VARIABLES):
        if name == "TEMPORAL_CONFIG_FILE":
            changed = _profile({name: str(config)}) != base
        elif name == "TEMPORAL_PROFILE":
            changed = _profile({"TEMPORAL_CONFIG_FILE": str(config), name: "other"}) != _profile(
                {"TEMPORAL_CONFIG_FILE": str(config)}
            )
        else:
            value = "true" if name in ("TEMPORAL_TLS", "TEMPORAL_TLS_DISABLE_HOST_VERIFICATION") else "probe"
            changed = _profile({name: value}) != base
        assert changed, f"{name} changes nothing envconfig loads"
    assert _profile({ENVCONFIG_PREFIX + "X_TENANT": "t"}) != base
    # And a misspelling changes nothing: the reason the check rejects unknown names.
    assert _profile({"TEMPORAL_ADRESS": "c:3", "TEMPORAL_APIKEY": "k"}) == base


def test_an_empty_api_key_turns_tls_on_so_the_check_rejects_it() -> None:
    assert (
        ClientConfigProfile.load(override_env_vars={"TEMPORAL_API_KEY": ""})
        .to_client_connect_config()
        .get("tls")
    )
    env = {**worker_environment(load_objects()), "TEMPORAL_API_KEY": ""}
    assert any("TEMPORAL_API_KEY is set but empty" in p for p in environment_problems(env, "worker"))


# --- Temporal by its official Helm chart: the values this project needs --------------------------


def _helm_values() -> dict[str, Any]:
    values = yaml.safe_load(HELM_VALUES.read_text())
    assert isinstance(values, dict)
    return values


def test_helm_values_give_the_server_the_same_dynamic_config_as_compose() -> None:
    compose_config = yaml.safe_load(dynamic_config_file(load_compose(COMPOSE_FILE)).read_text())
    assert _helm_values()["server"]["dynamicConfig"] == compose_config


def test_helm_values_pin_the_server_compose_runs_and_create_the_workers_namespace() -> None:
    values = _helm_values()
    server_tag = str(values["server"]["image"]["tag"])
    compose_server = str(load_compose(COMPOSE_FILE)["services"]["temporal"]["image"])
    assert compose_server == f"temporalio/server:{server_tag}"
    assert tuple(int(n) for n in server_tag.split(".")) >= MIN_SERVER_VERSION
    assert str(values["admintools"]["image"]["tag"]) == server_tag
    objects = load_objects()
    job = one(objects, "Job")
    (setup,) = job["spec"]["template"]["spec"]["containers"]
    assert setup["image"] == f"temporalio/admin-tools:{server_tag}"
    data = _config_map_data(objects, "warmup-config")
    namespaces = values["server"]["config"]["namespaces"]
    assert namespaces["create"] is True
    (namespace,) = namespaces["namespace"]
    assert namespace["name"] == data["TEMPORAL_NAMESPACE"]
    assert re.fullmatch(r"\d+d", namespace["retention"])
    # The chart names the frontend Service <release>-frontend; docs/deployment.md installs release
    # "temporal" into namespace "temporal".
    assert data["TEMPORAL_ADDRESS"] == "temporal-frontend.temporal.svc.cluster.local:7233"
    persistence = values["server"]["config"]["persistence"]
    assert persistence["numHistoryShards"] == 512
    for store in ("default", "visibility"):
        assert persistence["datastores"][store]["sql"]["pluginName"] == "postgres12"
