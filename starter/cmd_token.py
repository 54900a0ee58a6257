"""`starter token create|revoke|list`: the HTTP API's credentials (warmup/api_tokens.py).

A token is printed once, at creation; only its sha256 is stored, so a lost token is revoked and a new
one created. `--user U` scopes a token to U's mailboxes; `--operator` makes a fleet-wide one.
"""

from __future__ import annotations

import argparse
from typing import Any

from starter.cli_args import json_flag
from starter.context import Io, database
from starter.temporal_calls import StarterError
from starter.views import table
from warmup import api_tokens
from warmup import mailbox_settings as ms
from warmup.config import Settings
from warmup.process_exit import EXIT_FAILURE, EXIT_OK, EXIT_USAGE


def _owner(args: argparse.Namespace) -> str | None:
    if (args.user is None) == (not args.operator):
        raise StarterError(
            f"starter token {args.token_command}: give --user USER (a token for that user's mailboxes) "
            "or --operator (a fleet-wide token), not both",
            EXIT_USAGE,
        )
    if args.user is None:
        return None
    try:
        return ms.USER.coerce(args.user, "--user")
    except ValueError as exc:
        raise StarterError(str(exc), EXIT_USAGE) from None


def _row(t: api_tokens.TokenInfo) -> dict[str, object]:
    return {
        "id": t.id,
        "prefix": t.prefix,
        "user_id": t.user_id,
        "operator": t.operator,
        "label": t.label,
        "created_at": t.created_at.isoformat(),
        "revoked_at": t.revoked_at.isoformat() if t.revoked_at else None,
    }


async def create(args: argparse.Namespace, settings: Settings, io: Io) -> int:
    owner = _owner(args)
    async with database(settings) as conn:
        token, info = await api_tokens.create_token(conn, owner, args.label)
    if args.json:
        io.json({**_row(info), "token": token})
    else:
        whom = "the operator (every user)" if owner is None else f"user {owner}"
        io.say(f"API token {info.id} for {whom}; shown only now, store it safely:")
        io.say(token)
    return EXIT_OK


async def revoke(args: argparse.Namespace, settings: Settings, io: Io) -> int:
    owner = _owner(args)
    async with database(settings) as conn:
        done = await api_tokens.revoke_token(conn, args.id, owner)
    if not done:
        whom = "--operator" if owner is None else f"--user {owner}"
        io.note(
            f"starter token revoke: no live token {args.id} for {whom}; `starter token list {whom}` "
            "shows the tokens"
        )
        return EXIT_FAILURE
    if args.json:
        io.json({"id": args.id, "revoked": True})
    else:
        io.say(f"Revoked API token {args.id}; requests with it now get 401")
    return EXIT_OK


async def list_(args: argparse.Namespace, settings: Settings, io: Io) -> int:
    owner = _owner(args)
    async with database(settings) as conn:
        tokens = await api_tokens.list_tokens(conn, owner, operator=owner is None)
    if args.json:
        io.json([_row(t) for t in tokens])
    else:
        io.say(
            table(
                [
                    (f"{t.id} {t.prefix}...", f"{'revoked' if t.revoked_at else 'live'} {t.label}".strip())
                    for t in tokens
                ]
            )
            or "no tokens"
        )
    return EXIT_OK


def add_parsers(sub: Any) -> None:  # argparse's private _SubParsersAction type
    token = sub.add_parser(
        "token",
        help="create, revoke or list HTTP API tokens",
        allow_abbrev=False,
        description="A token with --user reaches that user's mailboxes only; --operator reaches the fleet. "
        "A new token is shown once; only its hash is stored.",
    )
    actions = token.add_subparsers(dest="token_command", required=True, metavar="ACTION")
    for name, handler, what in (
        ("create", create, "a new token (printed once)"),
        ("revoke", revoke, "revoke a token by its id"),
        ("list", list_, "the tokens of a user, or the operator tokens"),
    ):
        p = actions.add_parser(name, help=what, allow_abbrev=False)
        p.add_argument("--user", metavar="USER", help="the user the token belongs to")
        p.add_argument("--operator", action="store_true", help="an operator (fleet-wide) token")
        if name == "create":
            p.add_argument("--label", default="", metavar="TEXT", help="what the token is for")
        if name == "revoke":
            p.add_argument("--id", type=int, required=True, metavar="N", help="the token's id")
        json_flag(p)
        p.set_defaults(handler=handler)
