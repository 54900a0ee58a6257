"""A small real OAuth 2.0 authorization server on 127.0.0.1 for the tests: the token endpoint (refresh
token, authorization code with PKCE, device code grants), an authorization endpoint that signs a chosen
user in and redirects to the client's loopback address, a device authorization endpoint, and RFC 7662
token introspection, which the mail lab's Dovecot asks for every XOAUTH2/OAUTHBEARER login (IMAP, and
SMTP through Postfix's SASL).

It issues, expires, rotates and revokes tokens as a provider does, and counts what it was asked:

    server = shared_token_server()
    refresh = server.issue_refresh_token("ana@lab.test")
    server.rotate = True                      # every refresh answers a new refresh token (Microsoft's way)
    server.revoke_user("ana@lab.test")        # consent withdrawn: invalid_grant, and logins refused

`shared_token_server()` is one server per test session (the mail lab's Dovecot is configured with its
introspection URL when the lab starts).
"""

from __future__ import annotations

import base64
import hashlib
import json
import secrets
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlencode, urlsplit

CLIENT_ID = "warmup-test-client"
CLIENT_SECRET = "test-client-secret-5b1f0e9a"
PUBLIC_CLIENT_ID = "warmup-public-client"  # no secret: PKCE and the device flow
SCOPES = "mail offline_access"


@dataclass
class _Refresh:
    email: str
    client_id: str
    alive: bool = True
    replaced_by: str | None = None


@dataclass
class _Access:
    email: str
    expires_at: float
    revoked: bool = False


@dataclass
class _Code:
    email: str
    client_id: str
    redirect_uri: str
    challenge: str
    expires_at: float


@dataclass
class _Device:
    client_id: str
    user_code: str
    approved_as: str | None = None
    expires_at: float = field(default_factory=lambda: time.time() + 600)


