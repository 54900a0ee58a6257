"""What `starter enroll` accepts and refuses: the validation model, and `enroll --csv` run in-process
with Temporal and PostgreSQL replaced by tripwires (no services), so hypothesis can try many files
fast; the last test runs the real CLI as a process against the real stack."""

from __future__ import annotations

import asyncio
import csv
import dataclasses
import io
import json
import os
import re
import subprocess
import sys
import uuid
import zoneinfo
from pathlib import Path
from unittest import mock

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from temporalio.service import RPCError

from starter import cli, cmd_enroll
from starter import temporal_calls as temporal_client
from starter.enroll_request import (
    EnrollValidationError,
    normalize_address,
    parse_enroll_request,
)
from tests.helpers.operator_cli import Op, op_fixture  # noqa: F401  (the fixture)
from warmup import mailbox_settings as ms
from warmup.config import load_settings
from warmup.models import ScheduleSettings, SmtpSecurity
from warmup.secrets import generate_key
from warmup.workflow_ids import user_workflow_id

PASSWORD = "Pw-7f3c9b1e-do-not-print"
ZONES = sorted(zoneinfo.available_timezones())


def good(**overrides: object) -> dict[str, object]:
    values: dict[str, object] = {
        "address": "Alice@Example.COM",
        "user_id": "acme-42",
        "smtp_host": "smtp.example.com",
        "smtp_port": "587",
        "username": "alice@example.com",
        "secret": PASSWORD,
        "timezone": "Europe/Berlin",
    }
    values.update(overrides)
    return values


def problems(**overrides: object) -> str:
    with pytest.raises(EnrollValidationError) as info:
        parse_enroll_request(good(**overrides))
    text = str(info.value)
    assert PASSWORD not in text
    return text


def test_a_good_request_is_normalised() -> None:
    req = parse_enroll_request(good())
    assert req.address == "alice@example.com"
    assert req.smtp.port == 587
    assert req.security is SmtpSecurity.STARTTLS
    assert req.smtp.verify_tls is True
    assert req.password == PASSWORD
    # The model's repr (e.g. in a traceback) never shows the password.
    assert PASSWORD not in repr(req)
    assert PASSWORD not in str(req.values)


@pytest.mark.parametrize(
    ("port", "security"),
    [(465, SmtpSecurity.TLS), (587, SmtpSecurity.STARTTLS), (25, SmtpSecurity.STARTTLS)],
)
def test_security_defaults_from_the_port(port: int, security: SmtpSecurity) -> None:
    assert parse_enroll_request(good(smtp_port=port)).security is security


def test_other_ports_need_an_explicit_security_mode() -> None:
    text = problems(smtp_port=2525)
    assert "--smtp-security is required for port 2525" in text
    assert parse_enroll_request(good(smtp_port=2525, smtp_security="none")).security is SmtpSecurity.NONE


def test_clear_text_only_when_chosen() -> None:
    # No port derives "none": it exists only as an explicit choice.
    for port in (25, 465, 587):
        assert parse_enroll_request(good(smtp_port=port)).security is not SmtpSecurity.NONE
    assert parse_enroll_request(good(smtp_port=25, smtp_security="none")).security is SmtpSecurity.NONE


def test_port_and_mode_that_contradict_each_other_explain_the_right_mode() -> None:
    assert "--smtp-security tls" in problems(smtp_port=465, smtp_security="starttls")
    assert "--smtp-security starttls" in problems(smtp_port=587, smtp_security="tls")


@pytest.mark.parametrize(
    "address",
    ["", "alice", "alice@", "@example.com", "a@@example.com", "a@b@example.com", "alice@example",
     "alice@exa mple.com", "al ice@example.com", "alice@-example.com", "alice@example..com",
     ".a@example.com"],
)  # fmt: skip
def test_bad_addresses_name_the_mailbox_flag(address: str) -> None:
    assert "--mailbox" in problems(address=address)


