"""Drill 5: SIGKILL a worker process in the middle of an inbox session and in the middle of a reply, on the
real mail lab (Postfix, rspamd, Dovecot), a real Temporal dev server and real PostgreSQL (issue #11 items
5 and 7).

A (no IMAP) sends N warmup emails to B, and the lab files them all into B's Junk. B engages at every rate 1:
each email is rescued, read, flagged and answered, after a 2-3 s dwell.

(a) Session: B's inbox session runs in a worker process that is SIGKILLed as soon as the first email has
    left Junk. Another worker's retry completes it: every email in INBOX once and nowhere else, \\Seen and
    \\Flagged, one engagement row each with its junk placement, every rescue counted once.
(b) Replies: B's send slots answer through an SMTP relay in front of Postfix. The first answer's worker is
    killed while the relay holds its RCPT (row PENDING): the retry sends it, once, and its original becomes
    REPLIED. The second's is killed after Postfix took the message but before the worker heard the 250
    (row SENDING): the retry records UNKNOWN and never resends. A gets exactly one answer per email.

The session is started by a harness workflow of this drill: the product's activity on the product's inbox
task queue, run by the real worker process, with a 20 s heartbeat timeout (the activity does not heartbeat
while it logs in and searches, which took 8 s on a loaded 2-core machine). The mailbox workflow's own
sessions come at random hours and wait 2 minutes for a dead worker's heartbeat, too long for a drill.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import re
import signal
import time
import uuid
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path

import asyncpg
from temporalio import workflow
from temporalio.api.enums.v1 import EventType, PendingActivityState
from temporalio.client import Client
from temporalio.common import RetryPolicy
from temporalio.service import RPCError
from temporalio.testing import WorkflowEnvironment
from temporalio.worker import UnsandboxedWorkflowRunner, Worker

from activities.imap_client import FLAGGED, SEEN, FolderKind, FoundMessage, ImapAccount, ImapSession, bracket
from devstack.mail_lab import JUNK, MailLab
from tests.drills.smtp_relay import Fault, SmtpRelay
from tests.drills.support import FINAL, RESULTS, DrillStack, Figures, assert_clean
from tests.helpers.mail_lab import LabUser, mail_lab_fixture, new_user
from tests.helpers.operator_cli import starter, unique_mailbox_ids
from warmup.config import Settings
from warmup.models import InboxSessionReport, InboxSessionRequest
from warmup.workflow_ids import inbox_task_queue
from workflows.engagement_contract import InboxSession

__all__ = ["mail_lab_fixture"]

N = 5  # emails A sends B, and answers B owes
HEARTBEAT = 20.0  # the harness's heartbeat timeout: how long after the kill the session is retried
ENGAGE_ALL = (
    *("--inbox-sessions", "1", "--read-rate", "1", "--rescue-rate", "1", "--important-rate", "1"),
    *("--reply-rate", "1", "--dwell-min", "2", "--dwell-max", "3"),
    *("--reply-delay-min", "0", "--reply-delay-max", "0"),
)


@dataclass(frozen=True)
class SessionRun:
    req: InboxSessionRequest
    task_queue: str


@workflow.defn(name="drill-inbox-session")
class DrillInboxSession:
    @workflow.run
    async def run(self, run: SessionRun) -> InboxSessionReport:
        return await workflow.execute_activity_method(
            InboxSession.inbox_session,
            run.req,
            task_queue=run.task_queue,
            start_to_close_timeout=timedelta(minutes=2),
            heartbeat_timeout=timedelta(seconds=HEARTBEAT),
            retry_policy=RetryPolicy(initial_interval=timedelta(seconds=1), maximum_attempts=5),
        )


def evening_zone() -> str:
    """A fixed-offset zone where it is 20:00-21:00 now. With one session a day (at 06:00-18:00 local in
    a 0-24 window) B's own workflow then runs none during the drill: only the drill's session touches B."""
    offset = (20 - dt.datetime.now(dt.UTC).hour + 12) % 24 - 12
    return f"Etc/GMT{-offset:+d}"  # POSIX signs: Etc/GMT+9 is UTC-9


async def wait_until(done: Callable[[], Awaitable[bool]], within: float, step: float = 0.1) -> None:
    deadline = time.monotonic() + within
    while not await done():
        assert time.monotonic() < deadline, f"not reached within {within}s"
        await asyncio.sleep(step)


async def fetch(dsn: str, sql: str, *args: object) -> list[asyncpg.Record]:
    conn = await asyncpg.connect(dsn)
    try:
        return await conn.fetch(sql, *args)
    finally:
        await conn.close()


async def enroll(stack: DrillStack, user: LabUser, secret_env: str, host: str, port: int, *extra: str) -> int:
    """`starter enroll` as an operator would, for a lab mailbox (STARTTLS + AUTH at `host:port`)."""
    argv = ["enroll", "--mailbox", user.address, "--user", stack.user, "--username", user.address]
    argv += ["--smtp-host", host, "--smtp-port", str(port), "--smtp-security", "starttls"]
    run = await starter(
        stack.env, *argv, "--secret-env", secret_env, "--timezone", evening_zone(), *extra, "--json"
    )
    assert run.code == 0, run.err
    data = run.json()
    assert isinstance(data, dict)
    return int(data["mailbox_id"])


def sigkill(stack: DrillStack) -> None:
    proc = stack.workers.procs[-1]
    proc.send_signal(signal.SIGKILL)
    proc.wait()


def copies_by_id(lab: MailLab, address: str) -> dict[str, list[str]]:
    """Message-ID -> the folder of each copy, over every folder of the mailbox (read from disk)."""
    where: dict[str, list[str]] = {}
    for folder in lab.folders(address):
        for m in lab.messages(address, folder):
            where.setdefault(bracket(str(m["Message-ID"])), []).append(folder)
    return where


def last_imap_command(lab: MailLab, address: str) -> str:
    """What Dovecot logged as the last command of the first IMAP connection of `address` that was cut
    off, e.g. "UID MOVE finished 0.018 secs ago": where, at the IMAP server, the kill landed."""
    dovecot_log = lab.base_dir / "dovecot" / "dovecot.log"
    cut = re.compile(rf"imap\({re.escape(address)}\).*Disconnected: Connection closed \(([^)]*)\)")
    found = cut.search(dovecot_log.read_text(errors="replace"))
    return found.group(1) if found else "not logged"


def imap_look(lab: MailLab, user: LabUser, ids: list[str]) -> dict[str, FoundMessage]:
    account = ImapAccount(lab.host, lab.imaps_port, user.address, ca_file=str(lab.ca_file))
    with ImapSession(account, user.password) as imap:
        return imap.find_messages(ids)


def record_figures(
    stack: DrillStack,
    drill: str,
    *,
    delivered: int,
    duplicates: int,
    lost: int,
    ledger: dict[str, int],
    outcome: str,
) -> Figures:
    """Record the drill's figures for the table, then check them: a failed run shows its figures too."""
    seconds = round(time.monotonic() - stack.started, 1)
    figures = Figures(drill, N, delivered, duplicates, lost, ledger, outcome, seconds)
    RESULTS.append(figures)
    assert_clean(figures)
    return figures


