"""What `starter enroll` accepts: one pydantic model, every field checked, every error naming its flag.

The model only validates; it never touches the database, Temporal or SMTP, so a rejected request
cannot leave anything behind.
"""

from __future__ import annotations

import dataclasses
import difflib
import functools
import ipaddress
import math
import re
import zoneinfo
from typing import Any

from pydantic import (
    BaseModel,
    ConfigDict,
    PrivateAttr,
    SecretStr,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)

from warmup.mailboxes import SmtpAccount
from warmup.models import RampSettings, ScheduleSettings, SettingsUpdate, SmtpSecurity

# The command-line flag behind each field, so every message names what the user typed.
FLAGS: dict[str, str] = {
    "address": "--mailbox",
    "user_id": "--user",
    "smtp_host": "--smtp-host",
    "smtp_port": "--smtp-port",
    "smtp_security": "--smtp-security",
    "username": "--username",
    "secret": "--secret-env/--secret-stdin",
    "timezone": "--timezone",
    "verify_tls": "--no-verify-tls",
    "window_start_hour": "--window-start",
    "window_end_hour": "--window-end",
    "delay_min_minutes": "--delay-min",
    "delay_max_minutes": "--delay-max",
    "ramp_start": "--ramp-start",
    "ramp_increment": "--ramp-increment",
    "ramp_ceiling": "--ramp-ceiling",
    "ramp_variance": "--ramp-variance",
    "weekdays_only": "--weekdays-only",
}

# What a valid value looks like, for the errors pydantic raises itself (wrong type, out of range).
_EXPECTED: dict[str, str] = {
    "smtp_port": "a whole number from 1 to 65535 (usually 587 for STARTTLS or 465 for TLS)",
    "window_start_hour": "a whole hour from 0 to 23 (local time the sending window opens)",
    "window_end_hour": "a whole hour from 1 to 24 (local time the window closes; 24 = midnight)",
    "delay_min_minutes": "a number of minutes above 0 and at most 1440",
    "delay_max_minutes": "a number of minutes above 0 and at most 1440",
    "ramp_start": "a whole number from 0 to 10000 (emails on the first day)",
    "ramp_increment": "a whole number from 0 to 10000 (emails added each day)",
    "ramp_ceiling": "a whole number from 0 to 10000 (most emails per day)",
    "ramp_variance": "a fraction from 0 to 0.5 (daily +/- jitter, e.g. 0.1)",
    "smtp_security": "one of starttls, tls, none",
    "verify_tls": "true or false",
    "weekdays_only": "true or false (true: no sends on Saturday and Sunday)",
    "address": "the mailbox's email address, e.g. alice@example.com",
    "user_id": "the owner's user id, e.g. acme-42",
    "smtp_host": "the SMTP server, e.g. smtp.example.com",
    "username": "the SMTP login name, often the full address",
    "timezone": "an IANA time zone such as Europe/Berlin",
}

