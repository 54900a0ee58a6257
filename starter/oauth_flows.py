"""Getting a refresh token the way mail clients do, for `starter authorize`: the OAuth 2.0 authorization
code flow with PKCE and a loopback redirect (RFC 7636, RFC 8252), or the device authorization grant
(RFC 8628) where the provider offers it for the mail scopes (Microsoft does; Google does not).

authlib builds the authorization URL, checks the redirect's `state` and does every token request; this
module only runs the loopback listener that receives the browser's redirect and the device flow's polling.
"""

from __future__ import annotations

import asyncio
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from urllib.parse import parse_qs, urlsplit

import httpx2
from authlib.integrations.base_client.errors import OAuthError
from authlib.integrations.httpx_client import AsyncOAuth2Client

from warmup.mailboxes import OAuthClient
from warmup.oauth_tokens import Grant, TokenError, classify_failure, grant_of

DEVICE_GRANT = "urn:ietf:params:oauth:grant-type:device_code"
_PAGE = (
    b"<!doctype html><title>warmup</title><p>{text}</p>"
    b"<p>You can close this tab and return to the terminal.</p>"
)


class FlowError(Exception):
    """The sign-in did not complete; the message says why and what to do (never a token)."""


@dataclass(frozen=True)
class Flow:
    client: OAuthClient
    client_secret: str | None = field(repr=False)
    address: str
    timeout_seconds: float  # per token request
    wait_seconds: float  # for the user: the redirect, or the device approval

    def http(self, redirect_uri: str | None = None) -> AsyncOAuth2Client:
        return AsyncOAuth2Client(
            client_id=self.client.client_id,
            client_secret=self.client_secret,
            token_endpoint_auth_method="client_secret_post" if self.client_secret else "none",
            scope=self.client.scopes or None,
            redirect_uri=redirect_uri,
            code_challenge_method="S256",
            timeout=self.timeout_seconds,
        )

    def failure(self, exc: BaseException, what: str) -> TokenError:
        return classify_failure(exc, what, self.address, self.client_secret)


async def _redirect_listener(port: int) -> tuple[asyncio.Server, asyncio.Future[str], int]:
    """A one-shot HTTP listener on 127.0.0.1 (RFC 8252 7.3): resolves with the redirect's path and query."""
    got: asyncio.Future[str] = asyncio.get_running_loop().create_future()

    async def answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            line = (await asyncio.wait_for(reader.readline(), 10)).decode("latin-1").split()
            target = line[1] if len(line) >= 2 and line[0] == "GET" else ""
            query = parse_qs(urlsplit(target).query)
            text = "Signed in." if "code" in query else "Sign-in did not complete: see the terminal."
            body = _PAGE.replace(b"{text}", text.encode())
            if not query:  # a browser's favicon or a probe: not the redirect
                body, status = b"", b"404 Not Found"
            else:
                status = b"200 OK"
            writer.write(
                b"HTTP/1.1 " + status + b"\r\nContent-Type: text/html; charset=utf-8\r\nConnection: close\r\n"
                b"Content-Length: " + str(len(body)).encode() + b"\r\n\r\n" + body
            )
            await writer.drain()
            if query and not got.done():
                got.set_result(target)
        except (OSError, TimeoutError, IndexError):
            pass
        finally:
            writer.close()

    server = await asyncio.start_server(answer, "127.0.0.1", port)
    return server, got, int(server.sockets[0].getsockname()[1])


async def browser_flow(
    flow: Flow, authorize_url: str, port: int, show: Callable[[str], None], extra: dict[str, str]
) -> Grant:
    """Authorization code + PKCE: show (and let the caller open) the URL, receive the code on the loopback
    redirect, exchange it. `extra`: the provider's own authorization parameters (Google's offline access)."""
    server, got, bound = await _redirect_listener(port)
    redirect_uri = f"http://127.0.0.1:{bound}/"
    verifier = secrets.token_urlsafe(48)
    try:
        async with flow.http(redirect_uri) as http:
            url, state = http.create_authorization_url(
                authorize_url, code_verifier=verifier, login_hint=flow.address, **extra
            )
            show(url)
            try:
                target = await asyncio.wait_for(got, flow.wait_seconds)
            except TimeoutError:
                raise FlowError(
                    f"no sign-in arrived at {redirect_uri} within {flow.wait_seconds:g} s; run the command "
                    "again (and open the address it prints in a browser on this machine)"
                ) from None
            query = parse_qs(urlsplit(target).query)
            if "error" in query:
                error = query["error"][0]
                hint = " (the sign-in was declined)" if error == "access_denied" else ""
                raise FlowError(f"the provider answered {error}{hint}; nothing was stored")
            try:
                token = await http.fetch_token(
                    flow.client.token_url,
                    authorization_response=redirect_uri.rstrip("/") + target,
                    state=state,
                    code_verifier=verifier,
                    redirect_uri=redirect_uri,
                )
            except Exception as exc:
                if not isinstance(exc, OAuthError | httpx2.HTTPError | ValueError | OSError):
                    raise FlowError(f"the redirect was not a valid sign-in ({type(exc).__name__})") from None
                raise flow.failure(exc, "code exchange") from None
    finally:
        server.close()
    return _with_refresh(grant_of(dict(token), None))


async def device_flow(flow: Flow, device_url: str, show: Callable[[str, str], None]) -> Grant:
    """The device authorization grant: show the code and where to enter it, poll until approved."""
    try:
        async with httpx2.AsyncClient(timeout=flow.timeout_seconds) as plain:
            resp = await plain.post(
                device_url, data={"client_id": flow.client.client_id, "scope": flow.client.scopes}
            )
            resp.raise_for_status()
            answer = resp.json()
    except Exception as exc:
        raise flow.failure(exc, "device authorization") from None
    async with flow.http() as http:
        try:
            if not isinstance(answer, dict):
                raise TypeError(type(answer).__name__)
            device_code, user_code = str(answer["device_code"]), str(answer["user_code"])
            where = str(answer.get("verification_uri") or answer.get("verification_url"))
            interval = float(answer.get("interval") or 5)
        except (KeyError, TypeError, ValueError):
            raise FlowError("the device authorization endpoint answered without a device code") from None
        show(where, user_code)
        deadline = time.monotonic() + min(flow.wait_seconds, float(answer.get("expires_in") or 900))
        while time.monotonic() < deadline:
            await asyncio.sleep(interval)
            try:
                token = await http.fetch_token(
                    flow.client.token_url, grant_type=DEVICE_GRANT, device_code=device_code
                )
            except OAuthError as exc:
                if exc.error == "authorization_pending":
                    continue
                if exc.error == "slow_down":  # RFC 8628 3.5: poll 5 s less often from now on
                    interval += 5
                    continue
                if exc.error in ("access_denied", "expired_token"):
                    raise FlowError(f"the provider answered {exc.error}; nothing was stored") from None
                raise flow.failure(exc, "device token request") from None
            except Exception as exc:
                raise flow.failure(exc, "device token request") from None
            return _with_refresh(grant_of(dict(token), None))
    raise FlowError(f"the code was not entered within {flow.wait_seconds:g} s; run the command again")


def _with_refresh(grant: Grant) -> Grant:
    if grant.refresh_token is None:
        raise FlowError(
            "the provider answered no refresh token: ask for offline access (Microsoft: the offline_access "
            "scope; Google: the app must be allowed to ask for consent again)"
        )
    return grant
