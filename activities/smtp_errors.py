"""What an SMTP failure means for a warmup send: retry later, pause the mailbox, or give the slot up.

Pure: it looks only at the exception and at the step of the SMTP dialogue that raised it, so every
rule is unit-tested without a server.
"""

from __future__ import annotations

import re
import ssl
from dataclasses import dataclass
from enum import StrEnum

import aiosmtplib

from warmup.errors import (
    ERR_AUTH,
    ERR_CONFIG,
    ERR_DAILY_LIMIT,
    ERR_POLICY,
    ERR_RECIPIENT_REFUSED,
    ERR_TRANSIENT,
    ERR_UNKNOWN_OUTCOME,
)


class Stage(StrEnum):
    """The step of the SMTP dialogue under way when a failure happened."""

    CONNECT = "connect"  # TCP, implicit TLS, greeting, EHLO, STARTTLS
    AUTH = "auth"
    MAIL = "mail"
    RCPT = "rcpt"
    DATA = "data"  # from the DATA command until the server's reply to the message


class Outcome(StrEnum):
    RETRY = "retry"  # transient: nothing was delivered, Temporal's retry policy tries again
    AUTH = "auth"  # credentials refused: pause the mailbox
    POLICY = "policy"  # refused for good: pause the mailbox
    CONFIG = "config"  # the mailbox's settings cannot work (no STARTTLS, bad certificate...): pause
    UNKNOWN = "unknown"  # the message may have been delivered: never resend
    DAILY_LIMIT = "daily_limit"  # the sender's provider refuses more today: stop until the next window
    RECIPIENT = "recipient"  # the receiver's address is refused for good: it leaves the pool


# The ApplicationError.type the send raises for each outcome (RETRY's is the only retryable one);
# the mailbox workflow pauses the mailbox for those in warmup.errors.PAUSING_ERRORS.
ERROR_TYPES: dict[Outcome, str] = {
    Outcome.RETRY: ERR_TRANSIENT,
    Outcome.AUTH: ERR_AUTH,
    Outcome.POLICY: ERR_POLICY,
    Outcome.CONFIG: ERR_CONFIG,
    Outcome.UNKNOWN: ERR_UNKNOWN_OUTCOME,
    Outcome.DAILY_LIMIT: ERR_DAILY_LIMIT,
    Outcome.RECIPIENT: ERR_RECIPIENT_REFUSED,
}

# RFC 3463 enhanced status codes (class.subject.detail) that mean a sending limit of the sender's
# provider, not a fault to fix: Gmail's 550 5.4.5 "Daily user sending limit exceeded" and 421 4.7.28
# rate limit, Exchange Online's 550 5.7.233 tenant daily limit and 550 5.2.251-255 "sender throttled".
_LIMIT_CODES = frozenset({"5.4.5", "4.7.28", "5.7.233", *(f"5.2.{n}" for n in range(251, 256))})
# Words of a rate-limit reply under a generic 4.7.x ("unusual rate of unsolicited mail") and of
# Exchange Online's "554 5.2.0 ...SubmissionQuotaExceededException" (10,000 recipients a day).
_LIMIT_WORDS = re.compile(r"\brate\b|limit|unsolicited|quotaexceeded", re.IGNORECASE)
# At RCPT: the receiver's address is wrong for good: bad mailbox/destination (5.1.0-5.1.3, 5.1.6 moved,
# 5.1.10 Exchange's RecipientNotFound), disabled (5.2.1) or full (5.2.2). Not 5.1.7/5.1.8, which are
# about the *sender's* address, and not 5.7.x, a policy against the sender.
RECIPIENT_CODES = frozenset({"5.1.0", "5.1.1", "5.1.2", "5.1.3", "5.1.6", "5.1.10", "5.2.1", "5.2.2"})
# A reply without an enhanced code: 551 "user not local", or 550/553 with the classic wording.
_RECIPIENT_WORDS = re.compile(r"unknown|no such|does not exist|not found|disabled|unavailable", re.IGNORECASE)
_ENHANCED = re.compile(r"^\s*([245]\.\d{1,3}\.\d{1,3})\b")


def enhanced_code(reply: str) -> str | None:
    """The RFC 3463 code a reply's text starts with ("5.1.1"), or None."""
    found = _ENHANCED.match(reply)
    return found.group(1) if found else None


