"""OAuth2 access tokens for mailboxes with `--auth oauth2`, for the send and inbox activities and `--check`.

An access token is fetched with the stored refresh token (authlib over httpx2 does the protocol) and kept in
this worker process's memory until `WARMUP_OAUTH_TOKEN_MARGIN_SECONDS` before it expires; it is never
written anywhere, and no workflow ever sees it.

Two workers refreshing the same mailbox at once: each refresh runs inside a transaction holding the
mailbox row (`SELECT ... FOR NO KEY UPDATE`), reads the refresh token there, and writes a rotated one
(Microsoft returns a new one on refresh) before it commits. The second worker waits for the row, then
reads and uses the newer token, so a rotation is never lost and no worker presents a token the provider
has already replaced (which some providers treat as theft and revoke the whole grant). The lock does not
block sends (the ledger's foreign key takes a KEY SHARE lock, which NO KEY UPDATE leaves free); it holds
back enroll, pause and rotate-key of that one mailbox for at most one token request.

Failures come out as one of three errors, whose messages never hold a token or the client secret:
- SignInRequired: the provider refused the refresh token (invalid_grant: expired, revoked, consent
  withdrawn): the user must sign in again (`starter authorize`); the mailbox pauses.
- TokenConfigError: the client id/secret or the endpoint are wrong: fix the enrollment; the mailbox pauses.
- TokenUnavailable: the endpoint is unreachable or answered 5xx/429: try again later.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
import time
from dataclasses import dataclass, field

import asyncpg
import httpx2
from authlib.integrations.base_client.errors import OAuthError
from authlib.integrations.httpx_client import AsyncOAuth2Client

from warmup.mailboxes import OAuthClient
from warmup.secrets import SecretBox, SecretKeyError

log = logging.getLogger(__name__)

# Errors the token endpoint answers (RFC 6749 5.2, OpenID Connect 3.1.2.6) that need the user back.
_SIGN_IN = frozenset({"invalid_grant", "interaction_required", "consent_required", "login_required"})
_TRANSIENT = frozenset({"temporarily_unavailable", "server_error", "slow_down"})


class TokenError(Exception):
    """An access token could not be had; the message says why and what to do, never a secret."""


class SignInRequired(TokenError):
    """The refresh token is refused for good: sign in again."""


class TokenConfigError(TokenError):
    """The OAuth2 client settings cannot work (client refused, endpoint not found)."""


class TokenUnavailable(TokenError):
    """The token endpoint could not answer now: retry later."""


def sign_in_command(address: str) -> str:
    return f"starter authorize --mailbox {address}"


@dataclass(frozen=True)
class Grant:
    """What a token endpoint answered: an access token and, when the provider rotated it, a refresh token."""

    access_token: str = field(repr=False)
    expires_at: float  # time.time() seconds
    refresh_token: str | None = field(default=None, repr=False)  # None: the old one stays valid


@dataclass(frozen=True)
class AccessToken:
    token: str = field(repr=False)
    fresh: bool  # fetched for this call (False: from the cache, which a server may have stopped taking)


def _scrub(text: str, *secrets: str | None) -> str:
    for secret in secrets:
        if secret and len(secret) >= 4:
            text = text.replace(secret, "***")
    return " ".join(text.split())[:300]


def _http_client(client: OAuthClient, client_secret: str | None, timeout: float) -> AsyncOAuth2Client:
    return AsyncOAuth2Client(
        client_id=client.client_id,
        client_secret=client_secret,
        # Google and Microsoft both take the secret in the body; a public client (PKCE) sends none.
        token_endpoint_auth_method="client_secret_post" if client_secret else "none",
        scope=client.scopes or None,
        timeout=timeout,
    )


def grant_of(token: dict[str, object], old_refresh: str | None) -> Grant:
    """A token response as a Grant, or TokenUnavailable when it has no access token."""
    access = token.get("access_token")
    if not isinstance(access, str) or not access:
        raise TokenUnavailable("the token endpoint answered without an access_token; retrying later")
    expires_at = token.get("expires_at")
    if not isinstance(expires_at, int | float):
        expires_in = token.get("expires_in")
        # RFC 6749 makes expires_in optional: assume an hour (Google's and Microsoft's usual lifetime).
        seconds = float(expires_in) if isinstance(expires_in, int | float | str) else 3600.0
        expires_at = time.time() + seconds
    refresh = token.get("refresh_token")
    rotated = refresh if isinstance(refresh, str) and refresh and refresh != old_refresh else None
    return Grant(access, float(expires_at), rotated)


def classify_failure(exc: BaseException, what: str, address: str, *secrets: str | None) -> TokenError:
    """The token endpoint's failure as one of our errors (`what`: 'refresh', 'code exchange', ...)."""
    if isinstance(exc, OAuthError):
        code = exc.error or "error"
        detail = _scrub(f"{code}: {exc.description}" if exc.description else code, *secrets)
        if code in _SIGN_IN:
            return SignInRequired(
                f"OAuth2 sign-in of {address} is no longer valid ({detail}): the refresh token expired or "
                f"consent was withdrawn; sign in again with `{sign_in_command(address)}`"
            )
        if code in _TRANSIENT:
            return TokenUnavailable(f"the token endpoint could not {what} for {address} now ({detail})")
        if code in ("invalid_client", "unauthorized_client"):
            return TokenConfigError(
                f"the token endpoint refused the OAuth2 client of {address} ({detail}): check the client id "
                "and the client secret (it may have expired in the provider's console), then enroll again "
                "with --oauth-client-id and --oauth-client-secret-env"
            )
        return TokenConfigError(f"the token endpoint refused the {what} for {address} ({detail})")
    if isinstance(exc, httpx2.HTTPStatusError):
        status = exc.response.status_code
        if status >= 500 or status == 429:
            return TokenUnavailable(f"the token endpoint answered HTTP {status} to the {what} for {address}")
        return TokenConfigError(
            f"the token endpoint answered HTTP {status} to the {what} for {address}: check its URL "
            "(--oauth-token-url) and the client settings"
        )
    if isinstance(exc, httpx2.TransportError | OSError | TimeoutError):
        return TokenUnavailable(
            f"cannot reach the token endpoint for {address} ({type(exc).__name__}); retrying later"
        )
    if isinstance(exc, ValueError):  # a body that is not a JSON object
        return TokenUnavailable(
            f"the token endpoint gave no usable answer for {address} ({_scrub(str(exc))})"
        )
    return TokenUnavailable(f"the {what} for {address} failed ({type(exc).__name__})")


