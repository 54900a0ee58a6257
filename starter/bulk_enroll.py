"""`starter enroll --csv FILE`: many mailboxes from one CSV file.

Every row is checked exactly like a single `enroll` (same model, same messages, naming the row's
line and column) before anything is written. One bad row stops the whole file: half an import
would leave the operator to work out which rows went in. Once the file is valid each row is stored
and started on its own, all or nothing, several at a time, so running the file again after a server
failure is safe and quick: rows already enrolled with the same settings are reported `unchanged` and
skipped, and the others are enrolled (an address enrolled with other settings is updated).
"""

from __future__ import annotations

import asyncio
import csv
import io
import itertools
from collections.abc import Awaitable, Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import TypeVar

import asyncpg
from temporalio.client import Client

from starter import temporal_calls
from starter.enroll_request import EnrollRequest, EnrollValidationError, encrypt_secrets, parse_enroll_request
from starter.temporal_calls import StarterError
from warmup import mailbox_settings as ms
from warmup.config import Settings
from warmup.db import Conn
from warmup.mailbox_settings import csv_label
from warmup.mailboxes import ensure_users, stored_unchanged
from warmup.models import ScheduleSettings
from warmup.secrets import SecretBox
from warmup.workflow_ids import mailbox_workflow_id

# Columns come from the settings' declarations (warmup.mailbox_settings); headers are matched
# case-insensitively, '-' and '_' alike.
COLUMNS = ms.CSV_COLUMNS
SECRET_COLUMNS = tuple(c for x in ms.SECRETS for c in (x.csv_value, x.csv_env))
REQUIRED = tuple(s.csv for s in ms.REQUIRED)
T = TypeVar("T")


class CsvFileError(Exception):
    """The file as a whole cannot be used (unreadable, unknown or missing columns): nothing is written."""


# A bulk enroll stores and starts up to this many rows of one user together (one Update).
BATCH = 50
# invalid: refused by the checks; valid: checked (a dry run); unchanged: already enrolled with these
# settings and secrets, left alone; failed: refused by the server or the database.
STATUSES = ("enrolled", "updated", "unchanged", "valid", "invalid", "failed")


@dataclass
class RowResult:
    line: int  # line number in the file (the header is line 1)
    mailbox: str
    status: str  # one of STATUSES
    problems: list[str] = field(default_factory=list)
    mailbox_id: int | None = None
    workflow_id: str | None = None


@dataclass
class ParsedRow:
    result: RowResult
    request: EnrollRequest


def _header(name: str) -> str:
    return name.strip().lower().replace("-", "_")


def _secret(
    secret: ms.SecretSetting, row: Mapping[str, str], env: Mapping[str, str], *, needed: bool = True
) -> tuple[str | None, list[str]]:
    """The row's secret and the problems finding it (`needed`: its absence is one); the value itself never
    enters a message."""
    inline = (row.get(secret.csv_value) or "").strip()
    var = (row.get(secret.csv_env) or "").strip()
    if inline and var:
        return None, [
            f"{secret.csv_value} and {secret.csv_env} are both set: "
            f"give the {secret.what} in one of them only"
        ]
    if inline:
        return inline, []
    if var:
        value = env.get(var)
        if not value:
            state = "is empty" if value == "" else "is not set"
            return None, [
                f"{secret.csv_env}: the environment variable {ms.shown_env_name(var)} {state}; "
                "export it before the import"
            ]
        return value, []
    if secret.instead is not None or not needed:
        return None, []  # optional: the other secret serves, or the row's login method does not use it
    return None, [
        f"no {secret.what}: fill the {secret.csv_value} column (the {secret.what}) or {secret.csv_env} "
        "(the name of an environment variable holding it)"
    ]


def decode(data: bytes) -> str:
    """The file's text; CsvFileError naming the line of the first byte that is not UTF-8."""
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = data[: exc.start].count(b"\n") + 1
        raise CsvFileError(
            f"line {line} is not UTF-8 text (byte 0x{data[exc.start]:02x}): save the file as UTF-8 CSV"
        ) from None