class TokenServer:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.reset()
        self.clients = {CLIENT_ID: CLIENT_SECRET, PUBLIC_CLIENT_ID: None}
        self._refresh: dict[str, _Refresh] = {}
        self._access: dict[str, _Access] = {}
        self._codes: dict[str, _Code] = {}
        self._devices: dict[str, _Device] = {}
        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), _handler(self))
        self._httpd.daemon_threads = True
        self._thread: threading.Thread | None = None

    def reset(self) -> None:
        """The provider's behaviour back to its defaults (the tokens issued so far stay as they are)."""
        self.access_ttl = 3600.0  # seconds, as expires_in
        self.rotate = False  # refresh answers a new refresh token and retires the old one
        self.refresh_delay = 0.0  # seconds a refresh takes (widens races in tests)
        self.fail_next: list[int] = []  # HTTP statuses to answer the next token requests with
        self.sign_in_as: str | None = None  # who the authorization endpoint signs in (None: access_denied)
        self.refreshes: list[str] = []  # the refresh tokens presented, in order
        self.reused: list[str] = []  # retired refresh tokens presented again
        self.introspections = 0

    # --- addresses -----------------------------------------------------------------------------

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self._httpd.server_address[1]}"

    @property
    def token_url(self) -> str:
        return self.base_url + "/token"

    @property
    def introspection_url(self) -> str:
        return self.base_url + "/introspect"

    @property
    def authorize_url(self) -> str:
        return self.base_url + "/authorize"

    @property
    def device_url(self) -> str:
        return self.base_url + "/devicecode"

    def start(self) -> TokenServer:
        self._thread = threading.Thread(target=self._httpd.serve_forever, name="token-server", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()

    # --- what a test arranges and reads ----------------------------------------------------------

    def issue_refresh_token(self, email: str, client_id: str = CLIENT_ID) -> str:
        """A refresh token as the provider hands it out after the user consented."""
        token = "rt-" + secrets.token_urlsafe(24)
        with self._lock:
            self._refresh[token] = _Refresh(email, client_id)
        return token

    def live_refresh_tokens(self, email: str) -> list[str]:
        with self._lock:
            return [t for t, r in self._refresh.items() if r.email == email and r.alive]

    def access_tokens(self, email: str | None = None) -> list[str]:
        """Every access token issued (to `email`), live or not: what the secrets audit looks for."""
        with self._lock:
            return [t for t, a in self._access.items() if email is None or a.email == email]

    def all_refresh_tokens(self) -> list[str]:
        with self._lock:
            return list(self._refresh)

    def revoke_user(self, email: str) -> None:
        """Consent withdrawn: every refresh and access token of `email` stops working."""
        with self._lock:
            for r in self._refresh.values():
                if r.email == email:
                    r.alive = False
            for a in self._access.values():
                if a.email == email:
                    a.revoked = True

    def revoke_access_tokens(self, email: str) -> None:
        """The access tokens stop working before their expiry (the refresh token stays valid)."""
        with self._lock:
            for a in self._access.values():
                if a.email == email:
                    a.revoked = True

    def is_active(self, access_token: str) -> bool:
        with self._lock:
            a = self._access.get(access_token)
            return a is not None and not a.revoked and time.time() < a.expires_at

    def approve_device(self, user_code: str, email: str) -> None:
        with self._lock:
            for d in self._devices.values():
                if d.user_code == user_code:
                    d.approved_as = email
                    return
        raise KeyError(user_code)

    # --- the endpoints -----------------------------------------------------------------------

    def _new_access(self, email: str) -> dict[str, object]:
        token = "at-" + secrets.token_urlsafe(24)
        self._access[token] = _Access(email, time.time() + self.access_ttl)
        return {"access_token": token, "token_type": "Bearer", "expires_in": self.access_ttl, "scope": SCOPES}

    def token(self, form: dict[str, str], auth_header: str | None) -> tuple[int, dict[str, object]]:
        if self.fail_next:
            status = self.fail_next.pop(0)
            return status, {"error": "server_error", "error_description": "the test asked for a failure"}
        client_id, client_secret = form.get("client_id", ""), form.get("client_secret")
        if auth_header and auth_header.startswith("Basic "):
            client_id, _, client_secret = base64.b64decode(auth_header[6:]).decode().partition(":")
        if client_id not in self.clients or self.clients[client_id] != (client_secret or None):
            return 401, {"error": "invalid_client", "error_description": "client authentication failed"}
        grant = form.get("grant_type")
        if grant == "refresh_token":
            return self._refresh_grant(form.get("refresh_token", ""), client_id)
        if grant == "authorization_code":
            return self._code_grant(form, client_id)
        if grant == "urn:ietf:params:oauth:grant-type:device_code":
            return self._device_grant(form.get("device_code", ""), client_id)
        return 400, {"error": "unsupported_grant_type"}

    def _refresh_grant(self, token: str, client_id: str) -> tuple[int, dict[str, object]]:
        if self.refresh_delay:
            time.sleep(self.refresh_delay)
        with self._lock:
            self.refreshes.append(token)
            r = self._refresh.get(token)
            if r is None or r.client_id != client_id:
                return 400, {"error": "invalid_grant", "error_description": "unknown refresh token"}
            if not r.alive:
                if r.replaced_by is not None:
                    self.reused.append(token)
                return 400, {"error": "invalid_grant", "error_description": "the refresh token was revoked"}
            body = self._new_access(r.email)
            if self.rotate:
                new = "rt-" + secrets.token_urlsafe(24)
                self._refresh[new] = _Refresh(r.email, client_id)
                r.alive, r.replaced_by = False, new
                body["refresh_token"] = new
            return 200, body

    def _code_grant(self, form: dict[str, str], client_id: str) -> tuple[int, dict[str, object]]:
        with self._lock:
            code = self._codes.pop(form.get("code", ""), None)
            if code is None or code.client_id != client_id or code.expires_at < time.time():
                return 400, {"error": "invalid_grant", "error_description": "unknown or used code"}
            if form.get("redirect_uri") != code.redirect_uri:
                return 400, {"error": "invalid_grant", "error_description": "redirect_uri differs"}
            verifier = form.get("code_verifier", "")
            digest = hashlib.sha256(verifier.encode()).digest()
            if base64.urlsafe_b64encode(digest).rstrip(b"=").decode() != code.challenge:
                return 400, {"error": "invalid_grant", "error_description": "PKCE verification failed"}
            body = self._new_access(code.email)
        body["refresh_token"] = self.issue_refresh_token(code.email, client_id)
        return 200, body

    def _device_grant(self, device_code: str, client_id: str) -> tuple[int, dict[str, object]]:
        with self._lock:
            d = self._devices.get(device_code)
            if d is None or d.client_id != client_id:
                return 400, {"error": "invalid_grant"}
            if d.expires_at < time.time():
                return 400, {"error": "expired_token"}
            if d.approved_as is None:
                return 400, {"error": "authorization_pending"}
            del self._devices[device_code]
            body = self._new_access(d.approved_as)
        body["refresh_token"] = self.issue_refresh_token(d.approved_as, client_id)
        return 200, body

    def device_code(self, form: dict[str, str]) -> tuple[int, dict[str, object]]:
        client_id = form.get("client_id", "")
        if client_id not in self.clients:
            return 400, {"error": "invalid_client"}
        device, user = secrets.token_urlsafe(16), secrets.token_hex(4).upper()
        with self._lock:
            self._devices[device] = _Device(client_id, user)
        return 200, {
            "device_code": device,
            "user_code": user,
            "verification_uri": self.base_url + "/device",
            "expires_in": 600,
            "interval": 1,
        }

    def authorize(self, query: dict[str, str]) -> tuple[int, str]:
        """(status, Location) of the authorization endpoint's answer."""
        redirect = query.get("redirect_uri", "")
        host = urlsplit(redirect).hostname
        if query.get("client_id") not in self.clients or host not in ("127.0.0.1", "localhost", "::1"):
            return 400, ""  # no redirect to an unverified address (RFC 6749 4.1.2.1)
        state = {"state": query["state"]} if "state" in query else {}
        if query.get("response_type") != "code" or query.get("code_challenge_method") != "S256":
            return 302, redirect + "?" + urlencode({"error": "invalid_request", **state})
        if self.sign_in_as is None:
            return 302, redirect + "?" + urlencode({"error": "access_denied", **state})
        code = secrets.token_urlsafe(16)
        with self._lock:
            challenge = query.get("code_challenge", "")
            expires = time.time() + 60
            self._codes[code] = _Code(self.sign_in_as, query["client_id"], redirect, challenge, expires)
        return 302, redirect + "?" + urlencode({"code": code, **state})

    def introspect(self, form: dict[str, str]) -> dict[str, object]:
        with self._lock:
            self.introspections += 1
            a = self._access.get(form.get("token", ""))
            if a is None or a.revoked or time.time() >= a.expires_at:
                return {"active": False}
            return {"active": True, "email": a.email, "exp": int(a.expires_at)}


def _handler(server: TokenServer) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def log_message(self, format: str, *args: object) -> None:  # quiet: tokens are in the URLs
            pass

        def _form(self) -> dict[str, str]:
            length = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(length).decode() if length else ""
            return {k: v[0] for k, v in parse_qs(body).items()}

        def _json(self, status: int, body: dict[str, object]) -> None:
            data = json.dumps(body).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.send_header("Cache-Control", "no-store")
            self.end_headers()
            self.wfile.write(data)

        def do_POST(self) -> None:
            path = urlsplit(self.path).path
            form = self._form()
            if path == "/token":
                self._json(*server.token(form, self.headers.get("Authorization")))
            elif path == "/introspect":
                self._json(200, server.introspect(form))
            elif path == "/devicecode":
                self._json(*server.device_code(form))
            else:
                self._json(404, {"error": "not_found"})

        def do_GET(self) -> None:
            url = urlsplit(self.path)
            if url.path != "/authorize":
                self._json(404, {"error": "not_found"})
                return
            status, location = server.authorize({k: v[0] for k, v in parse_qs(url.query).items()})
            self.send_response(status)
            if location:
                self.send_header("Location", location)
            self.send_header("Content-Length", "0")
            self.end_headers()

    return Handler


_shared: list[TokenServer] = []


def shared_token_server() -> TokenServer:
    """The session's server, started on first use (a daemon thread: it ends with the test process)."""
    if not _shared:
        _shared.append(TokenServer().start())
    return _shared[0]
