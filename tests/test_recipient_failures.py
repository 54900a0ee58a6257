"""Recipient failures are the recipient's (issue #15 item 4), on real PostgreSQL and a real SMTP server.

A recipient refused for good at RCPT leaves the pool and the send goes to another; a sender whose server
refuses many recipients is the one at fault; a provider's daily limit stops the day without a pause.
The workflow's side of the daily limit is in test_mailbox_workflow.py; the replies are those of Postfix,
Gmail and Exchange Online (test_smtp_errors.py), scripted on aiosmtpd: the lab's Postfix accepts every
address at RCPT and lets Dovecot refuse unknown ones over LMTP, after the 250.
"""

from __future__ import annotations

import asyncpg
import pytest
from temporalio.exceptions import ApplicationError

from activities.recipient_refusals import SENDER_AT_FAULT_RECIPIENTS
from activities.send import SendActivities
from devstack.smtp_sink import SmtpSink

# The send tests' fixtures (`box`, `settings`) and helpers: these are sends too.
from tests.test_send_activity import add_mailbox, box, mailbox_of, request, row_of, settings
from warmup.config import Settings
from warmup.errors import ERR_DAILY_LIMIT, ERR_POLICY, ERR_TRANSIENT
from warmup.ledger import ledger_row
from warmup.mailboxes import set_state
from warmup.models import MailboxState, SendStatus
from warmup.secrets import SecretBox

__all__ = ["box", "settings"]

UNKNOWN_USER = "550 5.1.1 <{}>: Recipient address rejected: User unknown in virtual mailbox table"


async def test_a_refused_recipient_leaves_the_pool_and_the_send_goes_to_another(
    db_pool: asyncpg.Pool, smtp_sink: SmtpSink, box: SecretBox, settings: Settings
) -> None:
    sender = await add_mailbox(db_pool, box, smtp_sink, "ann@one.example", user_id="u1")
    # The only receiver that keeps every pool rule (another user, another domain): the first pick.
    gone = await add_mailbox(db_pool, box, smtp_sink, "gone@two.example", user_id="u2")
    kept = await add_mailbox(db_pool, box, smtp_sink, "cal@three.example", user_id="u1")
    smtp_sink.rcpt_replies[gone.address] = UNKNOWN_USER.format(gone.address)
    acts = SendActivities(db_pool, box, settings)
    req = request(sender, 0)

    with pytest.raises(ApplicationError) as err:
        await acts.send_email(req)
    assert err.value.type == ERR_TRANSIENT and not err.value.non_retryable, "the sender must go on"
    assert err.value.next_retry_delay is not None and err.value.next_retry_delay.total_seconds() <= 1
    assert "5.1.1" in str(err.value) and "another recipient" in str(err.value)
    async with db_pool.acquire() as conn:
        assert await ledger_row(conn, req.idempotency_key) is None, "the refused send keeps no recipient"

    refused = await mailbox_of(db_pool, gone.id)
    assert refused.state is MailboxState.ACTIVE, "its own sends go on"
    assert "5.1.1" in refused.receiving_off and "`starter resume`" in refused.receiving_off
    assert sender.address not in refused.receiving_off, "the reason names no other user's mailbox"
    assert (await mailbox_of(db_pool, sender.id)).state is MailboxState.ACTIVE

    result = await acts.send_email(req)  # Temporal's retry, a second later
    assert result.status is SendStatus.SENT and result.recipient_id == kept.id
    assert (await row_of(db_pool, req)).recipient_id == kept.id
    async with db_pool.acquire() as conn:  # the rule the pick broke is kept for `starter status`
        relaxed = await conn.fetchval(
            "SELECT relaxed FROM send_ledger WHERE idempotency_key = $1", req.idempotency_key
        )
    assert relaxed == "same_user"
    for slot in range(1, 4):
        assert (await acts.send_email(request(sender, slot))).recipient_id != gone.id
    (got,) = [m for m in await smtp_sink.wait_for(4) if m.message_id == result.message_id]
    assert got.rcpt_tos == [kept.address]

    async with db_pool.acquire() as conn:  # its owner fixed the address: `starter resume` readmits it
        await set_state(conn, gone.id, MailboxState.ACTIVE)
    assert (await mailbox_of(db_pool, gone.id)).receiving_off == ""


async def test_a_sender_whose_server_refuses_everyone_is_the_one_paused(
    db_pool: asyncpg.Pool, smtp_sink: SmtpSink, box: SecretBox, settings: Settings
) -> None:
    sender = await add_mailbox(db_pool, box, smtp_sink, "ann@one.example", user_id="u1")
    peers = [
        await add_mailbox(db_pool, box, smtp_sink, f"peer{i}@d{i}.example", user_id=f"u{i + 2}")
        for i in range(SENDER_AT_FAULT_RECIPIENTS + 1)
    ]
    for p in peers:  # what a server that checks every address against its own users answers
        smtp_sink.rcpt_replies[p.address] = UNKNOWN_USER.format(p.address)
    acts = SendActivities(db_pool, box, settings)
    req = request(sender, 0)

    for _ in range(SENDER_AT_FAULT_RECIPIENTS - 1):
        with pytest.raises(ApplicationError) as err:
            await acts.send_email(req)
        assert err.value.type == ERR_TRANSIENT
    with pytest.raises(ApplicationError) as err:
        await acts.send_email(req)
    assert err.value.type == ERR_POLICY and err.value.non_retryable
    paused = await mailbox_of(db_pool, sender.id)
    assert paused.state is MailboxState.PAUSED
    assert f"refused {SENDER_AT_FAULT_RECIPIENTS} different recipients" in paused.pause_reason
    assert (await row_of(db_pool, req)).status is SendStatus.FAILED
    for p in peers:  # the fault was the sender's: nobody it refused is out of the pool
        assert (await mailbox_of(db_pool, p.id)).receiving_off == ""
    assert smtp_sink.messages == []


async def test_a_providers_daily_limit_gives_the_slot_up_without_pausing(
    db_pool: asyncpg.Pool, smtp_sink: SmtpSink, box: SecretBox, settings: Settings
) -> None:
    sender = await add_mailbox(db_pool, box, smtp_sink, "ann@one.example")
    await add_mailbox(db_pool, box, smtp_sink, "bea@two.example", user_id="u2")
    smtp_sink.script_data_replies(["550 5.4.5 Daily user sending limit exceeded. - gsmtp"])
    acts = SendActivities(db_pool, box, settings)
    req = request(sender, 0)
    with pytest.raises(ApplicationError) as err:
        await acts.send_email(req)
    assert err.value.type == ERR_DAILY_LIMIT and err.value.non_retryable
    # The reply travels as the error's details: the workflow shows it as today's reason.
    assert err.value.details == ("550 5.4.5 Daily user sending limit exceeded. - gsmtp",)
    assert (await mailbox_of(db_pool, sender.id)).state is MailboxState.ACTIVE
    row = await row_of(db_pool, req)
    assert row.status is SendStatus.FAILED and row.error.startswith(f"{ERR_DAILY_LIMIT}: ")
    with pytest.raises(ApplicationError) as again:  # a retry re-raises it and sends nothing
        await acts.send_email(req)
    assert again.value.type == ERR_DAILY_LIMIT and again.value.non_retryable
    assert smtp_sink.messages == []
