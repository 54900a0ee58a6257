"""The dashboard: each user's mailboxes and their warmup, served as plain HTML with inline SVG charts
(api/charts.py), no script. Signed in with an API token, kept in an HttpOnly cookie; the numbers are
the API's (starter/operations.py), so they match `starter status --json`.

An operator's token adds the fleet: totals and the queue health of `starter report`, and a link to
each user's view.
"""

from __future__ import annotations

import html
import urllib.parse
from collections.abc import Sequence

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from api.auth import COOKIE, Principal, from_cookie
from api.charts import Series, bar_chart, sparkline
from api.problems import Problem
from api.state import State
from starter import operations
from starter.report import build_report
from starter.temporal_calls import StarterError
from warmup import api_tokens, fleet
from warmup import mailbox_settings as ms
from warmup.events import Event, recent_events
from warmup.mailboxes import get_mailbox_by_address
from warmup.models import MailboxState
from warmup.send_days import send_days

router = APIRouter(include_in_schema=False)
CHART_DAYS = 21  # "the last weeks"
TREND_DAYS = 7

_CSS = """
:root { color-scheme: light; --fg: #1a1a1a; --muted: #555; --line: #c8c8c8; --accent: #1f5fa8; }
* { box-sizing: border-box; }
body { font: 16px/1.45 system-ui, sans-serif; color: var(--fg); background: #fff; margin: 0; }
header { background: #12355b; color: #fff; padding: .6rem 1rem; display: flex; flex-wrap: wrap;
  gap: .5rem 1rem; align-items: center; justify-content: space-between; }
header a, header button { color: #fff; }
header form { margin: 0; }
main { padding: 1rem; max-width: 70rem; margin: 0 auto; }
h1 { font-size: 1.4rem; margin: .2rem 0 1rem; } h2 { font-size: 1.15rem; margin-top: 1.6rem; }
a { color: var(--accent); }
.muted { color: var(--muted); }
.cards { display: grid; grid-template-columns: repeat(auto-fit, minmax(10rem, 1fr)); gap: .75rem; }
.card { border: 1px solid var(--line); border-radius: .4rem; padding: .6rem .8rem; }
.card .n { font-size: 1.5rem; font-weight: 600; display: block; }
.table-wrap { overflow-x: auto; }
table { border-collapse: collapse; width: 100%; min-width: 36rem; }
th, td { text-align: left; padding: .4rem .5rem; border-bottom: 1px solid var(--line);
  vertical-align: middle; }
th { font-weight: 600; background: #f2f2f2; }
.state-paused { color: #8a3b00; font-weight: 600; } .state-removed { color: var(--muted); }
progress { width: 6rem; height: .8rem; vertical-align: middle; }
.chart { width: 100%; height: auto; max-width: 40rem; display: block; }
form.signin { max-width: 26rem; display: grid; gap: .6rem; }
input[type=password] { font: inherit; padding: .5rem; border: 1px solid #767676; border-radius: .3rem; }
button { font: inherit; padding: .45rem .9rem; border-radius: .3rem; border: 1px solid #12355b;
  background: #12355b; color: #fff; cursor: pointer; }
header button { background: transparent; border-color: #fff; }
.error { color: #a8321f; font-weight: 600; }
caption { text-align: left; padding: .3rem 0; }
td.num { white-space: nowrap; }
/* A phone: each mailbox is a card of labelled lines instead of a wide row. */
@media (max-width: 40rem) {
  main { padding: .6rem; } h1 { font-size: 1.2rem; }
  table.cards-on-phone { min-width: 0; }
  table.cards-on-phone thead { position: absolute; left: -9999px; }
  table.cards-on-phone tr { display: block; border: 1px solid var(--line); border-radius: .4rem;
    margin-bottom: .7rem; padding: .3rem .5rem; }
  table.cards-on-phone td { display: flex; gap: .6rem; border: 0; padding: .2rem 0; }
  table.cards-on-phone td::before { content: attr(data-label); font-weight: 600; min-width: 7.5rem; }
}
"""


def _e(value: object) -> str:
    return html.escape(str(value), quote=True)


