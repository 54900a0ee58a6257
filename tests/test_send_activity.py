"""The send_email activity against real PostgreSQL, a real aiosmtpd sink and (for retries) real Temporal."""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
import socket
import time
import uuid
from collections.abc import Callable
from pathlib import Path

import asyncpg
import pytest
from temporalio import activity, workflow
from temporalio.client import WorkflowFailureError
from temporalio.common import RetryPolicy
from temporalio.exceptions import ActivityError, ApplicationError, RetryState
from temporalio.testing import WorkflowEnvironment
from temporalio.worker import Worker

from activities import recipients
from activities.send import SendActivities
from devstack.smtp_sink import SmtpSink
from devstack.tls import self_signed_server_context
from warmup import smtp_client
from warmup.config import Settings
from warmup.errors import ERR_AUTH, ERR_CONFIG, ERR_POLICY, ERR_TRANSIENT, ERR_UNKNOWN_OUTCOME
from warmup.ledger import LedgerRow, ledger_row
from warmup.mailboxes import MailboxRecord, NewMailbox, SmtpAccount, get_mailbox, set_state, upsert_mailbox
from warmup.models import (
    MailboxState,
    ScheduleSettings,
    SendRequest,
    SendResult,
    SendStatus,
    SmtpSecurity,
)
from warmup.secrets import SecretBox, generate_key

DAY = "2026-03-02"
T0 = dt.datetime(2026, 3, 2, 9, 0, tzinfo=dt.UTC).timestamp()
PASSWORD = "correct-horse-battery-staple-42"
USERNAME = "warmup-user"


def request(mailbox: MailboxRecord, slot: int, day: str = DAY) -> SendRequest:
    return SendRequest(
        mailbox_id=mailbox.id, day=day, slot=slot, planned_at=T0 + slot, dispatched_at=T0 + slot
    )


async def add_mailbox(
    pool: asyncpg.Pool,
    box: SecretBox,
    sink: SmtpSink,
    address: str,
    *,
    password: str = PASSWORD,
    security: SmtpSecurity = SmtpSecurity.NONE,
    verify_tls: bool = False,
    user_id: str = "u1",
) -> MailboxRecord:
    async with pool.acquire() as conn:
        return await upsert_mailbox(
            conn,
            NewMailbox(
                user_id=user_id,
                address=address,
                smtp=SmtpAccount(sink.host, sink.port, security, USERNAME, verify_tls),
                secret_ciphertext=box.encrypt(password),
                schedule=ScheduleSettings(timezone="Europe/Paris"),
            ),
        )


async def row_of(pool: asyncpg.Pool, req: SendRequest) -> LedgerRow:
    async with pool.acquire() as conn:
        row = await ledger_row(conn, req.idempotency_key)
    assert row is not None, f"no ledger row for {req.idempotency_key}"
    return row


async def mailbox_of(pool: asyncpg.Pool, mailbox_id: int) -> MailboxRecord:
    async with pool.acquire() as conn:
        record = await get_mailbox(conn, mailbox_id)
    assert record is not None
    return record


def copies(sink: SmtpSink, message_id: str) -> int:
    return sum(1 for m in sink.messages if m.message_id == message_id)


@pytest.fixture
def settings(make_settings: Callable[..., Settings]) -> Settings:
    return make_settings(SMTP_TIMEOUT_SECONDS=5)


@pytest.fixture
def box(secret_keys: list[str]) -> SecretBox:
    return SecretBox(secret_keys)


# --- delivery and the ledger ---------------------------------------------------------------------


