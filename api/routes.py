"""The HTTP API, `/v1`: the starter's operations (starter/operations.py, starter/temporal_calls.py,
starter/bulk_enroll.py, starter/report.py) behind a token that scopes each call to its user.

A mailbox is named by its address in the path. One that is not the caller's answers 404, the same as
one nobody enrolled, so a token learns nothing about other users' mailboxes.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
from collections.abc import AsyncIterator
from typing import Annotated, Any

import asyncpg
from fastapi import APIRouter, Depends, Query, Request, Response
from pydantic import BaseModel

from api.auth import Principal, bearer
from api.models import (
    BULK_MAX,
    BulkEnrollBody,
    EnrollBody,
    PauseBody,
    PlanBody,
    UpdateBody,
    WebhookBody,
    raw_values,
)
from api.problems import Problem, invalid, not_found
from api.state import State
from starter import operations, temporal_calls
from starter.bulk_enroll import ParsedRow, RowResult, counts, store_rows
from starter.context import scrub
from starter.enroll_request import EnrollRequest, EnrollValidationError, encrypt_secrets, parse_enroll_request
from starter.report import build_report
from starter.temporal_calls import StarterError
from starter.views import list_json, to_json
from warmup import fleet, webhooks
from warmup import mailbox_settings as ms
from warmup.db import Conn
from warmup.events import list_events
from warmup.mailboxes import MailboxRecord, get_mailbox_by_address
from warmup.models import MailboxState
from warmup.process_exit import EXIT_USAGE
from warmup.workflow_ids import mailbox_workflow_id

_PROBLEM = {
    "description": "an RFC 9457 problem (application/problem+json)",
    "content": {
        "application/problem+json": {
            "schema": {
                "type": "object",
                "required": ["type", "title", "status", "detail"],
                "properties": {
                    "type": {"type": "string"},
                    "title": {"type": "string"},
                    "status": {"type": "integer"},
                    "detail": {"type": "string"},
                    "instance": {"type": "string"},
                    "errors": {
                        "type": "array",
                        "items": {
                            "type": "object",
                            "properties": {"field": {"type": "string"}, "detail": {"type": "string"}},
                        },
                    },
                },
            }
        }
    },
}
router = APIRouter(
    prefix="/v1",
    responses={
        401: {**_PROBLEM, "description": "no live API token"},
        404: {**_PROBLEM, "description": "no such mailbox for this token (another user's answers the same)"},
        422: {
            **_PROBLEM,
            "description": "a bad field, each named in errors[]; nothing was written",
        },
        503: {**_PROBLEM, "description": "Temporal or the workers did not answer; nothing was written"},
    },
)
Caller = Annotated[Principal, Depends(bearer)]


def _name(s: ms.Setting[Any]) -> str:
    return s.name  # how an API message names a setting: by its field


def _plain(value: object) -> Any:
    return json.loads(to_json(value))


def starter_problem(exc: StarterError, state: State) -> Problem:
    message = scrub(str(exc), state.settings)
    if exc.exit_code == EXIT_USAGE:
        return invalid([message], "nothing was changed")
    if "another user" in message or "was removed" in message:
        return Problem(409, "Conflict", message)
    return Problem(503, "Warmup engine unavailable", message)


@contextlib.asynccontextmanager
async def _engine(request: Request) -> AsyncIterator[tuple[State, Conn]]:
    """A pooled connection; the starter's failures as problems."""
    state = State.of(request)
    try:
        async with state.pool.acquire() as conn:
            yield state, conn
    except StarterError as exc:
        raise starter_problem(exc, state) from None
    except EnrollValidationError as exc:
        raise invalid([scrub(p, state.settings) for p in exc.problems], "nothing was changed") from None
    except (asyncpg.PostgresError, asyncpg.InterfaceError, OSError) as exc:
        # The DSN may hold a password: the error's type only.
        raise Problem(
            503, "Database unavailable", f"PostgreSQL did not answer ({type(exc).__name__}); try again"
        ) from None


