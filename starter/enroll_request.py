"""What `starter enroll` accepts: every declared setting (warmup.mailbox_settings) checked, every error
naming the flag (or CSV column) the user wrote and the fix.

Validation only: it never touches the database, Temporal or SMTP, so a rejected request cannot leave
anything behind.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, cast

from warmup import mailbox_settings as ms
from warmup.mailbox_settings import Label, csv_label, flag_label, normalize_address
from warmup.mailboxes import ImapServer, OAuthClient, SmtpAccount
from warmup.models import ImapSecurity, ScheduleSettings, SettingsUpdate, SmtpSecurity
from warmup.oauth_providers import PRESETS, AuthMethod, OAuthProvider, endpoint
from warmup.secrets import SecretBox

__all__ = ["EnrollRequest", "EnrollValidationError", "normalize_address", "parse_enroll_request"]

_PORT_SECURITY = {465: SmtpSecurity.TLS, 587: SmtpSecurity.STARTTLS, 25: SmtpSecurity.STARTTLS}


class EnrollValidationError(ValueError):
    """Every problem with a request, one line each, each naming its flag and the fix."""

    def __init__(self, problems: list[str]) -> None:
        super().__init__("\n".join(problems))
        self.problems = problems


@dataclass(frozen=True)
class EnrollRequest:
    """A validated enrollment: every setting's value by name, and the secrets (never shown)."""

    values: dict[str, object]
    schedule: ScheduleSettings
    secrets: dict[str, str] = field(repr=False)

    @property
    def address(self) -> str:
        return ms.ADDRESS.of(self.values)

    @property
    def user_id(self) -> str:
        return ms.USER.of(self.values)

    @property
    def security(self) -> SmtpSecurity:
        return ms.SMTP_SECURITY.of(self.values)

    @property
    def password(self) -> str:
        return self.secrets[ms.SMTP_SECRET.name]

    @property
    def smtp(self) -> SmtpAccount:
        v = self.values
        return SmtpAccount(
            host=ms.SMTP_HOST.of(v),
            port=ms.SMTP_PORT.of(v),
            security=self.security,
            username=ms.USERNAME.of(v),
            verify_tls=ms.VERIFY_TLS.of(v),
        )

    @property
    def imap(self) -> ImapServer | None:
        v = self.values
        if not ms.IMAP_HOST.of(v):
            return None
        return ImapServer(
            host=ms.IMAP_HOST.of(v),
            port=ms.IMAP_PORT.of(v),
            security=ms.IMAP_SECURITY.of(v),
            username=ms.IMAP_USERNAME.of(v),
        )

    @property
    def imap_login(self) -> tuple[str, str]:
        """The IMAP username and password, each the SMTP one where left out."""
        return (
            ms.IMAP_USERNAME.of(self.values) or ms.USERNAME.of(self.values),
            self.secrets.get(ms.IMAP_SECRET.name) or self.password,
        )

    @property
    def oauth(self) -> OAuthClient | None:
        """The OAuth2 client (secrets not included: they are encrypted at store time), or None."""
        v = self.values
        if ms.AUTH.of(v) is not AuthMethod.OAUTH2:
            return None
        return OAuthClient(
            provider=ms.OAUTH_PROVIDER.of(v),
            token_url=ms.OAUTH_TOKEN_URL.of(v),
            client_id=ms.OAUTH_CLIENT_ID.of(v),
            scopes=ms.OAUTH_SCOPES.of(v),
            tenant=ms.OAUTH_TENANT.of(v),
        )

    def settings_update(self) -> SettingsUpdate:
        """Every schedule field, so a re-enroll replaces the running workflow's settings completely."""
        return ms.settings_update(self.schedule)


def encrypt_secrets(box: SecretBox, req: EnrollRequest) -> dict[str, str]:
    """Each secret the request carries, encrypted, by name (an optional one left out is absent)."""
    return {name: box.encrypt(value) for name, value in req.secrets.items()}


def check_settings(
    raw: Mapping[str, object], settings: tuple[ms.Setting[Any], ...], label: Label
) -> tuple[dict[str, object], list[str]]:
    """Each of `settings` present in `raw` (None = left out) coerced and checked."""
    values: dict[str, object] = {}
    problems: list[str] = []
    for s in settings:
        given = raw.get(s.name)
        if given is None:
            continue
        try:
            values[s.name] = s.coerce(given, label(s))
        except ValueError as exc:
            problems.append(str(exc))
    return values, problems


