"""`starter authorize --mailbox A`: sign an OAuth2 mailbox in (again) and store its new refresh token.

The mailbox must be enrolled with `--auth oauth2`; its provider, client id and secret and scopes are the
stored ones. By default the authorization code flow with PKCE and a loopback redirect (the browser opens,
the user signs in, the provider redirects to 127.0.0.1); `--device` uses the device flow instead where the
provider offers it. The refresh token is stored encrypted under the same row lock the workers take when they
refresh, and a mailbox paused because its sign-in was refused is resumed.
"""

from __future__ import annotations

import argparse
import webbrowser
from typing import Any

from starter import temporal_calls
from starter.cli_args import json_flag
from starter.context import Io, address, database, find_mailbox
from starter.oauth_flows import Flow, FlowError, browser_flow, device_flow
from starter.temporal_calls import StarterError
from warmup.config import Settings
from warmup.mailboxes import set_state
from warmup.models import MailboxState
from warmup.oauth_providers import PRESETS, OAuthProvider, endpoint
from warmup.oauth_tokens import TokenError, sign_in_command
from warmup.process_exit import EXIT_OK, EXIT_USAGE
from warmup.secrets import SecretBox, SecretKeyError

# Google hands out a refresh token only for offline access, and again only when it asks for consent.
_GOOGLE_EXTRA = {"access_type": "offline", "prompt": "consent"}


def add_parsers(sub: Any) -> None:  # argparse's private _SubParsersAction type
    p = sub.add_parser(
        "authorize",
        help="sign an OAuth2 mailbox in (again) and store its refresh token",
        allow_abbrev=False,
        description="Runs the provider's sign-in for a mailbox enrolled with --auth oauth2 and stores the "
        "refresh token it grants (encrypted). Default: a browser opens, you sign in, the provider "
        "redirects to a listener on 127.0.0.1 (authorization code with PKCE). --device: enter a code on "
        "any device instead (Microsoft; Google's device flow does not allow the mail scope). A mailbox "
        "paused because its sign-in was refused is resumed.",
    )
    p.add_argument("--mailbox", required=True, metavar="ADDRESS", help="the mailbox to sign in")
    p.add_argument("--user", metavar="USER", help="only if this user owns the mailbox")
    p.add_argument("--device", action="store_true", help="the device flow: a code to enter on any device")
    p.add_argument("--no-browser", action="store_true", help="print the sign-in address, do not open it")
    p.add_argument(
        "--port", type=int, default=0, help="loopback port of the redirect (default: any free one)"
    )
    p.add_argument(
        "--authorize-url", metavar="URL", help="--oauth-provider custom: the authorization endpoint"
    )
    p.add_argument("--device-url", metavar="URL", help="--oauth-provider custom: the device endpoint")
    p.add_argument(
        "--wait", type=float, default=300, metavar="S", help="seconds to wait for the sign-in (300)"
    )
    json_flag(p)
    p.set_defaults(handler=authorize)


def _endpoints(args: argparse.Namespace, provider: str, tenant: str) -> tuple[str, str]:
    """(authorization endpoint, device endpoint or ""), from the preset or the flags."""
    preset = PRESETS.get(OAuthProvider(provider))
    if preset is not None:
        if args.authorize_url or args.device_url:
            raise StarterError(
                f"--authorize-url and --device-url are set by --oauth-provider {provider}: leave them out",
                EXIT_USAGE,
            )
        return endpoint(preset.authorize_url, tenant), endpoint(
            preset.device_url, tenant
        ) if preset.device_url else ""
    if args.device and not args.device_url:
        raise StarterError("--device with --oauth-provider custom needs --device-url URL", EXIT_USAGE)
    if not args.device and not args.authorize_url:
        raise StarterError(
            "--oauth-provider custom needs --authorize-url URL (the provider's authorization endpoint), "
            "or --device with --device-url URL",
            EXIT_USAGE,
        )
    return args.authorize_url or "", args.device_url or ""


async def authorize(args: argparse.Namespace, settings: Settings, io: Io) -> int:
    if not 0 <= args.port < 65536:
        raise StarterError(f"--port must be from 0 to 65535, got {args.port}", EXIT_USAGE)
    try:
        box = SecretBox(settings.secret_keys())
    except SecretKeyError as exc:
        raise StarterError(str(exc), EXIT_USAGE) from None
    async with database(settings) as conn:
        record = await find_mailbox(conn, address(args.mailbox), args.user)
    oauth = record.oauth
    if oauth is None:
        raise StarterError(
            f"--mailbox {record.address} logs in with a password: enroll it again with --auth oauth2 "
            "--oauth-provider ... first",
            EXIT_USAGE,
        )
    authorize_url, device_url = _endpoints(args, oauth.provider, oauth.tenant)
    if args.device and not device_url:
        raise StarterError(
            f"--oauth-provider {oauth.provider} offers no device flow for the mail scopes: leave out "
            "--device (the browser flow works from any machine with a browser; over SSH, forward the "
            "--port you choose)",
            EXIT_USAGE,
        )
    try:
        client_secret = (
            box.decrypt(oauth.client_secret_ciphertext) if oauth.client_secret_ciphertext else None
        )
    except SecretKeyError as exc:
        raise StarterError(f"cannot decrypt the client secret of {record.address}: {exc}") from None
    flow = Flow(oauth, client_secret, record.address, settings.OAUTH_TIMEOUT_SECONDS, args.wait)

    def show_url(url: str) -> None:
        io.note(f"Sign in as {record.address} at:\n  {url}")
        if not args.no_browser:
            webbrowser.open(url)

    def show_code(where: str, code: str) -> None:
        io.note(f"To sign in as {record.address}, open {where} and enter the code {code}")

    try:
        if args.device:
            grant = await device_flow(flow, device_url, show_code)
        else:
            extra = _GOOGLE_EXTRA if oauth.provider == OAuthProvider.GOOGLE else {}
            grant = await browser_flow(flow, authorize_url, args.port, show_url, extra)
    except (FlowError, TokenError) as exc:
        raise StarterError(f"{record.address}: {exc}") from None
    assert grant.refresh_token is not None  # the flows refuse a grant without one

    resumed = False
    async with database(settings) as conn:
        async with conn.transaction():
            # The row lock the workers hold while they refresh: no refresh can overwrite this token.
            await conn.execute("SELECT 1 FROM mailboxes WHERE id = $1 FOR NO KEY UPDATE", record.id)
            await conn.execute(
                "UPDATE mailboxes SET oauth_refresh_token_ciphertext = $2, oauth_refresh_token_at = now()"
                " WHERE id = $1",
                record.id,
                box.encrypt(grant.refresh_token),
            )
            row = await conn.fetchrow(
                "SELECT state::text, pause_reason FROM mailboxes WHERE id = $1", record.id
            )
        assert row is not None
        if (
            row["state"] == MailboxState.PAUSED.value
            and sign_in_command(record.address) in row["pause_reason"]
        ):
            client = await temporal_calls.connect_temporal(settings)
            await temporal_calls.resume(client, record.id, settings)
            await set_state(conn, record.id, MailboxState.ACTIVE, "")
            resumed = True
    if args.json:
        io.json({"mailbox_id": record.id, "address": record.address, "signed_in": True, "resumed": resumed})
    else:
        io.say(
            f"Signed in {record.address}: its new refresh token is stored" + ("; resumed" if resumed else "")
        )
    return EXIT_OK
