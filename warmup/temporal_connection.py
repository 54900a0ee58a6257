"""The one way workers, `starter` and the benchmark connect to Temporal.

Where Temporal is and how to reach it comes from the SDK's environment configuration
(`temporalio.envconfig`), exactly as Temporal's own CLI reads it: `TEMPORAL_ADDRESS`,
`TEMPORAL_NAMESPACE`, `TEMPORAL_API_KEY`, `TEMPORAL_TLS*` (server CA, server name, client certificate
and key), `TEMPORAL_GRPC_META_*`, and profiles from a TOML file (`TEMPORAL_CONFIG_FILE`, default
~/.config/temporalio/temporal.toml; `TEMPORAL_PROFILE`, default "default"). Environment variables
override the profile's values. `warmup.config.load_settings` reads it once per process.

A failed connection becomes a TemporalConnectError: one line saying what failed and which variable
to fix. Neither the API key nor a private key ever appears in a message, a log line or a repr.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any

from temporalio.client import Client, Interceptor
from temporalio.envconfig import ClientConfigProfile, ClientConfigTLS, ClientConnectConfig
from temporalio.runtime import Runtime

DEFAULT_ADDRESS = "localhost:7233"
DEFAULT_NAMESPACE = "default"
DEFAULT_CONNECT_TIMEOUT = timedelta(seconds=10)
DEFAULT_CONFIG_FILE = "~/.config/temporalio/temporal.toml"

# The variables envconfig reads for each TLS file, as (PATH variable, DATA variable).
_TLS_VARIABLES = {
    "server_root_ca_cert": ("TEMPORAL_TLS_SERVER_CA_CERT_PATH", "TEMPORAL_TLS_SERVER_CA_CERT_DATA"),
    "client_cert": ("TEMPORAL_TLS_CLIENT_CERT_PATH", "TEMPORAL_TLS_CLIENT_CERT_DATA"),
    "client_private_key": ("TEMPORAL_TLS_CLIENT_KEY_PATH", "TEMPORAL_TLS_CLIENT_KEY_DATA"),
}
_TLS_PROFILE_KEYS = {
    "server_root_ca_cert": "tls.server_ca_cert",
    "client_cert": "tls.client_cert",
    "client_private_key": "tls.client_key",
}
CLIENT_CERT_HINT = "TEMPORAL_TLS_CLIENT_CERT_PATH and TEMPORAL_TLS_CLIENT_KEY_PATH"


class TemporalConfigError(ValueError):
    """A TEMPORAL_* variable or the profile file is unusable; the message names it and the fix."""


class TemporalConnectError(Exception):
    """Connecting failed; the message is one line: what failed and which variable to check."""


@dataclass(frozen=True)
class TemporalProfile:
    """What envconfig resolved beyond address and namespace: TLS, API key, gRPC metadata.

    `source` says where it came from ("the environment" or "profile 'x' of FILE"), for messages.
    The profile itself is left out of repr: it may hold the API key or a private key.
    """

    profile: ClientConfigProfile = field(default_factory=ClientConfigProfile, repr=False)
    source: str = "the environment"
    from_file: bool = False


@dataclass(frozen=True)
class TemporalConnection:
    """A resolved target: `connect()` turns it into a Client."""

    address: str = DEFAULT_ADDRESS
    namespace: str = DEFAULT_NAMESPACE
    extra: TemporalProfile = field(default_factory=TemporalProfile)

    @classmethod
    def plain(cls, address: str, namespace: str = DEFAULT_NAMESPACE) -> TemporalConnection:
        """A plaintext connection with no credentials: a dev server this process started itself."""
        return cls(address, namespace)

    @property
    def api_key(self) -> str | None:
        return self.extra.profile.api_key or None

    @property
    def tls(self) -> ClientConfigTLS | None:
        tls = self.extra.profile.tls
        return None if tls is None or tls.disabled is True else tls

    @property
    def uses_tls(self) -> bool:
        return self.tls is not None or self.api_key is not None

    @property
    def client_certificate(self) -> bool:
        tls = self.tls
        return tls is not None and tls.client_cert is not None

    def describe(self) -> str:
        """For logs: where, which namespace, and how it authenticates (never the credentials)."""
        how = "plaintext"
        if self.uses_tls:
            how = "mTLS" if self.client_certificate else "TLS"
            if self.tls is not None and self.tls.server_root_ca_cert is not None:
                how += " with a private CA"
        if self.api_key:
            how += ", API key"
        return f"{self.address} (namespace {self.namespace}, {how})"

    def connect_config(self) -> ClientConnectConfig:
        """Keyword arguments for `Client.connect`; reads the certificate files named by the profile."""
        config = self.extra.profile.to_client_connect_config()
        config["target_host"] = self.address
        config["namespace"] = self.namespace
        return config


# --- loading ---------------------------------------------------------------------------------------


def _first_line(text: str) -> str:
    lines = [line.strip() for line in text.splitlines() if line.strip() and not line.strip().startswith("|")]
    return " ".join(lines[:2])[:300]


def load_profile(env: Mapping[str, str]) -> tuple[TemporalProfile, str | None, str | None]:
    """Resolve the profile from `env` (and its file): (extras, address, namespace), None where unset.

    Raises TemporalConfigError for a missing or malformed file, an unknown profile, an unreadable
    certificate, or a client certificate without its key (or the reverse).
    """
    config_file = env.get("TEMPORAL_CONFIG_FILE")
    if config_file and not Path(config_file).expanduser().is_file():
        raise TemporalConfigError(
            f"TEMPORAL_CONFIG_FILE={config_file!r}: no such file; point it at a Temporal TOML profile file "
            "or unset it"
        )
    profile_name = env.get("TEMPORAL_PROFILE") or "default"
    try:
        profile = ClientConfigProfile.load(override_env_vars=dict(env))
    except Exception as exc:  # the bridge raises its own ConfigError type
        text = str(exc)
        if "not found" in text and "Profile" in text:
            where = config_file or DEFAULT_CONFIG_FILE
            raise TemporalConfigError(
                f"TEMPORAL_PROFILE={profile_name!r}: no such profile in {where}; name one of its "
                "[profile.NAME] tables or unset TEMPORAL_PROFILE"
            ) from None
        raise TemporalConfigError(
            f"TEMPORAL_CONFIG_FILE={config_file or DEFAULT_CONFIG_FILE!r} cannot be read as a Temporal "
            f"profile file: {_first_line(text)}"
        ) from None
    default_file = Path(DEFAULT_CONFIG_FILE).expanduser()
    from_file = bool(config_file) or default_file.is_file()
    file_label = config_file or str(default_file)
    source = f"profile {profile_name!r} of {file_label}" if from_file else "the environment"
    extras = TemporalProfile(profile, source, from_file)
    _check_tls_files(extras, env)
    return extras, profile.address or None, profile.namespace or None


def _setting_name(attribute: str, env: Mapping[str, str], extras: TemporalProfile) -> str:
    path_var, data_var = _TLS_VARIABLES[attribute]
    for name in (path_var, data_var):
        if env.get(name):
            return name
    if extras.from_file:
        return f"{_TLS_PROFILE_KEYS[attribute]} in {extras.source}"
    return path_var


def _check_tls_files(extras: TemporalProfile, env: Mapping[str, str]) -> None:
    tls = extras.profile.tls
    if tls is None:
        return
    for attribute in _TLS_VARIABLES:
        source = getattr(tls, attribute)
        if isinstance(source, Path):
            try:
                with source.open("rb"):
                    pass
            except OSError as exc:
                raise TemporalConfigError(
                    f"{_setting_name(attribute, env, extras)}={str(source)!r}: cannot read the file "
                    f"({exc.strerror or type(exc).__name__}); point it at a PEM file"
                ) from None
    if (tls.client_cert is None) != (tls.client_private_key is None):
        have, missing = (
            ("client_cert", "client_private_key")
            if tls.client_private_key is None
            else ("client_private_key", "client_cert")
        )
        raise TemporalConfigError(
            f"{_setting_name(have, env, extras)} is set but {_TLS_VARIABLES[missing][0]} is not: "
            f"mTLS needs both the client certificate and its key ({CLIENT_CERT_HINT})"
        )


# --- connecting ------------------------------------------------------------------------------------


async def connect(
    target: TemporalConnection,
    *,
    runtime: Runtime | None = None,
    interceptors: Sequence[Interceptor] = (),
    connect_timeout: timedelta | None = DEFAULT_CONNECT_TIMEOUT,
) -> Client:
    """Connect (checking the server answers, `lazy=False`), or raise TemporalConnectError."""
    try:
        config = target.connect_config()
    except OSError as exc:  # a certificate file vanished since start-up
        raise TemporalConnectError(
            f"cannot read a TLS file for Temporal at {target.address} ({exc.strerror}); check the "
            "TEMPORAL_TLS_*_PATH variables"
        ) from None
    kwargs: dict[str, Any] = dict(config)
    try:
        return await Client.connect(
            **kwargs,
            runtime=runtime,
            interceptors=list(interceptors),
            connect_timeout=connect_timeout,
        )
    except Exception as exc:  # the bridge raises RuntimeError; its text says what failed
        raise TemporalConnectError(explain(exc, target)) from None


_STATUS = re.compile(r'code: (\w+), message: "((?:[^"\\]|\\.)*)"')


def _status(text: str) -> tuple[str, str] | None:
    found = _STATUS.search(text)
    return (found.group(1), found.group(2)) if found else None


def explain(exc: BaseException, target: TemporalConnection) -> str:
    """One line for a failed connection: what failed and which variable to fix (no secrets)."""
    text = str(exc)
    at = f"Temporal at {target.address}"
    where = "" if not target.extra.from_file else f" (or {target.extra.source})"
    status = _status(text)
    code, message = status if status else ("", "")

    if "dns error" in text or "lookup address" in text:
        line = f"cannot reach {at} (host name not found); check TEMPORAL_ADDRESS{where}"
    elif "Connection refused" in text or "ConnectionRefused" in text:
        line = f"cannot reach {at} (connection refused); check TEMPORAL_ADDRESS{where}"
    elif (
        any(s in text.lower() for s in ("timed out", "timeout expired", "deadline"))
        or code == "DeadlineExceeded"
    ):
        line = f"cannot reach {at} (no answer in time); check TEMPORAL_ADDRESS{where} and the network"
    elif "InvalidCertificate" in text or "certificate verify failed" in text:
        reason = re.search(r"InvalidCertificate\((\w+)", text)
        why = reason.group(1) if reason else "invalid certificate"
        if why in ("NotValidForName", "NotValidForNameContext"):
            line = (
                f"TLS handshake with {at} failed: its certificate is not valid for that name ({why}); "
                f"set TEMPORAL_TLS_SERVER_NAME to a name the certificate holds{where}"
            )
        else:
            line = (
                f"TLS handshake with {at} failed: the server's certificate is not trusted ({why}); "
                f"set TEMPORAL_TLS_SERVER_CA_CERT_PATH to the CA that signed it{where}"
            )
    elif any(
        s in text for s in ("AlertReceived", "CertificateRequired", "HandshakeFailure", "tls handshake")
    ):
        line = (
            f"TLS handshake with {at} failed ({_first_line(text)[-120:]}); the server may require a client "
            f"certificate: set {CLIENT_CERT_HINT}{where}"
        )
    elif code == "NotFound" and "namespace" in message.lower():
        line = (
            f"{at}: namespace {target.namespace!r} does not exist ({message}); "
            f"check TEMPORAL_NAMESPACE{where}"
        )
    elif code in ("Unauthenticated", "PermissionDenied"):
        if target.api_key:
            line = f"{at} refused the API key ({message or code}); check TEMPORAL_API_KEY{where}"
        elif "certificate" in message.lower() or target.client_certificate:
            line = (
                f"{at} refused the connection ({message or code}); it needs a client certificate its CA "
                f"signed: set {CLIENT_CERT_HINT}{where}"
            )
        else:
            line = (
                f"{at} requires credentials ({message or code}); set TEMPORAL_API_KEY, or "
                f"{CLIENT_CERT_HINT} for mTLS{where}"
            )
    elif not target.uses_tls and (
        code in ("Cancelled", "Unavailable", "Unknown", "Internal") or "closed" in text
    ):
        line = (
            f"{at} closed the connection ({message or code or 'no reply'}); if it requires TLS set "
            f"TEMPORAL_TLS=true (and TEMPORAL_TLS_SERVER_CA_CERT_PATH for a private CA){where}, else check "
            "TEMPORAL_ADDRESS"
        )
    elif code:
        line = f"{at} refused the connection ({code}: {message}); check TEMPORAL_ADDRESS and TEMPORAL_TLS_*"
    else:
        line = (
            f"cannot connect to {at} ({_first_line(text).removeprefix('Failed client connect: ')[:200]}); "
            "check TEMPORAL_ADDRESS, TEMPORAL_TLS_* and TEMPORAL_API_KEY"
        )
    return scrub(" ".join(line.split()), target)


def scrub(text: str, target: TemporalConnection) -> str:
    """Belt and braces: the API key never leaves in a message, even if a server echoed it."""
    key = target.api_key
    return text.replace(key, "***") if key and len(key) >= 4 else text
