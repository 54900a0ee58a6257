"""Engagement against the real mail lab (issue #11): warmup emails sent through the lab's Postfix (STARTTLS +
AUTH, scored by rspamd, some filed into Junk by a lab-only sieve rule), found by each receiver's inbox
session by Message-ID, rescued, read, flagged and answered at the configured rates; answers go out through
the same send path, threaded, and the answered email becomes REPLIED; nothing is done twice."""

from __future__ import annotations

import asyncio
import datetime as dt
import itertools
import time
from collections.abc import Callable
from email import message_from_bytes
from email.message import EmailMessage
from email.policy import default as default_policy
from typing import Any

import asyncpg
import pytest
from temporalio.exceptions import ApplicationError
from temporalio.testing import ActivityEnvironment

from activities import engagement as engagement_activity
from activities.engagement import NO_IMAP, EngagementActivities
from activities.imap_client import FLAGGED, SEEN, FolderKind, ImapAccount, ImapSession
from activities.send import SendActivities
from devstack.mail_lab import JUNK, MailLab
from starter.views import placement_text
from tests.helpers.mail_lab import LabUser, mail_lab_fixture, new_user, submit
from warmup.config import Settings
from warmup.engagement import decide
from warmup.engagement_days import by_day, engagement_days
from warmup.errors import ERR_IMAP_AUTH
from warmup.events import ENGAGEMENT_OFF, PLACEMENT_LOW
from warmup.mailboxes import ImapServer, MailboxRecord, NewMailbox, SmtpAccount, upsert_mailbox
from warmup.models import (
    EngagementSettings,
    ImapSecurity,
    InboxSessionRequest,
    PlacementCheckRequest,
    PlacementReport,
    RampSettings,
    ScheduleSettings,
    SendRequest,
    SendStatus,
    SmtpSecurity,
)
from warmup.placement import sender_scores
from warmup.ramp_reaction import Reaction, react
from warmup.secrets import SecretBox

__all__ = ["mail_lab_fixture"]

RATES = EngagementSettings(
    enabled=True,
    read_rate=0.9,
    rescue_rate=0.8,
    important_rate=0.3,
    reply_rate=0.5,
    dwell_min_seconds=0,
    dwell_max_seconds=0,
    reply_delay_min_minutes=0,
    reply_delay_max_minutes=0,
)
_slot = itertools.count()


@pytest.fixture
def settings(make_settings: Callable[..., Settings]) -> Settings:
    return make_settings(SMTP_TIMEOUT_SECONDS=15)


@pytest.fixture
def box(secret_keys: list[str]) -> SecretBox:
    return SecretBox(secret_keys)


async def enroll(
    pool: asyncpg.Pool,
    box: SecretBox,
    lab: MailLab,
    user: LabUser,
    *,
    imap_password: str | None = None,
    user_id: str | None = None,
) -> MailboxRecord:
    """`user` as a mailbox of the pool; of its own user (its local part) unless `user_id` says."""
    async with pool.acquire() as conn:
        return await upsert_mailbox(
            conn,
            NewMailbox(
                user_id=user_id or user.address.split("@")[0],
                address=user.address,
                smtp=SmtpAccount(lab.host, lab.submission_port, SmtpSecurity.STARTTLS, user.address, False),
                secret_ciphertext=box.encrypt(user.password),
                schedule=ScheduleSettings(timezone="UTC", ramp=RampSettings(5, 0, 5), engagement=RATES),
                imap=ImapServer(lab.host, lab.imaps_port, ImapSecurity.TLS),
                imap_secret_ciphertext=None if imap_password is None else box.encrypt(imap_password),
            ),
        )


async def send(acts: SendActivities, mailbox: MailboxRecord, day: str | None = None) -> str:
    """One warmup email (or answer) from `mailbox` now, through the lab, for send day `day` (default:
    today); its Message-ID."""
    now = dt.datetime.now(dt.UTC)
    req = SendRequest(
        mailbox_id=mailbox.id,
        day=day or now.date().isoformat(),
        slot=next(_slot),
        planned_at=now.timestamp(),
        dispatched_at=now.timestamp(),
    )
    result = await acts.send_email(req)
    assert result.status is SendStatus.SENT
    return result.message_id