async def refresh_grant(
    client: OAuthClient, refresh_token: str, client_secret: str | None, address: str, timeout_seconds: float
) -> Grant:
    """One refresh-token grant against the client's token endpoint."""
    try:
        async with _http_client(client, client_secret, timeout_seconds) as http:
            token = await http.refresh_token(client.token_url, refresh_token=refresh_token)
    except Exception as exc:
        raise classify_failure(exc, "refresh", address, refresh_token, client_secret) from None
    return grant_of(dict(token), refresh_token)


@dataclass
class _Cached:
    token: str = field(repr=False)
    usable_until: float


class TokenSource:
    """Access tokens for OAuth2 mailboxes, cached in this process: one per worker, shared by its
    activities."""

    def __init__(
        self, pool: asyncpg.Pool, secrets: SecretBox, *, margin_seconds: float, timeout: float
    ) -> None:
        self._pool = pool
        self._secrets = secrets
        self._margin = margin_seconds
        self._timeout = timeout
        self._cache: dict[int, _Cached] = {}
        self._locks: dict[int, asyncio.Lock] = {}
        self.refreshes = 0  # token requests made (for tests and logs)

    def forget(self, mailbox_id: int) -> None:
        """Drop a cached token the server refused, so the next call fetches a new one."""
        self._cache.pop(mailbox_id, None)

    async def access_token(self, mailbox_id: int, address: str) -> AccessToken:
        cached = self._usable(mailbox_id)
        if cached is not None:
            return AccessToken(cached, fresh=False)
        lock = self._locks.setdefault(mailbox_id, asyncio.Lock())
        async with lock:  # one refresh per mailbox in this process; the others wait for its token
            cached = self._usable(mailbox_id)
            if cached is not None:
                return AccessToken(cached, fresh=False)
            # Shielded: a cancelled activity must not stop between the provider rotating the refresh token
            # and our storing the new one (the old one may already be retired).
            grant = await asyncio.shield(self._refresh(mailbox_id, address))
        self._cache[mailbox_id] = _Cached(grant.access_token, grant.expires_at - self._margin)
        return AccessToken(grant.access_token, fresh=True)

    def _usable(self, mailbox_id: int) -> str | None:
        cached = self._cache.get(mailbox_id)
        if cached is None or time.time() >= cached.usable_until:
            return None
        return cached.token

    async def _refresh(self, mailbox_id: int, address: str) -> Grant:
        async with self._pool.acquire() as conn, conn.transaction():
            # Bounded: a worker stuck behind another's refresh gives up and retries, rather than hang.
            await conn.execute(f"SET LOCAL lock_timeout = '{int(self._timeout * 2 + 5)}s'")
            try:
                row = await conn.fetchrow(
                    "SELECT auth_method, oauth_provider, oauth_tenant, oauth_client_id, oauth_token_url,"
                    " oauth_scopes, oauth_client_secret_ciphertext, oauth_refresh_token_ciphertext"
                    " FROM mailboxes WHERE id = $1 FOR NO KEY UPDATE",
                    mailbox_id,
                )
            except asyncpg.exceptions.LockNotAvailableError:
                raise TokenUnavailable(
                    f"another worker is refreshing the token of {address}; retrying"
                ) from None
            if row is None or row["auth_method"] != "oauth2" or not row["oauth_refresh_token_ciphertext"]:
                raise SignInRequired(
                    f"{address} has no stored OAuth2 sign-in; sign in with `{sign_in_command(address)}`"
                )
            try:
                refresh_token = self._secrets.decrypt(row["oauth_refresh_token_ciphertext"])
                secret_ct = row["oauth_client_secret_ciphertext"]
                client_secret = self._secrets.decrypt(secret_ct) if secret_ct else None
            except SecretKeyError as exc:
                raise TokenConfigError(f"cannot decrypt the OAuth2 secrets of {address}: {exc}") from None
            client = OAuthClient(
                provider=row["oauth_provider"],
                token_url=row["oauth_token_url"],
                client_id=row["oauth_client_id"],
                scopes=row["oauth_scopes"],
                tenant=row["oauth_tenant"],
            )
            self.refreshes += 1
            grant = await refresh_grant(client, refresh_token, client_secret, address, self._timeout)
            if grant.refresh_token is not None:
                # Stored before the row is released: the next refresh anywhere uses this one.
                await conn.execute(
                    "UPDATE mailboxes SET oauth_refresh_token_ciphertext = $2, oauth_refresh_token_at = now()"
                    " WHERE id = $1",
                    mailbox_id,
                    self._secrets.encrypt(grant.refresh_token),
                )
                log.info("mailbox %s: the provider rotated its refresh token; stored the new one", mailbox_id)
        expires = dt.datetime.fromtimestamp(grant.expires_at, dt.UTC).isoformat(timespec="seconds")
        log.info("mailbox %s: new OAuth2 access token, valid until %s", mailbox_id, expires)
        return grant
