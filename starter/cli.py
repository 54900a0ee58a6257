"""`starter`: enroll mailboxes, list them, watch and control their warmup, report on the fleet.

The starter validates input, stores mailboxes and talks to their workflows; what a mailbox does
each day is the workflow's business. Every command prints a table, or JSON with `--json`.
Exit codes: 0 done, 1 the operation failed (unreachable service, refused login, unknown mailbox,
a workflow that did not answer), 2 bad input or configuration.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import sys
from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import NoReturn, TextIO

import asyncpg

from starter import (
    cmd_authorize,
    cmd_control,
    cmd_enroll,
    cmd_plan,
    cmd_rotate_key,
    cmd_token,
    cmd_views,
    cmd_webhook,
)
from starter.context import Io, scrub
from starter.enroll_request import EnrollValidationError
from starter.temporal_calls import StarterError
from warmup import mailbox_settings as ms
from warmup.config import ConfigError, Settings, load_settings
from warmup.process_exit import EXIT_FAILURE, EXIT_INTERRUPTED, EXIT_USAGE, exit_skipping_teardown

_SECRET_FLAGS = tuple(f for x in ms.SECRETS for f in (x.env_flag, x.stdin_flag))
# Ctrl-C: the shell's convention for "stopped by SIGINT".


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        if message.startswith("unrecognized arguments:"):
            # argparse would echo every extra token, and one of them may be a password: name options only.
            options = [t.split("=", 1)[0] for t in message.split(":", 1)[1].split() if t.startswith("-")]
            shown = " ".join(options) if options else "(values not shown)"
            message = f"unrecognized arguments: {shown}; see `{self.prog} --help`"
        super().error(message)


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="starter",
        description="Enroll mailboxes in email warmup, control their workflows, report on the fleet.",
        allow_abbrev=False,
        epilog="Configuration comes from WARMUP_* variables and the Temporal SDK's environment configuration "
        "(TEMPORAL_ADDRESS, TEMPORAL_NAMESPACE, TEMPORAL_API_KEY, TEMPORAL_TLS_*, TEMPORAL_CONFIG_FILE and "
        "TEMPORAL_PROFILE); see the README's Configuration section.",
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    for module in (
        cmd_enroll,
        cmd_authorize,
        cmd_views,
        cmd_control,
        cmd_plan,
        cmd_rotate_key,
        cmd_token,
        cmd_webhook,
    ):
        module.add_parsers(sub)
    return parser


def _secret_argument(argv: Sequence[str]) -> str | None:
    """The first option that looks like a password argument, which must never exist."""
    for token in argv:
        if token == "--":
            break
        if not token.startswith("-") or token == "-":
            continue
        name = token.split("=", 1)[0].lower()
        if name in _SECRET_FLAGS:
            continue
        if any(word in name for word in ("pass", "secret", "pwd")):
            return name
    return None


# Commands that act on --mailbox or on every mailbox of --user.
_TARGETED = ("status", "pause", "resume", "update", "remove", "read-inbox")
# Commands that read or change tenants' data; with WARMUP_REQUIRE_USER_SCOPE each needs --user.
# (enroll and plan always name their user; rotate-key re-encrypts every tenant's secret by design.)
_SCOPED = (*_TARGETED, "list", "report")


def _scope_problem(args: argparse.Namespace, settings: Settings) -> str | None:
    """Why the target flags cannot be used, or None."""
    if args.command in _TARGETED and args.mailbox is None and args.user is None:
        return (
            f"starter {args.command}: give --mailbox ADDRESS (one mailbox), --user USER (each of the "
            "user's mailboxes) or both (the mailbox, only if that user owns it)"
        )
    if settings.REQUIRE_USER_SCOPE and args.command in _SCOPED and args.user is None:
        return (
            f"starter {args.command}: --user USER is required (WARMUP_REQUIRE_USER_SCOPE=true): every "
            "command is scoped to one user, e.g. --mailbox ADDRESS --user USER; nothing was changed"
        )
    return None


async def run(
    argv: Sequence[str] | None = None,
    *,
    env: Mapping[str, str] | None = None,
    stdin: TextIO | None = None,
    stdout: TextIO | None = None,
    stderr: TextIO | None = None,
) -> int:
    """The whole command, in the caller's event loop; returns the exit code instead of exiting."""
    io = Io(
        env=dict(os.environ) if env is None else env,
        stdin=stdin or sys.stdin,
        out=stdout or sys.stdout,
        err=stderr or sys.stderr,
    )
    args_list = list(sys.argv[1:] if argv is None else argv)

    forbidden = _secret_argument(args_list)
    if forbidden is not None:
        io.note(
            f"starter: error: {forbidden} is not accepted: a password given as an argument shows up in shell "
            "history and process lists. Use --secret-env VARNAME (an environment variable holding it) "
            "or --secret-stdin (one line on standard input)."
        )
        return EXIT_USAGE

    parser = build_parser()
    try:
        with contextlib.redirect_stdout(io.out), contextlib.redirect_stderr(io.err):
            args = parser.parse_args(args_list)
    except SystemExit as exc:  # --help, or a usage error argparse already printed
        return exc.code if isinstance(exc.code, int) else EXIT_USAGE

    settings: Settings | None = None
    try:
        settings = load_settings(dict(io.env))
        problem = _scope_problem(args, settings)
        if problem is not None:
            io.note(problem)
            return EXIT_USAGE
        handler: Callable[[argparse.Namespace, Settings, Io], Awaitable[int]] = args.handler
        return await handler(args, settings, io)
    except ConfigError as exc:
        io.note(f"starter: {exc}")
        return EXIT_USAGE
    except EnrollValidationError as exc:
        done = "stored" if args.command == "enroll" else "changed"
        io.note(f"starter {args.command}: invalid input, nothing was {done}:")
        for problem in exc.problems:
            io.note(f"  {scrub(problem, settings)}")
        return EXIT_USAGE
    except StarterError as exc:
        io.note(f"starter {args.command}: {scrub(str(exc), settings)}")
        return exc.exit_code
    except (asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
        io.note(
            f"starter {args.command}: database error ({type(exc).__name__}: "
            f"{scrub(str(exc), settings)}); check WARMUP_DATABASE_URL"
        )
        return EXIT_FAILURE


def main(argv: Sequence[str] | None = None) -> int:
    """Console entry point (`starter`, `python -m starter`); with `argv` given, returns the exit code."""
    try:
        code = asyncio.run(run(argv))
    except KeyboardInterrupt:  # Ctrl-C, e.g. to end `status --watch`
        code = EXIT_INTERRUPTED
    if argv is None:
        # Run as a program: temporalio 1.35 can abort during interpreter teardown after all work is
        # done (sdk-python #300), turning a success into exit 134. Output is flushed; skip the teardown.
        exit_skipping_teardown(code)
    return code
