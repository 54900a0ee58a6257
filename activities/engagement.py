"""The inbox session: one IMAP login in which a mailbox finds the warmup emails it received and acts on them
like a person (issue #11).

It looks for each email by its Message-ID (from the ledger: no custom header or subject code, ever) in every
folder, records where it was first found (the placement), then after a human dwell marks it read, rescues it
from Junk, flags it, and decides an answer (sent later from one of the mailbox's own send slots, see
activities/replies.py), each as `warmup.engagement.decide` drew it from the email's key. Each action is
recorded in `engagement` only after the server confirmed it, so a session killed at any line is completed by
the next attempt without doing anything twice: a rescued email is then found in INBOX, flags are idempotent,
and what is recorded is skipped.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import TypeVar

import asyncpg
from temporalio import activity
from temporalio.exceptions import ApplicationError

from activities.bounces import parse_bounces, record_bounce, sender_bounces
from activities.imap_client import (
    FLAGGED,
    SEEN,
    FolderKind,
    FoundMessage,
    ImapAccount,
    ImapAuthError,
    ImapConfigError,
    ImapError,
    ImapSession,
    bracket,
)
from activities.recipient_refusals import record_refusal
from warmup.config import Settings
from warmup.db import Conn
from warmup.engagement import decide, is_missing
from warmup.errors import ERR_IMAP_AUTH
from warmup.events import ENGAGEMENT_OFF, PLACEMENT_LOW, record_event
from warmup.mailboxes import MailboxRecord, get_mailbox
from warmup.models import (
    EngagementTotals,
    InboxSessionReport,
    InboxSessionRequest,
    MailboxState,
    Placement,
    PlacementCheckRequest,
    PlacementReport,
    SendStatus,
)
from warmup.oauth_tokens import TokenError, TokenSource, TokenUnavailable
from warmup.placement import provider_family, sender_scores, window_start
from warmup.ramp_reaction import placement_low
from warmup.secrets import SecretBox, SecretKeyError

T = TypeVar("T")
log = logging.getLogger(__name__)

# Emails handled per session at most: a person reads a few dozen, and the rest wait for the next session.
PER_SESSION = 100
NO_IMAP = "no IMAP settings: enroll the mailbox again with --imap-host (and --imap-port/--imap-security)"

_PENDING = f"""
    SELECT l.id, l.idempotency_key, l.message_id, l.sent_at,
           e.found_in, e.rescued_at, e.seen_at, e.flagged_at, e.reply_due_at
    FROM send_ledger l LEFT JOIN engagement e ON e.ledger_id = l.id
    WHERE l.recipient_id = $1
      AND l.status IN ('{SendStatus.SENT.value}', '{SendStatus.REPLIED.value}')
      AND e.handled_at IS NULL
    ORDER BY l.sent_at, l.id
    LIMIT {PER_SESSION}
