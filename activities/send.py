"""The `send_email` activity: one warmup email per idempotency key, never two.

The ledger row (keyed mailbox:day:slot) is written before anything is sent and moves
PENDING -> SENDING right before DATA, then SENT on the server's 250. A later attempt that finds
SENDING cannot know whether the server kept the message, so it records UNKNOWN and sends nothing:
a lost email is cheaper for a warmup than a duplicate.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import datetime as dt
import hashlib
import logging
import random
import time
from collections.abc import AsyncIterator
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import asyncpg
from temporalio import activity
from temporalio.exceptions import ApplicationError, ApplicationErrorCategory

from activities import cap_gate
from activities.ledger_writes import (
    forget_pending,
    insert_pending,
    mark_failed,
    mark_retry,
    mark_sent,
    mark_unknown,
)
from activities.message import build_message, build_reply
from activities.recipient_refusals import Refusal, record_refusal, sender_at_fault_reason
from activities.recipients import choose_recipient
from activities.replies import DueReply
from activities.send_start import read_start
from activities.smtp_errors import ERROR_TYPES, Outcome, SmtpFailure, Stage, classify
from warmup import caps
from warmup.config import Settings
from warmup.db import Conn
from warmup.errors import (
    ERR_AUTH,
    ERR_CAP_DEFERRED,
    ERR_CAP_WINDOW_CLOSED,
    ERR_CONFIG,
    ERR_OAUTH_SIGN_IN,
    ERR_POLICY,
    ERR_RECIPIENT_REFUSED,
    ERR_TRANSIENT,
    ERR_UNKNOWN_OUTCOME,
    RECORDED_FAILURES,
    ledger_error,
)
from warmup.ledger import LedgerRow, ledger_row
from warmup.mailboxes import MailboxRecord, get_mailbox, pause_mailbox
from warmup.models import MailboxState, SendRequest, SendResult, SendStatus
from warmup.oauth_tokens import SignInRequired, TokenError, TokenSource, TokenUnavailable
from warmup.secrets import SecretBox, SecretKeyError
from warmup.smtp_client import log_in, quit_or_drop, smtp_client

log = logging.getLogger(__name__)

# How long the SENT update after a 250 keeps trying while PostgreSQL is unreachable (at most; never
# past the attempt's start-to-close timeout). Giving up leaves the row SENDING, which the next attempt
# turns into UNKNOWN: the truth ("it was sent") would then be lost, so this one write is worth a wait.
MARK_SENT_PATIENCE = 60.0
# Errors meaning "the database is unreachable right now", not "this statement is wrong".
_DB_UNREACHABLE: tuple[type[BaseException], ...] = (
    OSError,  # refused or reset while connecting
    TimeoutError,
    asyncpg.PostgresConnectionError,  # includes ConnectionDoesNotExistError: dropped mid-query
    asyncpg.exceptions.OperatorInterventionError,  # shutting down, or starting and not ready yet
)


def _config_error(mailbox_id: int, text: str) -> ApplicationError:
    return ApplicationError(f"mailbox {mailbox_id}: {text}", type=ERR_CONFIG, non_retryable=True)


def _scrub(text: str, secret: str) -> str:
    # A server that echoes what it was sent must not carry the password into history or logs.
    return text.replace(secret, "***") if len(secret) >= 3 else text


def _recorded_failure(row: LedgerRow) -> tuple[str, str]:
    """(error type, reason) a FAILED row was recorded with; the type is stored as the error's prefix."""
    prefix, _, reason = row.error.partition(": ")
    if prefix in RECORDED_FAILURES:
        return prefix, reason
    return (ERR_AUTH if row.smtp_code == 535 else ERR_POLICY), row.error