def _page(title: str, body: str, principal: Principal | None = None, status: int = 200) -> HTMLResponse:
    who = ""
    if principal is not None:
        name = "operator" if principal.operator else f"user {principal.user_id}"
        who = (
            f'<span>Signed in as {_e(name)}</span><form method="post" action="/signout">'
            '<button type="submit">Sign out</button></form>'
        )
    doc = (
        '<!doctype html><html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>{_e(title)} - warmup</title><style>{_CSS}</style></head><body>"
        f'<header><a href="/dashboard"><strong>warmup</strong></a>{who}</header>'
        f"<main>{body}</main></body></html>"
    )
    return HTMLResponse(doc, status_code=status, headers={"Cache-Control": "no-store"})


def _signin_form(error: str = "") -> str:
    shown = f'<p class="error" role="alert">{_e(error)}</p>' if error else ""
    return (
        "<h1>Sign in</h1>"
        "<p>Sign in with your API token (<code>starter token create --user YOU</code> prints one).</p>"
        f'{shown}<form class="signin" method="post" action="/signin">'
        '<label for="token">API token</label>'
        '<input id="token" name="token" type="password" autocomplete="current-password" required>'
        '<button type="submit">Sign in</button></form>'
    )


@router.get("/")
async def root() -> RedirectResponse:
    return RedirectResponse("/dashboard", status_code=303)


@router.get("/signin")
async def signin_page() -> HTMLResponse:
    return _page("Sign in", _signin_form())


@router.post("/signin")
async def signin(request: Request) -> Response:
    form = urllib.parse.parse_qs((await request.body()).decode(errors="replace"))
    token = (form.get("token") or [""])[0].strip()
    state = State.of(request)
    async with state.pool.acquire() as conn:
        info = await api_tokens.authenticate(conn, token) if token else None
    if info is None:
        return _page("Sign in", _signin_form("That token is unknown or revoked."), status=401)
    out = RedirectResponse("/dashboard", status_code=303)
    out.set_cookie(
        COOKIE, token, httponly=True, samesite="strict", secure=request.url.scheme == "https", path="/"
    )
    return out


@router.post("/signout")
async def signout() -> RedirectResponse:
    out = RedirectResponse("/signin", status_code=303)
    out.delete_cookie(COOKIE, path="/")
    return out


def _state_cell(db_state: MailboxState, paused: bool, reason: str) -> str:
    if db_state is MailboxState.REMOVED:
        return '<span class="state-removed">removed</span>'
    if paused or db_state is MailboxState.PAUSED:
        return f'<span class="state-paused">paused</span> <span class="muted">{_e(reason)}</span>'
    return "active"


def _progress(sent: int, quota: int) -> str:
    return (
        f'<progress max="{max(quota, 1)}" value="{min(sent, max(quota, 1))}" '
        f'aria-label="{sent} of {quota} sent today"></progress> {sent} / {quota}'
    )


def _percent(share: float | None) -> str:
    return "-" if share is None else f"{share * 100:.0f}%"


async def _user_body(request: Request, user_id: str) -> str:
    state = State.of(request)
    async with state.pool.acquire() as conn:
        rows = await fleet.list_mailboxes(conn, user_id=user_id)
        if not rows:
            return f"<h1>Mailboxes of {_e(user_id)}</h1><p>No mailboxes enrolled yet.</p>"
        look = await operations.look_user(state.client, conn, user_id, state.settings)
        trends = {d.mailbox.id: await send_days(conn, d.mailbox.id, TREND_DAYS) for d in look.days}
        events = await recent_events(conn, user_id)
    body_rows = []
    for d in look.days:
        st = d.status
        m = d.mailbox
        score = look.placement.get(m.id)
        replies = look.today.get(m.id)
        link = f"/dashboard/mailboxes/{urllib.parse.quote(m.address)}"
        reason = (st.pause_reason if st else "") or m.pause_reason
        trend = sparkline(
            f"inbox placement per day, last {TREND_DAYS} days", [x.inbox_share for x in trends[m.id]]
        )
        body_rows.append(
            f'<tr data-mailbox="{_e(m.address)}">'
            f'<td data-label="Mailbox"><a href="{link}">{_e(m.address)}</a></td>'
            f'<td data-label="State">{_state_cell(m.state, bool(st and st.paused), reason)}</td>'
            f'<td class="num" data-label="Sent / quota" data-field="sent">'
            f"{_progress(st.sent_today, st.quota_today) if st else _e(d.error)}</td>"
            f'<td data-label="Ramp day" data-field="ramp_day">{st.ramp_day if st else "-"}</td>'
            f'<td data-label="Placement" data-field="placement">'
            f"{_percent(score.inbox_share if score else None)}</td>"
            f'<td data-label="Trend">{trend}</td>'
            f'<td data-label="Replies sent" data-field="replies">'
            f"{replies.replies_sent if replies else 0}</td></tr>"
        )
    totals = look.json()["totals"]
    assert isinstance(totals, dict)
    cards = _cards(
        [
            ("Mailboxes", totals["mailboxes"]),
            ("Sent today", totals["delivered_today"]),
            ("Quota today", totals["quota_today"]),
            ("Paused", totals["paused"]),
        ]
    )
    return (
        f"<h1>Mailboxes of {_e(user_id)}</h1>{cards}<h2>Today</h2>"
        '<div class="table-wrap"><table class="cards-on-phone"><caption class="muted">'
        "Each mailbox today, in its own time zone"
        "</caption><thead><tr><th scope=col>Mailbox</th><th scope=col>State</th><th scope=col>Sent / quota"
        "</th><th scope=col>Ramp day</th><th scope=col>Placement</th>"
        f"<th scope=col>Trend ({TREND_DAYS} days)</th><th scope=col>Replies sent today</th></tr></thead>"
        f"<tbody>{''.join(body_rows)}</tbody></table></div>{_events(events)}"
    )


