"""The API's request bodies, derived from the mailbox settings' declarations
(warmup/mailbox_settings.py), as the starter's flags and CSV columns are: a setting's name is its
field, its `expected` text its description. Values are checked by the starter's own request parsers
(starter/enroll_request.py, starter/update_request.py), not by pydantic, so a bad field gets the same
message from the API as from the CLI."""

from __future__ import annotations

from enum import StrEnum
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel, ConfigDict, Field, SecretStr, create_model

from warmup import mailbox_settings as ms
from warmup.models import PauseRequest

_JSON_TYPES = {int: "integer", float: "number", bool: "boolean", str: "string"}


def _schema(s: ms.Setting[Any]) -> dict[str, Any]:
    if issubclass(s.type, StrEnum):
        return {"type": "string", "enum": [e.value for e in s.type]}
    return {"type": _JSON_TYPES.get(s.type, "string")}


def _field(s: ms.Setting[Any], *, required: bool) -> tuple[Any, Any]:
    description = f"{s.help} ({s.expected})" if s.help else s.expected
    extra = _schema(s)
    if required:
        return (Any, Field(..., description=description, json_schema_extra=extra))
    return (Any, Field(None, description=description, json_schema_extra=extra))


_STRICT = ConfigDict(extra="forbid")
_SECRET_FIELDS: dict[str, Any] = {
    x.name: (
        SecretStr | None,
        Field(
            None,
            description=f"the {x.what}; accepted only here, never returned or logged"
            + (f" (default: the {x.instead.what})" if x.instead else ""),
        ),
    )
    for x in ms.SECRETS
}

if TYPE_CHECKING:
    EnrollBody = BaseModel
    UpdateBody = BaseModel
else:
    EnrollBody = create_model(
        "EnrollBody",
        __config__=_STRICT,
        **{s.name: _field(s, required=s.required and s is not ms.USER) for s in ms.USER_SETTINGS},
        **_SECRET_FIELDS,
    )
    UpdateBody = create_model(
        "UpdateBody", __config__=_STRICT, **{s.name: _field(s, required=False) for s in ms.UPDATABLE}
    )


# Entries per bulk request: a request of this many answers within a minute or two; a larger import is
# sent as several requests (entries already enrolled come back `unchanged`).
BULK_MAX = 2000


class BulkEnrollBody(BaseModel):
    model_config = _STRICT
    mailboxes: list[EnrollBody] = Field(
        ..., description=f"one entry per mailbox, each as POST /v1/mailboxes; at most {BULK_MAX}"
    )
    dry_run: bool = Field(default=False, description="check every entry, store nothing")


class WebhookBody(BaseModel):
    model_config = _STRICT
    url: str = Field(..., max_length=2000, description="https:// address the user's events are POSTed to")


class PauseBody(BaseModel):
    model_config = _STRICT
    reason: str = Field(default=PauseRequest().reason, max_length=500, description="shown in status")


class PlanBody(BaseModel):
    model_config = _STRICT
    plan: str = Field(..., description="a plan named in WARMUP_PLAN_WEIGHTS")
    daily_limit: int | None = Field(
        default=None, description="emails a day across the user's mailboxes; null: none"
    )


def raw_values(body: BaseModel) -> dict[str, object]:
    """The body as the starter's parsers take it: values by setting name, secrets in clear."""
    raw: dict[str, object] = {}
    for name, value in body:
        raw[name] = value.get_secret_value() if isinstance(value, SecretStr) else value
    return raw
