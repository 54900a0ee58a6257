"""A mailbox's IMAP settings and engagement rates (issue #11), declared once in warmup.mailbox_settings:
what `enroll` derives and refuses, what is stored, what `update` changes, the separate IMAP password
(and its key rotation), and `enroll --check` logging in to the lab's real IMAP server."""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Callable

import asyncpg
import pytest
from hypothesis import given
from hypothesis import strategies as st
from temporalio.api.enums.v1 import EventType

from devstack.mail_lab import MailLab
from starter.cmd_enroll import check_logins
from starter.enroll_request import EnrollRequest, EnrollValidationError, parse_enroll_request
from starter.imap_check import ImapCheckError
from tests.helpers.mail_lab import LabUser, mail_lab_fixture, new_user
from tests.helpers.operator_cli import Op, eventually, op_fixture, starter, worker_fixture
from warmup import mailbox_settings as ms
from warmup.config import Settings
from warmup.mailboxes import ImapServer, NewMailbox, SmtpAccount, get_mailbox, upsert_mailbox
from warmup.models import EngagementSettings, ImapSecurity, ScheduleSettings, SmtpSecurity
from warmup.secrets import SecretBox, generate_key

__all__ = ["mail_lab_fixture", "op_fixture", "worker_fixture"]

IMAP_PASSWORD = "Imap-pw-31f0c2-do-not-print"
NO_SENDS = ("--ramp-start", "0", "--ramp-ceiling", "0")


def _request(**flags: object) -> EnrollRequest:
    raw: dict[str, object] = {
        "address": "ana@imap.test",
        "user_id": "ana",
        "smtp_host": "smtp.imap.test",
        "smtp_port": "587",
        "username": "ana@imap.test",
        "timezone": "UTC",
        "secret": "smtp-pw",
        **flags,
    }
    return parse_enroll_request(raw)


def _problems(**flags: object) -> str:
    with pytest.raises(EnrollValidationError) as caught:
        _request(**flags)
    return str(caught.value)


def test_without_an_imap_host_the_mailbox_has_no_engagement_and_needs_nothing_more() -> None:
    req = _request()
    assert req.imap is None
    assert req.imap_login == ("ana@imap.test", "smtp-pw")  # the SMTP login serves
    assert req.schedule.engagement == EngagementSettings()  # not enabled: no inbox sessions
    assert _request(imap_host="imap.imap.test").schedule.engagement.enabled


@pytest.mark.parametrize(
    ("flags", "port", "security"),
    [
        ({}, 993, ImapSecurity.TLS),
        ({"imap_port": "143"}, 143, ImapSecurity.STARTTLS),
        ({"imap_security": "starttls"}, 143, ImapSecurity.STARTTLS),
        ({"imap_port": "10993", "imap_security": "tls"}, 10993, ImapSecurity.TLS),
    ],
)
def test_the_imap_port_and_security_derive_from_each_other(
    flags: dict[str, str], port: int, security: ImapSecurity
) -> None:
    req = _request(imap_host="IMAP.Imap.Test", **flags)
    assert req.imap == ImapServer("imap.imap.test", port, security, "")


def test_a_separate_imap_login_is_kept_apart_from_the_smtp_one() -> None:
    req = _request(imap_host="imap.imap.test", imap_username="ana.imap", imap_secret=IMAP_PASSWORD)
    assert req.imap_login == ("ana.imap", IMAP_PASSWORD)
    assert IMAP_PASSWORD not in repr(req)