def _events(events: Sequence[Event]) -> str:
    if not events:
        return ""
    items = "".join(
        f'<li><time datetime="{e.created_at.isoformat()}">{e.created_at:%Y-%m-%d %H:%M} UTC</time> '
        f"{_e(e.address)}: {_e(_EVENT_TEXT.get(e.kind, e.kind))}"
        f"{(' (' + _e(e.reason) + ')') if e.reason else ''}</li>"
        for e in events
    )
    return f'<h2>Recent events</h2><ul class="events">{items}</ul>'


_EVENT_TEXT = {
    "mailbox.paused": "paused",
    "mailbox.sign_in_needed": "paused: sign in again (the server refused the login)",
    "mailbox.resumed": "resumed",
    "mailbox.removed": "removed",
}


def _cards(items: Sequence[tuple[str, object]]) -> str:
    return (
        '<div class="cards">'
        + "".join(
            f'<div class="card"><span class="n" data-card="{_e(label)}">{_e(value)}</span>{_e(label)}</div>'
            for label, value in items
        )
        + "</div>"
    )


async def _operator_body(request: Request) -> str:
    state = State.of(request)
    async with state.pool.acquire() as conn:
        result = await build_report(state.client, conn, state.settings, None)
        rows = await fleet.list_mailboxes(conn)
    users: dict[str, int] = {}
    for m in rows:
        users[m.user_id] = users.get(m.user_id, 0) + 1
    q = result.queue
    cards = _cards(
        [
            ("Users", len(users)),
            ("Mailboxes", len(rows)),
            ("Sent today", sum(m.delivered_today for m in rows)),
            *((f"Mailboxes {k}", v) for k, v in sorted(q.mailbox_states.items())),
        ]
    )
    backlog = "".join(
        f"<tr><td>{_e(b.task_queue_type)}</td><td>{b.count}</td><td>{b.age_seconds:.0f} s</td>"
        f"<td>{b.pollers}</td></tr>"
        for b in q.backlog
    )
    workflows = ", ".join(f"{_e(k)} {v}" for k, v in sorted(q.workflows.items())) or "none"
    user_rows = "".join(
        f'<tr><td><a href="/dashboard?user={urllib.parse.quote(u)}">{_e(u)}</a></td><td>{n}</td></tr>'
        for u, n in sorted(users.items())
    )
    return (
        f"<h1>Fleet</h1>{cards}<h2>Queue health ({_e(q.task_queue)})</h2>"
        '<div class="table-wrap"><table><thead><tr><th scope=col>Queue</th><th scope=col>Tasks waiting</th>'
        "<th scope=col>Oldest</th><th scope=col>Pollers</th></tr></thead>"
        f"<tbody>{backlog}</tbody></table></div>"
        f"<p>Mailbox workflows: {workflows}</p>"
        '<h2>Users</h2><div class="table-wrap"><table><thead><tr><th scope=col>User</th>'
        f"<th scope=col>Mailboxes</th></tr></thead><tbody>{user_rows}</tbody></table></div>"
    )


