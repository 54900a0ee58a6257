"""`starter enroll`: one mailbox from flags, or many from `--csv FILE`."""

from __future__ import annotations

import argparse
import dataclasses
import getpass
import stat
import sys
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.progress import MofNCompleteColumn, Progress

from starter import setting_flags, temporal_calls
from starter.bulk_enroll import CsvFileError, ParsedRow, RowResult, decode, parse_csv, store_rows
from starter.bulk_enroll import counts as row_counts
from starter.cli_args import json_flag
from starter.context import Io, database, database_pool, ui_link
from starter.enroll_request import (
    EnrollRequest,
    EnrollValidationError,
    encrypt_secrets,
    parse_enroll_request,
    with_preset,
)
from starter.imap_check import ImapCheckError, check_imap_login
from starter.setting_flags import dest
from starter.smtp_check import SmtpCheckError, check_login
from starter.temporal_calls import StarterError
from starter.views import bulk_view, table
from warmup import mailbox_settings as ms
from warmup.config import Settings
from warmup.mailbox_settings import SecretSetting, shown_env_name
from warmup.oauth_tokens import TokenError, refresh_grant
from warmup.process_exit import EXIT_FAILURE, EXIT_OK, EXIT_USAGE
from warmup.secrets import SecretBox, SecretKeyError
from warmup.workflow_ids import mailbox_workflow_id


def read_secret(secret: SecretSetting, args: argparse.Namespace, io: Io) -> str | None:
    """The secret from stdin or the named variable; None when absent (the request check reports it)."""
    if getattr(args, dest(secret.stdin_flag)):
        if io.stdin is sys.stdin and sys.stdin.isatty():
            return getpass.getpass(f"{secret.what}: ")
        return io.stdin.readline().strip()
    name: str | None = getattr(args, dest(secret.env_flag))
    if name is not None:
        value = io.env.get(name)
        if not value:
            state = "is empty" if value == "" else "is not set"
            raise EnrollValidationError(
                [
                    f"{secret.env_flag}: the environment variable {shown_env_name(name)} {state}; export it "
                    f"with the {secret.what} (e.g. `read -rs SMTP_PASSWORD; export SMTP_PASSWORD`) or use "
                    f"{secret.stdin_flag}"
                ]
            )
        return value
    return None


async def check_logins(req: EnrollRequest, settings: Settings) -> list[str]:
    """`--check`: log in to the SMTP server and, when given, the IMAP server; a line for each. An OAuth2
    mailbox first gets an access token with its refresh token (a rotated one replaces it in `req`, so the
    one stored is the one the provider still takes)."""
    lines: list[str] = []
    password, oauth2 = req.password, req.oauth is not None
    if req.oauth is not None:
        refresh = req.secrets[ms.OAUTH_REFRESH_TOKEN.name]
        grant = await refresh_grant(
            req.oauth,
            refresh,
            req.secrets.get(ms.OAUTH_CLIENT_SECRET.name),
            req.address,
            settings.OAUTH_TIMEOUT_SECONDS,
        )
        if grant.refresh_token is not None:
            req.secrets[ms.OAUTH_REFRESH_TOKEN.name] = grant.refresh_token
        password = grant.access_token
        lines.append(f"OAuth2 access token OK from {req.oauth.token_url}")
    reply = await check_login(
        req.smtp, password, command_timeout=settings.SMTP_TIMEOUT_SECONDS, oauth2=oauth2
    )
    lines.append(f"SMTP login OK at {req.smtp.host}:{req.smtp.port}: {reply}")
    if req.imap is not None:
        username, password = req.imap_login if not oauth2 else (req.imap_login[0], password)
        found = await check_imap_login(
            req.imap,
            username,
            password,
            verify_tls=ms.VERIFY_TLS.of(req.values),
            command_timeout=settings.SMTP_TIMEOUT_SECONDS,
            oauth2=oauth2,
        )
        lines.append(f"IMAP login OK at {req.imap.host}:{req.imap.port}: {found}")
    return lines


def _secret_box(settings: Settings) -> SecretBox:
    try:
        return SecretBox(settings.secret_keys())
    except SecretKeyError as exc:
        raise StarterError(str(exc), EXIT_USAGE) from None