class SendActivities:
    """Holds the clients the activity needs; it receives ids only, never secrets."""

    def __init__(
        self, pool: asyncpg.Pool, secrets: SecretBox, settings: Settings, tokens: TokenSource | None = None
    ) -> None:
        self._pool = pool
        self._secrets = secrets
        self._settings = settings
        self._windows = caps.windows(settings)
        # OAuth2 access tokens, cached per process (workers/run.py shares one with the inbox activities).
        self._tokens = tokens or TokenSource(
            pool,
            secrets,
            margin_seconds=settings.OAUTH_TOKEN_MARGIN_SECONDS,
            timeout=settings.OAUTH_TIMEOUT_SECONDS,
        )
        self._cap_waiters = 0  # attempts of this worker waiting for their user's cap (_wait_for_user_cap)

    @activity.defn(name="send_email")
    async def send_email(self, req: SendRequest) -> SendResult:
        async with _heartbeating():
            return await self._send_email(req)

    async def _send_email(self, req: SendRequest) -> SendResult:
        key = req.idempotency_key
        try:
            day = dt.date.fromisoformat(req.day)
        except ValueError:
            raise _config_error(
                req.mailbox_id, f"SendRequest.day {req.day!r} is not an ISO date (YYYY-MM-DD)"
            ) from None
        if req.slot < 0:
            raise _config_error(req.mailbox_id, f"SendRequest.slot {req.slot} must be 0 or more")

        async with self._pool.acquire() as conn:
            start = await read_start(conn, req.mailbox_id, key, day, self._windows, req.dispatched_at)
            if start is None:
                # `starter enroll` commits the row only once Temporal accepted the workflow, so the
                # first send can arrive a moment early: retry (with backoff) rather than pause.
                raise ApplicationError(
                    f"mailbox {req.mailbox_id}: not in the database (yet); if this persists, enroll it again",
                    type=ERR_TRANSIENT,
                )
            sender, row, recipient = start.sender, start.row, start.recipient_address
            if sender.state is MailboxState.REMOVED:
                raise _config_error(req.mailbox_id, f"{sender.address} was removed; nothing is sent for it")
            if row is None:
                row, recipient = await self._record_new_send(conn, sender, req, day, start.due)
            settled = await self._settled(conn, row)
            if settled is not None:
                return settled
        if recipient is None:  # the foreign key makes this a deleted-by-hand case
            raise _config_error(req.mailbox_id, f"recipient mailbox {row.recipient_id} no longer exists")

        if sender.oauth is not None:
            try:
                token = await self._tokens.access_token(sender.id, sender.address)
            except TokenError as exc:
                raise await self._token_failure(sender, row, exc) from None
            return await self._deliver(
                req, start.gate, sender, row, recipient, token.token, cached=not token.fresh
            )
        try:
            password = self._secrets.decrypt(sender.secret_ciphertext)
        except SecretKeyError as exc:
            raise _config_error(req.mailbox_id, f"cannot decrypt the SMTP password: {exc}") from None
        return await self._deliver(req, start.gate, sender, row, recipient, password)

    async def _after_delivery(self, req: SendRequest) -> None:
        """Runs after the SENT update, before returning; tests override it to simulate a crash there."""

    # --- the ledger ----------------------------------------------------------------------------

    async def _record_new_send(
        self, conn: Conn, sender: MailboxRecord, req: SendRequest, day: dt.date, due: DueReply | None
    ) -> tuple[LedgerRow, str | None]:
        """Decide what this slot sends, once: a due reply first, else a new thread (activities/replies.py).
        Returns the row and its receiver's address."""
        key = req.idempotency_key
        try:
            tz: dt.tzinfo = ZoneInfo(sender.schedule.timezone)
        except (ZoneInfoNotFoundError, ValueError):
            tz = dt.UTC
        now = dt.datetime.fromtimestamp(req.dispatched_at, tz=tz)
        # Unknown outside this install, so a Message-ID cannot be recomputed from the guessable key.
        salt = hashlib.sha256(sender.secret_ciphertext.encode("ascii")).digest()
        if due is not None:
            message_id, text = build_reply(due.original_message, key, now, salt=salt)
            row = await self._insert(
                conn, sender, req, day, due.original_sender_id, message_id, text, due.ledger_id
            )
            if row is not None:
                return row, await self._address_of(
                    conn, row, due.original_sender_id, due.original_sender_address
                )
        recipient = await choose_recipient(conn, sender.id, day, key)
        if recipient is None:
            # Not the mailbox's fault and usually brief (the user is still enrolling the rest of the
            # pool): retry with backoff instead of pausing it.
            raise ApplicationError(
                f"mailbox {sender.id}: no other active mailbox to send to yet; enroll at least one more",
                type=ERR_TRANSIENT,
            )
        message_id, text = build_message(key, sender.address, None, recipient.address, now, salt=salt)
        row = await self._insert(
            conn, sender, req, day, recipient.id, message_id, text, None, recipient.relaxed
        )
        if row is None:  # insert_pending returns None only for a reply
            raise RuntimeError(f"ledger row {key} was not written")
        return row, await self._address_of(conn, row, recipient.id, recipient.address)

    @staticmethod
    async def _address_of(conn: Conn, row: LedgerRow, chosen_id: int, chosen_address: str) -> str | None:
        """The row's receiver: the one just chosen, unless a concurrent attempt wrote the row first."""
        if row.recipient_id == chosen_id:
            return chosen_address
        recipient = await get_mailbox(conn, row.recipient_id)
        return None if recipient is None else recipient.address

    @staticmethod
    async def _insert(
        conn: Conn,
        sender: MailboxRecord,
        req: SendRequest,
        day: dt.date,
        recipient_id: int,
        message_id: str,
        text: str,
        in_reply_to: int | None,
        relaxed: str = "",
    ) -> LedgerRow | None:
        # Two concurrent attempts converge on whichever row was inserted first.
        return await insert_pending(
            conn,
            idempotency_key=req.idempotency_key,
            sender_id=sender.id,
            user_id=sender.user_id,
            recipient_id=recipient_id,
            day=day,
            slot=req.slot,
            message_id=message_id,
            message=text,
            planned_at=req.planned_at,
            dispatched_at=req.dispatched_at,
            in_reply_to=in_reply_to,
            relaxed=relaxed,
            quota=req.quota,
        )

    async def _settled(self, conn: Conn, row: LedgerRow) -> SendResult | None:
        """The result for a send already decided by an earlier attempt, or None to send now (PENDING)."""
        mailbox_id, key = row.sender_id, row.idempotency_key
        for _ in range(3):  # a concurrent attempt may move the row while we look
            if row.status in (SendStatus.SENT, SendStatus.REPLIED):
                return SendResult(row.status, row.recipient_id, row.message_id, already_done=True)
            if row.status is SendStatus.PENDING:
                return None
            if row.status is SendStatus.FAILED:
                error_type, reason = _recorded_failure(row)
                raise ApplicationError(
                    f"mailbox {mailbox_id}: send {key} was refused earlier: {reason}",
                    type=error_type,
                    non_retryable=True,
                )
            if row.status is SendStatus.UNKNOWN:
                raise self._unknown_error(mailbox_id, key, row.error or "an earlier attempt got no reply")
            # SENDING: an earlier attempt died during DATA; the server may have the message.
            reason = "an earlier attempt stopped during DATA; the server may have the message"
            if await mark_unknown(conn, key, reason):
                raise self._unknown_error(mailbox_id, key, reason)
            fresh = await ledger_row(conn, key)
            if fresh is None:
                break
            row = fresh
        raise ApplicationError(f"mailbox {mailbox_id}: send {key} keeps changing state; try again")

    @staticmethod
    def _unknown_error(mailbox_id: int, key: str, reason: str) -> ApplicationError:
        return ApplicationError(
            f"mailbox {mailbox_id}: outcome of send {key} is unknown ({reason}); it is not resent",
            type=ERR_UNKNOWN_OUTCOME,
            non_retryable=True,
        )

    # --- SMTP ----------------------------------------------------------------------------------

    async def _deliver(
        self,
        req: SendRequest,
        gate: cap_gate.GateDecision,
        sender: MailboxRecord,
        row: LedgerRow,
        recipient: str,
        password: str,
        cached: bool = False,  # `password` is an OAuth2 access token from this worker's cache
    ) -> SendResult:
        key = row.idempotency_key
        early = await self._wait_for_user_cap(req, sender.user_id, gate)
        if early.binding is not None:
            raise await self._defer(req, sender, key, early)
        client = await smtp_client(sender.smtp, self._settings.SMTP_TIMEOUT_SECONDS)
        stage = Stage.CONNECT
        try:
            try:
                await client.connect()
                if client.is_ehlo_or_helo_needed:
                    await client.ehlo()
                stage = Stage.AUTH
                if sender.smtp.username:
                    await log_in(client, sender.smtp.username, password, oauth2=sender.oauth is not None)
                stage = Stage.MAIL
                await client.mail(sender.address)
                stage = Stage.RCPT
                await client.rcpt(recipient)
            except Exception as exc:
                failure = classify(exc, stage)
                if cached and failure.outcome is Outcome.AUTH:
                    # The server no longer takes a cached access token (revoked before its expiry): the
                    # retry fetches a new one, and only a refusal of that one pauses the mailbox.
                    self._tokens.forget(sender.id)
                    failure = dataclasses.replace(failure, outcome=Outcome.RETRY)
                raise await self._failure(sender, row, failure, password) from None

            async with self._pool.acquire() as conn:
                decision = await cap_gate.claim(conn, key, sender.user_id, self._windows, row.day)
                if decision.binding is not None:
                    raise await self._defer(req, sender, key, decision)
                if not decision.claimed:
                    # Another attempt got to DATA first: never send a second copy. If it is still
                    # under way, a later retry finds its outcome (or SENDING, then UNKNOWN).
                    current = await ledger_row(conn, key)
                    if current is not None and current.status not in (SendStatus.PENDING, SendStatus.SENDING):
                        settled = await self._settled(conn, current)
                        if settled is not None:
                            return settled
                    raise ApplicationError(f"mailbox {sender.id}: another attempt of send {key} is under way")

            stage = Stage.DATA
            try:
                reply = await client.data(row.message.encode("utf-8"))
            except Exception as exc:
                raise await self._failure(sender, row, classify(exc, stage), password) from None

            await self._record_sent(sender.id, key, reply.code, row.in_reply_to)
            log.info(
                "mailbox %s: sent %s to mailbox %s (%s)", sender.id, key, row.recipient_id, row.message_id
            )
        except asyncio.CancelledError:
            client.close()  # the worker is stopping: no goodbye, and the row stays as it is
            raise
        finally:
            await quit_or_drop(client)
        await self._after_delivery(req)
        return SendResult(SendStatus.SENT, row.recipient_id, row.message_id, binding_cap=row.binding_cap)

    async def _wait_for_user_cap(
        self, req: SendRequest, user_id: str, first: cap_gate.GateDecision
    ) -> cap_gate.GateDecision:
        """The unlocked look before connecting (`first`: the one read with the ledger row); while only
        the user's own cap binds, wait here and look again.

        A retry is a new dispatch, and the task queue's dispatch rate is the global cap: a user held
        by its own cap would spend it on attempts that send nothing while other users' mail waits.
        Waiting inside the attempt costs one worker slot instead (at most half of them wait at once)
        and only if the wait fits the attempt's start-to-close beside its SMTP round trips. A worker
        that is stopping ends the wait: the send goes back to Temporal's retry for any worker, rather
        than holding this one's shutdown for up to a minute and then sending.
        """
        early = first
        while True:
            binding = early.binding
            if binding is None or binding.scope != "user" or not activity.in_activity():
                return early
            if activity.is_worker_shutdown():
                return early
            info = activity.info()
            timeout = info.start_to_close_timeout
            smtp_needs = self._settings.SMTP_TIMEOUT_SECONDS * 6 + 10
            delay = early.wait_seconds + random.uniform(0.05, 1.5)  # spread the user's waiters
            if timeout is None or self._cap_waiters * 2 >= self._settings.WORKER_CONCURRENCY:
                return early
            elapsed = (dt.datetime.now(dt.UTC) - info.started_time).total_seconds()
            if elapsed + delay + smtp_needs > timeout.total_seconds() or (
                req.not_after and time.time() + delay > req.not_after
            ):
                return early
            self._cap_waiters += 1
            try:
                await _sleep_unless_shutdown(delay)
            finally:
                self._cap_waiters -= 1
            async with self._pool.acquire() as conn:
                early = await cap_gate.peek(conn, user_id, self._windows)

    async def _record_sent(self, mailbox_id: int, key: str, smtp_code: int, in_reply_to: int | None) -> None:
        """The server said 250: record SENT, waiting out a short PostgreSQL outage rather than failing.

        Failing here would leave the row SENDING and the retry would call a delivered email UNKNOWN.
        The update is idempotent (SENDING/UNKNOWN -> SENT), so repeating it is safe.
        """
        patience = MARK_SENT_PATIENCE
        if activity.in_activity():
            info = activity.info()
            if info.start_to_close_timeout is not None:
                # Stop a little before Temporal gives up on this attempt; a retry must not overlap us.
                elapsed = (dt.datetime.now(dt.UTC) - info.started_time).total_seconds()
                patience = min(patience, info.start_to_close_timeout.total_seconds() - elapsed - 2.0)
        deadline = time.monotonic() + patience
        delay = 0.2
        while True:
            try:
                async with self._pool.acquire() as conn:
                    await mark_sent(conn, key, smtp_code, in_reply_to)
                return
            except _DB_UNREACHABLE as exc:
                if time.monotonic() + delay > deadline:
                    log.error(
                        "mailbox %s: send %s was delivered but PostgreSQL stayed unreachable (%s); "
                        "it will be recorded UNKNOWN",
                        mailbox_id,
                        key,
                        type(exc).__name__,
                    )
                    raise
                log.warning(
                    "mailbox %s: send %s delivered; PostgreSQL unreachable (%s), recording SENT in %.1fs",
                    mailbox_id,
                    key,
                    type(exc).__name__,
                    delay,
                )
                await asyncio.sleep(delay)
                delay = min(delay * 2, 5.0)

    async def _defer(
        self, req: SendRequest, sender: MailboxRecord, key: str, decision: cap_gate.GateDecision
    ) -> ApplicationError:
        """A cap is full: wait in Temporal's retry (no history cost), or give the slot up past its window."""
        binding = decision.binding
        assert binding is not None
        what = f"{binding.name} ({binding.cap}) reached" + (
            f" for user {sender.user_id}" if binding.scope == "user" else ""
        )
        wait = decision.wait_seconds
        if req.not_after and time.time() + wait > req.not_after:
            async with self._pool.acquire() as conn:
                await mark_failed(
                    conn, key, None, ledger_error(ERR_CAP_WINDOW_CLOSED, f"{what} until the window closed")
                )
            log.warning("mailbox %s: %s until its window closed; send %s given up", sender.id, what, key)
            return ApplicationError(
                f"mailbox {sender.id}: {what} until the window closed; the cap is binding",
                type=ERR_CAP_WINDOW_CLOSED,
                non_retryable=True,
            )
        # Spread the waiters of one window a little so they do not all wake in the same instant.
        delay = wait + random.uniform(0.05, 0.05 + min(5.0, wait * 0.1))
        log.info("mailbox %s: %s; send %s waits %.1fs", sender.id, what, key, delay)
        return ApplicationError(
            f"mailbox {sender.id}: {what}; waiting {delay:.1f}s",
            type=ERR_CAP_DEFERRED,
            next_retry_delay=dt.timedelta(seconds=delay),
            # Waiting for a cap is the system working: DEBUG, not a warning with a traceback per wait.
            category=ApplicationErrorCategory.BENIGN,
        )

    async def _failure(
        self, sender: MailboxRecord, row: LedgerRow, failure: SmtpFailure, password: str
    ) -> ApplicationError:
        """Record what the failure means in the database and return the error to raise."""
        key = row.idempotency_key
        text = _scrub(failure.describe(), password)
        message = f"mailbox {sender.id}: {text}"
        async with self._pool.acquire() as conn:
            if failure.outcome is Outcome.RETRY:
                failures = await mark_retry(conn, key, failure.code, text)
                # Temporal retries without a limit (waiting for a cap must not use up attempts), so the
                # SMTP attempts are counted here.
                if failures < self._settings.SEND_RETRY_MAX_ATTEMPTS:
                    log.warning("%s; send %s will be retried", message, key)
                    return ApplicationError(message, type=ERR_TRANSIENT, non_retryable=False)
                await mark_failed(conn, key, failure.code, ledger_error(ERR_TRANSIENT, text))
                log.warning("%s; send %s gave up after %d attempts", message, key, failures)
                return ApplicationError(
                    f"{message} (gave up after {failures} attempts)", type=ERR_TRANSIENT, non_retryable=True
                )
            if failure.outcome is Outcome.RECIPIENT:
                return await self._recipient_refused(
                    conn, sender, row, failure, text, _scrub(failure.reply(), password)
                )
            error_type = ERROR_TYPES[failure.outcome]
            if failure.outcome is Outcome.DAILY_LIMIT:
                # Not the mailbox's fault, and over by the next window: the workflow stops today's sends.
                await mark_failed(conn, key, failure.code, ledger_error(error_type, text))
                log.warning("%s; no more sends today (send %s)", message, key)
                # The reply as details: the workflow shows it as today's reason.
                reply = _scrub(failure.reply(), password)
                return ApplicationError(message, reply, type=error_type, non_retryable=True)
            if failure.outcome is Outcome.UNKNOWN:
                await mark_unknown(conn, key, text)
                log.warning("%s (send %s)", message, key)
                return ApplicationError(message, type=error_type, non_retryable=True)
            async with conn.transaction():
                await mark_failed(conn, key, failure.code, ledger_error(error_type, text))
                await pause_mailbox(conn, sender.id, text)
        log.warning("%s; mailbox paused (send %s)", message, key)
        return ApplicationError(message, type=error_type, non_retryable=True)

    async def _recipient_refused(
        self, conn: Conn, sender: MailboxRecord, row: LedgerRow, failure: SmtpFailure, text: str, reply: str
    ) -> ApplicationError:
        """The receiver's address was refused for good: it leaves the pool and this send picks another
        receiver (a retry in a second), unless it was an answer, which has no other receiver."""
        key = row.idempotency_key
        refusal = Refusal(key, sender.id, row.recipient_id, row.day, reply)
        async with conn.transaction():
            verdict = await record_refusal(conn, refusal)
            if verdict.sender_at_fault:
                reason = sender_at_fault_reason(verdict.refused_today, refusal.reply)
                await mark_failed(conn, key, failure.code, ledger_error(ERR_POLICY, reason))
                await pause_mailbox(conn, sender.id, reason)
            elif row.in_reply_to is not None:
                await mark_failed(conn, key, failure.code, ledger_error(ERR_RECIPIENT_REFUSED, text))
            else:
                await forget_pending(conn, key)
        if verdict.sender_at_fault:
            log.warning("mailbox %s paused: %s (send %s)", sender.id, reason, key)
            return ApplicationError(f"mailbox {sender.id}: {reason}", type=ERR_POLICY, non_retryable=True)
        message = f"mailbox {sender.id}: {text}; mailbox {row.recipient_id} left the pool"
        if row.in_reply_to is not None:
            log.warning("%s; the answer %s is given up", message, key)
            return ApplicationError(message, type=ERR_RECIPIENT_REFUSED, non_retryable=True)
        log.warning("%s; send %s goes to another recipient", message, key)
        return ApplicationError(
            f"{message}; this send goes to another recipient",
            type=ERR_TRANSIENT,
            next_retry_delay=dt.timedelta(seconds=1),
        )

    async def _token_failure(
        self, sender: MailboxRecord, row: LedgerRow, exc: TokenError
    ) -> ApplicationError:
        """No OAuth2 access token: retry while the endpoint is away, else record the send refused and
        pause the mailbox (sign in again, or fix the client settings)."""
        text = str(exc)
        if isinstance(exc, TokenUnavailable):
            return await self._failure(
                sender, row, SmtpFailure(Outcome.RETRY, Stage.AUTH, None, text), password=""
            )
        error_type = ERR_OAUTH_SIGN_IN if isinstance(exc, SignInRequired) else ERR_CONFIG
        async with self._pool.acquire() as conn, conn.transaction():
            await mark_failed(conn, row.idempotency_key, None, ledger_error(error_type, text))
            await pause_mailbox(conn, sender.id, text)
        log.warning("mailbox %s: %s; mailbox paused (send %s)", sender.id, text, row.idempotency_key)
        return ApplicationError(f"mailbox {sender.id}: {text}", type=error_type, non_retryable=True)


@contextlib.asynccontextmanager
async def _heartbeating() -> AsyncIterator[None]:
    """Heartbeat while a send runs longer than a third of its heartbeat timeout.

    If the worker dies, the heartbeats stop and Temporal retries the send on another worker after
    the heartbeat timeout (30 s by default), not after start-to-close (6 SMTP timeouts + 10 s).
    A send that ends sooner never heartbeats: heartbeats cost server requests (and Cloud actions).
    """
    timeout = activity.info().heartbeat_timeout if activity.in_activity() else None
    if not timeout:
        yield
        return

    async def beat(every: float) -> None:
        while True:
            await asyncio.sleep(every)
            activity.heartbeat()

    task = asyncio.create_task(beat(timeout.total_seconds() / 3))
    try:
        yield
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


async def _sleep_unless_shutdown(seconds: float) -> None:
    """Sleep `seconds`, or less if the worker begins shutting down meanwhile."""
    shutdown = asyncio.ensure_future(activity.wait_for_worker_shutdown())
    try:
        await asyncio.wait([shutdown], timeout=seconds)
    finally:
        shutdown.cancel()