@pytest.mark.parametrize(
    ("flags", "expected"),
    [
        ({"imap_port": "143"}, "--imap-port given without --imap-host: add --imap-host"),
        ({"imap_secret": "x"}, "the IMAP password given without --imap-host"),
        ({"imap_host": "imap.imap.test", "imap_port": "2143"}, "--imap-security is required for port 2143"),
        ({"imap_host": "imap.imap.test", "imap_security": "none"}, "clear text: it is allowed only"),
        ({"imap_host": "h.imap.test", "imap_port": "993", "imap_security": "starttls"}, "993 uses implicit"),
        ({"imap_host": "imap.imap.test", "imap_port": "70000"}, "--imap-port must be a whole number"),
        ({"imap_host": "not a host"}, "--imap-host 'not a host' is not a host name"),
        ({"read_rate": "1.5"}, "--read-rate must be a fraction from 0 to 1 (the share of emails marked"),
        ({"inbox_sessions": "0"}, "--inbox-sessions must be a whole number from 1 to 24"),
        ({"dwell_min_seconds": "90", "dwell_max_seconds": "30"}, "--dwell-min (90) must not exceed"),
        ({"reply_delay_min_minutes": "600"}, "--reply-delay-min (600) must not exceed --reply-delay-max"),
    ],
)  # fmt: skip
def test_bad_imap_and_engagement_values_name_the_flag_and_the_fix(
    flags: dict[str, str], expected: str
) -> None:
    assert expected in _problems(**flags)


def test_clear_text_imap_is_accepted_on_loopback_only() -> None:
    req = _request(imap_host="127.0.0.1", imap_port="1143", imap_security="none")
    assert req.imap == ImapServer("127.0.0.1", 1143, ImapSecurity.NONE, "")


@given(
    rate=st.floats(allow_nan=True, allow_infinity=True),
    sessions=st.integers(-5, 40),
)
def test_the_workflow_validator_holds_engagement_to_the_same_bounds_as_enroll(
    rate: float, sessions: int
) -> None:
    """A client that skips the starter (an Update from the Temporal CLI) meets the same rules."""
    schedule = ScheduleSettings(engagement=EngagementSettings(read_rate=rate, inbox_sessions=sessions))
    problems = ms.schedule_problems(schedule)
    valid = 0 <= rate <= 1 and 1 <= sessions <= 24
    assert (problems == []) is valid, problems
    if not 0 <= rate <= 1:
        assert any(p.startswith("engagement.read_rate must be") for p in problems)


def test_every_engagement_setting_is_a_flag_a_csv_column_and_updatable() -> None:
    engagement = [
        s for s in ms.SETTINGS if s.schedule_path[:1] == ("engagement",) and s is not ms.ENGAGEMENT_ON
    ]
    fields = {f.name for f in dataclasses.fields(EngagementSettings)} - {"enabled"}  # from --imap-host
    assert {s.schedule_path[1] for s in engagement} == fields
    assert all(s.flag and s.csv and s.updatable for s in engagement)
    assert ms.IMAP_HOST.csv == "imap_host" and not ms.IMAP_HOST.updatable  # a server: changed by re-enroll


# --- stored, updated, rotated -------------------------------------------------------------------------


async def test_enroll_stores_the_imap_settings_and_the_imap_password_apart(op: Op, worker: None) -> None:
    op.env["IMAP_PASSWORD"] = IMAP_PASSWORD
    mailbox_id = await op.enroll(
        "e1@imap.test", "ivy", *NO_SENDS, "--imap-host", "imap.imap.test", "--imap-username", "e1-imap",
        "--imap-secret-env", "IMAP_PASSWORD", "--reply-rate", "0.5", "--inbox-sessions", "6",
    )  # fmt: skip
    plain = await op.enroll("e2@imap.test", "ivy", *NO_SENDS)
    conn = await asyncpg.connect(op.dsn)
    try:
        record, other = await get_mailbox(conn, mailbox_id), await get_mailbox(conn, plain)
        raw = await conn.fetchrow("SELECT * FROM mailboxes WHERE id = $1", mailbox_id)
    finally:
        await conn.close()
    assert record is not None and other is not None and raw is not None
    assert record.imap == ImapServer("imap.imap.test", 993, ImapSecurity.TLS, "e1-imap")
    assert record.schedule.engagement == EngagementSettings(enabled=True, reply_rate=0.5, inbox_sessions=6)
    box = SecretBox(op.settings.secret_keys())
    assert record.imap_secret_ciphertext is not None
    assert box.decrypt(record.imap_secret_ciphertext) == IMAP_PASSWORD
    assert IMAP_PASSWORD not in json.dumps({k: str(v) for k, v in dict(raw).items()})
    # No IMAP settings: no engagement, nothing stored for IMAP.
    assert other.imap is None and other.imap_secret_ciphertext is None
    assert other.imap_username == "e2@imap.test"

    # `update` changes a rate in the database and in the running workflow, through its validator.
    changed = (await op.ok("update", "--mailbox", "e1@imap.test", "--read-rate", "0.6", "--json")).json()
    assert isinstance(changed, dict) and changed["changed"] == {"read_rate": [0.95, 0.6]}
    stored = await op.fetch("SELECT read_rate FROM mailboxes WHERE id = $1", mailbox_id)
    assert stored[0]["read_rate"] == 0.6

    async def workflow_has_it() -> bool:
        history = await op.client.get_workflow_handle(f"mailbox-{mailbox_id}").fetch_history()
        inputs = [
            json.loads(e.workflow_execution_update_accepted_event_attributes.accepted_request.input.args.payloads[0].data)
            for e in history.events
            if e.event_type == EventType.EVENT_TYPE_WORKFLOW_EXECUTION_UPDATE_ACCEPTED
        ]  # fmt: skip
        return any((i.get("engagement") or {}).get("read_rate") == 0.6 for i in inputs)

    await eventually(workflow_has_it)
    refused = await op.run("update", "--mailbox", "e1@imap.test", "--reply-rate", "2")
    assert refused.code == 2 and "--reply-rate must be a fraction from 0 to 1" in refused.err


