"""The HTTP API (issue #16) against the real stack: embedded PostgreSQL, the Temporal dev server, an
in-process worker, the API on uvicorn over loopback. Two users with their own tokens and an operator
drive it; every refusal is checked to have changed nothing."""

from __future__ import annotations

import json
import uuid
from pathlib import Path
from typing import Any

import httpx
import pytest

from api.models import BULK_MAX
from api.openapi import document
from tests.helpers.api_server import Api, serve_api
from tests.helpers.operator_cli import (  # noqa: F401  (the fixtures)
    PASSWORD,
    Op,
    eventually,
    op_fixture,
    worker_fixture,
)

OPENAPI = Path(__file__).resolve().parent.parent / "docs" / "openapi.json"
NO_SENDS = {"ramp_start": 0, "ramp_increment": 0, "ramp_ceiling": 0}


def mailbox_body(op: Op, address: str, **extra: Any) -> dict[str, Any]:
    return {
        "address": address,
        "smtp_host": "127.0.0.1",
        "smtp_port": op.sink.port,
        "smtp_security": "none",
        "username": address,
        "timezone": "Europe/Lisbon",
        "secret": PASSWORD,
        **NO_SENDS,
        **extra,
    }


def problem(resp: httpx.Response, status: int) -> dict[str, Any]:
    assert resp.status_code == status, resp.text
    assert resp.headers["content-type"].startswith("application/problem+json"), resp.headers
    body = resp.json()
    assert isinstance(body, dict)
    assert body["status"] == status and body["title"] and body["detail"], body
    return body


def test_openapi_document_is_checked_in() -> None:
    """docs/openapi.json is the app's document; regenerate with `python -m api --openapi`."""
    assert json.loads(OPENAPI.read_text()) == document(), (
        "docs/openapi.json is stale: run `.venv/bin/python -m api --openapi > docs/openapi.json`"
    )


@pytest.fixture
async def api(op: Op, worker: None) -> Any:
    async with serve_api(op) as a:
        yield a