def _refusal_kind(code: int, reply: str, stage: Stage) -> Outcome | None:
    """DAILY_LIMIT or RECIPIENT when a 4xx/5xx reply means one of them, else None."""
    enhanced = enhanced_code(reply)
    if stage is not Stage.AUTH and (
        enhanced in _LIMIT_CODES
        or (enhanced is not None and enhanced.startswith("4.7.") and _LIMIT_WORDS.search(reply))
        or (enhanced == "5.2.0" and _LIMIT_WORDS.search(reply))
    ):
        return Outcome.DAILY_LIMIT
    if stage is Stage.RCPT and 500 <= code < 600:
        if enhanced is not None:
            return Outcome.RECIPIENT if enhanced in RECIPIENT_CODES else None
        if code == 551 or (code in (550, 553) and _RECIPIENT_WORDS.search(reply)):
            return Outcome.RECIPIENT
    return None


@dataclass(frozen=True)
class SmtpFailure:
    outcome: Outcome
    stage: Stage
    code: int | None  # the server's reply code, when there was a reply
    detail: str  # the server's reply or the network error, for people; never holds the password

    def describe(self) -> str:
        """One line naming the step and the code or error, e.g. 'RCPT refused (550 5.7.1 ...)'."""
        if self.outcome is Outcome.AUTH:
            return f"SMTP login rejected ({self.reply()}): check the username/password"
        if self.outcome is Outcome.DAILY_LIMIT:
            return f"the provider's sending limit for today ({self.reply()})"
        if self.outcome is Outcome.RECIPIENT:
            return f"the recipient's address was refused ({self.reply()})"
        if self.outcome is Outcome.UNKNOWN:
            return (
                f"no reply after the message was sent ({self.detail}): it may have been delivered, "
                "so it is not resent"
            )
        if self.code is not None:
            return f"SMTP {self.stage.value.upper()} refused ({self.reply()})"
        return f"SMTP {self.stage.value} failed ({self.detail})"

    def reply(self) -> str:
        """The server's reply, code first, on one line (or the network error)."""
        text = " ".join(self.detail.split())
        return f"{self.code} {text}".strip() if self.code is not None else text


def _cert_problem(exc: BaseException) -> ssl.SSLCertVerificationError | None:
    seen: BaseException | None = exc
    for _ in range(5):  # aiosmtplib wraps the ssl error in SMTPConnectError; follow a short chain
        if seen is None:
            return None
        if isinstance(seen, ssl.SSLCertVerificationError):
            return seen
        seen = seen.__cause__ or seen.__context__
    return None


def classify(exc: BaseException, stage: Stage) -> SmtpFailure:
    """Map an exception raised by the aiosmtplib client during `stage` to what the send must do."""
    if isinstance(exc, aiosmtplib.SMTPResponseException):
        code, reply = exc.code, exc.message
        kind = _refusal_kind(code, reply, stage)
        if kind is not None:
            return SmtpFailure(kind, stage, code, reply)
        if 400 <= code < 500:
            return SmtpFailure(Outcome.RETRY, stage, code, reply)
        if code == 535 or (stage is Stage.AUTH and 500 <= code < 600):
            # 535 is "credentials invalid"; 530/534/538 during AUTH also need the account fixed.
            return SmtpFailure(Outcome.AUTH, stage, code, reply)
        if 500 <= code < 600:
            return SmtpFailure(Outcome.POLICY, stage, code, reply)
        # A reply outside 4xx/5xx where another was expected: a confused server, try again later
        # unless the message text may already be with it.
        outcome = Outcome.UNKNOWN if stage is Stage.DATA else Outcome.RETRY
        return SmtpFailure(outcome, stage, code, reply)

    cert = _cert_problem(exc)
    if cert is not None:
        return SmtpFailure(
            Outcome.CONFIG,
            stage,
            None,
            f"TLS certificate rejected: {cert.verify_message or cert}; fix the server certificate "
            "or set verify_tls off for this mailbox",
        )

    detail = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
    lost = isinstance(exc, (TimeoutError, ConnectionError, aiosmtplib.SMTPServerDisconnected, OSError))
    if stage is Stage.DATA:
        # The message text may be with the server; whatever went wrong, the outcome is unknown.
        return SmtpFailure(Outcome.UNKNOWN, stage, None, detail)
    if lost:
        # Refused, reset, DNS, timeouts: nothing was delivered, so trying again is safe.
        return SmtpFailure(Outcome.RETRY, stage, None, detail)
    if isinstance(exc, (aiosmtplib.SMTPNotSupported, aiosmtplib.SMTPException)):
        # E.g. STARTTLS or AUTH not offered: retrying cannot help, and clear text is no fallback.
        return SmtpFailure(Outcome.CONFIG, stage, None, str(exc))
    return SmtpFailure(Outcome.RETRY, stage, None, detail)
