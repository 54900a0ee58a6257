"""Which SMTP failures are retried, which pause the mailbox, and which give the slot up as unknown."""

from __future__ import annotations

import socket
import ssl

import aiosmtplib
import pytest

from activities.smtp_errors import ERROR_TYPES, Outcome, SmtpFailure, Stage, classify, enhanced_code
from warmup.errors import (
    ERR_AUTH,
    ERR_DAILY_LIMIT,
    ERR_POLICY,
    ERR_RECIPIENT_REFUSED,
    ERR_TRANSIENT,
    ERR_UNKNOWN_OUTCOME,
    PAUSING_ERRORS,
)


def pauses(failure: SmtpFailure) -> bool:
    """What the mailbox workflow does with the error type the send activity raises for it."""
    return ERROR_TYPES[failure.outcome] in PAUSING_ERRORS


@pytest.mark.parametrize(
    ("exc", "stage"),
    [
        (
            aiosmtplib.SMTPConnectError("Error connecting to h on port 25: [Errno 111] Connection refused"),
            Stage.CONNECT,
        ),
        (aiosmtplib.SMTPConnectTimeoutError("Timed out connecting to h on port 25"), Stage.CONNECT),
        (socket.gaierror(-2, "Name or service not known"), Stage.CONNECT),
        (ConnectionResetError(104, "Connection reset by peer"), Stage.MAIL),
        (aiosmtplib.SMTPReadTimeoutError("Timed out waiting for server response"), Stage.RCPT),
        (aiosmtplib.SMTPServerDisconnected("Connection lost"), Stage.AUTH),
        (aiosmtplib.SMTPConnectResponseError(421, "4.3.2 Service not available"), Stage.CONNECT),
        (aiosmtplib.SMTPAuthenticationError(454, "4.7.0 Temporary authentication failure"), Stage.AUTH),
        (aiosmtplib.SMTPSenderRefused(451, "4.3.0 Try again later", "a@x"), Stage.MAIL),
        (aiosmtplib.SMTPRecipientRefused(452, "4.5.3 Too many recipients", "b@x"), Stage.RCPT),
        (aiosmtplib.SMTPDataError(451, "4.3.0 Try again later"), Stage.DATA),
        (aiosmtplib.SMTPDataError(421, "4.4.2 Closing connection"), Stage.DATA),
    ],
)
def test_transient_failures_are_retried(exc: BaseException, stage: Stage) -> None:
    failure = classify(exc, stage)
    assert failure.outcome is Outcome.RETRY and ERROR_TYPES[failure.outcome] == ERR_TRANSIENT
    assert not pauses(failure)


def test_535_is_an_auth_rejection_naming_the_code() -> None:
    failure = classify(
        aiosmtplib.SMTPAuthenticationError(535, "5.7.8 Authentication credentials invalid"), Stage.AUTH
    )
    assert failure.outcome is Outcome.AUTH and ERROR_TYPES[failure.outcome] == ERR_AUTH
    assert pauses(failure)
    assert failure.describe() == (
        "SMTP login rejected (535 5.7.8 Authentication credentials invalid): check the username/password"
    )


@pytest.mark.parametrize(
    ("exc", "stage", "step"),
    [
        (aiosmtplib.SMTPSenderRefused(553, "5.7.1 Sender address rejected", "a@x"), Stage.MAIL, "MAIL"),
        (aiosmtplib.SMTPRecipientRefused(550, "5.7.1 Relaying denied", "b@x"), Stage.RCPT, "RCPT"),
        # About the sender's own address (Exchange's "bad outbound sender"), even at RCPT.
        (
            aiosmtplib.SMTPRecipientRefused(550, "5.1.8 Access denied, bad outbound sender", "b@x"),
            Stage.RCPT,
            "RCPT",
        ),
        # An unknown user outside RCPT is no statement about a recipient.
        (aiosmtplib.SMTPSenderRefused(550, "5.1.1 No such user", "a@x"), Stage.MAIL, "MAIL"),
        (aiosmtplib.SMTPDataError(554, "5.7.1 Message rejected as spam"), Stage.DATA, "DATA"),
        (aiosmtplib.SMTPConnectResponseError(554, "5.7.1 No SMTP service here"), Stage.CONNECT, "CONNECT"),
    ],
)
def test_other_5xx_are_policy_rejections_with_the_reply(
    exc: aiosmtplib.SMTPResponseException, stage: Stage, step: str
) -> None:
    failure = classify(exc, stage)
    assert failure.outcome is Outcome.POLICY and ERROR_TYPES[failure.outcome] == ERR_POLICY
    assert pauses(failure)
    assert failure.describe() == f"SMTP {step} refused ({exc.code} {exc.message})"


@pytest.mark.parametrize(
    "exc",
    [
        aiosmtplib.SMTPReadTimeoutError("Timed out waiting for server response"),
        aiosmtplib.SMTPServerDisconnected("Connection lost"),
        TimeoutError(),
        ConnectionResetError(104, "Connection reset by peer"),
    ],
)
def test_no_reply_after_data_is_unknown_never_retried(exc: BaseException) -> None:
    failure = classify(exc, Stage.DATA)
    assert failure.outcome is Outcome.UNKNOWN and ERROR_TYPES[failure.outcome] == ERR_UNKNOWN_OUTCOME
    assert not pauses(failure)
    assert "not resent" in failure.describe()


def test_the_same_timeout_before_data_is_retried() -> None:
    exc = aiosmtplib.SMTPReadTimeoutError("Timed out waiting for server response")
    assert classify(exc, Stage.RCPT).outcome is Outcome.RETRY
    assert classify(exc, Stage.DATA).outcome is Outcome.UNKNOWN


