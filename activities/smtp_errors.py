"""What an SMTP failure means for a warmup send: retry later, pause the mailbox, or give the slot up.

Pure: it looks only at the exception and at the step of the SMTP dialogue that raised it, so every
rule is unit-tested without a server.
"""

from __future__ import annotations

import ssl
from dataclasses import dataclass
from enum import StrEnum

import aiosmtplib

from warmup.errors import ERR_AUTH, ERR_CONFIG, ERR_POLICY, ERR_TRANSIENT, ERR_UNKNOWN_OUTCOME


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


# The ApplicationError.type the send raises for each outcome (RETRY's is the only retryable one);
# the mailbox workflow pauses the mailbox for those in warmup.errors.PAUSING_ERRORS.
ERROR_TYPES: dict[Outcome, str] = {
    Outcome.RETRY: ERR_TRANSIENT,
    Outcome.AUTH: ERR_AUTH,
    Outcome.POLICY: ERR_POLICY,
    Outcome.CONFIG: ERR_CONFIG,
    Outcome.UNKNOWN: ERR_UNKNOWN_OUTCOME,
}


@dataclass(frozen=True)
class SmtpFailure:
    outcome: Outcome
    stage: Stage
    code: int | None  # the server's reply code, when there was a reply
    detail: str  # the server's reply or the network error, for people; never holds the password

    def describe(self) -> str:
        """One line naming the step and the code or error, e.g. 'RCPT refused (550 5.7.1 ...)'."""
        if self.outcome is Outcome.AUTH:
            return f"SMTP login rejected ({self._reply()}): check the username/password"
        if self.outcome is Outcome.UNKNOWN:
            return (
                f"no reply after the message was sent ({self.detail}): it may have been delivered, "
                "so it is not resent"
            )
        if self.code is not None:
            return f"SMTP {self.stage.value.upper()} refused ({self._reply()})"
        return f"SMTP {self.stage.value} failed ({self.detail})"

    def _reply(self) -> str:
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