async def test_sigkill_mid_inbox_session_and_mid_reply(
    mail_lab: MailLab,
    temporal_env: WorkflowEnvironment,
    make_settings: Callable[..., Settings],
    tmp_path: Path,
) -> None:
    client = temporal_env.client
    a, b = new_user(mail_lab, "kill5a"), new_user(mail_lab, "kill5b")
    # The relay's n-th connection is B's n-th SMTP session: reply 1, its retry, reply 2, then the rest.
    relay = SmtpRelay(mail_lab, [Fault.STALL_RCPT, Fault.NONE, Fault.HOLD_250])
    settings = make_settings()
    stack = DrillStack.on(
        client,
        settings,
        tmp_path,
        extra_env={**mail_lab.client_env(), "LAB_A_PASSWORD": a.password, "LAB_B_PASSWORD": b.password},
        # A dead worker's send is retried after 8 s of silence; the relay's stalls stay inside the 20 s
        # SMTP timeout, so only the kill ends them.
        SMTP_TIMEOUT_SECONDS="20",
        SEND_HEARTBEAT_SECONDS="8",
    )
    harness_queue = f"drill5-{uuid.uuid4().hex[:10]}"
    session_id = f"drill5-session-{uuid.uuid4().hex[:10]}"
    mail_lab.force_junk_from([a.address])  # the lab's sieve rule: the product's mail carries no marker
    try:
        await relay.start()
        stack.workers.start(1)
        await unique_mailbox_ids(stack.dsn)
        # B first (sending nothing until it owes answers), so A's first send finds its one receiver.
        no_sends = ("--ramp-start", "0", "--ramp-increment", "0", "--ramp-ceiling", "0")
        imap = (
            "--imap-host",
            mail_lab.host,
            "--imap-port",
            str(mail_lab.imaps_port),
            "--imap-security",
            "tls",
        )
        b_id = await enroll(
            stack, b, "LAB_B_PASSWORD", "127.0.0.1", relay.port, *no_sends, *imap, *ENGAGE_ALL
        )
        quota = ("--ramp-start", str(N), "--ramp-increment", "0", "--ramp-ceiling", str(N))
        a_id = await enroll(stack, a, "LAB_A_PASSWORD", mail_lab.host, mail_lab.submission_port, *quota)

        async def a_sent() -> bool:
            rows = await fetch(stack.dsn, "SELECT status::text FROM send_ledger WHERE sender_id = $1", a_id)
            return len(rows) == N and all(r["status"] == "SENT" for r in rows)

        await wait_until(a_sent, within=90, step=0.25)
        originals = await fetch(
            stack.dsn,
            "SELECT id, message_id FROM send_ledger WHERE sender_id = $1 AND recipient_id = $2 ORDER BY id",
            a_id,
            b_id,
        )
        ids = [bracket(r["message_id"]) for r in originals]
        assert len(ids) == N
        for m in ids:
            assert await asyncio.to_thread(mail_lab.wait_for, b.address, m, 30) == JUNK

        await _kill_mid_session(stack, client, mail_lab, b, b_id, ids, harness_queue, session_id)
        await _kill_mid_replies(stack, mail_lab, relay, a, b, b_id, originals)
    finally:
        mail_lab.force_junk_from(())
        try:
            await client.get_workflow_handle(session_id).terminate("drill over")
        except RPCError:
            pass  # finished, or never started
        await stack.close(client)
        await relay.stop()