async def _mailbox(conn: Conn, caller: Principal, address: str) -> MailboxRecord:
    try:
        normalized = ms.normalize_address(address, "address")
    except ValueError as exc:
        raise invalid([str(exc)], "nothing was changed") from None
    record = await get_mailbox_by_address(conn, normalized)
    if record is None or (caller.user_id is not None and record.user_id != caller.user_id):
        raise not_found(f"mailbox {normalized}")
    return record


def _mailbox_json(record: MailboxRecord, **extra: object) -> dict[str, object]:
    return {
        "mailbox_id": record.id,
        "address": record.address,
        "user_id": record.user_id,
        "workflow_id": mailbox_workflow_id(record.id),
        **extra,
    }


# --- enroll -----------------------------------------------------------------------------------------


def _enroll_request(caller: Principal, body: BaseModel, state: State, where: str = "") -> EnrollRequest:
    """The body checked exactly as `starter enroll` checks its flags; EnrollValidationError names the
    fields (prefixed by `where` in a bulk request)."""
    raw = raw_values(body)
    problems: list[str] = []
    user = raw.get(ms.USER.name)
    if caller.user_id is not None:
        if user is not None and user != caller.user_id:
            problems.append(f"user_id must be your own user ({caller.user_id}) or left out")
        raw[ms.USER.name] = caller.user_id
    elif user is None:
        problems.append("user_id is required with an operator token: the user the mailbox belongs to")
    for secret in ms.SECRETS:
        value = raw.get(secret.name)
        if value is None and not secret.needed_with(raw.get(ms.AUTH.name)):
            raw.pop(secret.name, None)  # optional, or not used by this login method
            continue
        if not isinstance(value, str) or not value.strip():
            problems.append(f"{secret.name} is required: the {secret.what}, in this request body")
        elif any(c in value for c in "\r\n\0"):
            problems.append(f"{secret.name} must be a single line of text")
        else:
            continue
        raw[secret.name] = "unused placeholder"  # reported above, in the API's words
    try:
        req = parse_enroll_request(raw, state.settings.default_schedule("UTC"), _name)
    except EnrollValidationError as exc:
        raise EnrollValidationError([where + p for p in dict.fromkeys(problems + exc.problems)]) from None
    if problems:
        raise EnrollValidationError([where + p for p in problems])
    return req


@router.post("/mailboxes", status_code=201, summary="Enroll a mailbox (enrolling again updates it)")
async def enroll(body: EnrollBody, caller: Caller, request: Request, response: Response) -> dict[str, object]:
    async with _engine(request) as (state, conn):
        try:
            req = _enroll_request(caller, body, state)
        except EnrollValidationError as exc:
            raise invalid(exc.problems) from None
        record, created = await temporal_calls.enroll(
            state.client, conn, req, encrypt_secrets(state.box, req), state.settings
        )
    if not created:
        response.status_code = 200
    return _mailbox_json(
        record,
        created=created,
        state=record.state.value,
        smtp_security=record.smtp.security.value,
        schedule=_plain(req.schedule),
    )


@router.post("/mailboxes/bulk", summary="Enroll many mailboxes: every entry checked before any is stored")
async def enroll_bulk(body: BulkEnrollBody, caller: Caller, request: Request) -> dict[str, object]:
    if len(body.mailboxes) > BULK_MAX:
        raise invalid(
            [
                f"mailboxes holds {len(body.mailboxes)} entries, at most {BULK_MAX} per request: send the "
                "rest in further requests (entries already enrolled come back unchanged)"
            ]
        )
    async with _engine(request) as (state, _):
        rows: list[ParsedRow] = []
        problems: list[str] = []
        seen: dict[str, int] = {}
        for i, entry in enumerate(body.mailboxes):
            try:
                req = _enroll_request(caller, entry, state, f"mailboxes[{i}].")
            except EnrollValidationError as exc:
                problems += exc.problems
                continue
            if req.address in seen:
                problems.append(f"mailboxes[{i}].address {req.address} is also entry {seen[req.address]}")
                continue
            seen[req.address] = i
            rows.append(ParsedRow(RowResult(i, req.address, "valid"), req))
        if problems:
            raise invalid(problems)
        stored = False
        if not body.dry_run:
            stored = await store_rows(state.client, state.pool, state.box, state.settings, rows)
    results = [r.result for r in rows]
    if not stored and any(r.status == "failed" for r in results):
        raise Problem(
            409,
            "Conflict",
            "nothing was stored: "
            + "; ".join(f"mailboxes[{r.line}]: {p}" for r in results for p in r.problems),
        )
    return {
        "dry_run": body.dry_run,
        "stored": stored,
        "counts": counts(results),
        "mailboxes": [
            {"index": r.line, **{k: v for k, v in dataclasses.asdict(r).items() if k != "line"}}
            for r in results
        ],
    }


