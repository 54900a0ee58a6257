"""RFC 9457 problem details: every error the API returns is `application/problem+json` with a
title, the status, a detail saying what to fix and, for bad fields, one entry per field."""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any

from fastapi import Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse

from warmup import mailbox_settings as ms

PROBLEM_JSON = "application/problem+json"
_FIELDS = sorted([*ms.BY_NAME, *(x.name for x in ms.SECRETS)], key=len, reverse=True)


class Problem(Exception):
    def __init__(
        self, status: int, title: str, detail: str, errors: Sequence[dict[str, str]] = (), kind: str = ""
    ) -> None:
        super().__init__(detail)
        self.status, self.title, self.detail, self.errors = status, title, detail, list(errors)
        self.kind = kind or re.sub(r"[^a-z]+", "-", title.lower()).strip("-")


def field_of(message: str) -> str:
    """The request field a validation message names (messages start with, or quote, the field)."""
    for name in _FIELDS:
        if re.search(rf"(^|[\s'\".]){re.escape(name)}([\s'\",:]|$)", message):
            return name
    return ""


def invalid(problems: Sequence[str], done: str = "nothing was stored") -> Problem:
    errors = [{"field": field_of(p), "detail": p} for p in problems]
    return Problem(
        422, "Invalid request", f"{len(errors)} field(s) are invalid; {done}: " + "; ".join(problems), errors
    )


def not_found(what: str) -> Problem:
    return Problem(404, "Not found", f"no {what}; GET /v1/mailboxes lists yours")


def response(problem: Problem, request: Request) -> JSONResponse:
    body: dict[str, Any] = {
        "type": f"https://warmup.invalid/problems/{problem.kind}",
        "title": problem.title,
        "status": problem.status,
        "detail": problem.detail,
        "instance": request.url.path,
    }
    if problem.errors:
        body["errors"] = problem.errors
    headers = {"WWW-Authenticate": "Bearer"} if problem.status == 401 else None
    return JSONResponse(body, status_code=problem.status, media_type=PROBLEM_JSON, headers=headers)


def from_request_validation(exc: RequestValidationError) -> Problem:
    """FastAPI's own body checks (not JSON, unknown field, wrong shape), without the input echoed:
    it may be a password."""
    errors = []
    for err in exc.errors():
        loc = [str(p) for p in err.get("loc", ()) if p not in ("body", "query", "path")]
        where = ".".join(loc) or "body"
        if err.get("type") == "extra_forbidden":
            text = f"{where}: unknown field; remove it (GET /openapi.json lists the fields)"
        elif err.get("type") == "missing":
            text = f"{where} is required"
        else:
            text = f"{where}: {err.get('msg', 'invalid')}"
        errors.append({"field": where, "detail": text})
    problems = [e["detail"] for e in errors]
    return Problem(
        422,
        "Invalid request",
        f"{len(errors)} field(s) are invalid; nothing was changed: " + "; ".join(problems),
        errors,
    )