"""
_COLUMNS = frozenset(
    {"found_in", "found_at", "rescued_at", "seen_at", "flagged_at", "reply_due_at", "handled_at"}
)


@dataclass
class _Email:
    ledger_id: int
    key: str
    message_id: str
    sent_at: dt.datetime
    found_in: str | None
    rescued: bool
    seen: bool
    flagged: bool
    reply_due: bool


class EngagementActivities:
    """Holds the clients a session needs; it receives ids only, never secrets."""

    def __init__(
        self, pool: asyncpg.Pool, secrets: SecretBox, settings: Settings, tokens: TokenSource | None = None
    ) -> None:
        self._pool = pool
        self._secrets = secrets
        self._settings = settings
        self._tokens = tokens or TokenSource(
            pool,
            secrets,
            margin_seconds=settings.OAUTH_TOKEN_MARGIN_SECONDS,
            timeout=settings.OAUTH_TIMEOUT_SECONDS,
        )

    @activity.defn(name="placement_check")
    async def placement_check(self, req: PlacementCheckRequest) -> PlacementReport:
        """The sender's placement and sender bounces over its last WARMUP_PLACEMENT_DAYS send days up to
        `req.day`, with the workers' reaction thresholds: indexed reads; the one write, a placement_low event
        for the embedding product, is recorded once per mailbox and day, so any retry is harmless."""
        days, last = self._settings.PLACEMENT_DAYS, dt.date.fromisoformat(req.day)
        async with self._pool.acquire() as conn:
            scores = await sender_scores(conn, [req.mailbox_id], days, last)
            bounced, reply = await sender_bounces(conn, req.mailbox_id, window_start(last, days), last)
            placement = scores[req.mailbox_id].overall if req.mailbox_id in scores else Placement()
            report = PlacementReport(placement, days, self._settings.ramp_reaction(), bounced, reply)
            if (low := placement_low(report)) is not None:  # for the embedding product (webhooks)
                await record_event(
                    conn, req.mailbox_id, PLACEMENT_LOW, low, f"placement_low:{req.mailbox_id}:{req.day}"
                )
        return report

    @activity.defn(name="inbox_session")
    async def inbox_session(self, req: InboxSessionRequest) -> InboxSessionReport:
        async with self._pool.acquire() as conn:
            mailbox = await get_mailbox(conn, req.mailbox_id)
            if mailbox is None or mailbox.state is MailboxState.REMOVED:
                return InboxSessionReport(off=f"mailbox {req.mailbox_id} is not enrolled")
            if mailbox.imap is None:
                return InboxSessionReport(off=NO_IMAP)
            emails = [_email(r) for r in await conn.fetch(_PENDING, mailbox.id)]
        totals = EngagementTotals()
        family = provider_family(mailbox.imap.host)
        secret, cached = await self._login_secret(mailbox)
        session = ImapSession(self._account(mailbox), secret, oauth2=mailbox.oauth is not None)
        try:
            await _imap(session.open)
            found = await _imap(session.find_messages, [e.message_id for e in emails]) if emails else {}
            for email in emails:
                activity.heartbeat(email.ledger_id)
                await self._engage(session, mailbox, email, found.get(bracket(email.message_id)), totals)
            await self._read_bounces(session, mailbox)
        except ImapAuthError as exc:
            if cached:
                # A cached access token the server stopped taking: the retry fetches a new one.
                self._tokens.forget(mailbox.id)
                raise ApplicationError(f"IMAP session for {mailbox.address}: {exc}; retrying") from None
            raise await self._engagement_off(_imap_refused(mailbox, session, exc), mailbox) from None
        except ImapConfigError as exc:
            raise await self._engagement_off(_imap_refused(mailbox, session, exc), mailbox) from None
        except ImapError as exc:
            raise ApplicationError(f"IMAP session for {mailbox.address}: {exc}; retrying") from None
        finally:
            await _imap(session.close)
        return InboxSessionReport(totals, family=family)

    async def _engagement_off(self, refused: ApplicationError, mailbox: MailboxRecord) -> ApplicationError:
        """The workflow turns engagement off on this error: the embedding product hears of it (once a
        day, however often the session is retried)."""
        today = dt.datetime.now(dt.UTC).date().isoformat()
        async with self._pool.acquire() as conn:
            await record_event(
                conn, mailbox.id, ENGAGEMENT_OFF, refused.message, f"engagement_off:{mailbox.id}:{today}"
            )
        return refused

    async def _login_secret(self, mailbox: MailboxRecord) -> tuple[str, bool]:
        """The IMAP password, or an OAuth2 access token and whether it came from this worker's cache."""
        if mailbox.oauth is None:
            return self._password(mailbox), False
        try:
            token = await self._tokens.access_token(mailbox.id, mailbox.address)
        except TokenUnavailable as exc:
            raise ApplicationError(f"inbox session for {mailbox.address}: {exc}") from None
        except TokenError as exc:
            # Engagement stops with the reason; the send path pauses the mailbox for the same cause.
            refused = ApplicationError(str(exc), type=ERR_IMAP_AUTH, non_retryable=True)
            raise await self._engagement_off(refused, mailbox) from None
        return token.token, not token.fresh

    async def _engage(
        self,
        imap: ImapSession,
        mailbox: MailboxRecord,
        email: _Email,
        hit: FoundMessage | None,
        totals: EngagementTotals,
    ) -> None:
        now = dt.datetime.now(dt.UTC)
        async with self._pool.acquire() as conn:
            if hit is None:
                if is_missing(email.sent_at, now):
                    await _record(conn, email, mailbox.id, found_in="missing", handled_at=now)
                    totals.missing += 1
                return  # not delivered yet, or moved away: looked for again next session
            if email.found_in is None:
                email.found_in = hit.kind.value
                await _record(conn, email, mailbox.id, found_in=hit.kind.value, found_at=now)
                setattr(totals, hit.kind.value, getattr(totals, hit.kind.value) + 1)
        decision = decide(email.key, mailbox.schedule.engagement)
        await _dwell(decision.dwell_seconds)
        done: dict[str, object] = {}
        if email.found_in == FolderKind.JUNK.value and decision.rescue and not email.rescued:
            # Found in INBOX after a junk placement: an earlier attempt moved it and died before recording.
            hit = await _imap(imap.move_to_inbox, hit)
            done["rescued_at"] = now
            totals.rescued += 1
        wanted = ((SEEN, decision.read, email.seen), (FLAGGED, decision.important, email.flagged))
        flags = [flag for flag, want, had in wanted if want and not had]
        if flags:
            await _imap(imap.add_flags, hit, flags)
            if SEEN in flags:
                done["seen_at"] = now
                totals.read += 1
            if FLAGGED in flags:
                done["flagged_at"] = now
                totals.flagged += 1
        if decision.reply and not email.reply_due:
            done["reply_due_at"] = now + dt.timedelta(seconds=decision.reply_delay_seconds)
            totals.replies_due += 1
        async with self._pool.acquire() as conn:
            await _record(conn, email, mailbox.id, **done, handled_at=now)

    async def _read_bounces(self, imap: ImapSession, mailbox: MailboxRecord) -> None:
        """The bounces of this mailbox's own warmup mail (activities/bounces.py), each filed once and then
        marked read, as a person reads a bounce: killed in between, the next session files nothing twice."""
        today = dt.datetime.now(dt.UTC).date()
        for report, raw in await _imap(imap.unread_delivery_reports):
            activity.heartbeat()
            async with self._pool.acquire() as conn, conn.transaction():
                for bounce in parse_bounces(raw):
                    refusal = await record_bounce(conn, mailbox.id, bounce, today)
                    if refusal is not None:
                        await record_refusal(conn, refusal)
                    log.info(
                        "mailbox %s: warmup email %s %s",
                        mailbox.id,
                        bounce.original_message_id,
                        bounce.reply(),
                    )
            await _imap(imap.add_flags, report, [SEEN])

    def _account(self, mailbox: MailboxRecord) -> ImapAccount:
        assert mailbox.imap is not None
        return ImapAccount(
            host=mailbox.imap.host,
            port=mailbox.imap.port,
            username=mailbox.imap_username,
            security=mailbox.imap.security,
            verify_tls=mailbox.smtp.verify_tls,
            timeout_seconds=self._settings.SMTP_TIMEOUT_SECONDS,
        )

    def _password(self, mailbox: MailboxRecord) -> str:
        try:
            return self._secrets.decrypt(mailbox.imap_secret_ciphertext or mailbox.secret_ciphertext)
        except SecretKeyError as exc:
            raise ApplicationError(
                f"mailbox {mailbox.address}: cannot decrypt the IMAP password: {exc}",
                type=ERR_IMAP_AUTH,
                non_retryable=True,
            ) from None


