"""Every mailbox setting, declared once.

A `Setting` names its request field and stored column, its command-line flag and CSV column, its type and
bounds, what a valid value looks like, its help text, where it lives in the workflow's `ScheduleSettings`
and whether `starter update` may change it. The `enroll`/`update` flags, the CSV columns, the validation
messages, the mailboxes table's columns and the SQL that reads and writes them are all derived from
`SETTINGS`; adding a setting is its declaration, a migration and the code that uses it.

Validated values travel as a dict by setting name; `SMTP_HOST.of(values)` reads one as its type.
"""

from __future__ import annotations

import dataclasses
import difflib
import functools
import ipaddress
import math
import re
import zoneinfo
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from enum import StrEnum
from typing import Any, Generic, TypeVar, cast

from warmup.models import ImapSecurity, ScheduleSettings, SettingsUpdate, SmtpSecurity
from warmup.oauth_providers import AuthMethod, OAuthProvider

T = TypeVar("T")

# How a message names a setting: by its flag on the command line, by its column in a CSV file.
Label = Callable[["Setting[Any]"], str]


def flag_label(s: Setting[Any]) -> str:
    return s.flag or s.name


def csv_label(s: Setting[Any]) -> str:
    return s.csv or s.name


@dataclass(frozen=True)
class Setting(Generic[T]):
    name: str  # request field, and the mailboxes column unless `column` says otherwise
    type: type[T]
    expected: str  # what a valid value looks like, e.g. "a whole hour from 0 to 23 (...)"
    flag: str = ""  # "" = not set by the user (derived from configuration)
    csv: str = ""  # CSV column, "" = none
    help: str = ""
    metavar: str | None = None
    low: float | None = None
    high: float | None = None
    low_exclusive: bool = False  # (0, high] rather than [0, high]
    # Extra check: (value, label of this setting) -> normalised value, or ValueError naming the fix.
    check: Callable[[Any, str], Any] | None = None
    required: bool = False  # `enroll` needs it (no default)
    default: object = None  # used when left out and not a schedule field (None: required or derived)
    schedule_path: tuple[str, ...] = ()  # where the workflow's ScheduleSettings holds it
    updatable: bool = False  # `starter update` may change it
    off_flag: str = ""  # a switch's flag for False (`update`); on `enroll` a switch is its flag alone
    column: str = ""

    @property
    def db_column(self) -> str:
        return self.column or self.name

    def of(self, values: Mapping[str, object]) -> T:
        """This setting's value in validated `values` (typed as declared)."""
        return cast(T, values[self.name])

    @property
    def is_switch(self) -> bool:
        return self.type is bool

    def coerce(self, raw: object, label: str) -> T:
        """The value as its type, within bounds, or ValueError with the label and the fix."""
        value = _coerce(self, raw, label)
        if self.check is not None:
            value = self.check(value, label)
        return cast(T, value)


def _bad(label: str, s: Setting[Any], raw: object, quoted: bool = True) -> ValueError:
    shown = repr(raw) if quoted else str(raw)
    return ValueError(f"{label} must be {s.expected}, got {shown}")


_TRUE = frozenset({"true", "yes", "1", "on"})
_FALSE = frozenset({"false", "no", "0", "off"})


def _coerce(s: Setting[Any], raw: object, label: str) -> object:
    if s.type is bool:
        if isinstance(raw, bool):
            return raw
        if isinstance(raw, str) and raw.strip().lower() in _TRUE | _FALSE:
            return raw.strip().lower() in _TRUE
        raise _bad(label, s, raw)
    if s.type is int:
        if isinstance(raw, bool):
            raise _bad(label, s, raw)
        if isinstance(raw, float) and raw.is_integer():
            raw = int(raw)
        if isinstance(raw, str) and re.fullmatch(r"[+-]?\d+", raw.strip()):
            raw = int(raw.strip())
        if not isinstance(raw, int):
            raise _bad(label, s, raw)
        return _bounded(s, raw, label)
    if s.type is float:
        try:
            number = float(raw) if isinstance(raw, int | float | str) and not isinstance(raw, bool) else None
        except ValueError:
            number = None
        if number is None or math.isnan(number) or math.isinf(number):
            raise _bad(label, s, raw)
        return _bounded(s, number, label)
    if issubclass(s.type, StrEnum):
        try:
            return s.type(raw.strip().lower() if isinstance(raw, str) else str(raw))
        except ValueError:
            raise _bad(label, s, raw) from None
    if not isinstance(raw, str):
        raise _bad(label, s, raw)
    return raw.strip()


