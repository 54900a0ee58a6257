"""API tokens (issue #16): created and revoked by `starter token`, checked by the HTTP API.

A token is 32 random bytes, shown once; only its sha256 is stored (a 256-bit random value needs no
slow hash: nothing can be guessed). A token belongs to one user, whose mailboxes are all it reaches,
or is an operator's (user None), which reaches the whole fleet.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import hashlib
import secrets

from warmup.db import Conn

TOKEN_PREFIX = "wu_"  # so a leaked token is recognisable (and a secret scanner can match it)
_SHOWN = 10  # characters of the token kept in clear to tell tokens apart


@dataclasses.dataclass(frozen=True)
class TokenInfo:
    id: int
    prefix: str
    user_id: str | None  # None: operator
    label: str
    created_at: dt.datetime
    revoked_at: dt.datetime | None

    @property
    def operator(self) -> bool:
        return self.user_id is None


def new_token() -> str:
    return TOKEN_PREFIX + secrets.token_urlsafe(32)


def digest(token: str) -> bytes:
    return hashlib.sha256(token.encode()).digest()


async def create_token(conn: Conn, user_id: str | None, label: str = "") -> tuple[str, TokenInfo]:
    """A new token for `user_id` (None: operator): the token itself, which is never stored, and its row."""
    token = new_token()
    row = await conn.fetchrow(
        "INSERT INTO api_tokens (token_sha256, prefix, user_id, label) VALUES ($1, $2, $3, $4)"
        " RETURNING id, prefix, user_id, label, created_at, revoked_at",
        digest(token),
        token[:_SHOWN],
        user_id,
        label,
    )
    assert row is not None
    return token, TokenInfo(**dict(row))


async def list_tokens(conn: Conn, user_id: str | None = None, *, operator: bool = False) -> list[TokenInfo]:
    """The user's tokens, or the operator tokens; revoked ones included."""
    if operator:
        rows = await conn.fetch(
            "SELECT id, prefix, user_id, label, created_at, revoked_at FROM api_tokens"
            " WHERE user_id IS NULL ORDER BY id"
        )
    else:
        rows = await conn.fetch(
            "SELECT id, prefix, user_id, label, created_at, revoked_at FROM api_tokens"
            " WHERE user_id = $1 ORDER BY id",
            user_id,
        )
    return [TokenInfo(**dict(r)) for r in rows]


async def revoke_token(conn: Conn, token_id: int, user_id: str | None) -> bool:
    """Revoke token `token_id` of `user_id` (None: an operator token); False when there is none."""
    status = await conn.execute(
        "UPDATE api_tokens SET revoked_at = now() WHERE id = $1 AND user_id IS NOT DISTINCT FROM $2"
        " AND revoked_at IS NULL",
        token_id,
        user_id,
    )
    return status != "UPDATE 0"


async def authenticate(conn: Conn, token: str) -> TokenInfo | None:
    """The live token's row, or None (unknown or revoked: the caller cannot tell which)."""
    row = await conn.fetchrow(
        "SELECT id, prefix, user_id, label, created_at, revoked_at FROM api_tokens"
        " WHERE token_sha256 = $1 AND revoked_at IS NULL",
        digest(token),
    )
    return None if row is None else TokenInfo(**dict(row))
