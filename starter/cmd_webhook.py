"""`starter webhook add|remove|list`: the endpoints a user's events are POSTed to (warmup/webhooks.py).

The signing secret is printed once, at `add`; it is stored encrypted like the passwords.
"""

from __future__ import annotations

import argparse
from typing import Any

from starter.cli_args import json_flag
from starter.context import Io, database
from starter.temporal_calls import StarterError
from starter.views import table
from warmup import mailbox_settings as ms
from warmup import webhooks
from warmup.config import Settings
from warmup.process_exit import EXIT_FAILURE, EXIT_OK, EXIT_USAGE
from warmup.secrets import SecretBox, SecretKeyError


def _user(args: argparse.Namespace) -> str:
    try:
        return ms.USER.coerce(args.user, "--user")
    except ValueError as exc:
        raise StarterError(str(exc), EXIT_USAGE) from None


def _row(w: webhooks.Webhook) -> dict[str, object]:
    return {"id": w.id, "user_id": w.user_id, "url": w.url, "created_at": w.created_at.isoformat()}


async def add(args: argparse.Namespace, settings: Settings, io: Io) -> int:
    user = _user(args)
    try:
        box = SecretBox(settings.secret_keys())
    except SecretKeyError as exc:
        raise StarterError(str(exc), EXIT_USAGE) from None
    async with database(settings) as conn:
        try:
            hook, secret = await webhooks.add_webhook(conn, box, user, args.url)
        except webhooks.WebhookError as exc:
            raise StarterError(f"--{exc}", EXIT_USAGE) from None
    if args.json:
        io.json({**_row(hook), "secret": secret})
    else:
        io.say(f"Webhook {hook.id} for user {user} at {hook.url}; its signing secret, shown only now:")
        io.say(secret)
    return EXIT_OK


async def remove(args: argparse.Namespace, settings: Settings, io: Io) -> int:
    user = _user(args)
    async with database(settings) as conn:
        done = await webhooks.remove_webhook(conn, args.id, user)
    if not done:
        io.note(
            f"starter webhook remove: user {user} has no webhook {args.id}; `starter webhook list` shows them"
        )
        return EXIT_FAILURE
    if args.json:
        io.json({"id": args.id, "removed": True})
    else:
        io.say(f"Removed webhook {args.id}; nothing more is sent to it")
    return EXIT_OK


async def list_(args: argparse.Namespace, settings: Settings, io: Io) -> int:
    user = _user(args)
    async with database(settings) as conn:
        hooks = await webhooks.list_webhooks(conn, user)
    if args.json:
        io.json([_row(w) for w in hooks])
    else:
        io.say(table([(str(w.id), w.url) for w in hooks]) or "no webhooks")
    return EXIT_OK


def add_parsers(sub: Any) -> None:  # argparse's private _SubParsersAction type
    hook = sub.add_parser(
        "webhook",
        help="add, remove or list a user's webhooks",
        allow_abbrev=False,
        description="A user's events (paused, sign-in needed, engagement off, placement low, resumed, "
        "removed) are POSTed to each of the user's webhooks, signed; see the README's HTTP API section.",
    )
    actions = hook.add_subparsers(dest="webhook_command", required=True, metavar="ACTION")
    for name, handler, what in (
        ("add", add, "a new endpoint (its signing secret is printed once)"),
        ("remove", remove, "stop sending to an endpoint, by its id"),
        ("list", list_, "the user's endpoints"),
    ):
        p = actions.add_parser(name, help=what, allow_abbrev=False)
        p.add_argument("--user", metavar="USER", required=True, help="the user the webhook belongs to")
        if name == "add":
            p.add_argument("--url", required=True, metavar="URL", help="https:// address of the endpoint")
        if name == "remove":
            p.add_argument("--id", type=int, required=True, metavar="N", help="the webhook's id")
        json_flag(p)
        p.set_defaults(handler=handler)
