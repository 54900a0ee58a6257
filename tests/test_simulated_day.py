"""A simulated day for 50 mailboxes on the real time-skipping server, with the real send activity:
every email goes through PostgreSQL's ledger to a real SMTP server (aiosmtpd) on loopback."""

from __future__ import annotations

import datetime as dt
import itertools
import uuid
from collections import Counter, defaultdict
from collections.abc import Callable

import asyncpg
from temporalio.testing import WorkflowEnvironment
from temporalio.worker import Worker

from activities.send import SendActivities
from devstack.smtp_sink import SmtpSink
from tests.helpers.workflows import next_dst_change_day, skip_to, start_mailboxes, status
from warmup import schedule
from warmup.config import Settings
from warmup.mailboxes import NewMailbox, SmtpAccount, upsert_mailbox
from warmup.models import RampSettings, ScheduleSettings, SmtpSecurity
from warmup.secrets import SecretBox
from workers.sandbox import workflow_runner
from workflows.mailbox import MailboxWarmupWorkflow

ZONES = [
    "America/New_York",  # the simulated day is this zone's DST change
    "America/Los_Angeles",
    "Europe/Berlin",
    "Asia/Tokyo",
    "Australia/Sydney",
    "UTC",
    "Asia/Kolkata",
]
MAILBOXES = 50


def _schedule(i: int) -> ScheduleSettings:
    tz = ZONES[i % len(ZONES)]
    quota = 4 + i % 9  # 4..12 a day, fixed (no ramp) so each day's quota is known in advance
    all_day = i % len(ZONES) == 0 and i % 2 == 0  # some New York mailboxes send across the DST jump
    return ScheduleSettings(
        timezone=tz,
        window_start_hour=0 if all_day else 6,
        window_end_hour=24 if all_day else 22,
        delay_min_minutes=2,
        delay_max_minutes=10,
        ramp=RampSettings(start_volume=quota, daily_increment=0, ceiling=quota),
    )


async def test_fifty_mailboxes_fill_their_quota_inside_their_windows(
    time_skipping_env: WorkflowEnvironment,
    db_pool: asyncpg.Pool,
    smtp_sink: SmtpSink,
    secret_keys: list[str],
    make_settings: Callable[..., Settings],
) -> None:
    env = time_skipping_env
    settings = make_settings(SMTP_TIMEOUT_SECONDS=5)
    box = SecretBox(secret_keys)
    day = next_dst_change_day(await env.get_current_time(), "America/New_York")

    ids: dict[int, ScheduleSettings] = {}
    async with db_pool.acquire() as conn:
        for i in range(MAILBOXES):
            rec = await upsert_mailbox(
                conn,
                NewMailbox(
                    user_id=f"user{i % 5}",
                    address=f"box{i}@warm{i % 3}.test",
                    smtp=SmtpAccount(
                        smtp_sink.host, smtp_sink.port, SmtpSecurity.NONE, f"box{i}", verify_tls=False
                    ),
                    secret_ciphertext=box.encrypt(f"pw-{i}"),
                    schedule=_schedule(i),
                ),
            )
            ids[rec.id] = rec.schedule

    # Start just before the earliest window of `day` opens anywhere, end after the latest one closes.
    bounds = {mid: schedule.window_bounds(day, s) for mid, s in ids.items()}
    first_open = min(a for a, _ in bounds.values())
    last_close = max(b for _, b in bounds.values())
    await skip_to(env, dt.datetime.fromtimestamp(first_open - 60, dt.UTC))

    queue = f"day-{uuid.uuid4().hex[:8]}"
    async with Worker(
        env.client,
        task_queue=queue,
        workflows=[MailboxWarmupWorkflow],
        activities=[SendActivities(db_pool, box, settings).send_email],
        workflow_runner=workflow_runner("isolated"),
        max_concurrent_activities=20,
    ):
        handles = await start_mailboxes(env.client, queue, list(ids.items()))
        await skip_to(env, dt.datetime.fromtimestamp(last_close + 60, dt.UTC))
        statuses = [await status(h) for h in handles]
        for h in handles:
            await h.terminate()

    rows = await db_pool.fetch(
        "SELECT sender_id, recipient_id, day, status::text AS status, message_id, dispatched_at"
        " FROM send_ledger ORDER BY sender_id, dispatched_at"
    )
    on_day = [r for r in rows if r["day"] == day]
    per_sender = Counter(r["sender_id"] for r in on_day if r["status"] == "SENT")
    quota = {mid: s.ramp.start_volume for mid, s in ids.items()}
    fill = sum(min(per_sender[m], q) for m, q in quota.items()) / sum(quota.values())
    print(
        f"\nsimulated day {day}: {sum(per_sender.values())} sent / {sum(quota.values())} quota = {fill:.1%}"
    )

    assert per_sender == Counter(quota), "a mailbox did not send exactly its quota on the simulated day"
    assert all(r["status"] == "SENT" for r in rows), "a send failed or went unknown"
    assert all(s.last_error == "" and not s.paused for s in statuses)

    for r in rows:
        sched = ids[r["sender_id"]]
        start, end = schedule.window_bounds(r["day"], sched)
        sent_at = r["dispatched_at"].timestamp()
        assert start <= sent_at < end, f"mailbox {r['sender_id']} sent outside its {sched.timezone} window"
        assert r["recipient_id"] != r["sender_id"], "self-send"

    by_sender: dict[int, list[float]] = defaultdict(list)
    for r in rows:
        by_sender[r["sender_id"]].append(r["dispatched_at"].timestamp())
    for mid, times in by_sender.items():
        gaps = [b - a for a, b in itertools.pairwise(sorted(times))]
        assert min(gaps, default=120) >= 120 - 1, f"mailbox {mid} sent twice within delay_min"

    pairs = Counter((r["sender_id"], r["day"], r["recipient_id"]) for r in rows)
    assert max(pairs.values()) == 1, "a sender mailed the same recipient twice in one day"

    # What the SMTP server received matches the ledger, one copy per Message-ID.
    received = Counter(m.message_id for m in smtp_sink.messages)
    assert received == Counter(r["message_id"] for r in rows)
    address = {m: f"box{i}@warm{i % 3}.test" for i, m in enumerate(sorted(ids))}
    for m in smtp_sink.messages:
        assert m.mail_from not in m.rcpt_tos, "self-send at the SMTP server"
    assert {m.mail_from for m in smtp_sink.messages} <= set(address.values())