async def test_two_users_each_see_and_change_only_their_own(api: Api, op: Op) -> None:
    tag = uuid.uuid4().hex[:8]
    alice, bob = f"alice-{tag}", f"bob-{tag}"
    a_box, b_box = f"a-{tag}@api.test", f"b-{tag}@api.test"
    a_tok, b_tok, op_tok = (
        await api.token("--user", alice),
        await api.token("--user", bob),
        await api.token("--operator"),
    )
    async with (
        api.client(a_tok) as a,
        api.client(b_tok) as b,
        api.client(op_tok) as ops,
        api.client() as anon,
    ):
        # Enroll: a user token enrolls for its own user; enrolling again updates.
        r = await a.post("/v1/mailboxes", json=mailbox_body(op, a_box))
        assert r.status_code == 201, r.text
        assert r.json()["user_id"] == alice and r.json()["created"] is True
        assert PASSWORD not in r.text
        r = await a.post("/v1/mailboxes", json=mailbox_body(op, a_box))
        assert r.status_code == 200 and r.json()["created"] is False, r.text
        assert (await b.post("/v1/mailboxes", json=mailbox_body(op, b_box))).status_code == 201
        # Bob cannot take Alice's address, nor enroll for Alice.
        problem(await b.post("/v1/mailboxes", json=mailbox_body(op, a_box)), 409)
        body = problem(
            await b.post("/v1/mailboxes", json={**mailbox_body(op, f"x-{tag}@api.test"), "user_id": alice}),
            422,
        )
        assert body["errors"][0]["field"] == "user_id"

        # List: each sees its own; the operator sees both.
        assert [m["address"] for m in (await a.get("/v1/mailboxes")).json()] == [a_box]
        assert [m["address"] for m in (await b.get("/v1/mailboxes")).json()] == [b_box]
        everyone = {m["address"] for m in (await ops.get("/v1/mailboxes")).json()}
        assert {a_box, b_box} <= everyone

        # Status matches `starter status --json` for the same mailbox.
        st = (await a.get(f"/v1/mailboxes/{a_box}")).json()
        cli = await op.status(a_box)
        for field in ("quota_today", "sent_today", "ramp_day", "paused", "timezone", "sent_total", "day"):
            assert st[field] == cli[field], field
        assert st["placement"] == cli["placement"]
        user_st = (await a.get("/v1/status")).json()
        assert [m["address"] for m in user_st["mailboxes"]] == [a_box]

        # Another user's mailbox is 404, exactly like one nobody enrolled; nothing changes.
        before = await op.fetch(
            "SELECT state::text, window_start_hour, pause_reason FROM mailboxes WHERE address = $1", b_box
        )
        nobody = f"nobody-{tag}@api.test"
        for method, path, kwargs in (
            ("GET", "/v1/mailboxes/{}", {}),
            ("POST", "/v1/mailboxes/{}/pause", {"json": {"reason": "eve"}}),
            ("POST", "/v1/mailboxes/{}/resume", {}),
            ("PATCH", "/v1/mailboxes/{}", {"json": {"window_start_hour": 9}}),
            ("DELETE", "/v1/mailboxes/{}", {}),
        ):
            foreign = problem(await a.request(method, path.format(b_box), **kwargs), 404)
            missing = problem(await a.request(method, path.format(nobody), **kwargs), 404)
            assert foreign["detail"].replace(b_box, "X") == missing["detail"].replace(nobody, "X"), method
            assert foreign["title"] == missing["title"]
        assert problem(await a.get("/v1/status", params={"user": bob}), 404)
        problem(await a.get("/v1/mailboxes", params={"user": bob}), 404)
        after = await op.fetch(
            "SELECT state::text, window_start_hour, pause_reason FROM mailboxes WHERE address = $1", b_box
        )
        assert before == after
        assert (await op.status(b_box))["paused"] is False

        # Pause, update, resume, remove: the workflow and the row follow; the events feed says so.
        r = await a.post(f"/v1/mailboxes/{a_box}/pause", json={"reason": "holiday"})
        assert r.status_code == 200, r.text
        assert (await op.states())[a_box] == "paused"
        await eventually(lambda: _paused(op, a_box, True))
        r = await a.patch(f"/v1/mailboxes/{a_box}", json={"window_start_hour": 7, "window_end_hour": 19})
        assert r.status_code == 200, r.text
        assert (
            r.json()["changed"]["window_start_hour"] == [0, 7] or "window_start_hour" in r.json()["changed"]
        )
        row = (
            await op.fetch(
                "SELECT window_start_hour, window_end_hour FROM mailboxes WHERE address = $1", a_box
            )
        )[0]
        assert (row["window_start_hour"], row["window_end_hour"]) == (7, 19)
        r = await a.post(f"/v1/mailboxes/{a_box}/resume")
        assert r.status_code == 200, r.text
        await eventually(lambda: _paused(op, a_box, False))
        events = (await a.get("/v1/events")).json()["events"]
        assert [(e["kind"], e["reason"]) for e in events] == [
            ("mailbox.paused", "holiday"),
            ("mailbox.resumed", ""),
        ]
        assert (await b.get("/v1/events")).json()["events"] == []
        after_first = (await a.get("/v1/events", params={"after": events[0]["id"]})).json()["events"]
        assert [e["kind"] for e in after_first] == ["mailbox.resumed"]

        # Webhooks: a user's own; another user's is as if it did not exist; the secret is shown once.
        r = await a.post("/v1/webhooks", json={"url": "https://crm.example.com/warmup-events"})
        assert r.status_code == 201 and r.json()["secret"].startswith("whsec_"), r.text
        hook = r.json()
        listed = (await a.get("/v1/webhooks")).json()["webhooks"]
        assert [w["id"] for w in listed] == [hook["id"]] and "secret" not in listed[0]
        assert (await b.get("/v1/webhooks")).json()["webhooks"] == []
        problem(await b.delete(f"/v1/webhooks/{hook['id']}"), 404)
        assert (
            "user is required"
            in problem(await ops.post("/v1/webhooks", json={"url": "https://x.example"}), 422)["detail"]
        )
        assert (
            "must use https"
            in problem(await a.post("/v1/webhooks", json={"url": "http://crm.example.com/"}), 422)["detail"]
        )
        assert (await a.delete(f"/v1/webhooks/{hook['id']}")).status_code == 200
        assert (await a.get("/v1/webhooks")).json()["webhooks"] == []

        # Plans are the operator's; a user token is refused.
        problem(await a.put(f"/v1/users/{alice}/plan", json={"plan": "pro", "daily_limit": 50}), 403)
        r = await ops.put(f"/v1/users/{alice}/plan", json={"plan": "pro", "daily_limit": 50})
        assert r.status_code == 200 and r.json()["workflow_updated"] is True, r.text

        # Report: a user's is scoped to the user.
        rep = (await a.get("/v1/report")).json()
        assert {u["address"] for u in rep["under_quota"]} <= {a_box}
        assert {k: v for k, v in rep["queue"]["mailbox_states"].items() if v} == {"active": 1}

        r = await a.delete(f"/v1/mailboxes/{a_box}", params={"wait": 10})
        assert r.status_code == 200 and r.json()["stopped"] is True, r.text
        assert (await op.states())[a_box] == "removed"
        problem(await a.post(f"/v1/mailboxes/{a_box}/pause"), 409)

        # No token, a wrong one, a revoked one: 401, the same for all.
        problem(await anon.get("/v1/mailboxes"), 401)
        async with api.client("wu_not-a-token") as wrong:
            problem(await wrong.get("/v1/mailboxes"), 401)
        listed = json.loads((await op.ok("token", "list", "--user", bob, "--json")).out)
        await op.ok("token", "revoke", "--user", bob, "--id", str(listed[0]["id"]))
        problem(await b.get("/v1/mailboxes"), 401)
        stored = await op.fetch("SELECT token_sha256, prefix FROM api_tokens")
        assert all(b_tok.encode() not in bytes(r["token_sha256"]) for r in stored)
        assert not any(r["prefix"] == b_tok for r in stored)


