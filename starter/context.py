"""What every starter command shares: its streams and environment, the database connection,
mailbox lookup by address, and the scrubbing that keeps configured secrets off the terminal."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
from collections.abc import AsyncIterator, Mapping
from typing import TextIO
from urllib.parse import urlsplit

import asyncpg
from rich.console import RenderableType

from starter import temporal_calls
from starter.enroll_request import normalize_address
from starter.temporal_calls import StarterError
from starter.views import render, to_json
from warmup.config import Settings
from warmup.db import Conn, migrate
from warmup.mailboxes import MailboxRecord, get_mailbox_by_address
from warmup.process_exit import EXIT_USAGE

_DB_CONNECT_TIMEOUT = 15.0
# Where the Temporal Web UI lives when it is not on the dev server's default port next to the server.
UI_URL_ENV = "WARMUP_TEMPORAL_UI_URL"


@dataclasses.dataclass
class Io:
    env: Mapping[str, str]
    stdin: TextIO
    out: TextIO
    err: TextIO

    def say(self, text: str) -> None:
        print(text, file=self.out)

    def note(self, text: str) -> None:
        print(text, file=self.err)

    def show(self, *items: RenderableType) -> None:
        render(self.out, *items)

    def json(self, value: object, *, compact: bool = False) -> None:
        print(to_json(value, compact=compact), file=self.out, flush=compact)


def scrub(message: str, settings: Settings | None) -> str:
    """Belt and braces: no secret from the settings may reach the terminal."""
    if settings is None:
        return message
    secrets = settings.secret_keys()
    try:
        dsn_password = urlsplit(settings.DATABASE_URL.get_secret_value()).password
    except ValueError:
        dsn_password = None
    if dsn_password:
        secrets.append(dsn_password)
    for value in secrets:
        message = message.replace(value, "***")
    return message


@contextlib.asynccontextmanager
async def _db_errors() -> AsyncIterator[None]:
    """Connection failures as one-line StarterErrors that never show the DSN (it may hold a password)."""
    try:
        async with asyncio.timeout(_DB_CONNECT_TIMEOUT):
            yield
    except TimeoutError:
        raise StarterError(
            f"cannot connect to PostgreSQL (no answer within {_DB_CONNECT_TIMEOUT:g}s); "
            "check WARMUP_DATABASE_URL"
        ) from None
    except (OSError, asyncpg.PostgresError) as exc:
        raise StarterError(
            f"cannot connect to PostgreSQL ({type(exc).__name__}: {exc}); check WARMUP_DATABASE_URL"
        ) from None
    except Exception as exc:  # e.g. a malformed DSN: its text may hold the password, so only the type
        raise StarterError(
            f"cannot connect to PostgreSQL ({type(exc).__name__}); check WARMUP_DATABASE_URL"
        ) from None


@contextlib.asynccontextmanager
async def database(settings: Settings) -> AsyncIterator[asyncpg.Connection]:
    """One connection on a migrated database (most commands need no pool)."""
    async with _db_errors():
        conn = await asyncpg.connect(settings.DATABASE_URL.get_secret_value())
    try:
        await migrate(conn)
        yield conn
    finally:
        await conn.close()


@contextlib.asynccontextmanager
async def database_pool(settings: Settings, size: int) -> AsyncIterator[asyncpg.Pool]:
    """A pool of up to `size` connections on a migrated database (a bulk enroll's concurrent rows)."""
    async with _db_errors():
        pool = await asyncpg.create_pool(settings.DATABASE_URL.get_secret_value(), min_size=1, max_size=size)
    try:
        async with pool.acquire() as conn:
            await migrate(conn)
        yield pool
    finally:
        await pool.close()


def address(raw: str) -> str:
    try:
        return normalize_address(raw)
    except ValueError as exc:
        raise StarterError(str(exc), EXIT_USAGE) from None


async def find_mailbox(conn: Conn, address: str, user_id: str | None = None) -> MailboxRecord:
    """The mailbox at `address`; with `user_id`, only if that user owns it (the tenant scope).

    A mailbox of another user gets the same answer as one that does not exist, so the refusal says
    nothing about other tenants (not even that the address is enrolled).
    """
    record = await get_mailbox_by_address(conn, address)
    if user_id is not None and (record is None or record.user_id != user_id):
        raise StarterError(
            f"--mailbox {address} --user {user_id}: no mailbox {address} for user {user_id}; "
            f"nothing was changed. `starter list --user {user_id}` shows that user's mailboxes"
        )
    if record is None:
        raise StarterError(
            f"--mailbox {address}: no such mailbox is enrolled; "
            "check the address or enroll it with `starter enroll`"
        )
    return record


def ui_link(settings: Settings, workflow_id: str, io: Io) -> str:
    return temporal_calls.web_ui_url(settings, workflow_id, io.env.get(UI_URL_ENV))
