"""The OpenAPI document, built without configuration: what docs/openapi.json holds and the test
compares against the app's."""

from __future__ import annotations

from typing import Any

from api.app import create_app


def document() -> dict[str, Any]:
    return create_app(None).openapi()