async def _paused(op: Op, address: str, want: bool) -> bool:
    return (await op.status(address))["paused"] is want


async def test_bad_fields_get_a_problem_naming_them_and_store_nothing(api: Api, op: Op) -> None:
    tag = uuid.uuid4().hex[:8]
    token = await api.token("--user", f"val-{tag}")
    box = f"v-{tag}@api.test"
    async with api.client(token) as c:
        body = problem(await c.post("/v1/mailboxes", json=mailbox_body(op, box, smtp_port=70000)), 422)
        assert [e["field"] for e in body["errors"]] == ["smtp_port"]
        assert "70000" in body["errors"][0]["detail"] and "smtp_port must be" in body["errors"][0]["detail"]
        body = problem(
            await c.post(
                "/v1/mailboxes", json=mailbox_body(op, box, timezone="Mars/Base", window_start_hour=30)
            ),
            422,
        )
        assert {e["field"] for e in body["errors"]} == {"timezone", "window_start_hour"}
        no_secret = mailbox_body(op, box)
        del no_secret["secret"]
        body = problem(await c.post("/v1/mailboxes", json=no_secret), 422)
        assert [e["field"] for e in body["errors"]] == ["secret"], body
        body = problem(await c.post("/v1/mailboxes", json={**mailbox_body(op, box), "colour": "red"}), 422)
        assert [e["field"] for e in body["errors"]] == ["colour"], body
        body = problem(
            await c.post("/v1/mailboxes", content=b"{not json", headers={"content-type": "application/json"}),
            422,
        )
        # A bad request never echoes the password, whatever else is wrong.
        r = await c.post("/v1/mailboxes", json=mailbox_body(op, box, smtp_port="x", secret=PASSWORD + "\n"))
        problem(r, 422)
        assert PASSWORD not in r.text
        r = await c.post("/v1/mailboxes", json=mailbox_body(op, box, secret=12345))
        problem(r, 422)
        assert "12345" not in r.text

        # Bulk: one bad entry stores nothing; a good batch enrolls every entry, again updates them.
        batch = [mailbox_body(op, f"bulk{i}-{tag}@api.test") for i in range(3)]
        body = problem(
            await c.post(
                "/v1/mailboxes/bulk", json={"mailboxes": [*batch[:2], {**batch[2], "delay_min_minutes": -1}]}
            ),
            422,
        )
        assert [e["field"] for e in body["errors"]] == ["delay_min_minutes"]
        assert body["errors"][0]["detail"].startswith("mailboxes[2].")
        dup = problem(await c.post("/v1/mailboxes/bulk", json={"mailboxes": [batch[0], batch[0]]}), 422)
        huge = {"mailboxes": [batch[0]] * (BULK_MAX + 1)}
        assert "at most" in problem(await c.post("/v1/mailboxes/bulk", json=huge), 422)["detail"]
        assert "also entry 0" in dup["detail"]
        r = await c.post("/v1/mailboxes/bulk", json={"mailboxes": batch, "dry_run": True})
        assert r.status_code == 200 and r.json()["counts"]["valid"] == 3, r.text
        assert await op.fetch("SELECT id FROM mailboxes") == []
        r = await c.post("/v1/mailboxes/bulk", json={"mailboxes": batch})
        assert r.status_code == 200 and r.json()["counts"]["enrolled"] == 3, r.text
        zero = dict.fromkeys(r.json()["counts"], 0)
        r = await c.post("/v1/mailboxes/bulk", json={"mailboxes": batch})  # sent again: nothing to do
        assert r.json()["counts"] == {**zero, "unchanged": 3}, r.text
        changed = [{**batch[0], "ramp_ceiling": 11}, *batch[1:]]
        r = await c.post("/v1/mailboxes/bulk", json={"mailboxes": changed})
        assert r.json()["counts"] == {**zero, "updated": 1, "unchanged": 2}, r.text

        # Update: a bad value is refused whole, the stored schedule unchanged.
        first = batch[0]["address"]
        before = await op.fetch(
            "SELECT window_start_hour, window_end_hour FROM mailboxes WHERE address = $1", first
        )
        body = problem(
            await c.patch(f"/v1/mailboxes/{first}", json={"window_start_hour": 20, "window_end_hour": 8}), 422
        )
        assert {e["field"] for e in body["errors"]} & {"window_start_hour", "window_end_hour"}
        body = problem(await c.patch(f"/v1/mailboxes/{first}", json={"smtp_host": "evil.test"}), 422)
        problem(await c.patch(f"/v1/mailboxes/{first}", json={}), 422)
        problem(await c.get("/v1/mailboxes/not-an-address"), 422)
        after = await op.fetch(
            "SELECT window_start_hour, window_end_hour FROM mailboxes WHERE address = $1", first
        )
        assert before == after