@pytest.mark.parametrize("address", ["bob@demo.test", "bob@localhost", "Bob.Smith+warm@Mail.Example.co.uk"])
def test_test_domains_and_plus_addresses_are_accepted(address: str) -> None:
    assert parse_enroll_request(good(address=address)).address == address.lower()


@given(st.integers().filter(lambda p: not 1 <= p <= 65535))
def test_any_port_outside_the_range_is_rejected(port: int) -> None:
    assert "--smtp-port" in problems(smtp_port=port, smtp_security="none")


@given(st.integers(min_value=1, max_value=65535))
def test_any_port_inside_the_range_is_accepted(port: int) -> None:
    assert parse_enroll_request(good(smtp_port=str(port), smtp_security="none")).smtp.port == port


@given(st.text(max_size=40).filter(lambda s: s.strip() not in zoneinfo.available_timezones()))
def test_any_string_that_is_not_a_zone_is_rejected(name: str) -> None:
    assert "--timezone" in problems(timezone=name)


@given(st.sampled_from(ZONES))
def test_every_iana_zone_is_accepted(name: str) -> None:
    assert parse_enroll_request(good(timezone=name)).schedule.timezone == name


def test_a_misspelt_zone_gets_a_suggestion() -> None:
    text = problems(timezone="Mars/Olympus")
    assert "--timezone 'Mars/Olympus' is not an IANA time zone" in text
    assert "Europe/Berlin" in problems(timezone="Europe/Berln")


_USER_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")


@given(st.from_regex(_USER_ID, fullmatch=True))
def test_valid_user_ids_are_accepted(user_id: str) -> None:
    assert parse_enroll_request(good(user_id=user_id)).user_id == user_id


@given(st.text(max_size=80).filter(lambda s: not _USER_ID.fullmatch(s.strip())))
def test_invalid_user_ids_are_rejected(user_id: str) -> None:
    assert "--user" in problems(user_id=user_id)


@pytest.mark.parametrize("secret", [None, "", "   "])
def test_a_missing_secret_names_both_ways_to_give_it(secret: str | None) -> None:
    text = problems(secret=secret)
    assert "--secret-env" in text and "--secret-stdin" in text


def test_a_multi_line_secret_is_refused_without_echoing_it() -> None:
    text = problems(secret=PASSWORD + "\nsecond line")
    assert "single line" in text


@settings(max_examples=50)
@given(st.integers(min_value=0, max_value=23), st.integers(min_value=1, max_value=24))
def test_window_must_open_before_it_closes(start: int, end: int) -> None:
    values = good(window_start_hour=start, window_end_hour=end)
    if start < end:
        req = parse_enroll_request(values)
        assert (req.schedule.window_start_hour, req.schedule.window_end_hour) == (start, end)
    else:
        text = problems(window_start_hour=start, window_end_hour=end)
        assert "--window-start" in text and "--window-end" in text


@pytest.mark.parametrize(
    ("field", "value", "flag"),
    [
        ("window_start_hour", -1, "--window-start"),
        ("window_start_hour", 24, "--window-start"),
        ("window_end_hour", 0, "--window-end"),
        ("window_end_hour", 25, "--window-end"),
        ("delay_min_minutes", 0, "--delay-min"),
        ("delay_max_minutes", -3, "--delay-max"),
        ("delay_min_minutes", "nan", "--delay-min"),
        ("delay_max_minutes", "soon", "--delay-max"),
        ("ramp_start", -1, "--ramp-start"),
        ("ramp_increment", -1, "--ramp-increment"),
        ("ramp_ceiling", "1.5", "--ramp-ceiling"),
        ("ramp_variance", 0.6, "--ramp-variance"),
        ("ramp_variance", -0.1, "--ramp-variance"),
        ("smtp_port", "abc", "--smtp-port"),
        ("smtp_port", 587.5, "--smtp-port"),
        ("smtp_host", "not a host", "--smtp-host"),
        ("username", "", "--username"),
    ],
)
def test_out_of_range_values_name_their_flag(field: str, value: object, flag: str) -> None:
    assert flag in problems(**{field: value})