async def enroll(args: argparse.Namespace, settings: Settings, io: Io) -> int:
    if args.csv is not None:
        return await enroll_csv(args, settings, io)
    raw = with_preset(setting_flags.given(args, ms.USER_SETTINGS))
    missing = [s.flag for s in ms.REQUIRED if raw.get(s.name) is None]
    if missing:
        raise StarterError(
            f"the following arguments are required: {', '.join(missing)} (or --csv FILE to enroll many)",
            EXIT_USAGE,
        )
    # Read each secret first but report its problem together with every other one.
    secret_problems: list[str] = []
    for secret in ms.SECRETS:
        try:
            raw[secret.name] = read_secret(secret, args, io)
        except EnrollValidationError as exc:
            secret_problems, raw[secret.name] = secret_problems + exc.problems, "unused placeholder"
    try:
        req: EnrollRequest = parse_enroll_request(raw, settings.default_schedule("UTC"))
    except EnrollValidationError as exc:
        raise EnrollValidationError(secret_problems + exc.problems) from None
    if secret_problems:
        raise EnrollValidationError(secret_problems)
    box = _secret_box(settings)

    if args.check:
        try:
            for line in await check_logins(req, settings):
                io.note(line)
        except (SmtpCheckError, ImapCheckError, TokenError) as exc:
            raise StarterError(f"--check: {exc}; nothing was stored") from None
    try:
        ciphertexts = encrypt_secrets(box, req)  # after --check: it may have rotated the refresh token
    except SecretKeyError as exc:
        raise StarterError(str(exc), EXIT_USAGE) from None

    # Temporal first: if it is unreachable, nothing has been written yet.
    client = await temporal_calls.connect_temporal(settings)
    async with database(settings) as conn:
        record, created = await temporal_calls.enroll(client, conn, req, ciphertexts, settings)

    workflow_id = mailbox_workflow_id(record.id)
    link = ui_link(settings, workflow_id, io)
    if args.json:
        io.json(
            {
                "mailbox_id": record.id,
                "workflow_id": workflow_id,
                "address": record.address,
                "user_id": record.user_id,
                "created": created,
                "state": record.state.value,
                "smtp_security": record.smtp.security.value,
                "schedule": dataclasses.asdict(req.schedule),
                "web_ui": link,
            }
        )
    else:
        verb = "Enrolled" if created else "Updated"
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


# --- many from a CSV file ---------------------------------------------------------------------------


def _read_csv(path: str, io: Io) -> str:
    if path == "-":
        # Real stdin: decode the bytes ourselves so a non-UTF-8 line is reported, not a traceback.
        buffer = getattr(io.stdin, "buffer", None)
        return decode(buffer.read()) if buffer is not None else io.stdin.read()
    file = Path(path)
    try:
        data = file.read_bytes()
        mode = file.stat().st_mode
    except OSError as exc:
        raise StarterError(f"--csv {path}: cannot read it ({exc.strerror or exc})", EXIT_USAGE) from None
    text = decode(data)
    if mode & (stat.S_IRWXG | stat.S_IRWXO) and "secret" in text.split("\n", 1)[0].lower():
        io.note(
            f"warning: {path} may hold SMTP passwords and other users can read it; "
            f"`chmod 600 {path}`, or delete it once imported"
        )
    return text


async def _store(settings: Settings, good: list[ParsedRow], io: Io) -> bool:
    """Enroll every row, each on its own; False (nothing written) when a row is refused first. On a
    terminal a progress bar counts the rows done."""
    box = _secret_box(settings)
    client = await temporal_calls.connect_temporal(settings)
    async with database_pool(settings, settings.ENROLL_CONCURRENCY) as pool:
        if not io.err.isatty():
            return await store_rows(client, pool, box, settings, good)
        with Progress(
            *Progress.get_default_columns(), MofNCompleteColumn(), console=Console(file=io.err)
        ) as bar:
            task = bar.add_task("enrolling", total=len(good))
            return await store_rows(client, pool, box, settings, good, lambda _: bar.advance(task))