def session(mailbox: MailboxRecord, n: int = 0) -> InboxSessionRequest:
    return InboxSessionRequest(mailbox.id, dt.date.today().isoformat(), n)


async def rows(pool: asyncpg.Pool, sql: str, *args: object) -> list[asyncpg.Record]:
    async with pool.acquire() as conn:
        return await conn.fetch(sql, *args)


def imap_of(lab: MailLab, user: LabUser) -> ImapSession:
    return ImapSession(ImapAccount(lab.host, lab.imaps_port, user.address, verify_tls=False), user.password)


async def test_a_compressed_day_of_twenty_mailboxes(
    mail_lab: MailLab, db_pool: asyncpg.Pool, box: SecretBox, settings: Settings
) -> None:
    users = [new_user(mail_lab, f"eng{i}") for i in range(20)]
    junk_senders = users[:6]
    mail_lab.force_junk_from(
        u.address for u in junk_senders
    )  # lab-only sieve rule: the product writes no marker
    boxes = [await enroll(db_pool, box, mail_lab, u) for u in users]
    sends, engage = SendActivities(db_pool, box, settings), EngagementActivities(db_pool, box, settings)
    env = ActivityEnvironment()

    sent = [await send(sends, b) for b in boxes for _ in range(3)]
    ledger = {
        r["message_id"]: r
        for r in await rows(
            db_pool,
            "SELECT l.id, l.idempotency_key, l.message_id, l.sender_id, r.address AS rcpt"
            " FROM send_ledger l JOIN mailboxes r ON r.id = l.recipient_id",
        )
    }
    for message_id in sent:  # delivered through Postfix, filed by Dovecot's sieve
        await asyncio.to_thread(mail_lab.wait_for, ledger[message_id]["rcpt"], message_id)

    reports = [await env.run(engage.inbox_session, session(b)) for b in boxes]
    total = sum((r.found.inbox + r.found.junk + r.found.other for r in reports), 0)
    assert total == len(sent), "every delivered warmup email found by Message-ID"
    junked = sum(r.found.junk for r in reports)
    assert junked > 0 and sum(r.found.junk for r in reports) == sum(
        1 for m in sent if ledger[m]["sender_id"] in {b.id for b in boxes[:6]}
    )
    # The rates: each decision as drawn from the email's key, and the aggregate near the settings.
    decisions = {m: decide(ledger[m]["idempotency_key"], RATES) for m in sent}
    engaged = await rows(db_pool, "SELECT * FROM engagement")
    by_id = {r["ledger_id"]: r for r in engaged}
    for m, d in decisions.items():
        e = by_id[ledger[m]["id"]]
        assert (e["seen_at"] is not None, e["flagged_at"] is not None, e["reply_due_at"] is not None) == (
            d.read,
            d.important,
            d.reply,
        )
        assert e["handled_at"] is not None
        if e["found_in"] == "junk":
            assert (e["rescued_at"] is not None) == d.rescue
    rescued = sum(r.found.rescued for r in reports)
    measured = {
        "found": total / len(sent),
        "rescued of junk": rescued / junked,
        "read": sum(r.found.read for r in reports) / total,
        "flagged": sum(r.found.flagged for r in reports) / total,
        "replies due": sum(r.found.replies_due for r in reports) / total,
    }
    print(f"\nengagement over {len(sent)} emails, {junked} junked: {measured}")
    # Over IMAP: the rescued ones are in INBOX, flags as recorded.
    sample = next(m for m in sent if by_id[ledger[m]["id"]]["rescued_at"] is not None)
    rcpt = next(u for u in users if u.address == ledger[sample]["rcpt"])
    with imap_of(mail_lab, rcpt) as imap:
        where = imap.find_message(sample)
    assert where is not None and where.kind is FolderKind.INBOX and SEEN in where.flags

    # A second session does nothing more: every email is handled.
    again = [await env.run(engage.inbox_session, session(b, 1)) for b in boxes]
    assert all(r.found.inbox + r.found.junk + r.found.rescued + r.found.read == 0 for r in again)

    # The answers: each replier's next send is the due answer, threaded, to the original sender.
    due = await rows(
        db_pool,
        "SELECT l.id, l.message_id, l.recipient_id, l.sender_id FROM engagement e"
        " JOIN send_ledger l ON l.id = e.ledger_id WHERE e.reply_due_at IS NOT NULL ORDER BY l.id",
    )
    assert due, "no answer decided at a 50% reply rate"
    original = due[0]
    replier = next(b for b in boxes if b.id == original["recipient_id"])
    pending_for_replier = [d for d in due if d["recipient_id"] == replier.id]
    reply_ids = [await send(sends, replier) for _ in pending_for_replier]
    replies = await rows(
        db_pool, "SELECT in_reply_to, recipient_id, message_id FROM send_ledger WHERE sender_id = $1"
        " AND in_reply_to IS NOT NULL ORDER BY id", replier.id,
    )  # fmt: skip
    assert [r["in_reply_to"] for r in replies] == [d["id"] for d in pending_for_replier]
    assert [r["message_id"] for r in replies] == reply_ids
    statuses = await rows(
        db_pool,
        "SELECT id, status::text FROM send_ledger WHERE id = ANY($1)",
        [d["id"] for d in pending_for_replier],
    )
    assert {r["status"] for r in statuses} == {SendStatus.REPLIED.value}
    # In the original sender's mailbox: Re: subject, In-Reply-To the original Message-ID.
    sender_user = next(
        u for u in users if u.address == next(b.address for b in boxes if b.id == original["sender_id"])
    )
    folder = await asyncio.to_thread(mail_lab.wait_for, sender_user.address, reply_ids[0])
    (msg,) = [m for m in mail_lab.messages(sender_user.address, folder) if m["Message-ID"] == reply_ids[0]]
    assert msg["In-Reply-To"] == original["message_id"] and str(msg["Subject"]).startswith("Re:")
    assert original["message_id"] in str(msg["References"])
    # The next send of the replier, with no answer due, is a new thread again.
    fresh = await send(sends, replier)
    (row,) = await rows(db_pool, "SELECT in_reply_to FROM send_ledger WHERE message_id = $1", fresh)
    assert row["in_reply_to"] is None

    # `starter status` and `report` read the same from the ledger, per mailbox and day.
    async with db_pool.acquire() as conn:
        days = await engagement_days(conn, [b.id for b in boxes], dt.date.today() - dt.timedelta(days=1))
    (day,) = by_day(days)
    found = day.inbox + day.junk + day.other
    assert (day.received, found, day.junk, day.missing) == (len(sent) + len(reply_ids) + 1, total, junked, 0)
    assert day.not_looked_for == len(reply_ids) + 1  # the answers and the fresh one: no session since
    assert (day.rescued, day.read, day.flagged) == (
        rescued,
        sum(r.found.read for r in reports),
        sum(r.found.flagged for r in reports),
    )
    assert day.replied == day.replies_sent == len(reply_ids)
    assert {d.mailbox_id for d in days if d.replies_sent} == {replier.id}
    shown = placement_text(days)
    assert f"% inbox ({day.inbox} of {found})" in shown  # judged = found here: none missing
    # Each sender's placement: the forced-junk senders' mail was all found in Junk, by lab receivers.
    async with db_pool.acquire() as conn:
        placement = await sender_scores(conn, [b.id for b in boxes], days=7)
    for b in boxes[:6]:
        score = placement[b.id]
        assert (score.overall.inbox, score.overall.junk, set(score.by_family)) == (0, 3, {"lab"})
        assert score.text().startswith("0% inbox over 7 days (lab 0%")
    assert sum(placement[b.id].overall.inbox for b in boxes[6:]) == day.inbox
    mail_lab.force_junk_from(())


