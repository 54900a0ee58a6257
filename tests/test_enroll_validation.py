"""What `starter enroll` accepts and refuses, checked on the validation model alone (no services)."""

from __future__ import annotations

import dataclasses
import re
import zoneinfo

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from starter.enroll_request import EnrollRequest, EnrollValidationError, parse_enroll_request
from warmup.config import load_settings
from warmup.models import ScheduleSettings, SmtpSecurity

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
    assert req.smtp_port == 587
    assert req.security is SmtpSecurity.STARTTLS
    assert req.smtp.verify_tls is True
    assert req.password == PASSWORD
    # The model's repr (e.g. in a traceback) never shows the password.
    assert PASSWORD not in repr(req)
    assert PASSWORD not in str(req.model_dump())


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
    assert parse_enroll_request(good(smtp_port=str(port), smtp_security="none")).smtp_port == port


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
    assert "password" not in EnrollRequest.model_fields
    with pytest.raises(EnrollValidationError, match="unknown field 'password'"):
        parse_enroll_request(good(password="x"))
