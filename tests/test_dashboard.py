"""The dashboard (issue #16) as a person uses it: headless Chromium signs in with a user's token,
reads the mailbox table and a mailbox's charts, at a desktop's and a phone's width, and what the pages
show is compared with `starter status --json`. Screenshots are kept in .data/screenshots/."""

from __future__ import annotations

import uuid
from pathlib import Path
from typing import Any

import pytest

from tests.helpers.api_server import Api, serve_api
from tests.helpers.browser import Page, browser
from tests.helpers.operator_cli import (  # noqa: F401  (the fixtures)
    PASSWORD,
    Op,
    eventually,
    op_fixture,
    worker_fixture,
)
from tests.test_api import mailbox_body

QUOTA = 3


@pytest.fixture
async def api(op: Op, worker: None) -> Any:
    async with serve_api(op) as a:
        yield a


async def _sign_in(page: Page, api: Api, token: str) -> None:
    await page.goto(f"{api.url}/dashboard")
    assert (await page.eval("location.pathname")) == "/signin"
    # The field is labelled, and a wrong token is refused on the page.
    assert await page.eval("document.querySelector('label[for=token]').textContent") == "API token"
    await page.type("#token", "wu_wrong")
    await page.submit("form.signin")
    assert "unknown or revoked" in await page.eval("document.querySelector('.error').textContent")
    await page.eval("document.querySelector('#token').value = ''")
    await page.type("#token", token)
    await page.submit("form.signin")
    assert (await page.eval("location.pathname")) == "/dashboard"


async def _cells(page: Page) -> dict[str, dict[str, str]]:
    rows = await page.eval(
        "[...document.querySelectorAll('tr[data-mailbox]')].map(r => [r.dataset.mailbox,"
        " Object.fromEntries([...r.querySelectorAll('td[data-field]')].map(td => [td.dataset.field,"
        " td.textContent.trim()]))])"
    )
    return {address: cells for address, cells in rows}


async def test_a_user_sees_their_mailboxes_and_charts_matching_status(
    api: Api, op: Op, tmp_path: Path
) -> None:
    tag = uuid.uuid4().hex[:8]
    user, other = f"dash-{tag}", f"other-{tag}"
    busy, idle, foreign = f"busy-{tag}@dash.test", f"idle-{tag}@dash.test", f"theirs-{tag}@dash.test"
    token, other_token, op_token = (
        await api.token("--user", user),
        await api.token("--user", other),
        await api.token("--operator"),
    )
    ramp = {"ramp_start": QUOTA, "ramp_increment": 0, "ramp_ceiling": QUOTA, "ramp_variance": 0}
    async with api.client(token) as c, api.client(other_token) as o:
        assert (await c.post("/v1/mailboxes", json=mailbox_body(op, busy, **ramp))).status_code == 201
        assert (await c.post("/v1/mailboxes", json=mailbox_body(op, idle))).status_code == 201
        assert (await o.post("/v1/mailboxes", json=mailbox_body(op, foreign))).status_code == 201
        assert (await c.post(f"/v1/mailboxes/{idle}/pause", json={"reason": "on holiday"})).status_code == 200

    async def day_done() -> bool:
        return (await op.status(busy))["sent_today"] == QUOTA

    await eventually(day_done, 60)
    status = {a: await op.status(a) for a in (busy, idle)}

    async with browser(tmp_path / "chromium") as page:
        await page.size(1280, 800)
        await _sign_in(page, api, token)
        # The session cookie is HttpOnly: the page's scripts cannot read the token.
        assert token not in (await page.eval("document.cookie"))
        cells = await _cells(page)
        assert set(cells) == {busy, idle}  # the other user's mailbox is not there
        for address, st in status.items():
            assert cells[address]["sent"] == f"{st['sent_today']} / {st['quota_today']}", (address, cells)
            assert cells[address]["ramp_day"] == str(st["ramp_day"])
        assert cells[busy]["sent"] == f"{QUOTA} / {QUOTA}"
        assert "paused" in await page.eval(
            f"document.querySelector('tr[data-mailbox=\"{idle}\"]').textContent"
        )
        assert "on holiday" in await page.eval(
            f"document.querySelector('tr[data-mailbox=\"{idle}\"]').textContent"
        )
        events = await page.eval("document.querySelector('ul.events').textContent")
        assert f"{idle}: paused (on holiday)" in events, events
        await page.screenshot("dashboard-user.png")

        # A phone: nothing wider than the screen but the table's own scroller.
        await page.size(390, 844, mobile=True)
        await page.goto(f"{api.url}/dashboard")
        assert await page.eval("document.documentElement.scrollWidth <= window.innerWidth + 1")
        await page.screenshot("dashboard-user-phone.png")
        await page.size(1280, 800)

        # A mailbox's page: its numbers, and charts a screen reader can read.
        await page.eval(f"document.querySelector('a[href*=\"{busy.split('@')[0]}\"]').click()")
        await page._settled(f"{api.url}/dashboard")
        cards = await page.eval(
            "Object.fromEntries([...document.querySelectorAll('[data-card]')].map(e => [e.dataset.card,"
            " e.textContent.trim()]))"
        )
        st = status[busy]
        assert cards["Sent today"] == str(st["sent_today"]) and cards["Quota today"] == str(st["quota_today"])
        assert cards["Ramp day"] == str(st["ramp_day"]) and cards["Sent in total"] == str(st["sent_total"])
        charts = await page.eval(
            "[...document.querySelectorAll('svg.chart')].map(s => [s.getAttribute('role'),"
            " s.querySelector('title').textContent, s.querySelector('desc').textContent])"
        )
        assert len(charts) >= 2 and all(role == "img" for role, _, _ in charts), charts
        sent_title, sent_desc = charts[0][1], charts[0][2]
        assert sent_title.startswith("Sent per day")
        today_label = str(st["day"])[5:]  # MM-DD
        assert f"{today_label}: sent {QUOTA}, quota {QUOTA}" in sent_desc, sent_desc
        await page.screenshot("dashboard-mailbox.png")

        # Another user's mailbox: as if it did not exist.
        await page.goto(f"{api.url}/dashboard/mailboxes/{foreign}")
        assert await page.eval("document.querySelector('h1').textContent") == "Not found"

        # The operator: fleet totals and the queue health of `starter report`.
        await page.eval("document.querySelector('header form button').click()")
        await page._settled(f"{api.url}/dashboard/mailboxes/{foreign}")
        assert (await page.eval("location.pathname")) == "/signin"
        await page.type("#token", op_token)
        await page.submit("form.signin")
        text = await page.eval("document.querySelector('main').textContent")
        assert "Fleet" in text and "Queue health" in text, text
        cards = await page.eval(
            "Object.fromEntries([...document.querySelectorAll('[data-card]')].map(e => [e.dataset.card,"
            " e.textContent.trim()]))"
        )
        assert cards["Mailboxes"] == "3" and cards["Users"] == "2", cards
        listed = (await op.ok("list", "--json")).json()
        assert isinstance(listed, list)
        assert cards["Sent today"] == str(sum(m["delivered_today"] for m in listed)) == str(QUOTA), cards
        await page.screenshot("dashboard-operator.png")