def _bounded(s: Setting[Any], value: float, label: str) -> float:
    too_low = s.low is not None and (value <= s.low if s.low_exclusive else value < s.low)
    too_high = s.high is not None and value > s.high
    if too_low or too_high:
        raise _bad(label, s, value, quoted=False)
    return value


# --- the checks that are more than a type and a range ---------------------------------------------

_USER_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")
_LOCAL_PART = re.compile(r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+(\.[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+)*")
_LABEL = re.compile(r"[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?")
# Single-label domains are no real mailbox, except the loopback name used by local test setups.
_SINGLE_LABEL_DOMAINS = frozenset({"localhost"})


def normalize_address(value: str, label: str = "--mailbox") -> str:
    """Lower-cased address, or ValueError naming `label`. Used by every command that takes --mailbox."""
    address = value.strip()
    hint = f"give the mailbox's full address, e.g. {label} alice@example.com"
    if address.count("@") != 1:
        raise ValueError(f"{label} {value!r} is not an email address (it needs exactly one @): {hint}")
    local, domain = address.split("@")
    if not local or len(local) > 64 or not _LOCAL_PART.fullmatch(local):
        raise ValueError(f"{label} {value!r} has an invalid part before the @: {hint}")
    labels = domain.split(".")
    if (
        not domain
        or len(address) > 254
        or not all(_LABEL.fullmatch(part) for part in labels)
        or (len(labels) < 2 and domain.lower() not in _SINGLE_LABEL_DOMAINS)
    ):
        raise ValueError(
            f"{label} {value!r} has an invalid domain (it needs a dot, as in example.com): {hint}"
        )
    return address.lower()


def _user_id(value: str, label: str) -> str:
    if not _USER_ID.fullmatch(value):
        raise ValueError(
            f"{label} {value!r} is not a valid user id: use 1-64 letters, digits, '.', '_' or '-', "
            f"starting with a letter or digit (e.g. {label} acme-42)"
        )
    return value


def _host(value: str, label: str) -> str:
    host = value.rstrip(".")
    try:
        ipaddress.ip_address(host.strip("[]"))
        return host.strip("[]")
    except ValueError:
        pass
    labels = host.split(".")
    if not host or len(host) > 253 or not all(_LABEL.fullmatch(part) for part in labels):
        raise ValueError(
            f"{label} {value!r} is not a host name or IP address: "
            f"give the server, e.g. {label} smtp.example.com"
        )
    return host.lower()


def is_loopback(host: str) -> bool:
    """This machine's own address: the one place a clear-text login is allowed."""
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _one_line(value: str, label: str) -> str:
    if not value or any(c in value for c in "\r\n\0"):
        raise ValueError(
            f"{label} must be the login name (often the full address), "
            f"non-empty and on one line, e.g. {label} alice@example.com"
        )
    return value


def _one_line_value(value: str, label: str) -> str:
    if any(c in value for c in "\r\n\0") or len(value) > 2000:
        raise ValueError(f"{label} must be one line of text (as the provider's console shows it)")
    return value


def _oauth_provider(value: str, label: str) -> str:
    choices = ", ".join(p.value for p in OAuthProvider)
    if value.lower() not in {p.value for p in OAuthProvider}:
        raise ValueError(f"{label} {value!r} is not a provider: use one of {choices}")
    return value.lower()


def _tenant(value: str, label: str) -> str:
    if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9.-]{0,99}", value):
        raise ValueError(
            f"{label} {value!r} is not a Microsoft directory: give common, organizations, the tenant's "
            f"id (a GUID) or its domain, e.g. {label} contoso.onmicrosoft.com"
        )
    return value


def _url(value: str, label: str) -> str:
    m = re.fullmatch(r"(https?)://(\[[0-9a-fA-F:]+\]|[A-Za-z0-9.-]+)(:\d{1,5})?(/[^\s]*)?", value)
    if m is None:
        raise ValueError(f"{label} {value!r} is not a URL: give the token endpoint, e.g. {label} "
                         "https://login.example.com/oauth2/token")  # fmt: skip
    if m.group(1) == "http" and not is_loopback(m.group(2).strip("[]")):
        raise ValueError(
            f"{label} {value!r} would send the client secret and refresh token in clear text: use https "
            "(http only for a server on this machine)"
        )
    return value


def _scopes(value: str, label: str) -> str:
    scopes = value.split()
    if any(any(c in s for c in '"\\') for s in scopes):
        raise ValueError(f"{label} must be scopes separated by spaces, e.g. {label} 'mail offline_access'")
    return " ".join(scopes)


@functools.cache
def _zones() -> frozenset[str]:
    return frozenset(zoneinfo.available_timezones())


def is_valid_timezone(name: str) -> bool:
    return name in _zones()


def _timezone(value: str, label: str) -> str:
    if is_valid_timezone(value):
        return value
    close = difflib.get_close_matches(value, sorted(_zones()), n=3, cutoff=0.6)
    suggestion = f" Did you mean {', '.join(close)}?" if close else ""
    raise ValueError(
        f"{label} {value!r} is not an IANA time zone: use a name such as Europe/Berlin, "
        f"America/New_York or UTC.{suggestion}"
    )


# --- the settings ----------------------------------------------------------------------------------

_MAX_DELAY_MINUTES = 1440
_MAX_RAMP = 10_000

ADDRESS = Setting(
    "address", str, "the mailbox's email address, e.g. alice@example.com", flag="--mailbox", csv="mailbox",
    help="the mailbox's email address", metavar="ADDRESS", required=True, check=normalize_address,
)  # fmt: skip
USER = Setting(
    "user_id", str, "the owner's user id, e.g. acme-42", flag="--user", csv="user",
    help="id of the user who owns the mailbox", metavar="USER", required=True, check=_user_id,
)  # fmt: skip
SMTP_HOST = Setting(
    "smtp_host", str, "the SMTP server, e.g. smtp.example.com", flag="--smtp-host", csv="smtp_host",
    metavar="HOST", help="the mailbox's SMTP server", required=True, check=_host,
)  # fmt: skip
SMTP_PORT = Setting(
    "smtp_port", int, "a whole number from 1 to 65535 (usually 587 for STARTTLS or 465 for TLS)",
    flag="--smtp-port", csv="smtp_port", metavar="PORT", help="465 (tls), 587 or 25 (starttls)",
    low=1, high=65535, required=True,
)  # fmt: skip
SMTP_SECURITY = Setting(
    "smtp_security", SmtpSecurity, "one of starttls, tls, none", flag="--smtp-security", csv="smtp_security",
    help="default from the port: 465 -> tls, 587/25 -> starttls; none (clear text) only if chosen",
)  # fmt: skip
USERNAME = Setting(
    "username", str, "the SMTP login name, often the full address", flag="--username", csv="username",
    metavar="NAME", help="SMTP login name", required=True, check=_one_line, column="smtp_username",
)  # fmt: skip
VERIFY_TLS = Setting(
    "verify_tls", bool, "true or false", flag="--no-verify-tls", csv="verify_tls",
    help="accept any TLS certificate (test servers)", default=True,
)  # fmt: skip
TIMEZONE = Setting(
    "timezone", str, "an IANA time zone such as Europe/Berlin", flag="--timezone", csv="timezone",
    metavar="IANA_TZ", help="e.g. Europe/Berlin", required=True, check=_timezone,
    schedule_path=("timezone",), updatable=True,
)  # fmt: skip
WINDOW_START = Setting(
    "window_start_hour", int, "a whole hour from 0 to 23 (local time the sending window opens)",
    flag="--window-start", csv="window_start", metavar="H", help="local hour the sending window opens (0-23)",
    low=0, high=23, schedule_path=("window_start_hour",), updatable=True,
)  # fmt: skip
WINDOW_END = Setting(
    "window_end_hour", int, "a whole hour from 1 to 24 (local time the window closes; 24 = midnight)",
    flag="--window-end", csv="window_end", metavar="H", help="local hour it closes (1-24)",
    low=1, high=24, schedule_path=("window_end_hour",), updatable=True,
)  # fmt: skip
DELAY_MIN = Setting(
    "delay_min_minutes", float, f"a number of minutes above 0 and at most {_MAX_DELAY_MINUTES}",
    flag="--delay-min", csv="delay_min", metavar="MIN", help="minutes at least between two sends",
    low=0, low_exclusive=True, high=_MAX_DELAY_MINUTES, schedule_path=("delay_min_minutes",), updatable=True,
)  # fmt: skip
DELAY_MAX = Setting(
    "delay_max_minutes", float, f"a number of minutes above 0 and at most {_MAX_DELAY_MINUTES}",
    flag="--delay-max", csv="delay_max", metavar="MIN", help="minutes at most between two sends",
    low=0, low_exclusive=True, high=_MAX_DELAY_MINUTES, schedule_path=("delay_max_minutes",), updatable=True,
)  # fmt: skip
RAMP_START = Setting(
    "ramp_start", int, f"a whole number from 0 to {_MAX_RAMP} (emails on the first day)",
    flag="--ramp-start", csv="ramp_start", metavar="N", help="emails on the first day",
    low=0, high=_MAX_RAMP, schedule_path=("ramp", "start_volume"), updatable=True,
)  # fmt: skip
RAMP_INCREMENT = Setting(
    "ramp_increment", int, f"a whole number from 0 to {_MAX_RAMP} (emails added each day)",
    flag="--ramp-increment", csv="ramp_increment", metavar="N", help="emails added each day",
    low=0, high=_MAX_RAMP, schedule_path=("ramp", "daily_increment"), updatable=True,
)  # fmt: skip
RAMP_CEILING = Setting(
    "ramp_ceiling", int, f"a whole number from 0 to {_MAX_RAMP} (most emails per day)",
    flag="--ramp-ceiling", csv="ramp_ceiling", metavar="N", help="most emails per day",
    low=0, high=_MAX_RAMP, schedule_path=("ramp", "ceiling"), updatable=True,
)  # fmt: skip
RAMP_VARIANCE = Setting(
    "ramp_variance", float, "a fraction from 0 to 0.5 (daily +/- jitter, e.g. 0.1)",
    flag="--ramp-variance", csv="ramp_variance", metavar="F", help="daily +/- jitter fraction, 0-0.5",
    low=0, high=0.5, schedule_path=("ramp", "daily_variance"), updatable=True,
)  # fmt: skip
WEEKDAYS_ONLY = Setting(
    "weekdays_only", bool, "true or false (true: no sends on Saturday and Sunday)",
    flag="--weekdays-only", off_flag="--all-days", csv="weekdays_only",
    help="no sends on Saturday and Sunday (local days)", schedule_path=("weekdays_only",), updatable=True,
)  # fmt: skip
# Where the mailbox reads its mail (issue #11). No --imap-host: the mailbox warms and receives, but does
# not engage with what it receives. The port and the security derive from each other, as SMTP's do.
IMAP_HOST = Setting(
    "imap_host", str, "the IMAP server, e.g. imap.example.com", flag="--imap-host", csv="imap_host",
    metavar="HOST", help="the mailbox's IMAP server (left out: no engagement)", default="", check=_host,
)  # fmt: skip
IMAP_PORT = Setting(
    "imap_port", int, "a whole number from 1 to 65535 (usually 993 for TLS or 143 for STARTTLS)",
    flag="--imap-port", csv="imap_port", metavar="PORT", help="993 (tls) or 143 (starttls)",
    low=1, high=65535,
)  # fmt: skip
IMAP_SECURITY = Setting(
    "imap_security", ImapSecurity, "one of tls, starttls, none", flag="--imap-security", csv="imap_security",
    help="default from the port: 993 -> tls, 143 -> starttls; none (clear text) only on loopback",
)  # fmt: skip
IMAP_USERNAME = Setting(
    "imap_username", str, "the IMAP login name, often the full address", flag="--imap-username",
    csv="imap_username", metavar="NAME", help="IMAP login name (default: --username)", default="",
    check=_one_line,
)  # fmt: skip

# OAuth2 sign-in (issue #14): `--auth oauth2` logs in over SMTP and IMAP with an access token fetched from
# the provider's token endpoint with the stored refresh token. A preset provider fills the servers, the
# token endpoint and the scopes (warmup/oauth_providers.py); `custom` takes the endpoint from the user.
AUTH = Setting(
    "auth_method", AuthMethod, "one of password, oauth2", flag="--auth", csv="auth",
    help="how the mailbox logs in: password (default) or oauth2 (a refresh token, see --oauth-*)",
    default=AuthMethod.PASSWORD,
)  # fmt: skip
OAUTH_PROVIDER = Setting(
    "oauth_provider", str, "one of google, microsoft, custom", flag="--oauth-provider",
    csv="oauth_provider", metavar="google|microsoft|custom", default="", check=_oauth_provider,
    help="with --auth oauth2: a preset fills the servers, token endpoint and scopes; custom: give them",
)  # fmt: skip
OAUTH_TENANT = Setting(
    "oauth_tenant", str, "a Microsoft directory: common, organizations, a tenant id or domain",
    flag="--oauth-tenant", csv="oauth_tenant", metavar="TENANT", default="", check=_tenant,
    help="--oauth-provider microsoft: the directory (default common)",
)  # fmt: skip
OAUTH_CLIENT_ID = Setting(
    "oauth_client_id", str, "the OAuth2 client id from the provider's console", flag="--oauth-client-id",
    csv="oauth_client_id", metavar="ID", default="", check=_one_line_value,
    help="with --auth oauth2: the application's client id",
)  # fmt: skip
OAUTH_TOKEN_URL = Setting(
    "oauth_token_url", str, "the token endpoint's https URL", flag="--oauth-token-url",
    csv="oauth_token_url", metavar="URL", default="", check=_url,
    help="--oauth-provider custom: the token endpoint (derived for google and microsoft)",
)  # fmt: skip
OAUTH_SCOPES = Setting(
    "oauth_scopes", str, "scopes separated by spaces", flag="--oauth-scopes", csv="oauth_scopes",
    metavar="'S1 S2'", default="", check=_scopes,
    help="--oauth-provider custom: the scopes to ask for (presets: the provider's mail scopes)",
)  # fmt: skip

# Derived from IMAP_HOST at enroll, not set by the user: tells the workflow whether to run inbox sessions.
ENGAGEMENT_ON = Setting(
    "engagement_on", bool, "true or false", schedule_path=("engagement", "enabled"),
)  # fmt: skip


def _engagement(
    name: str, type_: type[T], expected: str, flag: str, help_: str, low: float, high: float, metavar: str
) -> Setting[T]:
    """An engagement setting: in the workflow's settings, changeable by `update`, a CSV column named as
    its flag."""
    return Setting(
        name, type_, expected, flag=flag, csv=flag.removeprefix("--").replace("-", "_"), help=help_,
        metavar=metavar, low=low, high=high, schedule_path=("engagement", name), updatable=True,
    )  # fmt: skip


def _rate(name: str, what: str) -> Setting[float]:
    flag = "--" + name.replace("_", "-")
    return _engagement(name, float, f"a fraction from 0 to 1 (the share of emails {what})", flag,
                       f"share of received warmup emails {what}, 0-1", 0, 1, "F")  # fmt: skip


_MAX_DWELL_SECONDS = 3600
_MAX_REPLY_DELAY_MINUTES = 7 * 1440

INBOX_SESSIONS = _engagement(
    "inbox_sessions", int, "a whole number from 1 to 24 (IMAP sessions a day)", "--inbox-sessions",
    "times a day the mailbox reads its mail (1-24)", 1, 24, "N",
)  # fmt: skip
READ_RATE = _rate("read_rate", "marked read")
RESCUE_RATE = _rate("rescue_rate", "moved out of Junk when found there")
IMPORTANT_RATE = _rate("important_rate", "marked important (flagged)")
REPLY_RATE = _rate("reply_rate", "answered")
DWELL_MIN = _engagement(
    "dwell_min_seconds", float, f"a number of seconds from 0 to {_MAX_DWELL_SECONDS}", "--dwell-min",
    "seconds at least between finding an email and acting on it", 0, _MAX_DWELL_SECONDS, "S",
)  # fmt: skip
DWELL_MAX = _engagement(
    "dwell_max_seconds", float, f"a number of seconds from 0 to {_MAX_DWELL_SECONDS}", "--dwell-max",
    "seconds at most between finding an email and acting on it", 0, _MAX_DWELL_SECONDS, "S",
)  # fmt: skip
REPLY_DELAY_MIN = _engagement(
    "reply_delay_min_minutes", float, f"a number of minutes from 0 to {_MAX_REPLY_DELAY_MINUTES}",
    "--reply-delay-min", "minutes at least from reading an email to its answer", 0, _MAX_REPLY_DELAY_MINUTES,
    "MIN",
)  # fmt: skip
REPLY_DELAY_MAX = _engagement(
    "reply_delay_max_minutes", float, f"a number of minutes from 0 to {_MAX_REPLY_DELAY_MINUTES}",
    "--reply-delay-max", "minutes at most from reading an email to its answer", 0, _MAX_REPLY_DELAY_MINUTES,
    "MIN",
)  # fmt: skip
# From configuration (WARMUP_SPREAD_OVER_WINDOW), not from the user: stored, no flag, no column in CSV.
SPREAD_OVER_WINDOW = Setting(
    "spread_over_window", bool, "true or false", schedule_path=("spread_over_window",),
)  # fmt: skip

SETTINGS: tuple[Setting[Any], ...] = (
    ADDRESS, USER, SMTP_HOST, SMTP_PORT, SMTP_SECURITY, USERNAME, VERIFY_TLS,
    TIMEZONE, WINDOW_START, WINDOW_END, DELAY_MIN, DELAY_MAX,
    RAMP_START, RAMP_INCREMENT, RAMP_CEILING, RAMP_VARIANCE, WEEKDAYS_ONLY, SPREAD_OVER_WINDOW,
    IMAP_HOST, IMAP_PORT, IMAP_SECURITY, IMAP_USERNAME, ENGAGEMENT_ON,
    AUTH, OAUTH_PROVIDER, OAUTH_TENANT, OAUTH_CLIENT_ID, OAUTH_TOKEN_URL, OAUTH_SCOPES,
    INBOX_SESSIONS, READ_RATE, RESCUE_RATE, IMPORTANT_RATE, REPLY_RATE, DWELL_MIN, DWELL_MAX,
    REPLY_DELAY_MIN, REPLY_DELAY_MAX,
)  # fmt: skip

USER_SETTINGS = tuple(s for s in SETTINGS if s.flag)
SCHEDULE_SETTINGS = tuple(s for s in SETTINGS if s.schedule_path)
UPDATABLE = tuple(s for s in SETTINGS if s.updatable)
CSV_COLUMNS: dict[str, Setting[Any]] = {s.csv: s for s in SETTINGS if s.csv}
REQUIRED = tuple(s for s in SETTINGS if s.required)
BY_NAME: dict[str, Setting[Any]] = {s.name: s for s in SETTINGS}


@dataclass(frozen=True)
class SecretSetting:
    """A secret a mailbox needs (the SMTP password): read from a named variable or stdin, never an
    argument; stored Fernet-encrypted in `column`."""

    name: str
    what: str  # "SMTP password"
    env_flag: str
    stdin_flag: str
    csv_value: str  # the secret itself in the file
    csv_env: str  # the name of a variable holding it
    column: str
    # Optional: left out, the column stays NULL and `instead` is used (the IMAP password is the SMTP one).
    instead: SecretSetting | None = None
    oauth2: bool = False  # only with --auth oauth2 (NULL otherwise)
    optional: bool = False  # may be left out even then (a public client has no secret)

    @property
    def may_be_absent(self) -> bool:
        return self.instead is not None or self.oauth2

    def needed_with(self, auth: object) -> bool:
        """Whether a mailbox whose login method is `auth` (as given: text or AuthMethod; None is the
        default, password) must carry this secret."""
        oauth2 = str(getattr(auth, "value", auth) or "").strip().lower() == AuthMethod.OAUTH2.value
        return self.oauth2 == oauth2 and not self.optional and self.instead is None


_ENV_NAME = re.compile(r"[A-Z_][A-Z0-9_]*")


def shown_env_name(name: str) -> str:
    """A variable's name as a message may show it: only when it looks like one, since a secret typed
    where the name belongs must not be echoed."""
    return name if _ENV_NAME.fullmatch(name) else "(name not shown)"


SMTP_SECRET = SecretSetting(
    "secret", "SMTP password", "--secret-env", "--secret-stdin", "secret", "secret_env", "secret_ciphertext"
)
IMAP_SECRET = SecretSetting(
    "imap_secret", "IMAP password", "--imap-secret-env", "--imap-secret-stdin", "imap_secret",
    "imap_secret_env", "imap_secret_ciphertext", instead=SMTP_SECRET,
)  # fmt: skip
OAUTH_CLIENT_SECRET = SecretSetting(
    "oauth_client_secret", "OAuth2 client secret", "--oauth-client-secret-env", "--oauth-client-secret-stdin",
    "oauth_client_secret", "oauth_client_secret_env", "oauth_client_secret_ciphertext", oauth2=True,
    optional=True,
)  # fmt: skip
OAUTH_REFRESH_TOKEN = SecretSetting(
    "oauth_refresh_token", "OAuth2 refresh token", "--oauth-refresh-token-env", "--oauth-refresh-token-stdin",
    "oauth_refresh_token", "oauth_refresh_token_env", "oauth_refresh_token_ciphertext", oauth2=True,
)  # fmt: skip
SECRETS: tuple[SecretSetting, ...] = (SMTP_SECRET, IMAP_SECRET, OAUTH_CLIENT_SECRET, OAUTH_REFRESH_TOKEN)


# --- values ------------------------------------------------------------------------------------------


def _get_path(obj: object, path: tuple[str, ...]) -> object:
    for part in path:
        obj = getattr(obj, part)
    return obj


def schedule_values_of(schedule: ScheduleSettings) -> dict[str, object]:
    """Each schedule setting's value in `schedule`, by setting name."""
    return {s.name: _get_path(schedule, s.schedule_path) for s in SCHEDULE_SETTINGS}


def schedule_from(values: Mapping[str, object], base: ScheduleSettings) -> ScheduleSettings:
    """`base` with every schedule setting present in `values` replaced."""
    top: dict[str, Any] = {}
    nested: dict[str, dict[str, Any]] = {}
    for s in SCHEDULE_SETTINGS:
        if s.name not in values:
            continue
        if len(s.schedule_path) == 1:
            top[s.schedule_path[0]] = values[s.name]
        else:
            nested.setdefault(s.schedule_path[0], {})[s.schedule_path[1]] = values[s.name]
    for part, fields in nested.items():
        top[part] = dataclasses.replace(getattr(base, part), **fields)
    return dataclasses.replace(base, **top)


def cross_problems(
    values: Mapping[str, Any],
    label: Label,
    *,
    window: str = "",
    delay: str = "",
    ramp: str = "",
    kept: str = "",
) -> list[str]:
    """Checks across schedule settings; each message ends with its `window`/`delay`/`ramp` hint, which
    says where a value the user did not type came from (`kept`: for the engagement pairs)."""
    problems: list[str] = []
    start, end = WINDOW_START.of(values), WINDOW_END.of(values)
    ws, we = label(WINDOW_START), label(WINDOW_END)
    if start >= end:
        problems.append(
            f"{ws} ({start}) must be before {we} ({end}): e.g. {ws} 8 {we} 20, or 0 and 24 for all day "
            + window
        )
    low, high = DELAY_MIN.of(values), DELAY_MAX.of(values)
    if low > high:
        problems.append(
            f"{label(DELAY_MIN)} ({low:g}) must not exceed {label(DELAY_MAX)} ({high:g}) " + delay
        )
    first, ceiling = RAMP_START.of(values), RAMP_CEILING.of(values)
    if first > ceiling:
        problems.append(
            f"{label(RAMP_START)} ({first}) must not exceed {label(RAMP_CEILING)} ({ceiling}) " + ramp
        )
    for low_s, high_s in ((DWELL_MIN, DWELL_MAX), (REPLY_DELAY_MIN, REPLY_DELAY_MAX)):
        if low_s.of(values) > high_s.of(values):
            problems.append(
                f"{label(low_s)} ({low_s.of(values):g}) must not exceed {label(high_s)} "
                f"({high_s.of(values):g}) " + kept
            )
    return problems


def path_label(s: Setting[Any]) -> str:
    """A schedule setting named by its field in ScheduleSettings (what a workflow's client sends)."""
    return ".".join(s.schedule_path) or s.name


def schedule_problems(schedule: ScheduleSettings) -> list[str]:
    """Every problem with a whole schedule, by ScheduleSettings field: the same bounds and cross-checks
    as `enroll`/`update`. Pure and deterministic (tzdata is pinned), so the workflows' Update validators
    run it before a change enters history, for any client that skipped the starter's checks."""
    raw = schedule_values_of(schedule)
    values: dict[str, object] = {}
    problems: list[str] = []
    for s in SCHEDULE_SETTINGS:
        try:
            values[s.name] = s.coerce(raw[s.name], path_label(s))
        except ValueError as exc:
            problems.append(str(exc))
    return problems or [p.rstrip() for p in cross_problems(values, path_label)]


def settings_update(schedule: ScheduleSettings) -> SettingsUpdate:
    """The whole schedule as an update, so the workflow's settings end up exactly `schedule`."""
    return SettingsUpdate(**{f.name: getattr(schedule, f.name) for f in dataclasses.fields(ScheduleSettings)})


# --- stored columns ----------------------------------------------------------------------------------

# Every stored setting's column, in declaration order, then each secret's ciphertext column.
COLUMNS: tuple[str, ...] = tuple(s.db_column for s in SETTINGS) + tuple(x.column for x in SECRETS)


def row_values(values: Mapping[str, object], ciphertexts: Mapping[str, str]) -> tuple[object, ...]:
    """A row for `COLUMNS`: the setting values (enums stored as their text) and the ciphertexts (an
    optional secret left out is NULL)."""
    out: list[object] = []
    for s in SETTINGS:
        value = values[s.name]
        out.append(value.value if isinstance(value, StrEnum) else value)
    out += [ciphertexts.get(x.name) if x.may_be_absent else ciphertexts[x.name] for x in SECRETS]
    return tuple(out)


def from_row(row: Any) -> dict[str, object]:
    """The setting values of a stored mailboxes row, typed as declared."""
    return {s.name: s.type(row[s.db_column]) for s in SETTINGS}
