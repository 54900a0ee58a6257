"""`starter rotate-key`: re-encrypt every stored mailbox secret (the SMTP and IMAP passwords, the OAuth2
client secrets and refresh tokens) with the first key of WARMUP_SECRET_KEYS.

Workers open a secret with any key in the list, so rotation needs no downtime: prepend the new key
everywhere, restart the workers, run this, then drop the old key. Each batch of rows is one
transaction; a row the first key already opens is left alone, so running it again changes nothing.
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass, field
from typing import Any

import asyncpg
from cryptography.fernet import Fernet, InvalidToken

from starter.context import Io, database
from starter.temporal_calls import StarterError
from warmup import mailbox_settings as ms
from warmup.config import Settings
from warmup.process_exit import EXIT_FAILURE, EXIT_OK, EXIT_USAGE
from warmup.secrets import SecretBox, SecretKeyError

DEFAULT_BATCH = 500


def add_parsers(sub: Any) -> None:  # argparse's private _SubParsersAction type
    p = sub.add_parser(
        "rotate-key",
        help="re-encrypt every stored password, OAuth2 client secret and refresh token with the first key "
        "of WARMUP_SECRET_KEYS",
        allow_abbrev=False,
        description="Re-encrypts each mailbox's stored secret with the first key of WARMUP_SECRET_KEYS, "
        "in batches, each batch in one transaction; rows already under that key are left alone, so it "
        "can be run again safely. Workers keep sending throughout: they open a secret with any listed "
        "key. Procedure: prepend the new key to WARMUP_SECRET_KEYS everywhere, restart the workers, run "
        "this, then remove the old key.",
    )
    p.add_argument("--dry-run", action="store_true", help="count what would be re-encrypted; change nothing")
    p.add_argument(
        "--batch-size",
        type=int,
        default=DEFAULT_BATCH,
        metavar="N",
        help=f"rows per transaction ({DEFAULT_BATCH})",
    )
    p.add_argument("--json", action="store_true", help="print the result as JSON")
    p.set_defaults(handler=rotate_key)


_SECRET_COLUMNS = ", ".join(x.column for x in ms.SECRETS)


@dataclass
class Rotation:
    rotated: int = 0
    already_current: int = 0
    unreadable: list[tuple[int, str, str]] = field(default_factory=list)  # (mailbox id, address, what)


async def rotate_key(args: argparse.Namespace, settings: Settings, io: Io) -> int:
    if args.batch_size < 1:
        raise StarterError(f"--batch-size must be 1 or more, got {args.batch_size}", EXIT_USAGE)
    keys = settings.secret_keys()
    try:
        box = SecretBox(keys)
    except SecretKeyError as exc:
        raise StarterError(str(exc), EXIT_USAGE) from None
    primary = Fernet(keys[0].encode("ascii"))  # SecretBox accepted it, so it is a valid key
    result = Rotation()
    async with database(settings) as conn:
        last_id = 0
        while True:
            async with conn.transaction():
                last_id = await _batch(conn, box, primary, last_id, args.batch_size, args.dry_run, result)
            if last_id < 0:
                break
        async with conn.transaction():
            await _webhook_secrets(conn, box, primary, args.dry_run, result)
    _report(io, result, args, len(keys))
    return EXIT_FAILURE if result.unreadable else EXIT_OK


async def _batch(
    conn: asyncpg.Connection,
    box: SecretBox,
    primary: Fernet,
    after_id: int,
    size: int,
    dry_run: bool,
    result: Rotation,
) -> int:
    """One transaction's worth of rows after `after_id`; returns the last id seen, or -1 when done."""
    # FOR UPDATE: an enroll that re-writes a secret meanwhile waits for this batch, and is not undone; so
    # does a worker storing a rotated refresh token (it holds the row while it refreshes).
    rows = await conn.fetch(
        f"SELECT id, address, {_SECRET_COLUMNS} FROM mailboxes WHERE id > $1 ORDER BY id LIMIT $2 FOR UPDATE",
        after_id,
        size,
    )
    for secret in ms.SECRETS:
        updates: list[tuple[int, str]] = []
        for row in rows:
            token = row[secret.column]
            if token is None:
                continue  # an optional secret left out (the IMAP password is the SMTP one)
            if _opens(primary, token):
                result.already_current += 1
                continue
            try:
                updates.append((int(row["id"]), box.rotate(token)))
            except InvalidToken:
                result.unreadable.append((int(row["id"]), row["address"], secret.what))
        result.rotated += len(updates)
        if updates and not dry_run:
            await conn.executemany(f"UPDATE mailboxes SET {secret.column} = $2 WHERE id = $1", updates)
    return int(rows[-1]["id"]) if rows else -1


async def _webhook_secrets(
    conn: asyncpg.Connection, box: SecretBox, primary: Fernet, dry_run: bool, result: Rotation
) -> None:
    """The webhooks' signing secrets (warmup/webhooks.py): a few rows, one transaction."""
    rows = await conn.fetch("SELECT id, url, secret_ciphertext FROM webhooks ORDER BY id FOR UPDATE")
    updates: list[tuple[int, str]] = []
    for row in rows:
        if _opens(primary, row["secret_ciphertext"]):
            result.already_current += 1
            continue
        try:
            updates.append((int(row["id"]), box.rotate(row["secret_ciphertext"])))
        except InvalidToken:
            result.unreadable.append((int(row["id"]), row["url"], "webhook signing secret"))
    result.rotated += len(updates)
    if updates and not dry_run:
        await conn.executemany("UPDATE webhooks SET secret_ciphertext = $2 WHERE id = $1", updates)


def _opens(fernet: Fernet, token: str) -> bool:
    try:
        fernet.decrypt(token.encode("ascii"))
    except (InvalidToken, UnicodeEncodeError):
        return False
    return True


def _report(io: Io, r: Rotation, args: argparse.Namespace, key_count: int) -> None:
    for mailbox_id, address, what in r.unreadable:
        if what == "webhook signing secret":
            io.note(
                f"starter rotate-key: webhook {mailbox_id} ({address}): no key in WARMUP_SECRET_KEYS opens "
                "its signing secret; it was left unchanged. Add the key it was encrypted with, or remove "
                "the webhook and add it again (`starter webhook`)"
            )
            continue
        io.note(
            f"starter rotate-key: mailbox {mailbox_id} ({address}): no key in WARMUP_SECRET_KEYS opens its "
            f"stored {what}; it was left unchanged. Add the key it was encrypted with to WARMUP_SECRET_KEYS, "
            "or re-enroll the mailbox with its password"
        )
    if args.json:
        io.json(
            {
                "dry_run": args.dry_run,
                "rotated": r.rotated,
                "already_current": r.already_current,
                "unreadable_mailbox_ids": sorted({m for m, _, _ in r.unreadable}),
            }
        )
        return
    verb = "Would re-encrypt" if args.dry_run else "Re-encrypted"
    io.say(
        f"{verb} {r.rotated} secret(s) with the first key of WARMUP_SECRET_KEYS; "
        f"{r.already_current} already used it; {len(r.unreadable)} could not be opened."
    )
    if key_count == 1 and not r.unreadable:
        io.say("Only one key is configured: nothing to rotate from. Prepend the new key first.")
    elif not args.dry_run and not r.unreadable:
        io.say("Every stored secret now uses the first key: the other keys can be removed.")