class StopsAtThird(EngagementActivities):
    emails = 0

    async def _engage(self, *args: Any) -> None:
        self.emails += 1
        if self.emails == 3:
            raise asyncio.CancelledError  # the worker is gone
        await super()._engage(*args)


async def test_a_session_stopped_midway_is_completed_once(
    mail_lab: MailLab, db_pool: asyncpg.Pool, box: SecretBox, settings: Settings
) -> None:
    a, b = new_user(mail_lab, "killa"), new_user(mail_lab, "killb")
    mail_lab.force_junk_from([a.address])
    sender, receiver = await enroll(db_pool, box, mail_lab, a), await enroll(db_pool, box, mail_lab, b)
    sends, engage = SendActivities(db_pool, box, settings), EngagementActivities(db_pool, box, settings)
    ids = [await send(sends, sender) for _ in range(6)]
    for m in ids:
        await asyncio.to_thread(mail_lab.wait_for, b.address, m)
    # Stop the session at its third email: like a worker killed at that line.
    with pytest.raises(asyncio.CancelledError):
        await ActivityEnvironment().run(StopsAtThird(db_pool, box, settings).inbox_session, session(receiver))
    done_before = await rows(db_pool, "SELECT ledger_id FROM engagement WHERE handled_at IS NOT NULL")
    assert len(done_before) == 2
    await ActivityEnvironment().run(engage.inbox_session, session(receiver, 1))
    handled = await rows(db_pool, "SELECT * FROM engagement")
    assert len(handled) == 6 and all(h["handled_at"] is not None for h in handled)
    assert {h["found_in"] for h in handled} == {"junk"}
    with imap_of(mail_lab, b) as imap:
        found = imap.find_messages(ids)
    # Each message once (no copy left behind by a move), where its decision put it.
    assert len(mail_lab.messages(b.address)) + len(mail_lab.messages(b.address, JUNK)) == 6
    for m in ids:
        key = (await rows(db_pool, "SELECT idempotency_key FROM send_ledger WHERE message_id = $1", m))[0][0]
        d = decide(key, RATES)
        assert found[m].kind is (FolderKind.INBOX if d.rescue else FolderKind.JUNK)
        assert (SEEN in found[m].flags, FLAGGED in found[m].flags) == (d.read, d.important)
    mail_lab.force_junk_from(())