# --- read -------------------------------------------------------------------------------------------


@router.get("/mailboxes", summary="The caller's mailboxes (an operator: every user's, or ?user=)")
async def list_mailboxes(
    caller: Caller,
    request: Request,
    state: Annotated[MailboxState | None, Query(description="only mailboxes in this state")] = None,
    user: Annotated[str | None, Query(description="operator only: this user's mailboxes")] = None,
) -> list[dict[str, object]]:
    async with _engine(request) as (_, conn):
        rows = await fleet.list_mailboxes(conn, user_id=caller.scope(user), state=state)
    return list_json(rows)


@router.get("/mailboxes/{address}", summary="A mailbox's status, as `starter status --mailbox --json`")
async def mailbox_status(address: str, caller: Caller, request: Request) -> dict[str, object]:
    async with _engine(request) as (state, conn):
        record = await _mailbox(conn, caller, address)
        look = await operations.look_mailbox(state.client, conn, record, state.settings)
    return {**_mailbox_json(record, database_state=record.state.value), **look.json()}


@router.get("/status", summary="Each of the user's mailboxes today, as `starter status --user --json`")
async def user_status(
    caller: Caller,
    request: Request,
    user: Annotated[str | None, Query(description="operator only: the user")] = None,
) -> dict[str, object]:
    scoped = caller.scope(user)
    if scoped is None:
        raise invalid(["user is required with an operator token: ?user=USER"], "nothing was read")
    async with _engine(request) as (state, conn):
        rows = await fleet.list_mailboxes(conn, user_id=scoped)
        if not rows:
            return {"user_id": scoped, "totals": {}, "mailboxes": []}
        look = await operations.look_user(state.client, conn, scoped, state.settings)
    return _plain(look.json())  # type: ignore[no-any-return]


@router.get("/report", summary="`starter report --json`: the caller's (an operator's: the fleet's)")
async def report(
    caller: Caller,
    request: Request,
    user: Annotated[str | None, Query(description="operator only: one user's report")] = None,
) -> dict[str, object]:
    async with _engine(request) as (state, conn):
        result = await build_report(state.client, conn, state.settings, caller.scope(user))
    return _plain(result)  # type: ignore[no-any-return]


@router.get("/events", summary="Events for the embedding product, oldest first, after an id")
async def events(
    caller: Caller,
    request: Request,
    after: Annotated[int, Query(ge=0, description="the last event id seen (0: from the start)")] = 0,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
) -> dict[str, object]:
    async with _engine(request) as (_, conn):
        found = await list_events(conn, caller.user_id, after, limit)
    return {"events": _plain(found), "next_after": found[-1].id if found else after}


# --- change -----------------------------------------------------------------------------------------


@router.patch("/mailboxes/{address}", summary="Change schedule or engagement settings (`starter update`)")
async def update(address: str, body: UpdateBody, caller: Caller, request: Request) -> dict[str, object]:
    raw = raw_values(body)
    if all(v is None for v in raw.values()):
        raise invalid(
            [f"nothing to update: give at least one of {', '.join(s.name for s in ms.UPDATABLE)}"],
            "nothing was changed",
        )
    async with _engine(request) as (state, conn):
        record = await _mailbox(conn, caller, address)
        try:
            (one,) = await operations.update_mailboxes(
                state.client, conn, [record], raw, state.settings, by_user=False, label=_name
            )
        except EnrollValidationError as exc:
            raise invalid(exc.problems, "nothing was changed") from None
    assert one.change is not None
    return _mailbox_json(record, changed=one.changed, schedule=_plain(one.change.schedule))