def test_missing_starttls_is_a_config_problem_not_a_clear_text_fallback() -> None:
    exc = aiosmtplib.SMTPException("SMTP STARTTLS extension not supported by server.")
    failure = classify(exc, Stage.CONNECT)
    assert failure.outcome is Outcome.CONFIG and pauses(failure)
    assert "STARTTLS" in failure.describe()


def test_certificate_failure_is_a_config_problem_with_the_fix() -> None:
    cert = ssl.SSLCertVerificationError(1, "certificate verify failed")
    cert.verify_message = "self-signed certificate"
    wrapped = aiosmtplib.SMTPConnectError("Error connecting to h on port 465: certificate verify failed")
    wrapped.__cause__ = cert
    failure = classify(wrapped, Stage.CONNECT)
    assert failure.outcome is Outcome.CONFIG
    assert "self-signed certificate" in failure.detail and "verify_tls" in failure.detail


@pytest.mark.parametrize(
    ("code", "reply"),
    [
        (550, "5.1.1 <gone@x>: Recipient address rejected: User unknown in virtual mailbox table"),  # Postfix
        (550, "5.1.1 The email account that you tried to reach does not exist. - gsmtp"),  # Gmail
        (
            550,
            "5.1.10 RESOLVER.ADR.RecipientNotFound; Recipient not found by SMTP address lookup",
        ),  # Exchange
        (550, "5.2.1 The email account that you tried to reach is disabled."),
        (552, "5.2.2 The email account that you tried to reach is over quota."),
        (551, "User not local; please try <other@x>"),  # no enhanced code
        (550, "Requested action not taken: mailbox unavailable"),  # RFC 5321's own wording
    ],
)
def test_a_refused_recipient_address_is_the_recipients_not_the_senders(code: int, reply: str) -> None:
    failure = classify(aiosmtplib.SMTPRecipientRefused(code, reply, "gone@x"), Stage.RCPT)
    assert failure.outcome is Outcome.RECIPIENT and ERROR_TYPES[failure.outcome] == ERR_RECIPIENT_REFUSED
    assert not pauses(failure), "the sender must go on when a recipient's address is refused"
    assert failure.describe() == f"the recipient's address was refused ({code} {reply})"


@pytest.mark.parametrize(
    ("exc", "stage"),
    [
        (aiosmtplib.SMTPDataError(550, "5.4.5 Daily user sending limit exceeded. - gsmtp"), Stage.DATA),
        (aiosmtplib.SMTPRecipientRefused(550, "5.4.5 Daily SMTP relay limit exceeded", "b@x"), Stage.RCPT),
        (
            aiosmtplib.SMTPSenderRefused(421, "4.7.28 Gmail has detected an unusual rate of mail", "a@x"),
            Stage.MAIL,
        ),
        (
            aiosmtplib.SMTPRecipientRefused(
                421, "4.7.0 Our system has detected an unusual rate of unsolicited mail", "b@x"
            ),
            Stage.RCPT,
        ),
        (aiosmtplib.SMTPDataError(550, "5.7.233 tenant has exceeded its daily limit"), Stage.DATA),
        (
            aiosmtplib.SMTPDataError(
                554, "5.2.0 STOREDRV.Submission.Exception:SubmissionQuotaExceededException"
            ),
            Stage.DATA,
        ),
        (
            aiosmtplib.SMTPSenderRefused(
                550, "5.2.255 Sender throttled due to continuous invalid recipients errors", "a@x"
            ),
            Stage.MAIL,
        ),
    ],
)
def test_a_providers_daily_or_rate_limit_stops_the_day_without_a_pause(
    exc: aiosmtplib.SMTPResponseException, stage: Stage
) -> None:
    failure = classify(exc, stage)
    assert failure.outcome is Outcome.DAILY_LIMIT and ERROR_TYPES[failure.outcome] == ERR_DAILY_LIMIT
    assert not pauses(failure)
    assert failure.describe() == f"the provider's sending limit for today ({exc.code} {exc.message})"


@pytest.mark.parametrize(
    ("exc", "stage", "outcome"),
    [
        # A 4.7.x that is no rate limit stays an ordinary retry...
        (
            aiosmtplib.SMTPRecipientRefused(421, "4.7.0 TLS required for RCPT domain", "b@x"),
            Stage.RCPT,
            Outcome.RETRY,
        ),
        # ... and a temporary login problem is not a sending limit whatever its words.
        (
            aiosmtplib.SMTPAuthenticationError(454, "4.7.0 Too many login attempts, rate limited"),
            Stage.AUTH,
            Outcome.RETRY,
        ),
        (aiosmtplib.SMTPDataError(554, "5.2.0 Message store failure"), Stage.DATA, Outcome.POLICY),
    ],
)
def test_lookalikes_of_a_limit_keep_their_usual_outcome(
    exc: BaseException, stage: Stage, outcome: Outcome
) -> None:
    assert classify(exc, stage).outcome is outcome


@pytest.mark.parametrize(
    ("reply", "code"),
    [
        ("5.1.1 No such user", "5.1.1"),
        ("  4.7.28 rate", "4.7.28"),
        ("5.1.10 x", "5.1.10"),
        ("No code", None),
        ("5.1 x", None),
    ],
)
def test_enhanced_code_is_read_from_the_start_of_the_reply(reply: str, code: str | None) -> None:
    assert enhanced_code(reply) == code