def test_cross_field_limits() -> None:
    text = problems(delay_min_minutes=12, delay_max_minutes=3, ramp_start=50, ramp_ceiling=10)
    # Both problems are reported at once, each naming its flags.
    assert "--delay-min (12) must not exceed --delay-max (3)" in text
    assert "--ramp-start (50) must not exceed --ramp-ceiling (10)" in text
    req = parse_enroll_request(good(delay_min_minutes=3, delay_max_minutes=3, ramp_start=0, ramp_ceiling=0))
    assert req.schedule.delay_min_minutes == req.schedule.delay_max_minutes == 3


def test_schedule_defaults_come_from_the_warmup_environment() -> None:
    env = {
        "WARMUP_SEND_WINDOW_START_HOUR": "9",
        "WARMUP_SEND_WINDOW_END_HOUR": "17",
        "WARMUP_SAME_MAILBOX_DELAY_MIN": "4",
        "WARMUP_SAME_MAILBOX_DELAY_MAX": "8",
        "WARMUP_RAMP_START_VOLUME": "3",
        "WARMUP_RAMP_DAILY_INCREMENT": "1",
        "WARMUP_RAMP_CEILING": "20",
        "WARMUP_RAMP_DAILY_VARIANCE": "0.2",
    }
    defaults = load_settings(env).default_schedule("UTC")
    req = parse_enroll_request(good(ramp_ceiling="30"), defaults)
    s = req.schedule
    assert (s.timezone, s.window_start_hour, s.window_end_hour) == ("Europe/Berlin", 9, 17)
    assert (s.delay_min_minutes, s.delay_max_minutes) == (4, 8)
    assert (s.ramp.start_volume, s.ramp.daily_increment, s.ramp.ceiling, s.ramp.daily_variance) == (
        3,
        1,
        30,
        0.2,
    )
    # A flag that conflicts with a default is reported against the flag.
    with pytest.raises(
        EnrollValidationError, match=re.escape("--window-start (18) must be before --window-end (17)")
    ):
        parse_enroll_request(good(window_start_hour=18), defaults)


def test_the_settings_update_carries_every_schedule_field() -> None:
    update = parse_enroll_request(good(timezone="Asia/Tokyo", ramp_variance="0.1")).settings_update()
    # Every schedule field; the plan fields (weight, parent) belong to the user workflow.
    assert all(getattr(update, f.name) is not None for f in dataclasses.fields(ScheduleSettings))
    assert update.timezone == "Asia/Tokyo"
    assert update.ramp is not None and update.ramp.daily_variance == 0.1


def test_every_problem_is_reported_at_once() -> None:
    with pytest.raises(EnrollValidationError) as info:
        parse_enroll_request(good(address="nope", smtp_port="0", timezone="Mars/Olympus", secret=None))
    text = "\n".join(info.value.problems)
    for flag in ("--mailbox", "--smtp-port", "--timezone", "--secret-env"):
        assert flag in text


def test_the_model_has_no_password_field() -> None:
    # The secret only ever arrives through --secret-env/--secret-stdin, as `secret`.
    assert "password" not in ms.BY_NAME
    with pytest.raises(EnrollValidationError, match="unknown field 'password'"):
        parse_enroll_request(good(password="x"))


# ---- enroll --csv: bad rows and bad files, through the whole command in-process ---------------------
# The command must refuse the file before it connects to anything, so Temporal and PostgreSQL are
# replaced by functions that fail the test if called: "nothing written" is then true by construction.

CSV_COLUMNS = [
    "mailbox", "user", "smtp_host", "smtp_port", "username", "timezone", "secret",
    "window_start", "window_end", "ramp_start", "ramp_ceiling", "ramp_variance",
]  # fmt: skip
_KEY = generate_key()
_SAFE_TEXT = st.text(st.characters(blacklist_categories=("Cs", "Cc", "Zl", "Zp")), max_size=30)
# Hints a fix names: every message must tell the operator what to write instead.
_FIX_WORDS = (
    "must",
    "give",
    "use ",
    "e.g.",
    "list each",
    "fill",
    "add ",
    "save",
    "quote",
    "keep",
    "one cell",
)