async def test_token_command_scopes_tokens_and_shows_each_once(op: Op) -> None:
    for argv in (("create",), ("create", "--user", "u1", "--operator")):
        run = await op.run("token", *argv)
        assert run.code == 2 and "give --user USER" in run.err and "--operator" in run.err, run.err
    run = await op.run("token", "create", "--user", "not a user!")
    assert run.code == 2 and "--user 'not a user!' is not a valid user id" in run.err, run.err
    assert await op.fetch("SELECT id FROM api_tokens") == []

    created = json.loads((await op.ok("token", "create", "--user", "u1", "--label", "crm", "--json")).out)
    token = created["token"]
    assert token.startswith("wu_") and len(token) > 40
    listed = (await op.ok("token", "list", "--user", "u1")).out
    assert created["prefix"] in listed and token not in listed and "live crm" in listed
    assert json.loads((await op.ok("token", "list", "--operator", "--json")).out) == []
    # A token is revoked only under its own owner; revoking again says there is no live one.
    wrong_owner = await op.run("token", "revoke", "--operator", "--id", str(created["id"]))
    assert wrong_owner.code == 1 and "no live token" in wrong_owner.err
    await op.ok("token", "revoke", "--user", "u1", "--id", str(created["id"]))
    again = await op.run("token", "revoke", "--user", "u1", "--id", str(created["id"]))
    assert again.code == 1 and "no live token" in again.err
    assert "revoked crm" in (await op.ok("token", "list", "--user", "u1")).out
