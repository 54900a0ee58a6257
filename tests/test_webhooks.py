"""Webhooks (issue #16 item 3): a user's events POSTed to the user's endpoints by Temporal (the delivery
workflow and its activity), signed, retried with backoff, idempotent by event id, and never another
user's. Real Temporal dev server, real PostgreSQL, a real HTTP endpoint on loopback. The events of the
inbox activities (engagement off, placement low) are recorded on the real mail lab in
test_engagement_session.py."""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import hmac
import json
import uuid
from collections.abc import AsyncIterator

import asyncpg
import pytest
import pytest_asyncio
from temporalio.worker import Worker

from activities.engagement import EngagementActivities
from activities.webhooks import WebhookActivities
from tests.helpers.operator_cli import (  # noqa: F401  (the fixtures)
    NO_SENDS,
    Op,
    eventually,
    op_fixture,
    worker_fixture,
)
from tests.helpers.webhook_receiver import WebhookReceiver
from warmup import webhooks
from warmup.events import PLACEMENT_LOW
from warmup.models import PlacementCheckRequest, WebhookDeliveryInput
from warmup.secrets import SecretBox
from warmup.workflow_ids import inbox_task_queue, webhook_delivery_workflow_id
from workflows.webhook_delivery import WebhookDeliveryWorkflow


@pytest_asyncio.fixture
async def receiver() -> AsyncIterator[WebhookReceiver]:
    async with WebhookReceiver() as r:
        yield r