async def test_rotate_key_re_encrypts_the_imap_password_too(op: Op) -> None:
    old, new = op.settings.secret_keys()[0], generate_key()
    box = SecretBox([old])
    conn = await asyncpg.connect(op.dsn)
    try:
        await upsert_mailbox(
            conn,
            NewMailbox(
                user_id="rot",
                address="r1@imap.test",
                smtp=SmtpAccount("127.0.0.1", 2525, SmtpSecurity.NONE, "r1@imap.test"),
                secret_ciphertext=box.encrypt("smtp-pw"),
                schedule=ScheduleSettings(timezone="UTC"),
                imap=ImapServer("imap.imap.test"),
                imap_secret_ciphertext=box.encrypt(IMAP_PASSWORD),
            ),
        )
        run = await starter({**op.env, "WARMUP_SECRET_KEYS": f"{new},{old}"}, "rotate-key", "--json")
        assert run.code == 0, run.err
        row = await conn.fetchrow(
            "SELECT secret_ciphertext, imap_secret_ciphertext FROM mailboxes WHERE address = 'r1@imap.test'"
        )
    finally:
        await conn.close()
    assert row is not None
    only_new = SecretBox([new])
    assert only_new.decrypt(row["secret_ciphertext"]) == "smtp-pw"
    assert only_new.decrypt(row["imap_secret_ciphertext"]) == IMAP_PASSWORD
    result = run.json()
    assert isinstance(result, dict) and result["rotated"] == 2


# --- enroll --check against the lab --------------------------------------------------------------------


async def test_check_logs_in_to_the_labs_smtp_and_imap_servers(
    mail_lab: MailLab, make_settings: Callable[..., Settings]
) -> None:
    user: LabUser = new_user(mail_lab, "check")
    flags = {
        "address": user.address,
        "smtp_host": mail_lab.host,
        "smtp_port": str(mail_lab.submission_port),
        "smtp_security": "starttls",
        "username": user.address,
        "secret": user.password,
        "verify_tls": "false",  # the lab's own CA
        "imap_host": mail_lab.host,
        "imap_port": str(mail_lab.imaps_port),
        "imap_security": "tls",
    }
    lines = await check_logins(_request(**flags), make_settings())
    assert lines[0].startswith(f"SMTP login OK at {mail_lab.host}")
    assert (
        lines[1].startswith(f"IMAP login OK at {mail_lab.host}:{mail_lab.imaps_port}") and "Junk" in lines[1]
    )

    wrong = "Wrong-imap-pw-77"
    with pytest.raises(ImapCheckError) as caught:
        await check_logins(_request(**flags, imap_secret=wrong), make_settings())
    text = str(caught.value)
    assert f"IMAP login as {user.address!r}" in text and "--imap-secret-env" in text
    assert wrong not in text and user.password not in text