_USER_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")
_LOCAL_PART = re.compile(r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+(\.[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+)*")
_LABEL = re.compile(r"[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?")
# Single-label domains are no real mailbox, except the loopback name used by local test setups.
_SINGLE_LABEL_DOMAINS = frozenset({"localhost"})

_MIN_PORT, _MAX_PORT = 1, 65535
_MAX_DELAY_MINUTES = 1440.0
_MAX_RAMP = 10_000
_MAX_VARIANCE = 0.5


class EnrollValidationError(ValueError):
    """Every problem with an enroll request, one line each, each naming its flag and the fix."""

    def __init__(self, problems: list[str]) -> None:
        super().__init__("\n".join(problems))
        self.problems = problems


@functools.cache
def _zones() -> frozenset[str]:
    return frozenset(zoneinfo.available_timezones())


def is_valid_timezone(name: str) -> bool:
    return name in _zones()


def normalize_address(value: str) -> str:
    """Lower-cased address, or ValueError naming --mailbox. Used by every command that takes --mailbox."""
    address = value.strip()
    hint = "give the mailbox's full address, e.g. --mailbox alice@example.com"
    if address.count("@") != 1:
        raise ValueError(f"--mailbox {value!r} is not an email address (it needs exactly one @): {hint}")
    local, domain = address.split("@")
    if not local or len(local) > 64 or not _LOCAL_PART.fullmatch(local):
        raise ValueError(f"--mailbox {value!r} has an invalid part before the @: {hint}")
    labels = domain.split(".")
    if (
        not domain
        or len(address) > 254
        or not all(_LABEL.fullmatch(label) for label in labels)
        or (len(labels) < 2 and domain.lower() not in _SINGLE_LABEL_DOMAINS)
    ):
        raise ValueError(
            f"--mailbox {value!r} has an invalid domain (it needs a dot, as in example.com): {hint}"
        )
    return address.lower()


class ScheduleFields(BaseModel):
    """The schedule flags `enroll` and `update` share, each field checked the same way for both."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False, str_strip_whitespace=True)

    timezone: str
    window_start_hour: int
    window_end_hour: int
    delay_min_minutes: float
    delay_max_minutes: float
    ramp_start: int
    ramp_increment: int
    ramp_ceiling: int
    ramp_variance: float

    @field_validator("timezone")
    @classmethod
    def _timezone(cls, value: str) -> str:
        if is_valid_timezone(value):
            return value
        close = difflib.get_close_matches(value, sorted(_zones()), n=3, cutoff=0.6)
        suggestion = f" Did you mean {', '.join(close)}?" if close else ""
        raise ValueError(
            f"--timezone {value!r} is not an IANA time zone: use a name such as Europe/Berlin, "
            f"America/New_York or UTC.{suggestion}"
        )

    @field_validator("window_start_hour")
    @classmethod
    def _window_start(cls, value: int) -> int:
        if not 0 <= value <= 23:
            raise ValueError(f"--window-start must be {_EXPECTED['window_start_hour']}, got {value}")
        return value

    @field_validator("window_end_hour")
    @classmethod
    def _window_end(cls, value: int) -> int:
        if not 1 <= value <= 24:
            raise ValueError(f"--window-end must be {_EXPECTED['window_end_hour']}, got {value}")
        return value

    @field_validator("delay_min_minutes", "delay_max_minutes")
    @classmethod
    def _delay(cls, value: float, info: ValidationInfo) -> float:
        if not (0 < value <= _MAX_DELAY_MINUTES) or math.isnan(value):
            flag = FLAGS[str(info.field_name)]
            raise ValueError(f"{flag} must be {_EXPECTED[str(info.field_name)]}, got {value}")
        return value

    @field_validator("ramp_start", "ramp_increment", "ramp_ceiling")
    @classmethod
    def _ramp(cls, value: int, info: ValidationInfo) -> int:
        if not 0 <= value <= _MAX_RAMP:
            flag = FLAGS[str(info.field_name)]
            raise ValueError(f"{flag} must be {_EXPECTED[str(info.field_name)]}, got {value}")
        return value

    @field_validator("ramp_variance")
    @classmethod
    def _variance(cls, value: float) -> float:
        if not 0 <= value <= _MAX_VARIANCE:
            raise ValueError(f"--ramp-variance must be {_EXPECTED['ramp_variance']}, got {value}")
        return value

    def schedule_problems(self, *, window: str, delay: str, ramp: str) -> list[str]:
        """Checks across schedule fields; each message ends with its `window`/`delay`/`ramp` hint,
        which says where a value the user did not type came from."""
        problems: list[str] = []
        if self.window_start_hour >= self.window_end_hour:
            problems.append(
                f"--window-start ({self.window_start_hour}) must be before --window-end "
                f"({self.window_end_hour}): e.g. --window-start 8 --window-end 20, or 0 and 24 for all day "
                + window
            )
        if self.delay_min_minutes > self.delay_max_minutes:
            problems.append(
                f"--delay-min ({self.delay_min_minutes:g}) must not exceed --delay-max "
                f"({self.delay_max_minutes:g}) " + delay
            )
        if self.ramp_start > self.ramp_ceiling:
            problems.append(
                f"--ramp-start ({self.ramp_start}) must not exceed --ramp-ceiling ({self.ramp_ceiling}) "
                + ramp
            )
        return problems

    @property
    def ramp(self) -> RampSettings:
        return RampSettings(
            start_volume=self.ramp_start,
            daily_increment=self.ramp_increment,
            ceiling=self.ramp_ceiling,
            daily_variance=self.ramp_variance,
        )


class EnrollRequest(ScheduleFields):
    """A validated enrollment. Schedule fields left out come from the context's `defaults`."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False, str_strip_whitespace=True)

    address: str
    user_id: str
    smtp_host: str
    smtp_port: int
    smtp_security: SmtpSecurity | None = None  # None on input: derived from the port
    username: str
    secret: SecretStr | None = None
    verify_tls: bool = True
    weekdays_only: bool = False

    # The defaults the request was validated against: schedule fields it has no flag for come from here.
    _defaults: ScheduleSettings = PrivateAttr(default_factory=ScheduleSettings)

    # ---- defaults -------------------------------------------------------------------------------

    @model_validator(mode="before")
    @classmethod
    def _fill_schedule_defaults(cls, data: Any, info: ValidationInfo) -> Any:
        if not isinstance(data, dict):
            return data
        ctx = info.context or {}
        defaults: ScheduleSettings = ctx.get("defaults") or ScheduleSettings()
        fallback: dict[str, object] = {
            "window_start_hour": defaults.window_start_hour,
            "window_end_hour": defaults.window_end_hour,
            "delay_min_minutes": defaults.delay_min_minutes,
            "delay_max_minutes": defaults.delay_max_minutes,
            "ramp_start": defaults.ramp.start_volume,
            "ramp_increment": defaults.ramp.daily_increment,
            "ramp_ceiling": defaults.ramp.ceiling,
            "ramp_variance": defaults.ramp.daily_variance,
        }
        filled = dict(data)
        for key, value in fallback.items():
            if filled.get(key) is None:
                filled[key] = value
        return filled

    # ---- single fields --------------------------------------------------------------------------

    @field_validator("address")
    @classmethod
    def _address(cls, value: str) -> str:
        return normalize_address(value)

    @field_validator("user_id")
    @classmethod
    def _user_id(cls, value: str) -> str:
        if not _USER_ID.fullmatch(value):
            raise ValueError(
                f"--user {value!r} is not a valid user id: use 1-64 letters, digits, '.', '_' or '-', "
                "starting with a letter or digit (e.g. --user acme-42)"
            )
        return value

    @field_validator("smtp_host")
    @classmethod
    def _smtp_host(cls, value: str) -> str:
        host = value.rstrip(".")
        try:
            ipaddress.ip_address(host.strip("[]"))
            return host.strip("[]")
        except ValueError:
            pass
        labels = host.split(".")
        if not host or len(host) > 253 or not all(_LABEL.fullmatch(label) for label in labels):
            raise ValueError(
                f"--smtp-host {value!r} is not a host name or IP address: "
                "give the SMTP server, e.g. --smtp-host smtp.example.com"
            )
        return host.lower()

    @field_validator("smtp_port", mode="before")
    @classmethod
    def _port_is_whole(cls, value: object) -> object:
        # pydantic would accept 587.0; a port is written as a whole number.
        if isinstance(value, bool) or (isinstance(value, float) and not value.is_integer()):
            raise ValueError(f"--smtp-port must be {_EXPECTED['smtp_port']}, got {value!r}")
        return value

    @field_validator("smtp_port")
    @classmethod
    def _smtp_port(cls, value: int) -> int:
        if not _MIN_PORT <= value <= _MAX_PORT:
            raise ValueError(f"--smtp-port must be {_EXPECTED['smtp_port']}, got {value}")
        return value

    @field_validator("smtp_security", mode="before")
    @classmethod
    def _security_case(cls, value: object) -> object:
        return value.strip().lower() if isinstance(value, str) else value

    @field_validator("username")
    @classmethod
    def _username(cls, value: str) -> str:
        if not value or any(c in value for c in "\r\n\0"):
            raise ValueError(
                "--username must be the SMTP login name (often the full address), "
                "non-empty and on one line, e.g. --username alice@example.com"
            )
        return value

    @field_validator("secret", mode="before")
    @classmethod
    def _secret(cls, value: object) -> object:
        # Never echo the value: it is the mailbox password.
        raw = value.get_secret_value() if isinstance(value, SecretStr) else value
        if raw is None or (isinstance(raw, str) and not raw.strip()):
            raise ValueError(
                "no SMTP password given: pass --secret-env VARNAME (an environment variable holding it) "
                "or --secret-stdin (one line on standard input); it is never accepted as an argument"
            )
        if not isinstance(raw, str) or any(c in raw for c in "\r\n\0"):
            raise ValueError(
                "the SMTP password from --secret-env/--secret-stdin must be a single line of text"
            )
        return raw

    # ---- across fields --------------------------------------------------------------------------

    @model_validator(mode="after")
    def _cross_checks(self, info: ValidationInfo) -> EnrollRequest:
        self._defaults = (info.context or {}).get("defaults") or ScheduleSettings()
        problems: list[str] = []
        port, security = self.smtp_port, self.smtp_security
        if security is None:
            derived = {465: SmtpSecurity.TLS, 587: SmtpSecurity.STARTTLS, 25: SmtpSecurity.STARTTLS}.get(port)
            if derived is None:
                problems.append(
                    f"--smtp-security is required for port {port}: pass --smtp-security starttls "
                    "(upgrade with STARTTLS), tls (TLS from the first byte) or none (clear text, "
                    "only for a local test server)"
                )
            self.smtp_security = derived
        elif port == 465 and security is SmtpSecurity.STARTTLS:
            problems.append(
                "--smtp-port 465 uses implicit TLS, not STARTTLS: pass --smtp-security tls "
                "(or leave --smtp-security out), or use port 587 for STARTTLS"
            )
        elif port == 587 and security is SmtpSecurity.TLS:
            problems.append(
                "--smtp-port 587 expects STARTTLS, not implicit TLS: pass --smtp-security starttls "
                "(or leave --smtp-security out), or use port 465 for TLS"
            )
        problems += self.schedule_problems(
            window="(defaults come from WARMUP_SEND_WINDOW_START_HOUR/_END_HOUR)",
            delay="(defaults come from WARMUP_SAME_MAILBOX_DELAY_MIN/_MAX)",
            ramp="(defaults come from WARMUP_RAMP_START_VOLUME/WARMUP_RAMP_CEILING)",
        )
        if problems:
            raise ValueError("\n".join(problems))
        return self

    # ---- what the starter stores and sends ------------------------------------------------------

    @property
    def security(self) -> SmtpSecurity:
        assert self.smtp_security is not None  # set by _cross_checks
        return self.smtp_security

    @property
    def password(self) -> str:
        assert self.secret is not None  # required by _secret
        return self.secret.get_secret_value()

    @property
    def smtp(self) -> SmtpAccount:
        return SmtpAccount(
            host=self.smtp_host,
            port=self.smtp_port,
            security=self.security,
            username=self.username,
            verify_tls=self.verify_tls,
        )

    @property
    def schedule(self) -> ScheduleSettings:
        return dataclasses.replace(
            self._defaults,
            timezone=self.timezone,
            window_start_hour=self.window_start_hour,
            window_end_hour=self.window_end_hour,
            delay_min_minutes=self.delay_min_minutes,
            delay_max_minutes=self.delay_max_minutes,
            ramp=self.ramp,
            weekdays_only=self.weekdays_only,
        )

    def settings_update(self) -> SettingsUpdate:
        """Every schedule field, so a re-enroll replaces the running workflow's settings completely."""
        schedule = self.schedule
        return SettingsUpdate(
            **{f.name: getattr(schedule, f.name) for f in dataclasses.fields(ScheduleSettings)}
        )


def _describe(err: Any) -> str:
    loc = [str(part) for part in err.get("loc", ()) if part != "__root__"]
    msg = str(err.get("msg", "")).removeprefix("Value error, ")
    if not loc:
        return msg  # a cross-field check: the message names its flags
    field = loc[0]
    flag = FLAGS.get(field, field)
    if err.get("type") == "value_error":
        return msg  # our own validators: the message names the flag and the fix
    if err.get("type") == "missing" or ("input" in err and err["input"] is None):
        # Left out, or an empty CSV cell.
        return f"{flag} is required: give {_EXPECTED[field]}" if field in _EXPECTED else f"{flag} is required"
    if err.get("type") == "extra_forbidden":
        return f"unknown field {field!r}"
    expected = _EXPECTED.get(field, "a value")
    if field == "secret":
        return f"{flag}: {msg}"  # never show the input: it is the password
    return f"{flag} must be {expected}, got {err.get('input')!r}"


def parse_enroll_request(
    values: dict[str, object], defaults: ScheduleSettings | None = None
) -> EnrollRequest:
    """Validate raw values (strings from the command line are fine) or raise EnrollValidationError."""
    try:
        return EnrollRequest.model_validate(values, context={"defaults": defaults or ScheduleSettings()})
    except ValidationError as exc:
        raise EnrollValidationError(validation_problems(exc)) from None


def validation_problems(exc: ValidationError) -> list[str]:
    """One line per problem, each naming its flag (never showing the password), without repeats."""
    problems: list[str] = []
    for err in exc.errors(include_input=True, include_url=False):
        for line in _describe(err).splitlines():
            if line not in problems:
                problems.append(line)
    return problems