def _good_row(i: int, draw_zone: str, port: str) -> dict[str, str]:
    address = f"good{i}@csv.test"
    return {
        "mailbox": address,
        "user": f"user{i % 3}",
        "smtp_host": "smtp.csv.test",
        "smtp_port": port,
        "username": address,
        "timezone": draw_zone,
        "secret": PASSWORD,
        "window_start": "6",
        "window_end": "22",
        "ramp_start": "5",
        "ramp_ceiling": "40",
        "ramp_variance": "0.1",
    }


def _cells(row: dict[str, str]) -> list[str]:
    return [row[c] for c in CSV_COLUMNS]


def _not_an_address(value: str) -> bool:
    try:
        normalize_address(value)
    except ValueError:
        return True
    return False


# (column, bad value strategy, the column the message must name)
_BAD_CELLS: list[tuple[str, st.SearchStrategy[str], str]] = [
    ("mailbox", _SAFE_TEXT.filter(_not_an_address), "mailbox"),
    ("user", _SAFE_TEXT.filter(lambda s: not _USER_ID.fullmatch(s.strip())), "user"),
    ("smtp_host", st.sampled_from(["not a host", "-bad-.example", "a..b", "host_name.test"]), "smtp_host"),
    (
        "smtp_port",
        st.one_of(
            st.integers().filter(lambda p: not 1 <= p <= 65535).map(str),
            st.sampled_from(["abc", "58 7", "587.5", "0x24b", " "]),
        ),
        "smtp_port",
    ),
    ("timezone", _SAFE_TEXT.filter(lambda s: s.strip() not in zoneinfo.available_timezones()), "timezone"),
    (
        "ramp_start",
        st.one_of(
            st.integers(max_value=-1).map(str),
            st.integers(min_value=10_001).map(str),
            st.sampled_from(["1.5", "five", "nan", "41"]),  # 41: above the row's ceiling of 40
        ),
        "ramp_start",
    ),
    ("ramp_ceiling", st.sampled_from(["-1", "4", "10001", "lots"]), "ramp_ceiling"),  # 4: below ramp_start
    (
        "ramp_variance",
        st.one_of(
            st.floats(min_value=0.5, exclude_min=True, allow_nan=False, allow_infinity=False).map(str),
            st.floats(max_value=0, exclude_max=True, allow_nan=False, allow_infinity=False).map(str),
            st.sampled_from(["inf", "nan", "a tenth"]),
        ),
        "ramp_variance",
    ),
    ("window_start", st.sampled_from(["22", "23", "-1", "24", "noon"]), "window_start"),  # >= window_end 22
    ("window_end", st.sampled_from(["6", "0", "25", "5"]), "window_end"),
    ("secret", st.sampled_from(["", "  "]), "secret"),
    # A quoted cell over two lines: the row is named by the line it starts on.
    ("timezone", st.sampled_from(["Europe/\nBerlin", "UTC\n\nUTC"]), "timezone"),
    ("username", st.sampled_from(["ann\n@csv.test"]), "username"),
]


@st.composite
def csv_with_bad_rows(draw: st.DrawFn) -> tuple[str, dict[int, str]]:
    """A CSV file of good rows with bad ones mixed in (and blank lines, and quoted cells that span
    lines); returns it and {the line each bad row starts on: the column its message must name}."""
    zones, ports = st.sampled_from(ZONES), st.sampled_from(["25", "465", "587"])
    rows: list[tuple[list[str], str | None]] = [
        (_cells(_good_row(i, draw(zones), draw(ports))), None)
        for i in range(draw(st.integers(min_value=1, max_value=6)))
    ]
    for j in range(draw(st.integers(min_value=1, max_value=3))):
        kind = draw(st.sampled_from(["cell", "cell", "cell", "duplicate", "short", "long"]))
        row = _good_row(100 + j, "UTC", "587")
        position = draw(st.integers(min_value=1 if kind == "duplicate" else 0, max_value=len(rows)))
        if kind == "cell":
            column, values, named = draw(st.sampled_from(_BAD_CELLS))
            row[column] = draw(values)
            cells = _cells(row)
        elif kind == "duplicate":
            # good0's address in other letter case, after it: one mailbox listed twice.
            row["mailbox"], named = "GOOD0@CSV.test", "mailbox"
            position = max(position, next(i for i, (r, _) in enumerate(rows) if r[0] == "good0@csv.test") + 1)
            cells = _cells(row)
        elif kind == "short":
            cells, named = _cells(row)[:-2], CSV_COLUMNS[-1]  # the message lists the missing columns
        else:
            cells, named = [*_cells(row), "surplus"], "cells"
        rows.insert(position, (cells, named))
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(CSV_COLUMNS)
    blame: dict[int, str] = {}
    for row_cells, blamed in rows:
        if draw(st.integers(min_value=0, max_value=4)) == 0:
            out.write("\n")  # a blank line is skipped, but still counts for the line numbers
        if blamed is not None:
            blame[out.getvalue().count("\n") + 1] = blamed
        writer.writerow(row_cells)
    return out.getvalue(), blame