async def test_delivers_one_plain_email_and_records_it_sent(
    db_pool: asyncpg.Pool, smtp_sink: SmtpSink, box: SecretBox, settings: Settings
) -> None:
    sender = await add_mailbox(db_pool, box, smtp_sink, "alice.martin@sender.example")
    receiver = await add_mailbox(db_pool, box, smtp_sink, "bob@receiver.example")
    acts = SendActivities(db_pool, box, settings)
    req = request(sender, 0)

    result = await acts.send_email(req)

    assert result == SendResult(SendStatus.SENT, receiver.id, result.message_id, already_done=False)
    (got,) = await smtp_sink.wait_for(1)
    assert got.mail_from == sender.address and got.rcpt_tos == [receiver.address]
    assert got.auth_login == USERNAME
    headers = {k.lower() for k in got.message.keys()}
    assert {"from", "to", "subject", "date", "message-id"} <= headers
    assert not any(h.startswith("x-") for h in headers)
    assert sender.address in str(got.message["From"]) and receiver.address in str(got.message["To"])
    assert str(got.message["Subject"]).strip()
    assert got.message_id == result.message_id and got.message_id.endswith("@sender.example>")

    row = await row_of(db_pool, req)
    assert row.status is SendStatus.SENT and row.sent_at is not None
    assert row.message_id == got.message_id and row.recipient_id == receiver.id
    assert row.attempts == 1 and row.smtp_code == 250 and row.error == ""
    assert (row.day.isoformat(), row.slot) == (DAY, 0)
    assert row.planned_at.timestamp() == req.planned_at
    assert got.raw.replace(b"\r\n", b"\n") == row.message.encode()  # the stored text is what went out

    again = await acts.send_email(req)  # a retry of a settled send
    assert again.already_done and again.message_id == result.message_id and again.status is SendStatus.SENT
    await asyncio.sleep(0.05)
    assert len(smtp_sink.messages) == 1


