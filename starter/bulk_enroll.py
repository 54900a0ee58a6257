"""`starter enroll --csv FILE`: many mailboxes from one CSV file.

Every row is checked exactly like a single `enroll` (same model, same messages, naming the row's
line and column) before anything is written. One bad row stops the whole file: half an import
would leave the operator to work out which rows went in. Once the file is valid each row is stored
and started on its own, all or nothing, so running the file again after a server failure is safe
(enrolling an address again updates it).
"""

from __future__ import annotations

import csv
import io
import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field

from starter.enroll_request import FLAGS, EnrollRequest, EnrollValidationError, parse_enroll_request
from warmup.models import ScheduleSettings

# Column -> EnrollRequest field. Headers are matched case-insensitively, '-' and '_' alike.
COLUMNS: dict[str, str] = {
    "mailbox": "address",
    "user": "user_id",
    "smtp_host": "smtp_host",
    "smtp_port": "smtp_port",
    "smtp_security": "smtp_security",
    "username": "username",
    "timezone": "timezone",
    "verify_tls": "verify_tls",
    "window_start": "window_start_hour",
    "window_end": "window_end_hour",
    "delay_min": "delay_min_minutes",
    "delay_max": "delay_max_minutes",
    "ramp_start": "ramp_start",
    "ramp_increment": "ramp_increment",
    "ramp_ceiling": "ramp_ceiling",
    "ramp_variance": "ramp_variance",
    "weekdays_only": "weekdays_only",
}
SECRET_COLUMNS = ("secret", "secret_env")  # the password itself, or the name of a variable holding it
REQUIRED = ("mailbox", "user", "smtp_host", "smtp_port", "username", "timezone")
_ENV_NAME = re.compile(r"[A-Z_][A-Z0-9_]*")

# The enroll model's messages name flags; in a file the user wrote columns.
_FLAG_TO_COLUMN = sorted(
    [(FLAGS[f], c) for c, f in COLUMNS.items() if f != "verify_tls"]
    + [("--no-verify-tls", "verify_tls"), (FLAGS["secret"], "secret/secret_env")],
    key=lambda pair: -len(pair[0]),
)


class CsvFileError(Exception):
    """The file as a whole cannot be used (unreadable, unknown or missing columns): nothing is written."""


@dataclass
class RowResult:
    line: int  # line number in the file (the header is line 1)
    mailbox: str
    status: str  # invalid | valid (dry run) | enrolled | updated | failed
    problems: list[str] = field(default_factory=list)
    mailbox_id: int | None = None
    workflow_id: str | None = None


@dataclass
class ParsedRow:
    result: RowResult
    request: EnrollRequest


def _header(name: str) -> str:
    return name.strip().lower().replace("-", "_")


def _in_columns(message: str) -> str:
    for flag, column in _FLAG_TO_COLUMN:
        message = message.replace(flag, column)
    return message


def _secret(row: Mapping[str, str], env: Mapping[str, str]) -> tuple[str | None, list[str]]:
    """The row's password and the problems finding it; the value itself never enters a message."""
    inline = (row.get("secret") or "").strip()
    var = (row.get("secret_env") or "").strip()
    if inline and var:
        return None, ["secret and secret_env are both set: give the password in one of them only"]
    if inline:
        return inline, []
    if var:
        shown = var if _ENV_NAME.fullmatch(var) else "(name not shown)"
        value = env.get(var)
        if not value:
            state = "is empty" if value == "" else "is not set"
            return None, [
                f"secret_env: the environment variable {shown} {state}; export it before the import"
            ]
        return value, []
    return None, [
        "no SMTP password: fill the secret column (the password) or secret_env (the name of an "
        "environment variable holding it)"
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
    if not any(c in headers for c in SECRET_COLUMNS):
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
        values: dict[str, object] = {COLUMNS[c]: (row.get(c) or None) for c in COLUMNS}
        secret, problems = _secret(row, env)
        values["secret"] = secret if secret is not None else "unused placeholder"
        if values.get("verify_tls") is None:
            values["verify_tls"] = True
        if values.get("weekdays_only") is None:
            values["weekdays_only"] = False
        try:
            req = parse_enroll_request(values, defaults)
        except EnrollValidationError as exc:
            problems += [_in_columns(p) for p in exc.problems]
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
    names = ("enrolled", "updated", "valid", "invalid", "failed")
    return {n: sum(1 for r in results if r.status == n) for n in names}