def _secret_problem(secret: ms.SecretSetting, raw: object, label: Label) -> str | None:
    # Never echo the value: it is the mailbox password.
    if raw is None or (isinstance(raw, str) and not raw.strip()):
        return (
            f"no {secret.what} given: pass {secret.env_flag} VARNAME (an environment variable holding it) "
            f"or {secret.stdin_flag} (one line on standard input); it is never accepted as an argument"
        )
    if not isinstance(raw, str) or any(c in raw for c in "\r\n\0"):
        source = (
            f"{secret.csv_value}/{secret.csv_env}"
            if label is csv_label
            else f"{secret.env_flag}/{secret.stdin_flag}"
        )
        return f"the {secret.what} from {source} must be a single line of text"
    return None


def _security_problem(values: dict[str, object], label: Label) -> str | None:
    """Derive the SMTP security from the port when left out; refuse a port/security mismatch."""
    port, security = values.get(ms.SMTP_PORT.name), values.get(ms.SMTP_SECURITY.name)
    if not isinstance(port, int):
        return None  # the port itself is already reported
    flag, port_flag = label(ms.SMTP_SECURITY), label(ms.SMTP_PORT)
    if security is None:
        derived = _PORT_SECURITY.get(port)
        if derived is None:
            return (
                f"{flag} is required for port {port}: pass {flag} starttls (upgrade with STARTTLS), tls "
                "(TLS from the first byte) or none (clear text, only for a local test server)"
            )
        values[ms.SMTP_SECURITY.name] = derived
    elif port == 465 and security is SmtpSecurity.STARTTLS:
        return (
            f"{port_flag} 465 uses implicit TLS, not STARTTLS: pass {flag} tls (or leave {flag} out), "
            "or use port 587 for STARTTLS"
        )
    elif port == 587 and security is SmtpSecurity.TLS:
        return (
            f"{port_flag} 587 expects STARTTLS, not implicit TLS: pass {flag} starttls (or leave {flag} "
            "out), or use port 465 for TLS"
        )
    return None


_IMAP_PORT_SECURITY = {993: ImapSecurity.TLS, 143: ImapSecurity.STARTTLS}
_IMAP_SECURITY_PORT = {v: k for k, v in _IMAP_PORT_SECURITY.items()}


def _imap_problems(values: dict[str, object], raw: Mapping[str, object], label: Label) -> list[str]:
    """Derive the IMAP port and security from each other; refuse IMAP details without a server and
    clear text off loopback."""
    host = values.get(ms.IMAP_HOST.name)
    details = [
        label(s) for s in (ms.IMAP_PORT, ms.IMAP_SECURITY, ms.IMAP_USERNAME) if raw.get(s.name) is not None
    ]
    if raw.get(ms.IMAP_SECRET.name) is not None:
        details.append(f"the {ms.IMAP_SECRET.what}")
    if host == "" and details:
        host_flag = label(ms.IMAP_HOST)
        return [f"{', '.join(details)} given without {host_flag}: add {host_flag} imap.example.com"]
    port, security = values.get(ms.IMAP_PORT.name), values.get(ms.IMAP_SECURITY.name)
    if port is None and ms.IMAP_PORT.name in raw and raw[ms.IMAP_PORT.name] is not None:
        return []  # the port itself is already reported
    flag, port_flag = label(ms.IMAP_SECURITY), label(ms.IMAP_PORT)
    if security is None:
        if port is None:
            port, security = 993, ImapSecurity.TLS
        elif isinstance(port, int) and port in _IMAP_PORT_SECURITY:
            security = _IMAP_PORT_SECURITY[port]
        else:
            return [
                f"{flag} is required for port {port}: pass {flag} tls (TLS from the first byte) or "
                "starttls (upgrade with STARTTLS)"
            ]
    elif port is None:
        port = _IMAP_SECURITY_PORT.get(cast(ImapSecurity, security), 143)
    values[ms.IMAP_PORT.name], values[ms.IMAP_SECURITY.name] = port, security
    problems: list[str] = []
    if security is ImapSecurity.NONE and host and not ms.is_loopback(str(host)):
        problems.append(
            f"{flag} none sends the password in clear text: it is allowed only for a server on this "
            f"machine (127.0.0.1, ::1, localhost), not {host}; pass {flag} tls or starttls"
        )
    if port == 993 and security is ImapSecurity.STARTTLS:
        problems.append(f"{port_flag} 993 uses implicit TLS, not STARTTLS: pass {flag} tls, or port 143")
    elif port == 143 and security is ImapSecurity.TLS:
        problems.append(
            f"{port_flag} 143 expects STARTTLS, not implicit TLS: pass {flag} starttls, or port 993"
        )
    return problems


