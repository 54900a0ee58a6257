"""Webhooks: the events of a user's mailboxes (warmup/events.py) POSTed to the endpoints the user
registered, signed, retried with backoff and idempotent by event id.

The signature follows the Standard Webhooks scheme (standardwebhooks.com), which the receiving side can
check with any of its libraries: headers `webhook-id` (the event's id: a receiver drops one it has
seen), `webhook-timestamp` (Unix seconds) and `webhook-signature: v1,<base64 HMAC-SHA256 of
"{id}.{timestamp}.{body}" with the endpoint's secret>`. The secret is `whsec_` and base64 of 32 random
bytes, shown once at creation and stored encrypted.

A delivery row is written with its event (migration 0020), so nothing depends on a process being up
when the event happens. The delivery activity (activities/webhooks.py) takes the due rows, and a failed
attempt waits `backoff(attempts)` before the next; after MAX_ATTEMPTS the row is given up (`failed`).
"""

from __future__ import annotations

import base64
import dataclasses
import datetime as dt
import hashlib
import hmac
import json
import secrets
from urllib.parse import urlsplit

import asyncpg

from warmup.db import Conn
from warmup.secrets import SecretBox

SECRET_PREFIX = "whsec_"
MAX_ATTEMPTS = 12  # about 17 hours of backoff in all
_FIRST_RETRY_SECONDS = 30.0
_MAX_RETRY_SECONDS = 3600.0


class WebhookError(ValueError):
    """A webhook request the caller must fix (the message names the field and the fix)."""


def new_secret() -> str:
    return SECRET_PREFIX + base64.b64encode(secrets.token_bytes(32)).decode()


def signature(secret: str, event_id: str, timestamp: int, body: bytes) -> str:
    """The `webhook-signature` header's value for one delivery."""
    key = base64.b64decode(secret.removeprefix(SECRET_PREFIX))
    signed = f"{event_id}.{timestamp}.".encode() + body
    return "v1," + base64.b64encode(hmac.new(key, signed, hashlib.sha256).digest()).decode()


def backoff(attempts: int) -> dt.timedelta:
    """The wait after the `attempts`-th failed attempt: 30 s, doubling, at most an hour."""
    return dt.timedelta(seconds=min(_FIRST_RETRY_SECONDS * 2 ** (attempts - 1), _MAX_RETRY_SECONDS))


def check_url(url: str, *, allow_http: bool) -> str:
    parts = urlsplit(url.strip())
    if parts.scheme not in ("https", "http") or not parts.hostname:
        raise WebhookError(f"url must be an https:// address of your endpoint, got {url!r}")
    if parts.scheme == "http" and not allow_http:
        raise WebhookError(
            f"url must use https (the events name your users' mailboxes), got {url!r}; "
            "http is only for an endpoint on this machine (127.0.0.1 or localhost)"
        )
    return url.strip()


def local_http(url: str) -> bool:
    return urlsplit(url.strip()).hostname in ("127.0.0.1", "localhost", "::1")


@dataclasses.dataclass(frozen=True)
class Webhook:
    id: int
    user_id: str
    url: str
    created_at: dt.datetime


async def add_webhook(conn: Conn, box: SecretBox, user_id: str, url: str) -> tuple[Webhook, str]:
    """A new endpoint of `user_id` and its signing secret (returned once, stored encrypted)."""
    url = check_url(url, allow_http=local_http(url))
    secret = new_secret()
    row = await conn.fetchrow(
        "INSERT INTO webhooks (user_id, url, secret_ciphertext) VALUES ($1, $2, $3)"
        " RETURNING id, user_id, url, created_at",
        user_id,
        url,
        box.encrypt(secret),
    )
    assert row is not None
    return Webhook(**dict(row)), secret