async def _kill_mid_session(
    stack: DrillStack,
    client: Client,
    lab: MailLab,
    b: LabUser,
    b_id: int,
    ids: list[str],
    harness_queue: str,
    session_id: str,
) -> Figures:
    engagement = (
        "SELECT e.*, l.message_id FROM engagement e JOIN send_ledger l ON l.id = e.ledger_id"
        " WHERE e.mailbox_id = $1"
    )
    async with Worker(
        client,
        task_queue=harness_queue,
        workflows=[DrillInboxSession],
        # The harness only schedules the product's activity; it needs no sandbox.
        workflow_runner=UnsandboxedWorkflowRunner(),
    ):
        day = dt.date.today().isoformat()
        run = SessionRun(InboxSessionRequest(b_id, day, 0), inbox_task_queue(stack.settings.TASK_QUEUE))
        handle = await client.start_workflow(
            DrillInboxSession.run, run, id=session_id, task_queue=harness_queue
        )

        async def first_rescued() -> bool:
            return bool(lab.messages(b.address, "INBOX"))

        # Polled often: the kill should land right after a move, before the session records it.
        await wait_until(first_rescued, within=60, step=0.01)
        sigkill(stack)
        killed = time.monotonic()
        before = await fetch(stack.dsn, engagement, b_id)
        moved = len(lab.messages(b.address, "INBOX"))
        # The attempt is still in flight as far as Temporal knows: only its silence will end it.
        (pending,) = (await handle.describe()).raw_description.pending_activities
        assert pending.state == PendingActivityState.PENDING_ACTIVITY_STATE_STARTED and pending.attempt == 1
        assert moved < N and sum(r["handled_at"] is not None for r in before) < N, "the kill came too late"

        stack.workers.start(1)
        report = await asyncio.wait_for(handle.result(), timeout=120)
        retried_after = time.monotonic() - killed
        history = await handle.fetch_history()
    (started,) = [
        e.activity_task_started_event_attributes.attempt
        for e in history.events
        if e.event_type == EventType.EVENT_TYPE_ACTIVITY_TASK_STARTED
    ]
    assert started >= 2, "the session was not retried"

    # B's mailbox, read from disk, and the engagement rows: the figures first, so a failed run shows them.
    where = copies_by_id(lab, b.address)
    rows = await fetch(stack.dsn, engagement, b_id)

    def done(column: str, of: list[asyncpg.Record]) -> int:
        return sum(r[column] is not None for r in of)

    t = report.found
    figures = record_figures(
        stack,
        "SIGKILL mid inbox session",
        delivered=sum(1 for m in ids if where.get(m) == ["INBOX"]),
        duplicates=sum(len(f) - 1 for f in where.values()),
        # Rescues lost: an email left out of INBOX, or a rescue done that the ledger does not hold.
        lost=max(sum(1 for m in ids if "INBOX" not in where.get(m, [])), N - done("rescued_at", rows)),
        ledger={
            "engagement rows": len(rows),
            "junk placements": sum(r["found_in"] == "junk" for r in rows),
            "rescued": done("rescued_at", rows),
        },
        outcome=(
            f"killed at {moved} moved/{done('handled_at', before)} recorded"
            f" ({last_imap_command(lab, b.address)}); attempt {started}"
            f" {retried_after:.0f} s later did {t.rescued} rescues"
        ),
    )
    assert set(where) == set(ids), where  # and nothing else in B's mailbox
    assert not lab.messages(b.address, JUNK)
    # Over IMAP, the flags as a person left them.
    found = await asyncio.to_thread(imap_look, lab, b, ids)
    for m in ids:
        assert found[m].kind is FolderKind.INBOX and {SEEN, FLAGGED} <= found[m].flags, found[m]

    # One engagement row per email, its first placement (junk) kept, every action recorded.
    assert sorted(bracket(r["message_id"]) for r in rows) == sorted(ids)
    assert {r["found_in"] for r in rows} == {"junk"}, "a rescued email was re-placed as found in INBOX"
    for r in rows:
        for column in ("found_at", "rescued_at", "seen_at", "flagged_at", "reply_due_at", "handled_at"):
            assert r[column] is not None, (column, dict(r))
    # Nothing counted twice: the retry did exactly what the killed attempt had not recorded.
    assert (t.junk, t.inbox, t.other) == (N - done("found_at", before), 0, 0), t
    assert t.rescued == N - done("rescued_at", before), t
    assert (t.read, t.flagged) == (N - done("seen_at", before), N - done("flagged_at", before)), t
    assert t.replies_due == N - done("reply_due_at", before), t
    return figures