def _imap_refused(mailbox: MailboxRecord, session: ImapSession, exc: ImapError) -> ApplicationError:
    return ApplicationError(
        f"IMAP login for {mailbox.address} at {session.account.host}:{session.account.port} "
        f"refused: {exc}; "
        "engagement is off until the mailbox is enrolled again with working --imap-* settings "
        "(or resumed)",
        type=ERR_IMAP_AUTH,
        non_retryable=True,
    )


def _email(row: asyncpg.Record) -> _Email:
    return _Email(
        ledger_id=int(row["id"]),
        key=row["idempotency_key"],
        message_id=row["message_id"],
        sent_at=row["sent_at"],
        found_in=row["found_in"],
        rescued=row["rescued_at"] is not None,
        seen=row["seen_at"] is not None,
        flagged=row["flagged_at"] is not None,
        reply_due=row["reply_due_at"] is not None,
    )


async def _record(conn: Conn, email: _Email, mailbox_id: int, **times: object) -> None:
    """Set each column once: a value already recorded (by an earlier attempt) is kept."""
    assert set(times) <= _COLUMNS, set(times) - _COLUMNS
    cols = list(times)
    sets = ", ".join(f"{c} = COALESCE(engagement.{c}, EXCLUDED.{c})" for c in cols)
    await conn.execute(
        f"INSERT INTO engagement (ledger_id, mailbox_id, {', '.join(cols)})"
        f" VALUES ($1, $2, {', '.join(f'${i}' for i in range(3, len(cols) + 3))})"
        f" ON CONFLICT (ledger_id) DO UPDATE SET {sets}",
        email.ledger_id,
        mailbox_id,
        *times.values(),
    )


_HEARTBEAT_EVERY = 10.0  # seconds; the workflow's heartbeat timeout is minutes


async def _imap(call: Callable[..., T], *args: object) -> T:
    # imapclient is synchronous: each call runs in a thread, one at a time, and the session heartbeats
    # while it waits, so a slow login or a long search of many emails is not taken for a dead worker.
    pending = asyncio.ensure_future(asyncio.to_thread(call, *args))
    while not (await asyncio.wait({pending}, timeout=_HEARTBEAT_EVERY))[0]:
        activity.heartbeat()
    return pending.result()


async def _dwell(seconds: float) -> None:
    """A human's pause, heartbeating so a long dwell is not taken for a dead worker."""
    while seconds > 0:
        step = min(seconds, _HEARTBEAT_EVERY)
        await asyncio.sleep(step)
        activity.heartbeat()
        seconds -= step