async def enroll_csv(args: argparse.Namespace, settings: Settings, io: Io) -> int:
    given = setting_flags.given_flags(args, ms.USER_SETTINGS) + setting_flags.secret_flags_given(args)
    if given:
        raise StarterError(
            f"--csv takes every mailbox setting from the file; leave out {', '.join(given)} "
            f"(columns: {', '.join(s.csv for s in ms.REQUIRED)}, secret or secret_env, ...)",
            EXIT_USAGE,
        )
    try:
        parsed = parse_csv(_read_csv(args.csv, io), io.env, settings.default_schedule("UTC"))
    except CsvFileError as exc:
        raise StarterError(f"--csv {args.csv}: {exc}; nothing was stored", EXIT_USAGE) from None
    _secret_box(settings)  # a missing key is a configuration error, reported before any row
    results: list[RowResult] = [p.result if isinstance(p, ParsedRow) else p for p in parsed]
    good = [p for p in parsed if isinstance(p, ParsedRow)]

    # The whole file is checked before anything is written: one bad row stores nothing at all.
    stored = False
    if not any(r.status == "invalid" for r in results):
        if args.check:
            for row in good:
                req = row.request
                try:
                    await check_logins(req, settings)
                except (SmtpCheckError, ImapCheckError, TokenError) as exc:
                    row.result.status, row.result.problems = "failed", [f"--check: {exc}"]
        if not args.dry_run and all(row.result.status == "valid" for row in good):
            stored = await _store(settings, good, io)

    if args.json:
        io.json(
            {
                "file": args.csv,
                "dry_run": args.dry_run,
                "stored": stored,
                "counts": row_counts(results),
                "rows": [dataclasses.asdict(r) for r in results],
            }
        )
    else:
        io.show(bulk_view(results, args.dry_run, stored))
    bad = [r for r in results if r.status in ("invalid", "failed")]
    for r in bad:
        for problem in r.problems:
            io.note(f"starter enroll: --csv {args.csv} line {r.line}: {problem}")
    if bad and not stored:
        io.note("starter enroll: nothing was stored; fix the line(s) above and run the same file again")
    c = row_counts(results)
    if c["invalid"]:
        return EXIT_USAGE
    return EXIT_FAILURE if c["failed"] else EXIT_OK


def add_parsers(sub: Any) -> None:  # argparse's private _SubParsersAction type
    enroll_cmd = sub.add_parser(
        "enroll",
        help="store a mailbox (or a CSV file of them) and start its warmup workflow",
        allow_abbrev=False,
        description="Store a mailbox and start its warmup workflow; enrolling again updates both. "
        "The SMTP password (or, with --auth oauth2, the OAuth2 refresh token and client secret) is read "
        "from an environment variable or standard input, never an argument; several secrets on stdin come "
        "one per line in this order: SMTP password, IMAP password, client secret, refresh token. "
        "With --csv, every row of the file is one mailbox: the whole file is checked first, and one "
        "bad row (reported with its line and column) stores nothing at all.",
        epilog="example: SMTP_PASSWORD=... starter enroll --mailbox alice@example.com --user acme "
        "--smtp-host smtp.example.com --smtp-port 587 --username alice@example.com "
        "--secret-env SMTP_PASSWORD --timezone Europe/Berlin --check. "
        f"CSV columns: {', '.join(s.csv for s in ms.REQUIRED)}, {ms.SMTP_SECRET.csv_value} (the password) "
        f"or {ms.SMTP_SECRET.csv_env} (a variable's name); optional "
        f"{', '.join(c for c, s in ms.CSV_COLUMNS.items() if not s.required)}, "
        f"{ms.IMAP_SECRET.csv_value} or {ms.IMAP_SECRET.csv_env} (default: the SMTP password), "
        + ", ".join(f"{x.csv_value} or {x.csv_env}" for x in ms.SECRETS if x.oauth2)
        + " (auth oauth2; then no password column is needed; smtp_host and smtp_port come from a preset "
        "oauth_provider).",
    )
    setting_flags.add_enroll_flags(enroll_cmd)
    enroll_cmd.add_argument(
        "--check", action="store_true", help="log in to the SMTP (and IMAP) server before storing anything"
    )
    enroll_cmd.add_argument("--csv", metavar="FILE", help="enroll every row of this CSV file ('-' = stdin)")
    enroll_cmd.add_argument(
        "--dry-run", action="store_true", help="with --csv: check every row, store nothing"
    )
    json_flag(enroll_cmd)

    enroll_cmd.set_defaults(handler=enroll)
