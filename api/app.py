"""The FastAPI application: the `/v1` API (api/routes.py) and the dashboard (api/dashboard.py) on
one PostgreSQL pool and one Temporal client, opened for the app's lifetime."""

from __future__ import annotations

import contextlib
import logging
from collections.abc import AsyncIterator

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException

from api import dashboard, routes
from api.problems import Problem, from_request_validation, response
from api.state import State
from starter import temporal_calls
from warmup.config import Settings
from warmup.db import connect_pool
from warmup.secrets import SecretBox

log = logging.getLogger("api")

DESCRIPTION = """The warmup engine for the products that embed it.

Every call takes an API token as `Authorization: Bearer <token>` (`starter token create --user U`
for a user's, `--operator` for the fleet's). A user token reaches that user's mailboxes only: any
other mailbox answers 404, as one nobody enrolled. Errors are RFC 9457 problem details
(`application/problem+json`), a bad field named in `errors[].field`; nothing is written then.
Passwords are accepted in request bodies only and never returned."""


def create_app(settings: Settings | None) -> FastAPI:
    """The app; `settings` None builds it for its OpenAPI document only (no lifespan)."""

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        assert settings is not None, "create_app(None) serves no requests"
        client = await temporal_calls.connect_temporal(settings)
        pool = await connect_pool(settings.DATABASE_URL.get_secret_value(), min_size=1, max_size=10)
        app.state.warmup = State(settings, pool, client, SecretBox(settings.secret_keys()))
        try:
            yield
        finally:
            await pool.close()

    app = FastAPI(title="warmup", version="1", description=DESCRIPTION, lifespan=lifespan)
    app.include_router(routes.router)
    app.include_router(dashboard.router)

    @app.exception_handler(Problem)
    async def _problem(request: Request, exc: Problem) -> JSONResponse:
        return response(exc, request)

    @app.exception_handler(RequestValidationError)
    async def _invalid(request: Request, exc: RequestValidationError) -> JSONResponse:
        return response(from_request_validation(exc), request)

    @app.exception_handler(HTTPException)
    async def _http(request: Request, exc: HTTPException) -> JSONResponse:
        return response(Problem(exc.status_code, str(exc.detail), str(exc.detail)), request)

    @app.exception_handler(Exception)
    async def _crash(request: Request, exc: Exception) -> JSONResponse:
        # Logged by uvicorn with its traceback; the caller gets no detail that could carry a secret.
        logging.getLogger("api").error(
            "%s %s failed: %s", request.method, request.url.path, type(exc).__name__
        )
        return response(
            Problem(500, "Internal error", "the request failed; nothing is known to be written"), request
        )

    @app.get("/healthz", include_in_schema=False)
    async def healthz() -> dict[str, str]:
        return {"status": "ok"}

    return app