def _must_not_write(*_: object, **__: object) -> None:
    raise AssertionError("the command tried to connect to Temporal or PostgreSQL for an invalid file")


def _run_csv(path: Path, *extra: str) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    env = {"WARMUP_SECRET_KEYS": _KEY, "PATH": os.environ.get("PATH", "")}
    with (
        mock.patch.object(temporal_client, "connect_temporal", _must_not_write),
        mock.patch.object(cmd_enroll, "database", _must_not_write),
    ):
        code = asyncio.run(
            cli.run(
                ["enroll", "--csv", str(path), *extra], env=env, stdin=io.StringIO(), stdout=out, stderr=err
            )
        )
    return code, out.getvalue(), err.getvalue()


_ROOT = Path(__file__).resolve().parent.parent


def _write(tmp: Path, data: bytes) -> Path:
    path = tmp / "mailboxes.csv"
    path.write_bytes(data)
    path.chmod(0o600)
    return path


@settings(max_examples=40, deadline=None)
@given(csv_with_bad_rows())
def test_any_bad_row_among_good_ones_stores_nothing_and_names_its_line_and_column(
    tmp_path_factory: pytest.TempPathFactory, case: tuple[str, dict[int, str]]
) -> None:
    text, blame = case
    path = _write(tmp_path_factory.mktemp("csv"), text.encode())
    code, out, err = _run_csv(path, "--json")
    assert code == 2, err
    report = json.loads(out)
    assert report["stored"] is False
    bad = {r["line"]: r["problems"] for r in report["rows"] if r["status"] == "invalid"}
    assert set(bad) == set(blame), (bad, blame)
    for line, column in blame.items():
        assert any(column in p for p in bad[line]), (line, column, bad[line])
        for p in bad[line]:
            assert any(w in p for w in _FIX_WORDS), p
            assert f"line {line}: {p}" in err
    assert all(r["status"] == "valid" for r in report["rows"] if r["line"] not in blame)
    assert "nothing was stored" in err
    assert PASSWORD not in out + err


def _header_text(columns: list[str]) -> str:
    return ",".join(columns) + "\n"


_ROW = ",".join(_good_row(0, "UTC", "587")[c] for c in CSV_COLUMNS) + "\n"

# (file bytes, what the message must name)
_BAD_FILES: list[tuple[bytes, tuple[str, ...]]] = [
    (b"", ("empty", "mailbox,user")),
    (b"\n\n", ("empty",)),
    (_header_text(CSV_COLUMNS).encode(), ("no rows",)),
    (_ROW.encode() + _ROW.encode(), ("line 1", "looks like a mailbox row", "mailbox,user")),
    (_header_text([*CSV_COLUMNS, "colour"]).encode() + _ROW.encode(), ("line 1", "'colour'")),
    (_header_text([c for c in CSV_COLUMNS if c != "timezone"]).encode(), ("line 1", "missing", "timezone")),
    (_header_text([c for c in CSV_COLUMNS if c != "secret"]).encode(), ("line 1", "password column")),
    (_header_text([*CSV_COLUMNS, "user"]).encode(), ("line 1", "user appear twice")),
    (_header_text(CSV_COLUMNS).encode() + _ROW.encode() + b'x@csv.test,"open\n', ("line 3", "quote")),
]


