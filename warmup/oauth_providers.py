"""OAuth2 providers a mailbox can sign in with: the servers, endpoints and scopes each documents.

`google` and `microsoft` are presets (README "OAuth2 sign-in" says where each value comes from); `custom`
takes its token endpoint and scopes from the user (any provider, and the tests' local endpoint).
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum


class AuthMethod(StrEnum):
    PASSWORD = "password"
    OAUTH2 = "oauth2"


class OAuthProvider(StrEnum):
    GOOGLE = "google"
    MICROSOFT = "microsoft"
    CUSTOM = "custom"


@dataclass(frozen=True)
class Preset:
    smtp_host: str
    smtp_port: int
    imap_host: str
    imap_port: int
    scopes: tuple[str, ...]
    token_url: str  # `{tenant}` is the Microsoft directory (common, organizations or a tenant id)
    authorize_url: str
    device_url: str  # "" = the provider offers no device flow for these scopes


PRESETS: dict[OAuthProvider, Preset] = {
    OAuthProvider.GOOGLE: Preset(
        smtp_host="smtp.gmail.com",
        smtp_port=587,
        imap_host="imap.gmail.com",
        imap_port=993,
        scopes=("https://mail.google.com/",),
        token_url="https://oauth2.googleapis.com/token",
        authorize_url="https://accounts.google.com/o/oauth2/v2/auth",
        # Google's device flow allows a short list of scopes, and the mail scope is not on it.
        device_url="",
    ),
    OAuthProvider.MICROSOFT: Preset(
        smtp_host="smtp.office365.com",
        smtp_port=587,
        imap_host="outlook.office365.com",
        imap_port=993,
        scopes=(
            "https://outlook.office.com/SMTP.Send",
            "https://outlook.office.com/IMAP.AccessAsUser.All",
            "offline_access",
        ),
        token_url="https://login.microsoftonline.com/{tenant}/oauth2/v2.0/token",
        authorize_url="https://login.microsoftonline.com/{tenant}/oauth2/v2.0/authorize",
        device_url="https://login.microsoftonline.com/{tenant}/oauth2/v2.0/devicecode",
    ),
}
DEFAULT_TENANT = "common"


def endpoint(template: str, tenant: str) -> str:
    return template.replace("{tenant}", tenant or DEFAULT_TENANT)
