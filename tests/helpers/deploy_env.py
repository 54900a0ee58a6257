"""A deployment's worker environment against what the code reads (docker-compose.yml and the
Kubernetes manifests share this check): every WARMUP_* variable is a field of the settings model
(warmup/config.py), every TEMPORAL_* one is read by the SDK's environment configuration
(temporalio.envconfig), every variable a deployment cannot leave at its default is set, and the
settings model accepts the values."""

from __future__ import annotations

import difflib
from collections.abc import Mapping

from warmup.config import ConfigError, Settings, load_settings

# What temporalio.envconfig reads into a client profile (sdk-core crates/common/src/envconfig.rs, as
# bundled with temporalio 1.35; its TEMPORAL_CODEC_* reach no Python profile, so a worker ignores
# them). tests/test_kubernetes.py checks each one against the SDK itself.
ENVCONFIG_VARIABLES = frozenset(
    {
        "TEMPORAL_CONFIG_FILE",
        "TEMPORAL_PROFILE",
        "TEMPORAL_ADDRESS",
        "TEMPORAL_NAMESPACE",
        "TEMPORAL_API_KEY",
        "TEMPORAL_TLS",
        "TEMPORAL_TLS_CLIENT_CERT_PATH",
        "TEMPORAL_TLS_CLIENT_CERT_DATA",
        "TEMPORAL_TLS_CLIENT_KEY_PATH",
        "TEMPORAL_TLS_CLIENT_KEY_DATA",
        "TEMPORAL_TLS_SERVER_CA_CERT_PATH",
        "TEMPORAL_TLS_SERVER_CA_CERT_DATA",
        "TEMPORAL_TLS_SERVER_NAME",
        "TEMPORAL_TLS_DISABLE_HOST_VERIFICATION",
    }
)
ENVCONFIG_PREFIX = "TEMPORAL_GRPC_META_"  # one gRPC header per variable

# Settings fields that are not WARMUP_* variables: envconfig supplies them (warmup/config.py).
_NOT_PREFIXED = frozenset({"TEMPORAL_ADDRESS", "TEMPORAL_NAMESPACE"})

# Defaults that only work on a developer's machine, so a deployment must set these.
REQUIRED = {
    "WARMUP_SECRET_KEYS": "the worker refuses to start without a Fernet key",
    "WARMUP_DATABASE_URL": "its default is PostgreSQL on 127.0.0.1",
    "TEMPORAL_ADDRESS": "its default is localhost:7233",
    "WARMUP_HEALTH_PORT": "the healthcheck and the probes need /livez and /readyz (0 turns them off)",
}


def setting_variables() -> frozenset[str]:
    return frozenset(f"WARMUP_{name}" for name in Settings.model_fields if name not in _NOT_PREFIXED)


def _hint(name: str, known: frozenset[str]) -> str:
    close = difflib.get_close_matches(name, sorted(known), n=1)
    return f" (did you mean {close[0]}?)" if close else ""


def environment_problems(env: Mapping[str, str], where: str) -> list[str]:
    """Everything wrong with a worker's environment `env`, one line each naming `where` it is set."""
    problems = []
    settings = setting_variables()
    for name in sorted(env):
        if name.startswith("WARMUP_"):
            if name not in settings:
                problems.append(
                    f"{where}: {name} is not a setting{_hint(name, settings)}: warmup/config.py reads no "
                    "such variable"
                )
        elif name.startswith("TEMPORAL_"):
            if name not in ENVCONFIG_VARIABLES and not name.startswith(ENVCONFIG_PREFIX):
                problems.append(
                    f"{where}: {name} is not read by Temporal's environment configuration"
                    + _hint(name, ENVCONFIG_VARIABLES)
                )
            elif env[name] == "":
                # envconfig takes a set, empty value as set: an empty TEMPORAL_API_KEY turns TLS on.
                problems.append(f"{where}: {name} is set but empty; leave it out instead")
        else:
            problems.append(f"{where}: {name} is read by neither warmup/config.py nor Temporal's envconfig")
    for name, why in REQUIRED.items():
        if name not in env:
            problems.append(f"{where}: {name} is not set ({why})")
    if not problems:
        try:
            settings_read = load_settings(dict(env))
        except ConfigError as exc:
            problems.append(f"{where}: {exc}")
        else:
            if settings_read.HEALTH_PORT == 0:
                problems.append(f"{where}: WARMUP_HEALTH_PORT is 0, which turns the health endpoint off")
    return problems