def with_preset(raw: Mapping[str, object]) -> dict[str, object]:
    """`raw` with what an OAuth2 provider preset fills where left out: the SMTP and IMAP servers and the
    login name (the address, as XOAUTH2 wants). Anything given explicitly is kept."""
    out = dict(raw)
    if str(raw.get(ms.AUTH.name) or "").strip().lower() != AuthMethod.OAUTH2.value:
        return out
    try:
        preset = PRESETS.get(OAuthProvider(str(raw.get(ms.OAUTH_PROVIDER.name) or "").strip().lower()))
    except ValueError:
        preset = None  # reported by the provider's own check
    if preset is not None and raw.get(ms.SMTP_HOST.name) is None:
        out[ms.SMTP_HOST.name], out[ms.SMTP_PORT.name] = preset.smtp_host, str(preset.smtp_port)
        if raw.get(ms.IMAP_HOST.name) is None:
            out[ms.IMAP_HOST.name], out[ms.IMAP_PORT.name] = preset.imap_host, str(preset.imap_port)
    if out.get(ms.USERNAME.name) is None:
        out[ms.USERNAME.name] = out.get(ms.ADDRESS.name)
    return out


_OAUTH_FIELDS = (ms.OAUTH_PROVIDER, ms.OAUTH_TENANT, ms.OAUTH_CLIENT_ID, ms.OAUTH_TOKEN_URL, ms.OAUTH_SCOPES)


def _oauth_problems(values: dict[str, object], raw: Mapping[str, object], label: Label) -> list[str]:
    """Check the OAuth2 settings together and derive the token endpoint and scopes of a preset."""
    auth, given = values.get(ms.AUTH.name), [s for s in _OAUTH_FIELDS if raw.get(s.name) is not None]
    auth_flag = label(ms.AUTH)
    if auth is not AuthMethod.OAUTH2:
        if given:
            names = ", ".join(label(s) for s in given)
            return [f"{names} given without {auth_flag} oauth2: add {auth_flag} oauth2, or leave them out"]
        return []
    problems: list[str] = []
    provider_flag = label(ms.OAUTH_PROVIDER)
    provider = values.get(ms.OAUTH_PROVIDER.name)
    if not provider:
        if raw.get(ms.OAUTH_PROVIDER.name) is None:
            problems.append(
                f"{auth_flag} oauth2 needs {provider_flag}: google, microsoft, or custom (with "
                f"{label(ms.OAUTH_TOKEN_URL)})"
            )
        return problems
    if not values.get(ms.OAUTH_CLIENT_ID.name) and raw.get(ms.OAUTH_CLIENT_ID.name) is None:
        problems.append(
            f"{auth_flag} oauth2 needs {label(ms.OAUTH_CLIENT_ID)}: the client id of the application "
            "registered in the provider's console (README: OAuth2 sign-in)"
        )
    preset = PRESETS.get(OAuthProvider(str(provider)))
    tenant = str(values.get(ms.OAUTH_TENANT.name) or "")
    if tenant and provider != OAuthProvider.MICROSOFT:
        problems.append(f"{label(ms.OAUTH_TENANT)} is only for {provider_flag} microsoft: leave it out")
    if preset is None:
        if not values.get(ms.OAUTH_TOKEN_URL.name) and raw.get(ms.OAUTH_TOKEN_URL.name) is None:
            problems.append(
                f"{provider_flag} custom needs {label(ms.OAUTH_TOKEN_URL)}: the provider's token endpoint, "
                "e.g. https://login.example.com/oauth2/token"
            )
        return problems
    for s in (ms.OAUTH_TOKEN_URL, ms.OAUTH_SCOPES):
        if raw.get(s.name) is not None:
            problems.append(
                f"{label(s)} is set by {provider_flag} {provider}: leave it out "
                f"(or use {provider_flag} custom)"
            )
    values[ms.OAUTH_TOKEN_URL.name] = endpoint(preset.token_url, tenant)
    values[ms.OAUTH_SCOPES.name] = " ".join(preset.scopes)
    return problems


