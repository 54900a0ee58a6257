"""The error types of a warmup send and of a refused update: `ApplicationError.type` values.

The activity raises them, the workflows react to them by name, and the send ledger keeps the type
as the prefix of `error` ("SmtpAuthRejected: 535 ...") for the metrics and `starter report` to
count. One home, so the raiser and every reader spell them alike.
"""

from __future__ import annotations

ERR_TRANSIENT = "SmtpTransientError"  # retryable: Temporal's retry policy backs off and tries again
ERR_AUTH = "SmtpAuthRejected"  # 535: wrong credentials, pause the mailbox
ERR_POLICY = "SmtpPolicyRejected"  # 5xx: refused by policy, pause the mailbox
ERR_UNKNOWN_OUTCOME = "SendOutcomeUnknown"  # no reply after DATA: do not resend
ERR_CONFIG = "MailboxConfigError"  # missing mailbox, bad key: pause with the reason
ERR_CAP_DEFERRED = "CapDeferred"  # a cap is full: retried after the window frees a place
ERR_CAP_WINDOW_CLOSED = "CapWindowClosed"  # the caps kept the slot waiting past its window: given up
# The sender's provider refused it for today (550 5.4.5 daily limit, 421 4.7.x rate limit): today's
# remaining sends are given up and the mailbox sends again at its next window; not a pause.
ERR_DAILY_LIMIT = "SmtpDailyLimit"
# The receiver's address was refused for good at RCPT (550 5.1.1 unknown user, 5.2.1 disabled...):
# the receiver leaves the pool; the sender is not at fault and goes on.
ERR_RECIPIENT_REFUSED = "RecipientRefused"
# The OAuth2 provider refused the stored refresh token (expired, revoked, consent withdrawn): pause the
# mailbox until its user signs in again (`starter authorize`).
ERR_OAUTH_SIGN_IN = "OAuthSignInRequired"
PAUSING_ERRORS = frozenset({ERR_AUTH, ERR_POLICY, ERR_CONFIG, ERR_OAUTH_SIGN_IN})
# What a FAILED ledger row can have been recorded with (the prefix of its `error`).
RECORDED_FAILURES = frozenset(
    {ERR_CAP_WINDOW_CLOSED, ERR_TRANSIENT, ERR_DAILY_LIMIT, ERR_RECIPIENT_REFUSED}
) | (PAUSING_ERRORS)
# The IMAP server refused the login: engagement stops for this mailbox (with the reason), sending goes on.
ERR_IMAP_AUTH = "ImapAuthRejected"
# An Update validator refused the request (another user's mailbox, an invalid setting): nothing
# entered the workflow's history; the message says why.
ERR_REFUSED = "UpdateRefused"


def ledger_error(error_type: str, reason: str) -> str:
    """The send ledger's `error` text of a send given up: its type first, so that `warmup.fleet`
    can count errors by kind (the part before the first ':') and a later attempt can raise it again."""
    return f"{error_type}: {reason}"
