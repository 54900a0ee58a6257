"""Process configuration: every key of the audit's ScaleConfig, read from WARMUP_<KEY>.

Keys that Temporal makes obsolete are still accepted (old deployment files keep working) and
documented in the README with what replaces them.
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field, PrivateAttr, SecretStr, ValidationError, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from warmup.models import RampSettings, ReactionSettings, ScheduleSettings, SendRetrySettings
from warmup.temporal_connection import (
    DEFAULT_ADDRESS,
    DEFAULT_NAMESPACE,
    TemporalConfigError,
    TemporalConnection,
    TemporalProfile,
    load_profile,
)

_REACTION = ReactionSettings()  # the reactive ramp's defaults are declared there, once


class ConfigError(Exception):
    """Raised at start-up for a bad environment value; the message names the key and the fix."""


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="WARMUP_", extra="ignore", frozen=True)

    # --- The audit's ScaleConfig, same names and defaults ---
    SCHEDULER_INTERVAL_MS: int = Field(60_000, ge=1, description="obsolete: durable timers replace polling")
    JOBS_PER_SCHEDULER_RUN: int = Field(1000, ge=1, description="obsolete: no job table")
    JOB_CLEANUP_DAYS: int = Field(
        7,
        ge=1,
        le=3650,
        description="days a sent email's text stays in the ledger, then cleared (unless an answer is due)",
    )
    WORKER_CONCURRENCY: int = Field(10, ge=1, le=10_000, description="activities run at once per worker")
    INBOX_CONCURRENCY: int = Field(
        0,
        ge=0,
        le=10_000,
        description="inbox sessions and placement checks run at once per worker; 0 = WORKER_CONCURRENCY",
    )
    WORKER_COUNT: int = Field(5, ge=1, le=1000, description="worker processes (make dev; compose --scale)")
    WORKER_JOB_BATCH_SIZE: int = Field(50, ge=1, description="obsolete: Temporal pollers fetch tasks")
    SAME_MAILBOX_DELAY_MIN: float = Field(2, gt=0, le=1440, description="minutes, floor between sends")
    SAME_MAILBOX_DELAY_MAX: float = Field(10, gt=0, le=1440, description="minutes, ceiling within a burst")
    SEND_WINDOW_START_HOUR: int = Field(6, ge=0, le=23, description="local hour the window opens")
    SEND_WINDOW_END_HOUR: int = Field(22, ge=1, le=24, description="local hour the window closes")
    GLOBAL_SENDS_PER_MINUTE: int = Field(100, ge=1, description="cluster-wide cap (issue #3)")
    GLOBAL_SENDS_PER_HOUR: int = Field(5000, ge=1, description="cluster-wide cap (issue #3)")
    USER_SENDS_PER_MINUTE: int = Field(5, ge=1, description="per-user cap (issue #3)")
    USER_SENDS_PER_HOUR: int = Field(300, ge=1, description="per-user cap (issue #3)")
    CAP_HOUR_SECONDS: float = Field(3600, ge=61, le=3600, description="length of the caps' hour window")
    PLAN_WEIGHTS: str = Field(
        "free:1,starter:2,pro:3,agency:4", min_length=3, description="plan:weight share of the global cap"
    )
    SCALE_UP_QUEUE_THRESHOLD: int = Field(
        1000, ge=1, description="KEDA target: task-queue backlog per scale-up (deploy/kubernetes)"
    )
    SCALE_DOWN_IDLE_MINUTES: int = Field(10, ge=1, description="KEDA cooldown before scaling down (minutes)")

    # --- Ramp-up defaults for newly enrolled mailboxes ---
    RAMP_START_VOLUME: int = Field(5, ge=0, le=10_000, description="emails on the first day")
    RAMP_DAILY_INCREMENT: int = Field(2, ge=0, le=10_000, description="added each warmed day")
    RAMP_CEILING: int = Field(40, ge=0, le=10_000, description="daily volume never exceeds this")
    SPREAD_OVER_WINDOW: bool = Field(True, description="spread bursts over the window; false chains sends")
    RAMP_DAILY_VARIANCE: float = Field(0.0, ge=0, le=0.5, description="+/- fraction of daily jitter")

    # --- Sending ---
    SMTP_TIMEOUT_SECONDS: float = Field(30, gt=0, le=600, description="per SMTP command")
    SEND_RETRY_INITIAL_SECONDS: float = Field(30, gt=0, le=3600, description="first retry backoff")
    SEND_RETRY_MAX_SECONDS: float = Field(600, gt=0, le=86_400, description="backoff ceiling")
    SEND_RETRY_MAX_ATTEMPTS: int = Field(6, ge=1, le=100, description="attempts per send")
    OAUTH_TOKEN_MARGIN_SECONDS: float = Field(
        120, ge=0, le=3000, description="an OAuth2 access token is refreshed this long before it expires"
    )
    OAUTH_TIMEOUT_SECONDS: float = Field(
        15, gt=0, le=120, description="per request to an OAuth2 token endpoint"
    )
    SEND_HEARTBEAT_SECONDS: float = Field(
        30, ge=1, le=600, description="a send whose worker went silent this long is retried elsewhere"
    )

    # --- Enrolling ---
    ENROLL_CONCURRENCY: int = Field(
        8, ge=1, le=64, description="batches in flight at once (`enroll --csv`, the API's bulk endpoint)"
    )

    # --- The ledger's retention (warmup/ledger_retention.py, docs/capacity.md) ---
    # At least a day above activities/bounces.py BOUNCE_LOOKBACK_DAYS (tests/test_ledger_retention.py).
    LEDGER_RETENTION_DAYS: int = Field(
        90,
        ge=15,
        le=3650,
        description="days of send ledger rows kept; older days are dropped whole (reports, bounces)",
    )

    WEBHOOK_POLL_SECONDS: float = Field(
        15, ge=1, le=3600, description="webhooks: how long a new event may wait before it is sent"
    )

    # --- Tenancy ---
    REQUIRE_USER_SCOPE: bool = Field(
        False, description="starter: every mailbox or fleet command needs --user (multi-tenant front ends)"
    )

    # --- Wiring ---
    DATABASE_URL: SecretStr = Field(
        SecretStr("postgresql://warmup@127.0.0.1:5432/warmup"), description="PostgreSQL DSN"
    )
    SECRET_KEYS: SecretStr = Field(SecretStr(""), description="Fernet keys, comma-separated, newest first")
    TASK_QUEUE: str = Field("warmup", min_length=1, description="Temporal task queue")
    MAX_CACHED_WORKFLOWS: int = Field(2000, ge=0, description="sticky cache size per worker")
    WORKFLOW_SANDBOX: Literal["shared", "isolated"] = Field(
        "shared", description="shared: workflow modules imported once (less memory); isolated: per run"
    )
    # Not read here: load_settings takes both from the SDK's envconfig (TEMPORAL_* variables and the
    # profile file), the one reader of the connection settings, so these always equal what the client
    # connects with (warmup/temporal_connection.py); the rest of the profile (TLS, API key) is private.
    TEMPORAL_ADDRESS: str = Field(DEFAULT_ADDRESS, min_length=3, description="host:port of Temporal")
    TEMPORAL_NAMESPACE: str = Field(DEFAULT_NAMESPACE, min_length=1, description="Temporal namespace")
    _temporal_profile: TemporalProfile = PrivateAttr(default_factory=TemporalProfile)

    # --- Worker lifecycle ---
    SHUTDOWN_GRACE_SECONDS: float = Field(
        200,
        ge=0,
        le=3600,
        description="on SIGTERM, how long in-flight sends may take to finish before they are cancelled",
    )
    HEALTH_PORT: int = Field(0, ge=0, le=65_535, description="/livez and /readyz port per worker; 0 = off")
    HEALTH_HOST: str = Field("0.0.0.0", min_length=1, description="address the health port listens on")

    PLACEMENT_DAYS: int = Field(
        7, ge=1, le=90, description="days of a sender's rolling inbox placement score (status, report)"
    )

    # The ramp's reaction to placement (issue #15, warmup/ramp_reaction.py): spam share = junk / judged.
    PLACEMENT_MIN_JUDGED: int = Field(
        _REACTION.min_judged, ge=1, le=10_000, description="emails judged before the ramp reacts to placement"
    )
    PLACEMENT_HOLD_SHARE: float = Field(
        _REACTION.hold_share, gt=0, le=1, description="spam share from which the ramp holds its volume"
    )
    PLACEMENT_STEP_DOWN_SHARE: float = Field(
        _REACTION.step_down_share, gt=0, le=1, description="spam share from which the ramp steps down"
    )
    PLACEMENT_PAUSE_SHARE: float = Field(
        _REACTION.pause_share, gt=0, le=1, description="spam share that pauses the mailbox"
    )
    PLACEMENT_STEP_DOWN_DAYS: int = Field(
        _REACTION.step_down_days, ge=1, le=365, description="ramp days taken back per step down"
    )
    PLACEMENT_BOUNCE_PAUSE: int = Field(
        _REACTION.bounce_pause,
        ge=1,
        le=10_000,
        description="bounces of a sender's mail by policy (5.7.x...) over the placement days that pause it",
    )
    PLACEMENT_SPACING_STEP: float = Field(
        _REACTION.spacing_step,
        ge=1,
        le=10,
        description="spacing multiplied per step down (divided per healthy day)",
    )

    # --- Metrics (each worker serves Prometheus on its own port; see README "Metrics") ---
    METRICS_PORT: int = Field(0, ge=0, le=65_535, description="Prometheus port per worker; 0 = off")
    METRICS_HOST: str = Field("0.0.0.0", min_length=1, description="address the metrics port listens on")
    METRICS_INTERVAL_SECONDS: float = Field(
        30, gt=0, le=3600, description="how often the fleet gauges are recomputed"
    )

    # --- The HTTP API and dashboard (`python -m api`, issue #16) ---
    API_PORT: int = Field(8080, ge=1, le=65_535, description="port the HTTP API and dashboard listen on")
    API_HOST: str = Field("0.0.0.0", min_length=1, description="address the HTTP API listens on")

    @model_validator(mode="after")
    def _cross_checks(self) -> Settings:
        if self.SAME_MAILBOX_DELAY_MIN > self.SAME_MAILBOX_DELAY_MAX:
            raise ValueError(
                "WARMUP_SAME_MAILBOX_DELAY_MIN must not exceed WARMUP_SAME_MAILBOX_DELAY_MAX "
                f"({self.SAME_MAILBOX_DELAY_MIN} > {self.SAME_MAILBOX_DELAY_MAX})"
            )
        if not self.PLACEMENT_HOLD_SHARE <= self.PLACEMENT_STEP_DOWN_SHARE <= self.PLACEMENT_PAUSE_SHARE:
            shares = (self.PLACEMENT_HOLD_SHARE, self.PLACEMENT_STEP_DOWN_SHARE, self.PLACEMENT_PAUSE_SHARE)
            raise ValueError(
                "WARMUP_PLACEMENT_HOLD_SHARE, WARMUP_PLACEMENT_STEP_DOWN_SHARE and "
                f"WARMUP_PLACEMENT_PAUSE_SHARE must not decrease in that order (got {shares})"
            )
        if self.SEND_WINDOW_START_HOUR >= self.SEND_WINDOW_END_HOUR:
            raise ValueError(
                "WARMUP_SEND_WINDOW_START_HOUR must be before WARMUP_SEND_WINDOW_END_HOUR "
                f"({self.SEND_WINDOW_START_HOUR} >= {self.SEND_WINDOW_END_HOUR}); use 0 and 24 for all day"
            )
        if self.RAMP_START_VOLUME > self.RAMP_CEILING:
            raise ValueError(
                "WARMUP_RAMP_START_VOLUME must not exceed WARMUP_RAMP_CEILING "
                f"({self.RAMP_START_VOLUME} > {self.RAMP_CEILING})"
            )
        for item in self.PLAN_WEIGHTS.split(","):
            name, sep, weight = item.partition(":")
            try:
                ok = bool(sep and name.strip()) and float(weight) > 0
            except ValueError:
                ok = False
            if not ok:
                raise ValueError(
                    f"WARMUP_PLAN_WEIGHTS entry {item!r} must look like plan:weight with a weight above 0 "
                    "(e.g. free:1,pro:3)"
                )
        if self.HEALTH_PORT and self.HEALTH_PORT == self.METRICS_PORT:
            raise ValueError(
                f"WARMUP_HEALTH_PORT and WARMUP_METRICS_PORT are both {self.HEALTH_PORT}; "
                "give each its own port"
            )
        if self.LEDGER_RETENTION_DAYS <= max(self.JOB_CLEANUP_DAYS, self.PLACEMENT_DAYS):
            raise ValueError(
                "WARMUP_LEDGER_RETENTION_DAYS must be above WARMUP_JOB_CLEANUP_DAYS and "
                f"WARMUP_PLACEMENT_DAYS (got {self.LEDGER_RETENTION_DAYS}, {self.JOB_CLEANUP_DAYS} and "
                f"{self.PLACEMENT_DAYS}): a dropped day takes its emails and bounces with it"
            )
        if self.SEND_RETRY_INITIAL_SECONDS > self.SEND_RETRY_MAX_SECONDS:
            raise ValueError(
                "WARMUP_SEND_RETRY_INITIAL_SECONDS must not exceed WARMUP_SEND_RETRY_MAX_SECONDS"
            )
        return self

    def plan_weights(self) -> dict[str, float]:
        weights = {}
        for item in self.PLAN_WEIGHTS.split(","):
            name, _, weight = item.partition(":")
            weights[name.strip()] = float(weight)
        return weights

    def plan_weight(self, plan: str) -> float:
        return self.plan_weights().get(plan, 1.0)

    def temporal_connection(self) -> TemporalConnection:
        """Where and how to connect: address and namespace from these fields, TLS and API key from
        the profile load_settings resolved (none for Settings built another way)."""
        return TemporalConnection(self.TEMPORAL_ADDRESS, self.TEMPORAL_NAMESPACE, self._temporal_profile)

    def secret_keys(self) -> list[str]:
        return [k.strip() for k in self.SECRET_KEYS.get_secret_value().split(",") if k.strip()]

    def default_schedule(self, timezone: str) -> ScheduleSettings:
        return ScheduleSettings(
            timezone=timezone,
            window_start_hour=self.SEND_WINDOW_START_HOUR,
            window_end_hour=self.SEND_WINDOW_END_HOUR,
            delay_min_minutes=self.SAME_MAILBOX_DELAY_MIN,
            delay_max_minutes=self.SAME_MAILBOX_DELAY_MAX,
            spread_over_window=self.SPREAD_OVER_WINDOW,
            ramp=RampSettings(
                start_volume=self.RAMP_START_VOLUME,
                daily_increment=self.RAMP_DAILY_INCREMENT,
                ceiling=self.RAMP_CEILING,
                daily_variance=self.RAMP_DAILY_VARIANCE,
            ),
        )

    def inbox_concurrency(self) -> int:
        """The inbox worker's slots: a session is mostly asleep in a human's dwell, so a fleet that reads
        its mail needs many more of them than send slots (docs/capacity.md)."""
        return self.INBOX_CONCURRENCY or self.WORKER_CONCURRENCY

    def ramp_reaction(self) -> ReactionSettings:
        return ReactionSettings(
            min_judged=self.PLACEMENT_MIN_JUDGED,
            hold_share=self.PLACEMENT_HOLD_SHARE,
            step_down_share=self.PLACEMENT_STEP_DOWN_SHARE,
            pause_share=self.PLACEMENT_PAUSE_SHARE,
            step_down_days=self.PLACEMENT_STEP_DOWN_DAYS,
            spacing_step=self.PLACEMENT_SPACING_STEP,
            max_spacing_factor=_REACTION.max_spacing_factor,
            bounce_pause=self.PLACEMENT_BOUNCE_PAUSE,
        )

    def send_retry(self) -> SendRetrySettings:
        return SendRetrySettings(
            initial_seconds=self.SEND_RETRY_INITIAL_SECONDS,
            max_seconds=self.SEND_RETRY_MAX_SECONDS,
            max_attempts=self.SEND_RETRY_MAX_ATTEMPTS,
            smtp_timeout_seconds=self.SMTP_TIMEOUT_SECONDS,
            heartbeat_seconds=self.SEND_HEARTBEAT_SECONDS,
        )


# Variables read without the WARMUP_ prefix, as Temporal's own tools name them.
_UNPREFIXED = {"TEMPORAL_ADDRESS": "TEMPORAL_ADDRESS", "TEMPORAL_NAMESPACE": "TEMPORAL_NAMESPACE"}


def _env_name(field: str) -> str:
    return _UNPREFIXED.get(field, f"WARMUP_{field}")


def _describe_range(field: str) -> str:
    info = Settings.model_fields[field]
    lo = hi = None
    above = ""
    for m in info.metadata:
        if getattr(m, "ge", None) is not None:
            lo = m.ge
        if getattr(m, "gt", None) is not None:
            lo, above = m.gt, "above "
        if getattr(m, "le", None) is not None:
            hi = m.le
    kind = {"int": "a whole number", "float": "a number"}.get(
        getattr(info.annotation, "__name__", ""), "a value"
    )
    parts = [kind]
    if lo is not None and hi is not None:
        parts.append(f"above {lo} and at most {hi}" if above else f"from {lo} to {hi}")
    elif lo is not None:
        parts.append(f"{above or 'of at least '}{lo}")
    if info.description:
        parts.append(f"({info.description})")
    return " ".join(parts)


def load_settings(env: dict[str, str] | None = None) -> Settings:
    """Read settings from the environment (or `env`), turning pydantic errors into one clear message."""
    import os

    source = dict(os.environ if env is None else env)
    try:
        temporal, address, namespace = load_profile(source)
    except TemporalConfigError as exc:
        raise ConfigError(f"Invalid configuration:\n  {exc}") from None
    try:
        # Build from an explicit mapping so tests can pass an environment without touching os.environ.
        values: dict[str, object] = {
            f: source[f"WARMUP_{f}"] for f in Settings.model_fields if f"WARMUP_{f}" in source
        }
        for field, value in (("TEMPORAL_ADDRESS", address), ("TEMPORAL_NAMESPACE", namespace)):
            values.pop(field, None)  # only envconfig's value counts (WARMUP_TEMPORAL_* is not a name)
            if value is not None:
                values[field] = value
        settings = Settings.model_validate(values)
        settings._temporal_profile = temporal
        return settings
    except ValidationError as exc:
        lines = []
        for err in exc.errors():
            loc = [str(p) for p in err.get("loc", ()) if p]
            if loc and loc[0] in Settings.model_fields:
                name = _env_name(loc[0])
                got = source.get(name, source.get(f"WARMUP_{loc[0]}", ""))
                lines.append(f"{name}={got!r} is invalid: must be {_describe_range(loc[0])}.")
            else:
                lines.append(str(err.get("msg", err)).removeprefix("Value error, "))
        raise ConfigError("Invalid configuration:\n  " + "\n  ".join(lines)) from None