@router.get("/dashboard")
async def dashboard(request: Request, user: str | None = None) -> Response:
    principal = await from_cookie(request)
    if principal is None:
        return RedirectResponse("/signin", status_code=303)
    try:
        scoped = principal.scope(user)
        body = await _user_body(request, scoped) if scoped else await _operator_body(request)
    except Problem as exc:
        return _page("Not found", f"<h1>Not found</h1><p>{_e(exc.detail)}</p>", principal, exc.status)
    except StarterError as exc:
        return _page("Unavailable", f"<h1>Unavailable</h1><p>{_e(exc)}</p>", principal, 503)
    return _page("Dashboard", body, principal)


@router.get("/dashboard/mailboxes/{address}")
async def mailbox_page(request: Request, address: str) -> Response:
    principal = await from_cookie(request)
    if principal is None:
        return RedirectResponse("/signin", status_code=303)
    state = State.of(request)
    missing = _page("Not found", "<h1>Not found</h1><p>No such mailbox.</p>", principal, 404)
    try:
        normalized = ms.normalize_address(address, "address")
    except ValueError:
        return missing
    async with state.pool.acquire() as conn:
        record = await get_mailbox_by_address(conn, normalized)
        if record is None or (principal.user_id is not None and record.user_id != principal.user_id):
            return missing
        try:
            look = await operations.look_mailbox(state.client, conn, record, state.settings)
        except StarterError as exc:
            return _page("Unavailable", f"<h1>{_e(record.address)}</h1><p>{_e(exc)}</p>", principal, 503)
        days = await send_days(conn, record.id, CHART_DAYS)
    st = look.status
    labels = [d.day.strftime("%m-%d") for d in days]
    quota = [float(st.quota_today) if d.day.isoformat() == st.day else float(d.quota) for d in days]
    sent_chart = bar_chart(
        f"Sent per day, last {CHART_DAYS} days",
        labels,
        [
            Series("sent", [d.delivered for d in days]),
            Series("quota", quota),
            Series("failed", [d.failed for d in days]),
        ],
    )
    placement_chart = bar_chart(
        "Where receivers found its mail, per day",
        labels,
        [
            Series("inbox", [d.inbox for d in days]),
            Series("junk", [d.junk for d in days]),
            Series("other or missing", [d.other + d.missing for d in days]),
        ],
    )
    engaged = {e.day: e for e in look.days}
    eng_days = sorted(engaged)
    engagement_chart = bar_chart(
        "What it did with the mail it received, per day",
        [d.strftime("%m-%d") for d in eng_days],
        [
            Series(name, [getattr(engaged[d], attr) for d in eng_days])
            for name, attr in (
                ("received", "received"),
                ("rescued", "rescued"),
                ("read", "read"),
                ("flagged", "flagged"),
                ("replies sent", "replies_sent"),
            )
        ],
    )
    cards = _cards(
        [
            ("Sent today", st.sent_today),
            ("Quota today", st.quota_today),
            ("Ramp day", st.ramp_day),
            ("Placement", _percent(look.placement.inbox_share)),
            ("Sent in total", st.sent_total),
        ]
    )
    state_text = _state_cell(record.state, st.paused, st.pause_reason or record.pause_reason)
    notes = "".join(
        f"<p><strong>{_e(label)}:</strong> {_e(text)}</p>"
        for label, text in (
            ("Waiting for", st.waiting_for),
            ("Ramp reaction", st.ramp_note),
            ("Engagement off", st.engagement_off),
            ("Last error", st.last_error),
        )
        if text
    )
    body = (
        f'<p><a href="/dashboard">All mailboxes</a></p><h1>{_e(record.address)}</h1>'
        f'<p>State: <span data-field="state">{state_text}</span>; day {_e(st.day)} in {_e(st.timezone)}</p>'
        f"{cards}{notes}<p>{_e(look.placement.text())}</p>"
        f"<h2>Sending</h2>{sent_chart}<h2>Inbox placement</h2>{placement_chart}"
        f"<h2>Engagement</h2>{engagement_chart if eng_days else '<p>No mail received yet.</p>'}"
    )
    return _page(record.address, body, principal)
