"""Who is calling: the API token in `Authorization: Bearer`, or the dashboard's HttpOnly cookie.

A user token reaches its user's mailboxes only, exactly as `--user` does in the CLI; an operator
token reaches the fleet. An unknown, revoked or missing token is 401 with nothing said about which.
"""

from __future__ import annotations

import dataclasses

from fastapi import Request

from api.problems import Problem
from api.state import State
from warmup import api_tokens

COOKIE = "warmup_token"


@dataclasses.dataclass(frozen=True)
class Principal:
    token_id: int
    user_id: str | None  # None: operator

    @property
    def operator(self) -> bool:
        return self.user_id is None

    def scope(self, user: str | None) -> str | None:
        """The user a request acts for: a user token's own (a `user` naming anyone else is treated as
        a user that does not exist), or what an operator names (None: the fleet)."""
        if self.user_id is None:
            return user
        if user is not None and user != self.user_id:
            raise Problem(404, "Not found", f"no user {user}; this token reaches user {self.user_id} only")
        return self.user_id

    def need_operator(self) -> None:
        if not self.operator:
            raise Problem(
                403,
                "Operator token needed",
                "this call acts on the fleet: use an operator token (`starter token create --operator`)",
            )


async def _principal(state: State, token: str | None) -> Principal | None:
    if not token:
        return None
    async with state.pool.acquire() as conn:
        info = await api_tokens.authenticate(conn, token)
    return None if info is None else Principal(info.id, info.user_id)


async def bearer(request: Request) -> Principal:
    """The API's dependency: the Bearer token's principal, else 401."""
    header = request.headers.get("authorization", "")
    scheme, _, token = header.partition(" ")
    principal = await _principal(State.of(request), token.strip() if scheme.lower() == "bearer" else None)
    if principal is None:
        raise Problem(
            401,
            "Unauthorized",
            "send a live API token as `Authorization: Bearer <token>` (`starter token create --user U`)",
        )
    return principal


async def from_cookie(request: Request) -> Principal | None:
    """The dashboard's principal, or None (the page then shows the sign-in form)."""
    return await _principal(State.of(request), request.cookies.get(COOKIE))