@router.post("/mailboxes/{address}/pause", summary="Pause a mailbox's warmup")
async def pause(
    address: str, caller: Caller, request: Request, body: PauseBody | None = None
) -> dict[str, object]:
    reason = (body or PauseBody()).reason
    async with _engine(request) as (state, conn):
        record = await _mailbox(conn, caller, address)
        await operations.pause_one(state.client, conn, record, reason, state.settings)
    return _mailbox_json(record, state=MailboxState.PAUSED.value, reason=reason)


@router.post("/mailboxes/{address}/resume", summary="Resume a paused mailbox")
async def resume(address: str, caller: Caller, request: Request) -> dict[str, object]:
    async with _engine(request) as (state, conn):
        record = await _mailbox(conn, caller, address)
        await operations.resume_one(state.client, conn, record, state.settings)
    return _mailbox_json(record, state=MailboxState.ACTIVE.value)


@router.delete("/mailboxes/{address}", summary="Stop a mailbox's warmup for good; its history is kept")
async def remove(
    address: str,
    caller: Caller,
    request: Request,
    wait: Annotated[float, Query(ge=0, le=60, description="seconds to wait for the workflow to end")] = 10,
) -> dict[str, object]:
    async with _engine(request) as (state, conn):
        record = await _mailbox(conn, caller, address)
        (removal,) = await operations.remove_mailboxes(
            state.client, conn, [record], wait, state.settings, by_user=False
        )
    return dataclasses.asdict(removal)


@router.put("/users/{user_id}/plan", summary="Set a user's plan and daily limit (operator token)")
async def plan(user_id: str, body: PlanBody, caller: Caller, request: Request) -> dict[str, object]:
    caller.need_operator()
    async with _engine(request) as (state, conn):
        change = await operations.set_plan(
            state.client, conn, user_id, body.plan, body.daily_limit, state.settings
        )
    return {
        "user_id": user_id,
        "plan": change.plan.plan,
        "daily_limit": change.plan.daily_limit,
        "weight": change.plan.weight,
        "workflow_updated": change.reached,
        "sends_reweighted": change.reweighted,
    }


# --- webhooks ---------------------------------------------------------------------------------------


def _webhook_user(caller: Principal, user: str | None) -> str:
    scoped = caller.scope(user)
    if scoped is None:
        raise invalid(["user is required with an operator token: the user whose events the webhook gets"])
    return scoped


@router.post(
    "/webhooks", status_code=201, summary="Add an endpoint for the user's events (secret shown once)"
)
async def add_webhook(
    body: WebhookBody,
    caller: Caller,
    request: Request,
    user: Annotated[str | None, Query(description="operator only: the user")] = None,
) -> dict[str, object]:
    owner = _webhook_user(caller, user)
    async with _engine(request) as (state, conn):
        try:
            hook, secret = await webhooks.add_webhook(conn, state.box, owner, body.url)
        except webhooks.WebhookError as exc:
            raise invalid([str(exc)]) from None
    return {**_plain(hook), "secret": secret}


@router.get("/webhooks", summary="The user's webhook endpoints")
async def list_webhooks(
    caller: Caller,
    request: Request,
    user: Annotated[str | None, Query(description="operator only: one user's")] = None,
) -> dict[str, object]:
    async with _engine(request) as (_, conn):
        found = await webhooks.list_webhooks(conn, caller.scope(user))
    return {"webhooks": _plain(found)}


@router.delete("/webhooks/{webhook_id}", summary="Stop sending events to an endpoint")
async def remove_webhook(webhook_id: int, caller: Caller, request: Request) -> dict[str, object]:
    async with _engine(request) as (_, conn):
        if not await webhooks.remove_webhook(conn, webhook_id, caller.user_id):
            raise not_found(f"webhook {webhook_id}")
    return {"id": webhook_id, "removed": True}
