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

from starter import cmd_control, cmd_enroll, cmd_plan, cmd_rotate_key, cmd_views, setting_flags
from starter.client import EXIT_FAILURE, EXIT_USAGE, StarterError
from starter.context import Io, scrub
from starter.enroll_request import EnrollValidationError
from warmup import mailbox_settings as ms
from warmup.config import ConfigError, Settings, load_settings
from warmup.models import MailboxState, PauseRequest

_SECRET_FLAGS = tuple(f for x in ms.SECRETS for f in (x.env_flag, x.stdin_flag))
# Ctrl-C: the shell's convention for "stopped by SIGINT".
EXIT_INTERRUPTED = 130


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        if message.startswith("unrecognized arguments:"):
            # argparse would echo every extra token, and one of them may be a password: name options only.
            options = [t.split("=", 1)[0] for t in message.split(":", 1)[1].split() if t.startswith("-")]
            shown = " ".join(options) if options else "(values not shown)"
            message = f"unrecognized arguments: {shown}; see `{self.prog} --help`"
        super().error(message)


def _json_flag(p: argparse.ArgumentParser) -> None:
    p.add_argument("--json", action="store_true", help="print the result as JSON (for scripts)")


def _target(p: argparse.ArgumentParser, what: str) -> None:
    """--mailbox ADDRESS, --user USER, or both: the user is then the tenant scope of the mailbox
    (checked by the command, see `_scope_problem`)."""
    p.add_argument(
        "--mailbox", metavar="ADDRESS", help=f"{what} this mailbox (with --user: only if that user owns it)"
    )
    p.add_argument("--user", metavar="USER", help=f"{what} every mailbox of this user, or scope --mailbox")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="starter",
        description="Enroll mailboxes in email warmup, control their workflows, report on the fleet.",
        allow_abbrev=False,
        epilog="Configuration comes from WARMUP_* variables, TEMPORAL_ADDRESS and TEMPORAL_NAMESPACE.",
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    enroll = sub.add_parser(
        "enroll",
        help="store a mailbox (or a CSV file of them) and start its warmup workflow",
        allow_abbrev=False,
        description="Store a mailbox and start its warmup workflow; enrolling again updates both. "
        "The SMTP password is read from an environment variable or standard input, never an argument. "
        "With --csv, every row of the file is one mailbox: the whole file is checked first, and one "
        "bad row (reported with its line and column) stores nothing at all.",
        epilog="example: SMTP_PASSWORD=... starter enroll --mailbox alice@example.com --user acme "
        "--smtp-host smtp.example.com --smtp-port 587 --username alice@example.com "
        "--secret-env SMTP_PASSWORD --timezone Europe/Berlin --check. "
        f"CSV columns: {', '.join(s.csv for s in ms.REQUIRED)}, {ms.SMTP_SECRET.csv_value} (the password) "
        f"or {ms.SMTP_SECRET.csv_env} (a variable's name); optional "
        f"{', '.join(c for c, s in ms.CSV_COLUMNS.items() if not s.required)}.",
    )
    setting_flags.add_enroll_flags(enroll)
    enroll.add_argument(
        "--check", action="store_true", help="log in to the SMTP server before storing anything"
    )
    enroll.add_argument("--csv", metavar="FILE", help="enroll every row of this CSV file ('-' = stdin)")
    enroll.add_argument("--dry-run", action="store_true", help="with --csv: check every row, store nothing")
    _json_flag(enroll)

    lst = sub.add_parser("list", help="list mailboxes, by user and state", allow_abbrev=False)
    lst.add_argument("--user", metavar="USER", help="only this user's mailboxes")
    lst.add_argument("--state", choices=[s.value for s in MailboxState], help="only mailboxes in this state")
    _json_flag(lst)

    status = sub.add_parser(
        "status",
        help="today's progress of a mailbox or of a user's mailboxes",
        allow_abbrev=False,
        description="Sent today against today's quota, next send, ramp day, state and reason, last error.",
    )
    _target(status, "show")
    status.add_argument("--watch", action="store_true", help="refresh until Ctrl-C (live progress today)")
    status.add_argument(
        "--interval",
        type=float,
        metavar="SECONDS",
        help="with --watch: seconds between refreshes (default 5)",
    )
    status.add_argument("--count", type=int, metavar="N", help="with --watch: stop after N refreshes")
    _json_flag(status)

    pause = sub.add_parser("pause", help="pause a mailbox's (or a user's) warmup", allow_abbrev=False)
    _target(pause, "pause")
    pause.add_argument("--reason", default=PauseRequest().reason, metavar="TEXT", help="shown in status")
    _json_flag(pause)

    resume = sub.add_parser("resume", help="resume a paused mailbox (or a user's)", allow_abbrev=False)
    _target(resume, "resume")
    _json_flag(resume)

    update = sub.add_parser(
        "update",
        help="change the ramp, window, timezone or spacing of a mailbox (or a user's)",
        allow_abbrev=False,
        description="Change schedule settings; a flag left out keeps the mailbox's current value. The "
        "running workflow re-plans the rest of today at once.",
    )
    _target(update, "update")
    setting_flags.add_update_flags(update.add_argument_group("schedule"))
    _json_flag(update)

    remove = sub.add_parser(
        "remove",
        help="stop a mailbox's (or a user's) warmup for good; the send history is kept",
        allow_abbrev=False,
        description="Signal the workflow to finish, mark the mailbox removed (it leaves the recipient "
        "pool) and keep its ledger. `starter enroll` brings it back.",
    )
    _target(remove, "remove")
    remove.add_argument(
        "--wait", type=float, default=10.0, metavar="SECONDS", help="wait this long for the workflow to end"
    )
    _json_flag(remove)

    cmd_plan.add_parser(sub)
    cmd_rotate_key.add_parser(sub)

    report = sub.add_parser(
        "report",
        help="under-quota mailboxes, hourly throughput, queue health",
        allow_abbrev=False,
        description="The audit's three dashboard queries: mailboxes under quota today with fill %%, "
        "hourly throughput over the last 24 h, and queue health (Temporal's backlog, workflow states).",
    )
    report.add_argument("--user", metavar="USER", help="only this user's mailboxes in the quota section")
    report.add_argument(
        "--limit", type=int, default=50, metavar="N", help="rows of the quota table (0 = all; JSON has all)"
    )
    _json_flag(report)
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
_TARGETED = ("status", "pause", "resume", "update", "remove")
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


_COMMANDS: dict[str, Callable[[argparse.Namespace, Settings, Io], Awaitable[int]]] = {
    "enroll": cmd_enroll.enroll,
    "list": cmd_views.list_mailboxes,
    "status": cmd_views.status,
    "pause": cmd_control.pause,
    "resume": cmd_control.resume,
    "update": cmd_control.update,
    "remove": cmd_control.remove,
    "report": cmd_views.report,
    "plan": cmd_plan.set_plan,
    "rotate-key": cmd_rotate_key.rotate_key,
}


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
        return await _COMMANDS[args.command](args, settings, io)
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
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)
    return code
