"""Flags several starter commands share."""

from __future__ import annotations

import argparse


def json_flag(p: argparse.ArgumentParser) -> None:
    p.add_argument("--json", action="store_true", help="print the result as JSON (for scripts)")


def target(p: argparse.ArgumentParser, what: str) -> None:
    """--mailbox ADDRESS, --user USER, or both: the user is then the tenant scope of the mailbox
    (checked by the command, see `cli._scope_problem`)."""
    p.add_argument(
        "--mailbox", metavar="ADDRESS", help=f"{what} this mailbox (with --user: only if that user owns it)"
    )
    p.add_argument("--user", metavar="USER", help=f"{what} every mailbox of this user, or scope --mailbox")
