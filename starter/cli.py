"""`starter`: enroll a mailbox, pause or resume its warmup, show its status.

The starter validates input, stores the mailbox and talks to the mailbox's workflow; what a
mailbox does each day is the workflow's business. Exit codes: 0 done, 1 the operation failed
(unreachable service, refused login, unknown mailbox), 2 bad input or configuration.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import dataclasses
import getpass
import os
import re
import sys
from collections.abc import AsyncIterator, Mapping, Sequence
from typing import NoReturn, TextIO
from urllib.parse import urlsplit

import asyncpg

from starter import client as temporal_ops
from starter.client import EXIT_FAILURE, EXIT_USAGE, StarterError
from starter.enroll_request import (
    EnrollRequest,
    EnrollValidationError,
    normalize_address,
    parse_enroll_request,
)
from starter.output import status_table, table, to_json
from starter.smtp_check import SmtpCheckError, check_login
from warmup.config import ConfigError, Settings, load_settings
from warmup.db import migrate
from warmup.mailboxes import MailboxRecord, get_mailbox_by_address, set_state, upsert_mailbox, workflow_id_for
from warmup.models import MailboxState, PauseRequest, SmtpSecurity
from warmup.secrets import SecretBox, SecretKeyError

EXIT_OK = 0
_DB_CONNECT_TIMEOUT = 15.0
# Where the Temporal Web UI lives when it is not on the dev server's default port next to the server.
UI_URL_ENV = "WARMUP_TEMPORAL_UI_URL"
_SECRET_FLAGS = ("--secret-env", "--secret-stdin")
_ENV_NAME = re.compile(r"[A-Z_][A-Z0-9_]*")


@dataclasses.dataclass
class _Io:
    env: Mapping[str, str]
    stdin: TextIO
    out: TextIO
    err: TextIO

    def say(self, text: str) -> None:
        print(text, file=self.out)

    def note(self, text: str) -> None:
        print(text, file=self.err)


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
        description="Enroll mailboxes in email warmup and control their workflows.",
        allow_abbrev=False,
        epilog="Configuration comes from WARMUP_* variables, TEMPORAL_ADDRESS and TEMPORAL_NAMESPACE.",
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    enroll = sub.add_parser(
        "enroll",
        help="store a mailbox and start (or update) its warmup workflow",
        allow_abbrev=False,
        description="Store a mailbox and start its warmup workflow; enrolling again updates both. "
        "The SMTP password is read from an environment variable or standard input, never an argument.",
        epilog="example: SMTP_PASSWORD=... starter enroll --mailbox alice@example.com --user acme "
        "--smtp-host smtp.example.com --smtp-port 587 --username alice@example.com "
        "--secret-env SMTP_PASSWORD --timezone Europe/Berlin --check",
    )
    enroll.add_argument("--mailbox", required=True, metavar="ADDRESS", help="the mailbox's email address")
    enroll.add_argument("--user", required=True, metavar="USER", help="id of the user who owns the mailbox")
    enroll.add_argument("--smtp-host", required=True, metavar="HOST")
    enroll.add_argument("--smtp-port", required=True, metavar="PORT", help="465 (tls), 587 or 25 (starttls)")
    enroll.add_argument(
        "--smtp-security",
        choices=[s.value for s in SmtpSecurity],
        help="default from the port: 465 -> tls, 587/25 -> starttls; none (clear text) only if chosen",
    )
    enroll.add_argument("--username", required=True, metavar="NAME", help="SMTP login name")
    secret = enroll.add_mutually_exclusive_group()
    secret.add_argument(
        "--secret-env", metavar="VARNAME", help="name of the environment variable with the password"
    )
    secret.add_argument(
        "--secret-stdin", action="store_true", help="read the password as one line from stdin"
    )
    enroll.add_argument("--timezone", required=True, metavar="IANA_TZ", help="e.g. Europe/Berlin")
    enroll.add_argument(
        "--no-verify-tls",
        dest="verify_tls",
        action="store_false",
        help="accept any TLS certificate (test servers)",
    )
    enroll.add_argument(
        "--check", action="store_true", help="log in to the SMTP server before storing anything"
    )
    schedule = enroll.add_argument_group("schedule (defaults from WARMUP_* settings)")
    schedule.add_argument("--window-start", metavar="H", help="local hour the sending window opens (0-23)")
    schedule.add_argument("--window-end", metavar="H", help="local hour it closes (1-24)")
    schedule.add_argument("--delay-min", metavar="MIN", help="minutes at least between two sends")
    schedule.add_argument("--delay-max", metavar="MIN", help="minutes at most between two sends")
    schedule.add_argument("--ramp-start", metavar="N", help="emails on the first day")
    schedule.add_argument("--ramp-increment", metavar="N", help="emails added each day")
    schedule.add_argument("--ramp-ceiling", metavar="N", help="most emails per day")
    schedule.add_argument("--ramp-variance", metavar="F", help="daily +/- jitter fraction, 0-0.5")
    enroll.add_argument("--json", action="store_true", help="print the result as JSON")

    pause = sub.add_parser("pause", help="pause a mailbox's warmup", allow_abbrev=False)
    pause.add_argument("--mailbox", required=True, metavar="ADDRESS")
    pause.add_argument("--reason", default=PauseRequest().reason, metavar="TEXT", help="shown in status")

    resume = sub.add_parser("resume", help="resume a paused mailbox", allow_abbrev=False)
    resume.add_argument("--mailbox", required=True, metavar="ADDRESS")

    status = sub.add_parser("status", help="show a mailbox's progress today", allow_abbrev=False)
    status.add_argument("--mailbox", required=True, metavar="ADDRESS")
    status.add_argument("--json", action="store_true", help="print the MailboxStatus as JSON")
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


def _read_secret(args: argparse.Namespace, io: _Io) -> str | None:
    """The password from stdin or the named variable; None when absent (the model reports it)."""
    if args.secret_stdin:
        if io.stdin is sys.stdin and sys.stdin.isatty():
            return getpass.getpass("SMTP password: ")
        return io.stdin.readline().strip()
    if args.secret_env is not None:
        name: str = args.secret_env
        value = io.env.get(name)
        if not value:
            # Show the name only when it looks like one: a mistyped password must not be echoed.
            shown = name if _ENV_NAME.fullmatch(name) else "(name not shown)"
            state = "is empty" if value == "" else "is not set"
            raise EnrollValidationError(
                [
                    f"--secret-env: the environment variable {shown} {state}; export it with the SMTP "
                    "password (e.g. `read -rs SMTP_PASSWORD; export SMTP_PASSWORD`) or use --secret-stdin"
                ]
            )
        return value
    return None


def _scrub(message: str, settings: Settings | None) -> str:
    """Belt and braces: no secret from the settings may reach the terminal."""
    if settings is None:
        return message
    secrets = settings.secret_keys()
    try:
        dsn_password = urlsplit(settings.DATABASE_URL.get_secret_value()).password
    except ValueError:
        dsn_password = None
    if dsn_password:
        secrets.append(dsn_password)
    for value in secrets:
        message = message.replace(value, "***")
    return message


@contextlib.asynccontextmanager
async def _database(settings: Settings) -> AsyncIterator[asyncpg.Connection]:
    """One connection on a migrated database (the starter needs no pool)."""
    try:
        async with asyncio.timeout(_DB_CONNECT_TIMEOUT):
            conn = await asyncpg.connect(settings.DATABASE_URL.get_secret_value())
    except TimeoutError:
        raise StarterError(
            f"cannot connect to PostgreSQL (no answer within {_DB_CONNECT_TIMEOUT:g}s); "
            "check WARMUP_DATABASE_URL"
        ) from None
    except (OSError, asyncpg.PostgresError) as exc:
        raise StarterError(
            f"cannot connect to PostgreSQL ({type(exc).__name__}: {exc}); check WARMUP_DATABASE_URL"
        ) from None
    except Exception as exc:  # e.g. a malformed DSN: its text may hold the password, so only the type
        raise StarterError(
            f"cannot connect to PostgreSQL ({type(exc).__name__}); check WARMUP_DATABASE_URL"
        ) from None
    try:
        await migrate(conn)
        yield conn
    finally:
        await conn.close()


def _address(raw: str) -> str:
    try:
        return normalize_address(raw)
    except ValueError as exc:
        raise StarterError(str(exc), EXIT_USAGE) from None


async def _find_mailbox(conn: asyncpg.Connection, address: str) -> MailboxRecord:
    record = await get_mailbox_by_address(conn, address)
    if record is None:
        raise StarterError(
            f"--mailbox {address}: no such mailbox is enrolled; "
            "check the address or enroll it with `starter enroll`"
        )
    return record


def _ui_link(settings: Settings, workflow_id: str, io: _Io) -> str:
    return temporal_ops.web_ui_url(settings, workflow_id, io.env.get(UI_URL_ENV))


async def _enroll(args: argparse.Namespace, settings: Settings, io: _Io) -> int:
    raw: dict[str, object] = {
        "address": args.mailbox,
        "user_id": args.user,
        "smtp_host": args.smtp_host,
        "smtp_port": args.smtp_port,
        "smtp_security": args.smtp_security,
        "username": args.username,
        "secret": None,
        "timezone": args.timezone,
        "verify_tls": args.verify_tls,
        "window_start_hour": args.window_start,
        "window_end_hour": args.window_end,
        "delay_min_minutes": args.delay_min,
        "delay_max_minutes": args.delay_max,
        "ramp_start": args.ramp_start,
        "ramp_increment": args.ramp_increment,
        "ramp_ceiling": args.ramp_ceiling,
        "ramp_variance": args.ramp_variance,
    }
    # Read the secret first but report its problem together with every other one.
    secret_problems: list[str] = []
    try:
        raw["secret"] = _read_secret(args, io)
    except EnrollValidationError as exc:
        secret_problems, raw["secret"] = exc.problems, "unused placeholder"
    try:
        req: EnrollRequest = parse_enroll_request(raw, settings.default_schedule("UTC"))
    except EnrollValidationError as exc:
        raise EnrollValidationError(secret_problems + exc.problems) from None
    if secret_problems:
        raise EnrollValidationError(secret_problems)
    try:
        box = SecretBox(settings.secret_keys())
        ciphertext = box.encrypt(req.password)
    except SecretKeyError as exc:
        raise StarterError(str(exc), EXIT_USAGE) from None

    if args.check:
        try:
            reply = await check_login(req.smtp, req.password, command_timeout=settings.SMTP_TIMEOUT_SECONDS)
        except SmtpCheckError as exc:
            raise StarterError(f"--check: {exc}; nothing was stored") from None
        io.note(f"SMTP login OK at {req.smtp_host}:{req.smtp_port}: {reply}")

    # Temporal first: if it is unreachable, nothing has been written yet.
    client = await temporal_ops.connect_temporal(settings)
    async with _database(settings) as conn:
        try:
            async with conn.transaction():
                existing = await get_mailbox_by_address(conn, req.address)
                try:
                    record = await upsert_mailbox(
                        conn,
                        user_id=req.user_id,
                        address=req.address,
                        smtp=req.smtp,
                        secret_ciphertext=ciphertext,
                        schedule=req.schedule,
                    )
                except PermissionError:
                    raise StarterError(
                        f"--mailbox {req.address} is already enrolled under another user, not --user "
                        f"{req.user_id}; enroll it under its owner or remove it there first"
                    ) from None
                # The row commits only once Temporal has accepted the workflow (or the update).
                await temporal_ops.start_or_update(
                    client, record, req.schedule, req.settings_update(), settings
                )
        except (asyncpg.PostgresError, asyncpg.InterfaceError, OSError) as exc:
            raise StarterError(
                f"database error while enrolling ({type(exc).__name__}: {exc}); run the same enroll again"
            ) from None

    workflow_id = workflow_id_for(record.id)
    link = _ui_link(settings, workflow_id, io)
    if args.json:
        io.say(
            to_json(
                {
                    "mailbox_id": record.id,
                    "workflow_id": workflow_id,
                    "address": record.address,
                    "user_id": record.user_id,
                    "created": existing is None,
                    "state": record.state.value,
                    "smtp_security": record.smtp.security.value,
                    "schedule": dataclasses.asdict(req.schedule),
                    "web_ui": link,
                }
            )
        )
    else:
        verb = "Enrolled" if existing is None else "Updated"
        io.say(f"{verb} {record.address} for user {record.user_id}")
        io.say(
            table(
                [
                    ("Mailbox id", str(record.id)),
                    ("Workflow id", workflow_id),
                    ("State", record.state.value),
                    ("Web UI", link),
                ]
            )
        )
    return EXIT_OK


async def _pause(args: argparse.Namespace, settings: Settings, io: _Io) -> int:
    address = _address(args.mailbox)
    client = await temporal_ops.connect_temporal(settings)
    async with _database(settings) as conn:
        record = await _find_mailbox(conn, address)
        await temporal_ops.pause(client, record.id, args.reason, settings)
        # Mirrors the workflow, written only once the signal was accepted.
        await set_state(conn, record.id, MailboxState.PAUSED, args.reason)
    io.say(f"Paused {record.address} ({workflow_id_for(record.id)}): {args.reason}")
    return EXIT_OK


async def _resume(args: argparse.Namespace, settings: Settings, io: _Io) -> int:
    address = _address(args.mailbox)
    client = await temporal_ops.connect_temporal(settings)
    async with _database(settings) as conn:
        record = await _find_mailbox(conn, address)
        await temporal_ops.resume(client, record.id, settings)
        await set_state(conn, record.id, MailboxState.ACTIVE, "")
    io.say(f"Resumed {record.address} ({workflow_id_for(record.id)})")
    return EXIT_OK


async def _status(args: argparse.Namespace, settings: Settings, io: _Io) -> int:
    address = _address(args.mailbox)
    client = await temporal_ops.connect_temporal(settings)
    async with _database(settings) as conn:
        record = await _find_mailbox(conn, address)
    status = await temporal_ops.status(client, record.id, settings)
    if args.json:
        io.say(to_json(status))
    else:
        io.say(status_table(status, record.address, workflow_id_for(record.id), record.state))
        io.say(f"{'Web UI'.ljust(14)}  {_ui_link(settings, workflow_id_for(record.id), io)}")
    return EXIT_OK


_COMMANDS = {"enroll": _enroll, "pause": _pause, "resume": _resume, "status": _status}


async def run(
    argv: Sequence[str] | None = None,
    *,
    env: Mapping[str, str] | None = None,
    stdin: TextIO | None = None,
    stdout: TextIO | None = None,
    stderr: TextIO | None = None,
) -> int:
    """The whole command, in the caller's event loop; returns the exit code instead of exiting."""
    io = _Io(
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
        return await _COMMANDS[args.command](args, settings, io)
    except ConfigError as exc:
        io.note(f"starter: {exc}")
        return EXIT_USAGE
    except EnrollValidationError as exc:
        io.note(f"starter {args.command}: invalid input, nothing was stored:")
        for problem in exc.problems:
            io.note(f"  {_scrub(problem, settings)}")
        return EXIT_USAGE
    except StarterError as exc:
        io.note(f"starter {args.command}: {_scrub(str(exc), settings)}")
        return exc.exit_code
    except (asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
        io.note(
            f"starter {args.command}: database error ({type(exc).__name__}: "
            f"{_scrub(str(exc), settings)}); check WARMUP_DATABASE_URL"
        )
        return EXIT_FAILURE


def main(argv: Sequence[str] | None = None) -> int:
    """Console entry point (`starter`, `python -m starter`); with `argv` given, returns the exit code."""
    code = asyncio.run(run(argv))
    if argv is None:
        # Run as a program: temporalio 1.35 can abort during interpreter teardown after all work is
        # done (sdk-python #300), turning a success into exit 134. Output is flushed; skip the teardown.
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)
    return code