async def test_bad_imap_credentials_and_no_imap_settings(
    mail_lab: MailLab, db_pool: asyncpg.Pool, box: SecretBox, settings: Settings
) -> None:
    a, b = new_user(mail_lab, "credsa"), new_user(mail_lab, "credsb")
    wrong = "Not-the-imap-password-93"
    sender = await enroll(db_pool, box, mail_lab, a)
    receiver = await enroll(db_pool, box, mail_lab, b, imap_password=wrong)
    sends, engage = SendActivities(db_pool, box, settings), EngagementActivities(db_pool, box, settings)
    m = await send(sends, sender)
    await asyncio.to_thread(mail_lab.wait_for, b.address, m)
    with pytest.raises(ApplicationError) as caught:
        await ActivityEnvironment().run(engage.inbox_session, session(receiver))
    assert caught.value.type == ERR_IMAP_AUTH and caught.value.non_retryable
    assert b.address in caught.value.message and wrong not in caught.value.message
    assert b.password not in caught.value.message
    with pytest.raises(ApplicationError):  # retried: still refused, and told once
        await ActivityEnvironment().run(engage.inbox_session, session(receiver))
    events = await rows(db_pool, "SELECT kind, reason FROM events WHERE mailbox_id = $1", receiver.id)
    assert [e[0] for e in events] == [ENGAGEMENT_OFF], "the embedding product hears of it once"
    assert b.address in events[0][1] and wrong not in events[0][1]
    async with db_pool.acquire() as conn:
        await conn.execute("UPDATE mailboxes SET imap_host = '' WHERE id = $1", sender.id)
    report = await ActivityEnvironment().run(engage.inbox_session, session(sender))
    assert report.off == NO_IMAP


