"""The webhook delivery activity: POST each due event to its endpoint, signed (warmup/webhooks.py).

Idempotent under retries and a SIGKILL at any line: a row is marked delivered only after a 2xx, so a
kill in between sends the same event (same `webhook-id`) again, which the receiver drops as seen.
Rows are taken under `FOR UPDATE SKIP LOCKED`, so two workers never send the same row at once.
"""

from __future__ import annotations

import logging
import time

import asyncpg
import httpx
from temporalio import activity

from warmup import webhooks
from warmup.models import WebhookRound
from warmup.secrets import SecretBox, SecretKeyError

log = logging.getLogger(__name__)

TIMEOUT_SECONDS = 10.0


class WebhookActivities:
    def __init__(self, pool: asyncpg.Pool, secrets: SecretBox) -> None:
        self._pool = pool
        self._secrets = secrets

    @activity.defn(name="deliver_webhooks")
    async def deliver_webhooks(self, limit: int) -> WebhookRound:
        """Send up to `limit` due deliveries; how many went, failed, and when the next is due."""
        sent = failed = 0
        async with httpx.AsyncClient(timeout=TIMEOUT_SECONDS, follow_redirects=False) as http:
            for _ in range(limit):
                # One row per transaction: its lock keeps other workers off it while it is sent, and
                # each outcome is committed at once.
                async with self._pool.acquire() as conn, conn.transaction():
                    due = await webhooks.due_deliveries(conn, 1)
                    if not due:
                        break
                    d = due[0]
                    activity.heartbeat(d.event_id)
                    error = await self._post(http, d)
                    if error is None:
                        await webhooks.mark_delivered(conn, d)
                        sent += 1
                    else:
                        await webhooks.mark_failed_attempt(conn, d, error)
                        failed += 1
        async with self._pool.acquire() as conn:
            next_in = await webhooks.next_due_in(conn)
        return WebhookRound(sent, failed, next_in)

    async def _post(self, http: httpx.AsyncClient, d: webhooks.Delivery) -> str | None:
        """None when the endpoint took it (2xx), else what went wrong (kept in the row, no secret)."""
        try:
            secret = self._secrets.decrypt(d.secret_ciphertext)
        except SecretKeyError as exc:
            return f"cannot decrypt the endpoint's secret: {exc}"
        event_id, timestamp = str(d.event_id), int(time.time())
        headers = {
            "content-type": "application/json",
            "webhook-id": event_id,
            "webhook-timestamp": str(timestamp),
            "webhook-signature": webhooks.signature(secret, event_id, timestamp, d.body),
        }
        try:
            response = await http.post(d.url, content=d.body, headers=headers)
        except httpx.HTTPError as exc:
            return f"{type(exc).__name__}: {exc}"
        if 200 <= response.status_code < 300:
            return None
        log.info("webhook %s: event %s got HTTP %s", d.webhook_id, d.event_id, response.status_code)
        return f"HTTP {response.status_code}"
