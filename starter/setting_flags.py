"""The command-line flags of the mailbox settings, derived from their declarations
(warmup.mailbox_settings), and the raw values a parsed command line gives them."""

from __future__ import annotations

import argparse
from enum import StrEnum
from typing import Any

from warmup import mailbox_settings as ms


def dest(flag: str) -> str:
    return flag.lstrip("-").replace("-", "_")


def _add_value(group: argparse._ActionsContainer, s: ms.Setting[Any]) -> None:
    choices = [e.value for e in s.type] if issubclass(s.type, StrEnum) else None
    group.add_argument(
        s.flag, dest=s.name, metavar=None if choices else s.metavar, choices=choices, help=s.help
    )


def add_enroll_flags(parser: argparse.ArgumentParser) -> None:
    """Every user setting: the mailbox's own on the parser, the schedule's in a group of their own.
    A switch on `enroll` is its one flag, which turns the default around (--no-verify-tls)."""
    schedule = parser.add_argument_group("schedule (defaults from WARMUP_* settings)")
    engagement = parser.add_argument_group(
        "engagement (what the mailbox does with the warmup mail it receives)"
    )
    for s in ms.USER_SETTINGS:
        group: argparse._ActionsContainer = parser
        if s.schedule_path:
            group = engagement if s.schedule_path[0] == "engagement" else schedule
        if s.is_switch:
            group.add_argument(s.flag, dest=s.name, action="store_const", const=not s.default, help=s.help)
        else:
            _add_value(group, s)
    for secret in ms.SECRETS:
        one = parser.add_mutually_exclusive_group()
        one.add_argument(
            secret.env_flag,
            dest=dest(secret.env_flag),
            metavar="VARNAME",
            help=f"name of the environment variable holding the {secret.what}"
            + (f" (default: the {secret.instead.what})" if secret.instead else ""),
        )
        one.add_argument(
            secret.stdin_flag,
            dest=dest(secret.stdin_flag),
            action="store_true",
            help=f"read the {secret.what} as one line from stdin"
            + (
                f" (after the {secret.instead.what}'s line if both come from stdin)" if secret.instead else ""
            ),
        )


def add_update_flags(group: argparse._ArgumentGroup) -> None:
    """The updatable settings; a switch has a flag each way (--weekdays-only/--all-days)."""
    for s in ms.UPDATABLE:
        if s.is_switch:
            both = group.add_mutually_exclusive_group()
            both.add_argument(s.flag, dest=s.name, action="store_const", const=True, help=s.help)
            both.add_argument(
                s.off_flag, dest=s.name, action="store_const", const=False, help=f"not {s.flag}"
            )
        else:
            _add_value(group, s)


def given(args: argparse.Namespace, settings: tuple[ms.Setting[Any], ...]) -> dict[str, object]:
    """Raw values by setting name, None for a flag left out."""
    return {s.name: getattr(args, s.name) for s in settings}


def given_flags(args: argparse.Namespace, settings: tuple[ms.Setting[Any], ...]) -> list[str]:
    return [s.flag for s in settings if getattr(args, s.name) is not None]


def secret_flags_given(args: argparse.Namespace) -> list[str]:
    flags: list[str] = []
    for secret in ms.SECRETS:
        if getattr(args, dest(secret.env_flag)) is not None:
            flags.append(secret.env_flag)
        if getattr(args, dest(secret.stdin_flag)):
            flags.append(secret.stdin_flag)
    return flags