@settings(max_examples=30, deadline=None)
@given(
    st.sampled_from(_BAD_FILES),
    st.integers(min_value=0, max_value=4),
    st.binary(min_size=1, max_size=4).filter(lambda b: b"\n" not in b and _not_utf8(b)),
    st.booleans(),
)
def test_any_unusable_file_is_refused_whole_naming_the_line(
    tmp_path_factory: pytest.TempPathFactory,
    bad_file: tuple[bytes, tuple[str, ...]],
    good_rows: int,
    junk: bytes,
    non_utf8: bool,
) -> None:
    data, expected = bad_file
    if non_utf8:
        # Good rows, then a line with bytes that are not UTF-8: the line is named, nothing decoded.
        data = (
            _header_text(CSV_COLUMNS).encode() + _ROW.encode() * good_rows + b"bad@csv.test," + junk + b"\n"
        )
        expected = (f"line {good_rows + 2} is not UTF-8", "save the file as UTF-8")
    path = _write(tmp_path_factory.mktemp("csv"), data)
    code, out, err = _run_csv(path)
    assert code == 2, err
    assert out == ""
    for fragment in expected:
        assert fragment in err, (fragment, err)
    assert "nothing was stored" in err
    assert PASSWORD not in err


def _not_utf8(data: bytes) -> bool:
    try:
        data.decode("utf-8")
    except UnicodeDecodeError:
        return True
    return False


def test_a_dry_run_of_a_good_file_checks_every_row_and_writes_nothing(tmp_path: Path) -> None:
    text = _header_text(CSV_COLUMNS) + _ROW + _ROW.replace("good0", "good1")
    code, out, err = _run_csv(_write(tmp_path, text.encode()), "--dry-run", "--json")
    assert code == 0, err
    report = json.loads(out)
    assert report["counts"]["valid"] == 2 and report["stored"] is False


# ---- the real CLI, as a process, against the real stack -------------------------------------------


async def test_the_real_cli_refuses_a_bad_file_whole_and_the_stack_stays_empty(
    op: Op, tmp_path: Path
) -> None:
    user = f"csv-{uuid.uuid4().hex[:8]}"  # unique: user workflows live on the shared dev server

    def row(address: str, zone: str = "UTC") -> bytes:
        return f"{address},{user},127.0.0.1,2525,none,{address},{zone},{PASSWORD}\n".encode()

    header = b"mailbox,user,smtp_host,smtp_port,smtp_security,username,timezone,secret\n"
    cases = [
        (
            header + row("a@csv.test") + row("b@csv.test", "Mars/Olympus") + row("c@csv.test"),
            "line 3: timezone",
        ),
        (header + row("a@csv.test") + b"b@csv.test," + user.encode() + b",\xff\xfe\n", "line 3 is not UTF-8"),
    ]
    for data, expected in cases:
        path = _write(tmp_path, data)
        proc = await asyncio.to_thread(
            subprocess.run,
            [sys.executable, "-m", "starter", "enroll", "--csv", str(path)],
            env=op.env,
            cwd=_ROOT,
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
        assert proc.returncode == 2, proc.stderr
        assert expected in proc.stderr and "nothing was stored" in proc.stderr
        assert PASSWORD not in proc.stdout + proc.stderr
    # Nothing in PostgreSQL, and the user's workflow (started by any enrollment) does not exist.
    assert await op.fetch("SELECT id FROM mailboxes") == []
    assert await op.fetch("SELECT id FROM users WHERE id = $1", user) == []
    with pytest.raises(RPCError):
        await op.client.get_workflow_handle(user_workflow_id(user)).describe()


def test_a_required_schedule_setting_is_not_taken_from_the_defaults() -> None:
    # The timezone has a configured default for the workflow, but enroll must be told it.
    assert "--timezone is required" in problems(timezone=None)