async def test_a_junked_senders_ramp_steps_down_pauses_and_recovers_with_its_placement(
    mail_lab: MailLab, db_pool: asyncpg.Pool, box: SecretBox, make_settings: Callable[..., Settings]
) -> None:
    """Issue #15: real mail, filed by the lab, found by the receivers' sessions; the placement check reads
    it per send day and the ramp's reaction follows: 33% in spam steps down, 56% pauses, a clean window
    climbs again."""
    settings = make_settings(SMTP_TIMEOUT_SECONDS=15, PLACEMENT_DAYS=2)
    a, *receivers = [new_user(mail_lab, f"ramp{i}") for i in range(4)]
    sender = await enroll(db_pool, box, mail_lab, a)
    inboxes = [await enroll(db_pool, box, mail_lab, u) for u in receivers]
    sends, engage = SendActivities(db_pool, box, settings), EngagementActivities(db_pool, box, settings)
    env, sessions = ActivityEnvironment(), itertools.count()
    start = dt.date.today()

    async def day_of_mail(day: int, junked: int, clean: int) -> PlacementReport:
        """`junked` then `clean` emails from A on send day `day`, delivered, looked at; the day's check."""
        on = (start + dt.timedelta(days=day)).isoformat()
        for n, junk in ((junked, True), (clean, False)):
            mail_lab.force_junk_from([a.address] if junk else [])
            for _ in range(n):
                m = await send(sends, sender, on)
                rcpt = (await rows(db_pool, "SELECT recipient_id FROM send_ledger WHERE message_id = $1", m))[
                    0
                ][0]
                user = receivers[[b.id for b in inboxes].index(rcpt)]
                await asyncio.to_thread(mail_lab.wait_for, user.address, m)
        for b in inboxes:
            await env.run(engage.inbox_session, session(b, next(sessions)))
        return await env.run(engage.placement_check, PlacementCheckRequest(sender.id, on))

    first = await day_of_mail(0, junked=4, clean=8)
    assert (first.placement.junk, first.placement.judged, first.days) == (4, 12, 2)
    assert first.settings == settings.ramp_reaction()
    down = react(first, previous=6, climbed=7, spacing_factor=1.0)
    assert (down.reaction, down.ramp_day, down.spacing_factor) == (Reaction.STEP_DOWN, 4, 1.5)

    second = await day_of_mail(1, junked=6, clean=0)  # the window: days 0 and 1
    assert (second.placement.junk, second.placement.judged) == (10, 18)
    paused = react(second, previous=4, climbed=5, spacing_factor=1.5)
    assert paused.reaction is Reaction.PAUSE and paused.reason.startswith("placement critical: 56% in spam")
    # Each day the ramp stepped down or paused, the embedding product was told (once a day).
    low = await rows(
        db_pool, "SELECT reason FROM events WHERE kind = $1 AND mailbox_id = $2", PLACEMENT_LOW, sender.id
    )
    assert [r[0].split(";")[0] for r in low] == [
        "placement low: 33% in spam over 2 days (4 of 12)",
        "placement low: 56% in spam over 2 days (10 of 18)",
    ]

    await day_of_mail(2, junked=0, clean=6)
    recovered = await day_of_mail(3, junked=0, clean=6)  # days 2 and 3 only: the junk has aged out
    assert (recovered.placement.inbox, recovered.placement.junk) == (12, 0)
    climb = react(recovered, previous=2, climbed=3, spacing_factor=2.25)
    assert (climb.reaction, climb.ramp_day, climb.spacing_factor) == (Reaction.CLIMB, 3, 1.5)
    mail_lab.force_junk_from(())


def _reports(lab: MailLab, address: str, folder: str) -> int:
    """Delivery reports in one folder of a lab mailbox."""
    return sum(m.get_content_type() == "multipart/report" for m in lab.messages(address, folder))


def _dsn(sender: str, original_id: str, status: str, diagnostic: str) -> EmailMessage:
    """A delivery status notification as a remote MTA mails it back (RFC 3464), about `original_id`."""
    raw = f"""From: MAILER-DAEMON@mx.remote.example
To: {sender}
Subject: Undelivered Mail Returned to Sender
Message-ID: <dsn-{time.monotonic_ns()}@mx.remote.example>
MIME-Version: 1.0
Content-Type: multipart/report; report-type=delivery-status; boundary="b1"

--b1
Content-Type: text/plain

This is the mail system at host mx.remote.example. Your message could not be delivered.

--b1
Content-Type: message/delivery-status

Reporting-MTA: dns; mx.remote.example

Final-Recipient: rfc822; someone@remote.example
Action: failed
Status: {status}
Diagnostic-Code: smtp; {diagnostic}

--b1
Content-Type: text/rfc822-headers

From: {sender}
Message-ID: {original_id}
Subject: lunch

--b1--
"""
    msg = message_from_bytes(raw.encode(), policy=default_policy)
    assert isinstance(msg, EmailMessage)
    return msg