@pytest_asyncio.fixture
async def delivery(op: Op, worker: None, monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[None]:
    """The delivery workflow on the test's queue (worker fixture), its activity on the side queue."""
    monkeypatch.setattr(webhooks, "_FIRST_RETRY_SECONDS", 0.5)  # backoff 0.5 s, 1 s, ...
    pool = await asyncpg.create_pool(op.dsn, min_size=1, max_size=3)
    box = SecretBox(op.settings.secret_keys())
    try:
        async with Worker(
            op.client,
            task_queue=inbox_task_queue(op.settings.TASK_QUEUE),
            activities=[WebhookActivities(pool, box).deliver_webhooks],
        ):
            handle = await op.client.start_workflow(
                WebhookDeliveryWorkflow.run,
                WebhookDeliveryInput(poll_seconds=1.0),
                id=webhook_delivery_workflow_id(op.settings.TASK_QUEUE),
                task_queue=op.settings.TASK_QUEUE,
            )
            yield
            await handle.terminate()
    finally:
        await pool.close()


def _verify(secret: str, headers: dict[str, str], body: bytes) -> bool:
    """The receiving side's check, from the Standard Webhooks scheme, written out independently."""
    key = base64.b64decode(secret.removeprefix("whsec_"))
    signed = f"{headers['webhook-id']}.{headers['webhook-timestamp']}.".encode() + body
    expected = base64.b64encode(hmac.new(key, signed, hashlib.sha256).digest()).decode()
    return headers["webhook-signature"] == f"v1,{expected}"


async def test_a_pause_reaches_the_users_endpoint_signed_after_two_failures_and_no_one_elses(
    op: Op, delivery: None, receiver: WebhookReceiver
) -> None:
    tag = uuid.uuid4().hex[:6]
    ann, bob = f"ann{tag}", f"bob{tag}"
    made = await op.ok("webhook", "add", "--user", ann, "--url", receiver.url("/ann"), "--json")
    hook = made.json()
    assert isinstance(hook, dict)
    secret = str(hook["secret"])
    await op.ok("webhook", "add", "--user", bob, "--url", receiver.url("/bob"))
    receiver.script["/ann"] = [500, 503]  # the product's endpoint is down twice

    mailbox = f"wh-{tag}@hooks.test"
    await op.enroll(mailbox, ann, *NO_SENDS)
    await op.ok("pause", "--mailbox", mailbox, "--reason", "moving to a new domain")

    await eventually(lambda: _got(receiver, "/ann", 3), 60)
    got = receiver.at("/ann")
    assert [r.status for r in got] == [500, 503, 204], "retried until the endpoint took it"
    assert len({r.headers["webhook-id"] for r in got}) == 1, "the same event id each time: idempotent"
    assert all(_verify(secret, r.headers, r.body) for r in got)
    event = json.loads(got[-1].body)
    assert event["kind"] == "mailbox.paused" and event["address"] == mailbox
    assert event["reason"] == "moving to a new domain" and str(event["id"]) == got[-1].headers["webhook-id"]
    feed = [e for e in (await op.fetch("SELECT id FROM events WHERE address = $1", mailbox))]
    assert [r["id"] for r in feed] == [event["id"]], "the webhook carries the feed's event id"

    async def settled() -> bool:
        rows = await op.fetch(
            "SELECT attempts, delivered_at FROM webhook_deliveries WHERE event_id = $1", event["id"]
        )
        return len(rows) == 1 and rows[0]["attempts"] == 3 and rows[0]["delivered_at"] is not None

    await eventually(settled, 10)
    assert receiver.at("/bob") == [], "another user's endpoint never hears of ann's mailboxes"

    # The secret is the user's: never in the delivery workflow's history, stored only encrypted.
    history = await op.client.get_workflow_handle(
        webhook_delivery_workflow_id(op.settings.TASK_QUEUE)
    ).fetch_history()
    assert secret not in history.to_json()
    (row,) = await op.fetch("SELECT secret_ciphertext FROM webhooks WHERE id = $1", hook["id"])
    assert secret not in row["secret_ciphertext"]
    assert SecretBox(op.settings.secret_keys()).decrypt(row["secret_ciphertext"]) == secret

    # Removed: the next event is not sent to it.
    await op.ok("webhook", "remove", "--user", ann, "--id", str(hook["id"]))
    await op.ok("resume", "--mailbox", mailbox)
    await eventually(lambda: _resumed_event(op, mailbox), 10)
    assert len(receiver.at("/ann")) == 3


async def test_placement_low_is_sent_once_a_day_however_often_the_check_runs(
    op: Op, delivery: None, receiver: WebhookReceiver
) -> None:
    tag = uuid.uuid4().hex[:6]
    user, mailbox = f"pl{tag}", f"pl-{tag}@hooks.test"
    await op.ok("webhook", "add", "--user", user, "--url", receiver.url("/pl"))
    mailbox_id = await op.enroll(mailbox, user, *NO_SENDS)
    today = dt.date.today()
    conn = await asyncpg.connect(op.dsn)
    try:  # what the receivers' sessions found: 12 of 20 in Junk
        await conn.execute(
            "INSERT INTO placement_days (sender_id, day, host, place, emails) VALUES"
            " ($1, $2, 'imap.example.net', 'junk', 12), ($1, $2, 'imap.example.net', 'inbox', 8)",
            mailbox_id,
            today,
        )
    finally:
        await conn.close()
    pool = await asyncpg.create_pool(op.dsn, min_size=1, max_size=2)
    try:
        checks = EngagementActivities(pool, SecretBox(op.settings.secret_keys()), op.settings)
        for _ in range(2):  # a retried check
            await checks.placement_check(PlacementCheckRequest(mailbox_id, today.isoformat()))
    finally:
        await pool.close()
    await eventually(lambda: _got(receiver, "/pl", 1), 30)
    (got,) = receiver.at("/pl")
    event = json.loads(got.body)
    assert event["kind"] == PLACEMENT_LOW and event["reason"].startswith("placement low: 60% in spam")
    kinds = [r["kind"] for r in await op.fetch("SELECT kind FROM events WHERE mailbox_id = $1", mailbox_id)]
    assert kinds.count(PLACEMENT_LOW) == 1


async def test_bad_webhook_urls_are_refused_naming_the_fix(op: Op) -> None:
    bad = await op.run("webhook", "add", "--user", "u1", "--url", "ftp://example.com/x")
    assert bad.code == 2 and "--url must be an https:// address" in bad.err
    plain = await op.run("webhook", "add", "--user", "u1", "--url", "http://hooks.example.com/x")
    assert plain.code == 2 and "must use https" in plain.err
    assert await op.fetch("SELECT id FROM webhooks") == []


async def _got(receiver: WebhookReceiver, path: str, n: int) -> bool:
    return len(receiver.at(path)) >= n


async def _resumed_event(op: Op, mailbox: str) -> bool:
    rows = await op.fetch(
        "SELECT d.event_id FROM events e LEFT JOIN webhook_deliveries d ON d.event_id = e.id"
        " WHERE e.address = $1 AND e.kind = 'mailbox.resumed'",
        mailbox,
    )
    return len(rows) == 1 and rows[0]["event_id"] is None