async def _kill_mid_replies(
    stack: DrillStack,
    lab: MailLab,
    relay: SmtpRelay,
    a: LabUser,
    b: LabUser,
    b_id: int,
    originals: list[asyncpg.Record],
) -> Figures:
    replies_sql = (
        "SELECT r.id, r.status::text AS status, r.message_id, r.in_reply_to, o.message_id AS original,"
        " o.status::text AS original_status FROM send_ledger r JOIN send_ledger o ON o.id = r.in_reply_to"
        " WHERE r.sender_id = $1 ORDER BY r.slot"
    )
    # B owes N answers (decided by the session, due at once); giving it N sends a day sends them.
    quota = ("--ramp-start", str(N), "--ramp-ceiling", str(N))
    run = await starter(stack.env, "update", "--mailbox", b.address, *quota, "--json")
    assert run.code == 0, run.err

    await asyncio.wait_for(relay.stalled.wait(), timeout=60)
    (first,) = await fetch(stack.dsn, replies_sql, b_id)
    assert first["status"] == "PENDING", dict(first)
    sigkill(stack)
    stack.workers.start(1)

    await asyncio.wait_for(relay.held.wait(), timeout=90)
    replied, second = await fetch(stack.dsn, replies_sql, b_id)
    assert (replied["status"], replied["original_status"]) == ("SENT", "REPLIED"), dict(replied)
    assert second["status"] == "SENDING", dict(second)
    # Postfix took the message (it is in A's mailbox), but the worker never heard its 250.
    await asyncio.to_thread(lab.wait_for, a.address, second["message_id"], 15)
    (still,) = [r for r in await fetch(stack.dsn, replies_sql, b_id) if r["id"] == second["id"]]
    assert still["status"] == "SENDING", dict(still)
    sigkill(stack)
    stack.workers.start(1)

    async def all_answered() -> bool:
        rows = await fetch(stack.dsn, replies_sql, b_id)
        return len(rows) == N and all(r["status"] in FINAL for r in rows)

    await wait_until(all_answered, within=90, step=0.25)
    await asyncio.sleep(3)  # a late duplicate would still show
    rows = await fetch(stack.dsn, replies_sql, b_id)
    statuses = Counter(r["status"] for r in rows)
    original_statuses = Counter(r["original_status"] for r in rows)
    # A's mailbox, every folder: each answer's copies, and how many answers each email got.
    where = copies_by_id(lab, a.address)
    per_original: Counter[str] = Counter()
    for folder in lab.folders(a.address):
        for m in lab.messages(a.address, folder):
            per_original[bracket(str(m["In-Reply-To"]))] += 1
    answered = [per_original[bracket(o["message_id"])] for o in originals]
    figures = record_figures(
        stack,
        "SIGKILL mid reply (RCPT; after DATA)",
        # Counted by the email answered: a second answer is a duplicate whatever its Message-ID.
        delivered=sum(n > 0 for n in answered),
        duplicates=sum(max(n - 1, 0) for n in answered),
        lost=answered.count(0),
        ledger=dict(statuses),
        outcome=(
            f"replies per answered email {min(answered)}-{max(answered)}; originals"
            f" REPLIED {original_statuses['REPLIED']}, SENT {original_statuses['SENT']} (the UNKNOWN's)"
        ),
    )
    assert answered == [1] * N, per_original

    assert len(rows) == N, [dict(r) for r in rows]
    assert sorted(r["in_reply_to"] for r in rows) == sorted(o["id"] for o in originals), "not one per email"
    assert statuses == {"SENT": N - 1, "UNKNOWN": 1}, statuses
    (unknown,) = [r for r in rows if r["status"] == "UNKNOWN"]
    assert unknown["id"] == second["id"]
    # REPLIED comes with the reply's SENT; the reply whose 250 was lost leaves its original SENT.
    assert original_statuses == {"REPLIED": N - 1, "SENT": 1}, original_statuses
    # B's SMTP sessions: one per reply, plus the retry of the one killed at RCPT; none for UNKNOWN.
    assert relay.connections == N + 1, relay.connections
    # Each answer in A's mailbox is threaded to the email it answers, and A holds nothing else.
    reply_ids = {bracket(r["message_id"]): bracket(r["original"]) for r in rows}
    assert set(where) == set(reply_ids), where
    for folder in lab.folders(a.address):
        for m in lab.messages(a.address, folder):
            assert reply_ids[bracket(str(m["Message-ID"]))] == bracket(str(m["In-Reply-To"])), m
    return figures