def _check_header(headers: list[str], line: int) -> None:
    where = f"line {line} (the header)"
    known = set(COLUMNS) | set(SECRET_COLUMNS)
    unknown = [h for h in headers if h not in known]
    if unknown and any("@" in h or h.isdigit() for h in headers):
        # A data row where the header should be; its cells may hold a password, so none is shown.
        raise CsvFileError(
            f"{where} looks like a mailbox row, not column names: add a first line naming the "
            f"columns, e.g. {','.join([*REQUIRED, 'secret_env'])}"
        )
    if unknown:
        raise CsvFileError(
            f"{where}: unknown column(s) {', '.join(repr(h) for h in unknown)}; the first line "
            f"must name the columns, from {', '.join([*COLUMNS, *SECRET_COLUMNS])}"
        )
    missing = [c for c in REQUIRED if c not in headers]
    if missing:
        raise CsvFileError(f"{where}: missing column(s) {', '.join(missing)}: every row needs them")
    if ms.AUTH.csv not in headers and not any(
        c in headers for c in (ms.SMTP_SECRET.csv_value, ms.SMTP_SECRET.csv_env)
    ):
        raise CsvFileError(
            f"{where}: no password column: add secret (the password) or secret_env (a variable's name)"
        )
    twice = sorted({h for h in headers if headers.count(h) > 1})
    if twice:
        raise CsvFileError(f"{where}: column(s) {', '.join(twice)} appear twice: keep one of each")


def _records(text: str) -> Iterator[tuple[int, list[str]]]:
    """(the line a record starts on, its cells) for each record, blank lines skipped. A quoted cell
    may span lines, so the start is counted here: csv's line_num is where the record ends."""
    # strict: an unclosed quote is an error, not a cell that silently swallows the rows after it.
    reader = csv.reader(io.StringIO(text.removeprefix("\ufeff")), strict=True)
    while True:
        start = reader.line_num + 1
        try:
            cells = next(reader)
        except StopIteration:
            return
        except csv.Error as exc:  # an unclosed quote, a cell over the size limit
            raise CsvFileError(
                f"line {start}: not valid CSV ({exc}); check that line's quotes: a quoted cell "
                'needs its closing ", and a " inside one is written ""'
            ) from None
        if cells:
            yield start, cells


def parse_csv(text: str, env: Mapping[str, str], defaults: ScheduleSettings) -> list[RowResult | ParsedRow]:
    """Each data row validated: a RowResult (status invalid, with problems) or a ParsedRow."""
    records = _records(text)
    first = next(records, None)
    if first is None:
        raise CsvFileError(
            "the file is empty: the first line must name the columns, e.g. " + ",".join(REQUIRED)
        )
    headers = [_header(h) for h in first[1]]
    _check_header(headers, first[0])

    results: list[RowResult | ParsedRow] = []
    first_line: dict[str, int] = {}
    for line, cells in records:
        if len(cells) > len(headers):
            results.append(
                RowResult(
                    line,
                    "",
                    "invalid",
                    [f"more cells than the header's {len(headers)} columns: quote a cell holding a comma"],
                )
            )
            continue
        short = headers[len(cells) :]
        row = {h: c.strip() for h, c in zip(headers, cells, strict=False)}
        if not any(row.values()):
            continue
        if short:
            results.append(
                RowResult(
                    line,
                    row.get("mailbox", ""),
                    "invalid",
                    [f"fewer cells than the header: {', '.join(short)} missing; give one cell per column"],
                )
            )
            continue
        values: dict[str, object] = {s.name: (row.get(c) or None) for c, s in COLUMNS.items()}
        problems: list[str] = []
        for secret in ms.SECRETS:
            # A secret the row's login method does not use is passed on only if given (and then refused).
            needed = secret.needed_with(row.get(ms.AUTH.csv))
            value, found = _secret(secret, row, env, needed=needed)
            if value is not None or needed:
                values[secret.name] = value if value is not None else "unused placeholder"
            problems += found
        try:
            req = parse_enroll_request(values, defaults, csv_label)
        except EnrollValidationError as exc:
            problems += exc.problems
            results.append(RowResult(line, row.get("mailbox", ""), "invalid", problems))
            continue
        if problems:
            results.append(RowResult(line, req.address, "invalid", problems))
            continue
        if req.address in first_line:
            results.append(
                RowResult(
                    line,
                    req.address,
                    "invalid",
                    [
                        f"mailbox {req.address} is also on line {first_line[req.address]}: "
                        "list each mailbox once"
                    ],
                )
            )
            continue
        first_line[req.address] = line
        results.append(ParsedRow(RowResult(line, req.address, "valid"), req))
    if not results:
        raise CsvFileError("the file has a header but no rows")
    return results


def counts(results: list[RowResult]) -> dict[str, int]:
    return {n: sum(1 for r in results if r.status == n) for n in STATUSES}


async def _refuse_foreign(conn: Conn, rows: list[ParsedRow]) -> None:
    """Mark a row failed when its address is enrolled under another user (read-only, before any
    write, so such a file stores nothing; one query for the whole file). The other user is not named."""
    foreign = {
        r["address"]
        for r in await conn.fetch(
            "SELECT m.address FROM unnest($1::text[], $2::text[]) AS r (address, user_id)"
            " JOIN mailboxes m ON m.address = r.address WHERE m.user_id <> r.user_id",
            [row.request.address for row in rows],
            [row.request.user_id for row in rows],
        )
    }
    for row in rows:
        if row.request.address in foreign:
            row.result.status = "failed"
            row.result.problems = [
                f"mailbox {row.request.address} is already enrolled under another user, not user "
                f"{row.request.user_id}: enroll it under its owner or remove it there first"
            ]