async def test_sends_greet_with_the_host_name_looked_up_once(
    db_pool: asyncpg.Pool,
    smtp_sink: SmtpSink,
    box: SecretBox,
    settings: Settings,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # A lookup per email would cost every send a thread hop, and a resolver timeout where reverse DNS
    # does not answer.
    lookups: list[str] = []

    def getfqdn(name: str = "") -> str:
        lookups.append(name)
        return "worker-7.warmup.test"

    monkeypatch.setattr(socket, "getfqdn", getfqdn)
    monkeypatch.setattr(smtp_client, "_ehlo_name", None)
    sender = await add_mailbox(db_pool, box, smtp_sink, "alice@sender.example")
    await add_mailbox(db_pool, box, smtp_sink, "bob@receiver.example")
    acts = SendActivities(db_pool, box, settings)

    for slot in range(3):
        await acts.send_email(request(sender, slot))

    got = await smtp_sink.wait_for(3)
    assert [m.ehlo for m in got] == ["worker-7.warmup.test"] * 3
    assert len(lookups) == 1


async def test_recipients_are_others_unique_per_day_then_least_used(
    db_pool: asyncpg.Pool, smtp_sink: SmtpSink, box: SecretBox, settings: Settings
) -> None:
    sender = await add_mailbox(db_pool, box, smtp_sink, "ann@one.example")
    others = [await add_mailbox(db_pool, box, smtp_sink, f"{n}@two.example") for n in ("bea", "cal", "dan")]
    paused = await add_mailbox(db_pool, box, smtp_sink, "eve@two.example")
    async with db_pool.acquire() as conn:
        await set_state(conn, paused.id, MailboxState.PAUSED, "operator")
    acts = SendActivities(db_pool, box, settings)
    other_ids = {m.id for m in others}

    first_three = [(await acts.send_email(request(sender, slot))).recipient_id for slot in range(3)]
    assert set(first_three) == other_ids  # 3 sends, 3 distinct recipients, never the sender

    fourth = (await acts.send_email(request(sender, 3))).recipient_id
    fifth = (await acts.send_email(request(sender, 4))).recipient_id
    assert {fourth, fifth} <= other_ids and fourth != fifth  # the least-used one each time

    next_day = (await acts.send_email(request(sender, 0, day="2026-03-03"))).recipient_id
    assert next_day in other_ids
    await smtp_sink.wait_for(6)
    assert all(m.rcpt_tos != [paused.address] and m.rcpt_tos != [sender.address] for m in smtp_sink.messages)


async def test_recipient_choice_is_stable_for_a_key(
    db_pool: asyncpg.Pool, smtp_sink: SmtpSink, box: SecretBox, settings: Settings
) -> None:
    sender = await add_mailbox(db_pool, box, smtp_sink, "ann@one.example")
    for i in range(12):
        await add_mailbox(db_pool, box, smtp_sink, f"peer{i}@two.example")
    # A connection refusal leaves the row PENDING: the retry must reuse its recipient and text exactly.
    async with db_pool.acquire() as conn:
        await conn.execute("UPDATE mailboxes SET smtp_port = 1 WHERE id = $1", sender.id)
    acts = SendActivities(db_pool, box, settings)
    req = request(sender, 0)
    with pytest.raises(ApplicationError) as err:
        await acts.send_email(req)
    assert err.value.type == ERR_TRANSIENT and not err.value.non_retryable
    pending = await row_of(db_pool, req)
    assert pending.status is SendStatus.PENDING and f"mailbox {sender.id}" in str(err.value)

    async with db_pool.acquire() as conn:
        await conn.execute("UPDATE mailboxes SET smtp_port = $2 WHERE id = $1", sender.id, smtp_sink.port)
    result = await acts.send_email(req)
    (got,) = await smtp_sink.wait_for(1)
    assert result.recipient_id == pending.recipient_id and got.message_id == pending.message_id
    assert got.raw.replace(b"\r\n", b"\n") == pending.message.encode()


async def test_a_lone_mailbox_has_no_one_to_send_to(
    db_pool: asyncpg.Pool, smtp_sink: SmtpSink, box: SecretBox, settings: Settings
) -> None:
    sender = await add_mailbox(db_pool, box, smtp_sink, "solo@one.example")
    with pytest.raises(ApplicationError) as err:
        await SendActivities(db_pool, box, settings).send_email(request(sender, 0))
    assert err.value.type == ERR_TRANSIENT and not err.value.non_retryable, "an empty pool must not pause"
    assert "no other active mailbox to send to" in str(err.value)
    assert smtp_sink.messages == []


async def test_removed_sender_is_a_config_error_and_a_missing_one_is_retried(
    db_pool: asyncpg.Pool, smtp_sink: SmtpSink, box: SecretBox, settings: Settings
) -> None:
    sender = await add_mailbox(db_pool, box, smtp_sink, "gone@one.example")
    await add_mailbox(db_pool, box, smtp_sink, "here@two.example")
    async with db_pool.acquire() as conn:
        await set_state(conn, sender.id, MailboxState.REMOVED)
    acts = SendActivities(db_pool, box, settings)
    with pytest.raises(ApplicationError) as err:
        await acts.send_email(request(sender, 0))
    assert err.value.type == ERR_CONFIG and err.value.non_retryable
    assert f"mailbox {sender.id}" in str(err.value)
    # Not there (yet): the enroll transaction may not have committed, so Temporal retries.
    with pytest.raises(ApplicationError) as err:
        await acts.send_email(SendRequest(987654, DAY, 0, T0, T0))
    assert err.value.type == ERR_TRANSIENT and not err.value.non_retryable
    assert "mailbox 987654" in str(err.value)
    assert smtp_sink.messages == []


async def test_concurrent_attempts_of_one_send_deliver_one_copy(
    db_pool: asyncpg.Pool, smtp_sink: SmtpSink, box: SecretBox, settings: Settings
) -> None:
    sender = await add_mailbox(db_pool, box, smtp_sink, "ann@one.example")
    await add_mailbox(db_pool, box, smtp_sink, "bea@two.example")
    acts = SendActivities(db_pool, box, settings)
    req = request(sender, 0)
    outcomes = await asyncio.gather(*(acts.send_email(req) for _ in range(3)), return_exceptions=True)
    await asyncio.sleep(0.1)
    row = await row_of(db_pool, req)
    assert row.status is SendStatus.SENT
    assert copies(smtp_sink, row.message_id) == 1 and len(smtp_sink.messages) == 1
    assert any(isinstance(o, SendResult) and not o.already_done for o in outcomes)
    for outcome in outcomes:
        # The others found it done, in flight (retry later) or SENDING, which a later attempt must treat as
        # "maybe delivered"; none of them sent a second copy.
        if isinstance(outcome, BaseException):
            assert isinstance(outcome, ApplicationError)
            assert not outcome.non_retryable or outcome.type == ERR_UNKNOWN_OUTCOME
        else:
            assert outcome.message_id == row.message_id


# --- failures ------------------------------------------------------------------------------------


async def test_policy_rejection_pauses_the_mailbox_with_the_reply(
    db_pool: asyncpg.Pool, smtp_sink: SmtpSink, box: SecretBox, settings: Settings
) -> None:
    sender = await add_mailbox(db_pool, box, smtp_sink, "ann@one.example")
    await add_mailbox(db_pool, box, smtp_sink, "bea@two.example")
    smtp_sink.script_data_replies(["550 5.7.1 Message refused by local policy"])
    acts = SendActivities(db_pool, box, settings)
    req = request(sender, 0)
    with pytest.raises(ApplicationError) as err:
        await acts.send_email(req)
    assert err.value.type == ERR_POLICY and err.value.non_retryable
    assert "550 5.7.1 Message refused by local policy" in str(err.value)
    assert f"mailbox {sender.id}" in str(err.value)

    row = await row_of(db_pool, req)
    assert row.status is SendStatus.FAILED and row.smtp_code == 550
    paused = await mailbox_of(db_pool, sender.id)
    assert paused.state is MailboxState.PAUSED
    assert "550 5.7.1 Message refused by local policy" in paused.pause_reason
    assert smtp_sink.messages == []

    with pytest.raises(ApplicationError) as again:  # a retry re-raises the recorded refusal, sends nothing
        await acts.send_email(req)
    assert again.value.type == ERR_POLICY and again.value.non_retryable
    assert str(again.value) == (
        f"{ERR_POLICY}: mailbox {sender.id}: send {req.idempotency_key} was refused earlier: "
        "SMTP DATA refused (550 5.7.1 Message refused by local policy)"
    )
    assert smtp_sink.messages == []


async def test_no_reply_after_data_is_unknown_and_never_resent(
    db_pool: asyncpg.Pool, smtp_sink: SmtpSink, box: SecretBox, make_settings: Callable[..., Settings]
) -> None:
    sender = await add_mailbox(db_pool, box, smtp_sink, "ann@one.example")
    await add_mailbox(db_pool, box, smtp_sink, "bea@two.example")
    acts = SendActivities(db_pool, box, make_settings(SMTP_TIMEOUT_SECONDS=0.4))
    smtp_sink.stall_after_data(2.0)
    req = request(sender, 0)
    with pytest.raises(ApplicationError) as err:
        await acts.send_email(req)
    assert err.value.type == ERR_UNKNOWN_OUTCOME and err.value.non_retryable
    row = await row_of(db_pool, req)
    assert row.status is SendStatus.UNKNOWN and row.sent_at is None and row.attempts == 1
    assert len(smtp_sink.messages) == 1  # the server did keep it: exactly why it is not resent

    with pytest.raises(ApplicationError) as again:
        await acts.send_email(req)
    assert again.value.type == ERR_UNKNOWN_OUTCOME and again.value.non_retryable
    assert len(smtp_sink.messages) == 1
    assert (await row_of(db_pool, req)).attempts == 1


async def test_attempt_that_died_during_data_is_settled_as_unknown(
    db_pool: asyncpg.Pool, smtp_sink: SmtpSink, box: SecretBox, settings: Settings
) -> None:
    sender = await add_mailbox(db_pool, box, smtp_sink, "ann@one.example")
    await add_mailbox(db_pool, box, smtp_sink, "bea@two.example")
    acts = SendActivities(db_pool, box, settings)
    smtp_sink.stall_after_data(2.0)
    req = request(sender, 0)
    task = asyncio.create_task(acts.send_email(req))
    await smtp_sink.wait_for(1)  # DATA is in; the reply is being withheld
    task.cancel()  # the worker is gone mid-DATA
    with pytest.raises(asyncio.CancelledError):
        await task
    assert (await row_of(db_pool, req)).status is SendStatus.SENDING

    with pytest.raises(ApplicationError) as err:
        await acts.send_email(req)
    assert err.value.type == ERR_UNKNOWN_OUTCOME and err.value.non_retryable
    assert (await row_of(db_pool, req)).status is SendStatus.UNKNOWN
    assert len(smtp_sink.messages) == 1


async def test_wrong_fernet_key_is_a_clear_config_error_without_the_secret(
    db_pool: asyncpg.Pool, smtp_sink: SmtpSink, box: SecretBox, settings: Settings, secret_keys: list[str]
) -> None:
    sender = await add_mailbox(db_pool, box, smtp_sink, "ann@one.example")
    await add_mailbox(db_pool, box, smtp_sink, "bea@two.example")
    other_key = generate_key()
    acts = SendActivities(db_pool, SecretBox([other_key]), settings)
    with pytest.raises(ApplicationError) as err:
        await acts.send_email(request(sender, 0))
    assert err.value.type == ERR_CONFIG and err.value.non_retryable
    text = f"{err.value} {err.value!r} {err.value.message} {err.value.details}"
    assert "cannot decrypt the SMTP password" in text and "WARMUP_SECRET_KEYS" in text
    assert f"mailbox {sender.id}" in text
    for secret in (PASSWORD, other_key, *secret_keys, sender.secret_ciphertext):
        assert secret not in text
    assert err.value.__cause__ is None and smtp_sink.messages == []


async def test_starttls_is_required_never_a_silent_clear_text_fallback(
    db_pool: asyncpg.Pool, box: SecretBox, settings: Settings
) -> None:
    async with SmtpSink() as plain_only:  # offers no STARTTLS
        sender = await add_mailbox(
            db_pool, box, plain_only, "ann@one.example", security=SmtpSecurity.STARTTLS
        )
        await add_mailbox(db_pool, box, plain_only, "bea@two.example")
        with pytest.raises(ApplicationError) as err:
            await SendActivities(db_pool, box, settings).send_email(request(sender, 0))
        assert err.value.type == ERR_CONFIG and err.value.non_retryable
        assert "STARTTLS" in str(err.value)
        assert plain_only.messages == []
        assert (await mailbox_of(db_pool, sender.id)).state is MailboxState.PAUSED


@pytest.mark.parametrize("security", [SmtpSecurity.STARTTLS, SmtpSecurity.TLS])
async def test_tls_modes_deliver_and_an_untrusted_certificate_is_refused(
    db_pool: asyncpg.Pool, box: SecretBox, settings: Settings, tmp_path: Path, security: SmtpSecurity
) -> None:
    implicit = security is SmtpSecurity.TLS
    async with SmtpSink(tls_context=self_signed_server_context(tmp_path), implicit_tls=implicit) as tls_sink:
        trusting = await add_mailbox(db_pool, box, tls_sink, "ann@one.example", security=security)
        checking = await add_mailbox(
            db_pool, box, tls_sink, "bea@two.example", security=security, verify_tls=True
        )
        acts = SendActivities(db_pool, box, settings)
        await acts.send_email(request(trusting, 0))
        (got,) = await tls_sink.wait_for(1)
        assert got.mail_from == trusting.address

        with pytest.raises(ApplicationError) as err:
            await acts.send_email(request(checking, 0))
        assert err.value.type == ERR_CONFIG and "certificate" in str(err.value)
        assert "verify_tls" in str(err.value)
        assert len(tls_sink.messages) == 1


# --- retries on the real Temporal dev server -----------------------------------------------------


@workflow.defn(sandboxed=False)
class SendOnceWorkflow:
    """The smallest caller of send_email, with a fast retry policy."""

    @workflow.run
    async def run(self, req: SendRequest) -> SendResult:
        result: SendResult = await workflow.execute_activity(
            "send_email",
            req,
            result_type=SendResult,
            start_to_close_timeout=dt.timedelta(seconds=20),
            retry_policy=RetryPolicy(
                initial_interval=dt.timedelta(milliseconds=100),
                backoff_coefficient=1.0,
                maximum_attempts=4,
            ),
        )
        return result


class RecordingActivities(SendActivities):
    """Remembers each attempt; optionally "dies" right after the server accepted the message."""

    def __init__(
        self,
        pool: asyncpg.Pool,
        secrets: SecretBox,
        settings: Settings,
        crash_after_delivery_on: int | None = None,
    ) -> None:
        super().__init__(pool, secrets, settings)
        self.attempts: list[int] = []
        self.crash_on = crash_after_delivery_on

    @activity.defn(name="send_email")
    async def send_email(self, req: SendRequest) -> SendResult:
        self.attempts.append(activity.info().attempt)
        return await super().send_email(req)

    async def _after_delivery(self, req: SendRequest) -> None:
        if activity.info().attempt == self.crash_on:
            raise RuntimeError("worker died after the server accepted the message")


async def run_send(
    env: WorkflowEnvironment, settings: Settings, acts: RecordingActivities, req: SendRequest
) -> SendResult:
    async with Worker(
        env.client,
        task_queue=settings.TASK_QUEUE,
        workflows=[SendOnceWorkflow],
        activities=[acts.send_email],
        disable_eager_activity_execution=True,
    ):
        result: SendResult = await env.client.execute_workflow(
            SendOnceWorkflow.run, req, id=f"send-{uuid.uuid4().hex}", task_queue=settings.TASK_QUEUE
        )
        return result


async def test_crash_after_delivery_is_retried_without_a_second_copy(
    temporal_env: WorkflowEnvironment,
    db_pool: asyncpg.Pool,
    smtp_sink: SmtpSink,
    box: SecretBox,
    settings: Settings,
) -> None:
    sender = await add_mailbox(db_pool, box, smtp_sink, "ann@one.example")
    await add_mailbox(db_pool, box, smtp_sink, "bea@two.example")
    acts = RecordingActivities(db_pool, box, settings, crash_after_delivery_on=1)
    req = request(sender, 0)

    result = await run_send(temporal_env, settings, acts, req)

    assert acts.attempts == [1, 2]
    assert result.already_done and result.status is SendStatus.SENT
    await asyncio.sleep(0.1)
    assert copies(smtp_sink, result.message_id) == 1 and len(smtp_sink.messages) == 1
    row = await row_of(db_pool, req)
    assert row.status is SendStatus.SENT and row.attempts == 1 and row.message_id == result.message_id


async def test_temporary_451_is_retried_then_delivered_once(
    temporal_env: WorkflowEnvironment,
    db_pool: asyncpg.Pool,
    smtp_sink: SmtpSink,
    box: SecretBox,
    settings: Settings,
) -> None:
    sender = await add_mailbox(db_pool, box, smtp_sink, "ann@one.example")
    await add_mailbox(db_pool, box, smtp_sink, "bea@two.example")
    smtp_sink.script_data_replies(["451 4.3.0 Try again later"])
    acts = RecordingActivities(db_pool, box, settings)
    req = request(sender, 0)

    result = await run_send(temporal_env, settings, acts, req)

    assert acts.attempts == [1, 2]
    assert result.status is SendStatus.SENT and not result.already_done
    assert copies(smtp_sink, result.message_id) == 1 and len(smtp_sink.messages) == 1
    row = await row_of(db_pool, req)
    assert row.status is SendStatus.SENT and row.attempts == 2 and row.smtp_code == 250 and row.error == ""
    assert (await mailbox_of(db_pool, sender.id)).state is MailboxState.ACTIVE


async def test_smtp_535_pauses_the_mailbox_and_is_not_retried(
    temporal_env: WorkflowEnvironment,
    db_pool: asyncpg.Pool,
    smtp_sink: SmtpSink,
    box: SecretBox,
    settings: Settings,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)
    smtp_sink.credentials = {USERNAME: "the-real-password"}
    sender = await add_mailbox(db_pool, box, smtp_sink, "ann@one.example")  # stores PASSWORD: wrong
    await add_mailbox(db_pool, box, smtp_sink, "bea@two.example")
    acts = RecordingActivities(db_pool, box, settings)
    req = request(sender, 0)

    with pytest.raises(WorkflowFailureError) as failed:
        await run_send(temporal_env, settings, acts, req)

    activity_error = failed.value.cause
    assert isinstance(activity_error, ActivityError)
    assert activity_error.retry_state is RetryState.NON_RETRYABLE_FAILURE
    app = activity_error.cause
    assert isinstance(app, ApplicationError) and app.type == ERR_AUTH and app.non_retryable
    assert "535" in app.message and f"mailbox {sender.id}" in app.message
    assert acts.attempts == [1]  # no attempt 2
    assert smtp_sink.auth_failures >= 1 and smtp_sink.messages == []  # aiosmtplib tries each mechanism

    row = await row_of(db_pool, req)
    assert row.status is SendStatus.FAILED and row.smtp_code == 535
    paused = await mailbox_of(db_pool, sender.id)
    assert paused.state is MailboxState.PAUSED
    assert "SMTP login rejected (535" in paused.pause_reason and "username/password" in paused.pause_reason
    for text in (app.message, str(app.details), row.error, paused.pause_reason, caplog.text):
        assert PASSWORD not in text


async def test_recipient_choice_stays_cheap_at_100k_mailboxes(db_pool: asyncpg.Pool) -> None:
    async with db_pool.acquire() as conn:
        await conn.execute("INSERT INTO users (id) VALUES ('bulk')")
        await conn.execute(
            """
            INSERT INTO mailboxes (user_id, address, smtp_host, smtp_port, smtp_security, smtp_username,
                secret_ciphertext, timezone, window_start_hour, window_end_hour, delay_min_minutes,
                delay_max_minutes, ramp_start, ramp_increment, ramp_ceiling, state)
            SELECT 'bulk', 'm' || g || '@bulk.example', '127.0.0.1', 25, 'none', 'u', 'x', 'UTC',
                6, 22, 2, 10, 5, 2, 40, CASE WHEN g % 100 = 0 THEN 'paused'::mailbox_state ELSE 'active' END
            FROM generate_series(1, 100000) AS g
            """
        )
        await conn.execute("ANALYZE mailboxes")
        sender = int(await conn.fetchval("SELECT min(id) FROM mailboxes"))
        day = dt.date(2026, 3, 2)
        probe_args = (sender, day, "1:x:0", [0.5] * recipients.PROBES, recipients.PAIR_REPEAT_DAYS)
        scan_args = (sender, day, 0.5, recipients.SCAN)
        for query, args in ((recipients._PROBE, probe_args), (recipients._SCAN, scan_args)):
            plan = "\n".join(r[0] for r in await conn.fetch("EXPLAIN " + query, *args))
            assert "Seq Scan on mailboxes" not in plan, plan

        started = time.perf_counter()
        chosen = [
            await recipients.choose_recipient(conn, sender, dt.date(2026, 3, 2), f"1:x:{i}")
            for i in range(50)
        ]
        elapsed = time.perf_counter() - started
    ids = {c.id for c in chosen if c is not None}
    assert len(ids) >= 45 and sender not in ids
    paused = {c.id for c in chosen if c is not None and c.address.split("@")[0][1:].endswith("00")}
    assert not paused
    assert elapsed < 1.0, f"50 recipient choices took {elapsed:.2f}s"