async def test_bounces_of_a_senders_mail_are_read_from_its_inbox_and_filed(
    mail_lab: MailLab, db_pool: asyncpg.Pool, box: SecretBox, settings: Settings
) -> None:
    """Issue #15 items 2 and 4 on the lab: the lab's Postfix accepts an address it has no mailbox for,
    Dovecot refuses it over LMTP, and Postfix mails the sender a real bounce (5.1.1). The sender's inbox
    session reads it: the receiver leaves the pool, the sender goes on. Bounces that are a verdict on the
    sender's mail (5.7.1, mailed back by a remote server) are counted by the placement check, and a run of
    them pauses the sender."""
    a, b, remote = new_user(mail_lab, "bouncing"), new_user(mail_lab, "kept"), new_user(mail_lab, "remote")
    ghost = LabUser(a.address.replace("bouncing", "ghost"), "never-created")  # in the pool, not in the lab
    sender = await enroll(db_pool, box, mail_lab, a)
    gone = await enroll(db_pool, box, mail_lab, ghost)  # the one receiver that keeps the same-user rule
    kept = await enroll(db_pool, box, mail_lab, b, user_id=sender.user_id)
    sends, engage = SendActivities(db_pool, box, settings), EngagementActivities(db_pool, box, settings)
    env = ActivityEnvironment()

    first = await send(sends, sender)
    (row,) = await rows(db_pool, "SELECT recipient_id FROM send_ledger WHERE message_id = $1", first)
    assert row["recipient_id"] == gone.id
    deadline = time.monotonic() + 30
    while not _reports(mail_lab, a.address, "INBOX"):
        assert time.monotonic() < deadline, "no bounce came back from the lab's Postfix"
        await asyncio.sleep(0.3)

    await env.run(engage.inbox_session, session(sender, 0))
    (off,) = await rows(db_pool, "SELECT receiving_off, state FROM mailboxes WHERE id = $1", gone.id)
    assert "bounced 5.1.1" in off["receiving_off"] and off["state"] == "active", off["receiving_off"]
    (filed,) = await rows(db_pool, "SELECT kind, status FROM bounces")
    assert (filed["kind"], filed["status"]) == ("recipient", "5.1.1")
    second = await send(sends, sender)
    (row,) = await rows(db_pool, "SELECT recipient_id FROM send_ledger WHERE message_id = $1", second)
    assert row["recipient_id"] == kept.id, "the next email goes to the pool's other receiver"
    await env.run(engage.inbox_session, session(sender, 1))  # the bounce is read: nothing filed twice
    assert len(await rows(db_pool, "SELECT 1 FROM bounces")) == 1
    assert len(await rows(db_pool, "SELECT 1 FROM recipient_refusals")) == 1

    today = dt.datetime.now(dt.UTC).date().isoformat()
    check = await env.run(engage.placement_check, PlacementCheckRequest(sender.id, today))
    assert check.bounces == 0, "a bounce about the receiver's address says nothing of the sender's mail"
    for n in range(settings.ramp_reaction().bounce_pause):
        original = await send(sends, sender)
        await submit(
            mail_lab, remote, _dsn(a.address, original, "5.7.1", f"550 5.7.1 Message rejected as spam {n}")
        )
    deadline = time.monotonic() + 30
    while (
        sum(_reports(mail_lab, a.address, f) for f in ("INBOX", JUNK))
        < 1 + settings.ramp_reaction().bounce_pause
    ):
        assert time.monotonic() < deadline, "the remote server's bounces did not arrive"
        await asyncio.sleep(0.3)
    await env.run(engage.inbox_session, session(sender, 2))
    check = await env.run(engage.placement_check, PlacementCheckRequest(sender.id, today))
    assert check.bounces == settings.ramp_reaction().bounce_pause and "5.7.1" in check.bounce_reply
    decision = react(check, previous=6, climbed=7, spacing_factor=1.0)
    assert decision.reaction is Reaction.PAUSE and "bounced" in decision.reason


async def test_a_slow_imap_call_heartbeats_while_it_waits(monkeypatch: pytest.MonkeyPatch) -> None:
    """A slow login or a long search of many emails must not be taken for a dead worker."""
    monkeypatch.setattr(engagement_activity, "_HEARTBEAT_EVERY", 0.05)
    env, beats = ActivityEnvironment(), []
    env.on_heartbeat = lambda *details: beats.append(details)

    def slow_server() -> str:
        time.sleep(0.4)
        return "OK"

    async def call() -> str:
        return await engagement_activity._imap(slow_server)

    assert await env.run(call) == "OK"
    assert len(beats) >= 4