def _batches(rows: list[ParsedRow]) -> list[list[ParsedRow]]:
    """Each user's rows in batches of at most BATCH, the users' batches in turn: a file lists a user's
    mailboxes together, and batches of one user queue at that user's workflow, so the batches in flight
    at once go to different users' workflows."""
    by_user: dict[str, list[ParsedRow]] = {}
    for row in rows:
        by_user.setdefault(row.request.user_id, []).append(row)
    per_user = [[rs[i : i + BATCH] for i in range(0, len(rs), BATCH)] for rs in by_user.values()]
    return [b for turn in itertools.zip_longest(*per_user) for b in turn if b is not None]


async def _unchanged(conn: Conn, box: SecretBox, row: ParsedRow) -> bool:
    """Whether the row is already stored with these settings and secrets (then marked `unchanged`)."""
    req = row.request
    as_stored = temporal_calls.new_mailbox(req, dict.fromkeys(req.secrets, ""))  # ciphertexts unread
    known = await stored_unchanged(conn, as_stored, req.secrets, box)
    if known is None:
        return False
    row.result.status, row.result.problems = "unchanged", []
    row.result.mailbox_id, row.result.workflow_id = known, mailbox_workflow_id(known)
    return True


async def _store_batch(
    client: Client, conn: Conn, box: SecretBox, settings: Settings, batch: list[ParsedRow]
) -> None:
    """One user's rows: stored and started together, or all failed with the reason."""
    reqs = [row.request for row in batch]
    try:
        done = await temporal_calls.enroll_many(
            client, conn, reqs, [encrypt_secrets(box, r) for r in reqs], settings
        )
    except StarterError as exc:
        for row in batch:
            row.result.status, row.result.problems = "failed", [str(exc)]
        return
    for row, (record, created) in zip(batch, done, strict=True):
        row.result.status = "enrolled" if created else "updated"
        row.result.mailbox_id, row.result.workflow_id = record.id, mailbox_workflow_id(record.id)


async def _concurrently(items: Iterable[T], concurrency: int, work: Callable[[T], Awaitable[None]]) -> None:
    queue = iter(items)

    async def worker() -> None:
        for item in queue:  # shared: each item goes to one worker
            await work(item)

    await asyncio.gather(*(worker() for _ in range(concurrency)))


async def store_rows(
    client: Client,
    pool: asyncpg.Pool,
    box: SecretBox,
    settings: Settings,
    good: list[ParsedRow],
    progress: Callable[[RowResult], None] | None = None,
) -> bool:
    """Enroll every valid row; False, with nothing written, when a row is refused first (an address
    another user owns). A row already stored with the same settings and secrets is `unchanged`: no
    Temporal call, so running a file again after an interruption goes straight to the rows not yet
    enrolled. The others go in batches of one user's rows (one transaction and one Update each, all
    or nothing per batch), `WARMUP_ENROLL_CONCURRENCY` batches at a time. `progress` hears each row
    once it is done. Used by `enroll --csv` and the API's bulk endpoint."""
    async with pool.acquire() as conn:
        await _refuse_foreign(conn, good)
        if any(row.result.status == "failed" for row in good):
            return False
        # The users first, committed: a user's first enroll would otherwise hold its new row until that
        # enroll's Temporal call returns, and its other rows would wait for it.
        await ensure_users(conn, sorted({row.request.user_id for row in good}))
    users = sorted({row.request.user_id for row in good})

    async def retire(user_id: str) -> None:
        async with pool.acquire() as conn:
            await temporal_calls.retire_orphans(client, conn, user_id, settings)

    # What an earlier run of the import left half done is finished below; what it left behind goes first.
    await _concurrently(users, settings.ENROLL_CONCURRENCY, retire)
    todo: list[ParsedRow] = []

    async def check(row: ParsedRow) -> None:
        async with pool.acquire() as conn:
            if not await _unchanged(conn, box, row):
                todo.append(row)
            elif progress is not None:
                progress(row.result)

    async def store(batch: list[ParsedRow]) -> None:
        async with pool.acquire() as conn:
            await _store_batch(client, conn, box, settings, batch)
        for row in batch:
            if progress is not None:
                progress(row.result)

    concurrency = settings.ENROLL_CONCURRENCY
    await _concurrently(good, concurrency, check)
    await _concurrently(_batches(todo), concurrency, store)
    return True