def _secret_rule(secret: ms.SecretSetting, auth: object, given: object, label: Label) -> str | None:
    """A secret the mailbox's login method does not use, given anyway: the problem, else None."""
    oauth2 = auth is AuthMethod.OAUTH2
    if given is None or secret.oauth2 == oauth2:
        return None
    flags = (
        f"{secret.csv_value}/{secret.csv_env}"
        if label is csv_label
        else f"{secret.env_flag}/{secret.stdin_flag}"
    )
    if oauth2:
        return f"{label(ms.AUTH)} oauth2 signs in with a token, not a password: leave out {flags}"
    return f"the {secret.what} ({flags}) is only for {label(ms.AUTH)} oauth2: add it, or leave the secret out"


def parse_enroll_request(
    raw: Mapping[str, object], defaults: ScheduleSettings | None = None, label: Label = flag_label
) -> EnrollRequest:
    """Validate raw values by setting name (strings from a command line or a CSV cell are fine; None
    means left out) and the secret under "secret", or raise EnrollValidationError."""
    defaults = defaults or ScheduleSettings()
    raw = with_preset(raw)
    unknown = sorted(set(raw) - set(ms.BY_NAME) - {x.name for x in ms.SECRETS})
    if unknown:
        raise EnrollValidationError([f"unknown field {name!r}" for name in unknown])
    values, problems = check_settings(raw, ms.USER_SETTINGS, label)
    # What was left out: a schedule setting from the configured defaults, others from their declaration.
    configured = ms.schedule_values_of(defaults)
    for s in ms.SETTINGS:
        if s.name in values or raw.get(s.name) is not None:
            continue  # given: valid, or already reported
        if s.required:
            problems.append(f"{label(s)} is required: give {s.expected}")
        elif s.schedule_path:
            values[s.name] = configured[s.name]
        elif s.default is not None:
            values[s.name] = s.default
    secrets: dict[str, str] = {}
    auth = values.get(ms.AUTH.name)
    for secret in ms.SECRETS:
        given = raw.get(secret.name)
        if (rule := _secret_rule(secret, auth, given, label)) is not None:
            problems.append(rule)
            continue
        if secret.oauth2 != (auth is AuthMethod.OAUTH2) and not secret.instead:
            if secret is ms.SMTP_SECRET:
                # No password: the column is NOT NULL and salts Message-IDs, so it holds an encrypted "".
                secrets[secret.name] = ""
            continue
        if given is None and (secret.instead is not None or secret.optional):
            continue  # optional: `secret.instead` serves, or the secret is not needed
        problem = _secret_problem(secret, given, label)
        if problem is None and isinstance(given, str):
            secrets[secret.name] = given
        else:
            problems.append(problem or "")
    if (problem := _security_problem(values, label)) is not None:
        problems.append(problem)
    problems += _imap_problems(values, raw, label)
    problems += _oauth_problems(values, raw, label)
    values[ms.ENGAGEMENT_ON.name] = bool(values.get(ms.IMAP_HOST.name))
    if all(s.name in values for s in ms.SCHEDULE_SETTINGS):
        problems += ms.cross_problems(
            values,
            label,
            window="(defaults come from WARMUP_SEND_WINDOW_START_HOUR/_END_HOUR)",
            delay="(defaults come from WARMUP_SAME_MAILBOX_DELAY_MIN/_MAX)",
            ramp="(defaults come from WARMUP_RAMP_START_VOLUME/WARMUP_RAMP_CEILING)",
        )
    if problems:
        raise EnrollValidationError(list(dict.fromkeys(problems)))
    return EnrollRequest(values, ms.schedule_from(values, defaults), secrets)