async def list_webhooks(conn: Conn, user_id: str | None) -> list[Webhook]:
    rows = await conn.fetch(
        "SELECT id, user_id, url, created_at FROM webhooks"
        " WHERE removed_at IS NULL AND ($1::text IS NULL OR user_id = $1) ORDER BY id",
        user_id,
    )
    return [Webhook(**dict(r)) for r in rows]


async def remove_webhook(conn: Conn, webhook_id: int, user_id: str | None) -> bool:
    """Stop sending to it (what is queued for it is dropped); False if it is not the user's, or gone."""
    async with conn.transaction():
        status = await conn.execute(
            "UPDATE webhooks SET removed_at = now() WHERE id = $1 AND removed_at IS NULL"
            " AND ($2::text IS NULL OR user_id = $2)",
            webhook_id,
            user_id,
        )
        await conn.execute(
            "UPDATE webhook_deliveries SET failed_at = now(), last_error = 'the endpoint was removed'"
            " WHERE webhook_id = $1 AND delivered_at IS NULL AND failed_at IS NULL",
            webhook_id,
        )
    return status == "UPDATE 1"


@dataclasses.dataclass(frozen=True)
class Delivery:
    event_id: int
    webhook_id: int
    attempts: int
    url: str
    secret_ciphertext: str
    body: bytes


async def due_deliveries(conn: Conn, limit: int) -> list[Delivery]:
    """Deliveries whose time has come, locked for this transaction (another worker skips them)."""
    rows = await conn.fetch(
        """
        SELECT d.event_id, d.webhook_id, d.attempts, w.url, w.secret_ciphertext,
               e.kind, e.user_id, e.mailbox_id, e.address, e.reason, e.created_at
        FROM webhook_deliveries d
        JOIN webhooks w ON w.id = d.webhook_id
        JOIN events e ON e.id = d.event_id
        WHERE d.delivered_at IS NULL AND d.failed_at IS NULL AND d.next_attempt_at <= now()
        ORDER BY d.next_attempt_at, d.event_id
        LIMIT $1
        FOR UPDATE OF d SKIP LOCKED
        """,
        limit,
    )
    return [
        Delivery(r["event_id"], r["webhook_id"], r["attempts"], r["url"], r["secret_ciphertext"], _body(r))
        for r in rows
    ]


def _body(r: asyncpg.Record) -> bytes:
    """The event as JSON, the same fields as `GET /v1/events` gives."""
    event = {
        "id": r["event_id"],
        "kind": r["kind"],
        "user_id": r["user_id"],
        "mailbox_id": r["mailbox_id"],
        "address": r["address"],
        "reason": r["reason"],
        "created_at": r["created_at"].isoformat(),
    }
    return json.dumps(event, separators=(",", ":")).encode()


async def mark_delivered(conn: Conn, d: Delivery) -> None:
    await conn.execute(
        "UPDATE webhook_deliveries SET delivered_at = now(), attempts = attempts + 1, last_error = ''"
        " WHERE event_id = $1 AND webhook_id = $2",
        d.event_id,
        d.webhook_id,
    )


async def mark_failed_attempt(conn: Conn, d: Delivery, error: str) -> None:
    attempts = d.attempts + 1
    await conn.execute(
        "UPDATE webhook_deliveries SET attempts = $3::int, last_error = $4::text,"
        " next_attempt_at = now() + $5::interval,"
        " failed_at = CASE WHEN $3::int >= $6::int THEN now() END"
        " WHERE event_id = $1 AND webhook_id = $2",
        d.event_id,
        d.webhook_id,
        attempts,
        error[:500],
        backoff(attempts),
        MAX_ATTEMPTS,
    )


async def next_due_in(conn: Conn) -> float | None:
    """Seconds until the next delivery is due (0 if one is), None when nothing waits."""
    value = await conn.fetchval(
        "SELECT extract(epoch FROM min(next_attempt_at) - now()) FROM webhook_deliveries"
        " WHERE delivered_at IS NULL AND failed_at IS NULL"
    )
    return None if value is None else max(float(value), 0.0)
