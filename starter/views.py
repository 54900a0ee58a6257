"""How the starter prints results, all in one place: tables for people (rich), JSON for scripts.

The primitives come first (console, grid, bars, JSON), then one view per command: `status`, `list`,
`status --user`, `report`, a CSV import and user-wide signals. Each view turns data into rich renderables
or JSON-ready dicts; none of them fetches anything.

User data (addresses, reasons, SMTP replies) is printed as-is: rich markup and emoji codes are off,
so a `[` in a server's reply cannot restyle the table.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import enum
import json
from collections.abc import Mapping, Sequence
from typing import TextIO

from rich import box
from rich.console import Console, Group, RenderableType
from rich.progress_bar import ProgressBar
from rich.table import Table
from rich.text import Text

from starter.bulk_enroll import RowResult, counts
from starter.report import Report
from starter.temporal_calls import MailboxOutcome
from warmup.engagement_days import DAYS_SHOWN, EngagementDay
from warmup.fleet import MailboxDay, MailboxRow, RelaxedRules
from warmup.models import PLACES, MailboxState, MailboxStatus, Placement
from warmup.placement import PlacementScore

# Tables written to a file or a pipe are as wide as their content (never cut or wrapped); a terminal
# uses its own width, shortening the long columns.
_PIPE_WIDTH = 1000


def console(out: TextIO) -> Console:
    terminal = out.isatty()
    return Console(
        file=out,
        width=None if terminal else _PIPE_WIDTH,
        markup=False,
        emoji=False,
        highlight=False,
        force_terminal=None if terminal else False,
    )


def render(out: TextIO, *items: RenderableType) -> None:
    c = console(out)
    for item in items:
        c.print(item)


def grid(
    title: str | None, columns: Sequence[str], rows: Sequence[Sequence[RenderableType]]
) -> RenderableType:
    """A table with a header row and its title on a line of its own.

    The first column (what the row is about) is never cut; on a narrow terminal the others wrap, so
    nothing is dropped. Into a pipe, every row stays on one line.
    """
    t = Table(box=box.SIMPLE_HEAD, pad_edge=False)
    first = max((len(r[0]) for r in rows if isinstance(r[0], str)), default=0)
    for i, name in enumerate(columns):
        if i == 0:
            t.add_column(name, no_wrap=True, min_width=max(first, len(name)))
        else:
            t.add_column(name, overflow="fold")
    for row in rows:
        t.add_row(*row)
    return t if title is None else Group(Text(title), t)


def table(rows: list[tuple[str, str]]) -> str:
    """Label/value pairs as aligned plain text (one mailbox's details)."""
    width = max((len(label) for label, _ in rows), default=0)
    return "\n".join(f"{label.ljust(width)}  {value}" for label, value in rows)


def bar(done: int, total: int, width: int = 20) -> RenderableType:
    """`done of total` with a progress bar: the day's fill at a glance."""
    t = Table.grid(padding=(0, 1))
    t.add_row(
        ProgressBar(total=max(total, 1), completed=min(done, max(total, 1)), width=width),
        Text(f"{done}/{total}"),
    )
    return t


def percent(value: float | None) -> str:
    return "-" if value is None else f"{value * 100:.0f}%"


def _plain(value: object) -> object:
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: _plain(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, enum.Enum):
        return value.value
    if isinstance(value, dt.datetime | dt.date):
        return value.isoformat()
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    return value


def to_json(value: object, *, compact: bool = False) -> str:
    """Dataclasses, enums and datetimes as plain JSON; `compact` gives one line (for --watch)."""
    if compact:
        return json.dumps(_plain(value), sort_keys=True, separators=(",", ":"))
    return json.dumps(_plain(value), indent=2, sort_keys=True)


def state_text(status: MailboxStatus) -> str:
    if status.paused:
        return f"paused ({status.pause_reason})" if status.pause_reason else "paused"
    return "active"


def next_send_text(status: MailboxStatus) -> str:
    if status.paused:
        return "- (paused)"
    if status.next_send_at is None:
        return "none today (quota reached or window closed)"
    return status.next_send_at


def status_table(
    status: MailboxStatus,
    address: str,
    workflow_id: str,
    db_state: MailboxState,
    more: Sequence[tuple[str, str]] = (),
) -> str:
    rows = [
        ("Mailbox", f"{address} (id {status.mailbox_id})"),
        ("Workflow", workflow_id),
        ("User", status.user_id),
        ("State", state_text(status)),
        ("Day", f"{status.day or '(not started)'} in {status.timezone}"),
        ("Sent today", f"{status.sent_today} of {status.quota_today}"),
        ("Failed today", str(status.failed_today)),
        ("Unknown today", str(status.unknown_today)),
        ("Next send", next_send_text(status)),
        *([("Waiting for", status.waiting_for)] if status.waiting_for else []),
        ("Ramp day", str(status.ramp_day)),
        *([("Ramp reaction", status.ramp_note)] if status.ramp_note else []),
        ("Sent in total", str(status.sent_total)),
    ]
    if status.capped_reason:
        rows.append(("Capped", status.capped_reason))
    if status.binding_cap:
        rows.append(("Held back by", status.binding_cap))
    if status.last_error:
        rows.append(("Last error", status.last_error))
    rows += engagement_rows(status)
    rows += more
    workflow_state = MailboxState.PAUSED if status.paused else MailboxState.ACTIVE
    if db_state is not workflow_state:
        # The workflow is the truth for sending; say so when the stored state lags behind it.
        rows.append(("Database state", f"{db_state.value} (the workflow's state above is what counts)"))
    return table(rows)


def engagement_rows(status: MailboxStatus) -> list[tuple[str, str]]:
    """What the mailbox's inbox sessions found and did; nothing for a workflow that has none (older runs)."""
    e = status.engagement
    if status.engagement_off:
        return [("Engagement", f"off: {status.engagement_off}")]
    if e is None or (e.sessions == 0 and status.next_session_at is None):
        return []
    found = e.inbox + e.junk + e.other
    placed = f"{e.inbox} inbox, {e.junk} junk, {e.other} other, {e.missing} missing"
    return [
        ("Inbox sessions", f"{e.sessions} so far; next {status.next_session_at or 'tomorrow'}"),
        ("Received", f"{found} found ({placed})"),
        (
            "Engaged",
            f"{e.rescued} rescued, {e.read} read, {e.flagged} flagged, {e.replies_due} answers decided",
        ),
    ]


_ENGAGEMENT_COLUMNS = [
    "RECEIVED",
    "INBOX",
    "JUNK",
    "OTHER",
    "MISSING",
    "NOT LOOKED FOR",
    "RESCUED",
    "READ",
    "FLAGGED",
    "REPLIED",
    "REPLIES SENT",
]


def _engagement_cells(d: EngagementDay) -> list[RenderableType]:
    counts = (d.received, d.inbox, d.junk, d.other, d.missing, d.not_looked_for)
    acts = (d.rescued, d.read, d.flagged, d.replied, d.replies_sent)
    return [str(n) for n in (*counts, *acts)]


def engagement_days_view(title: str, first: str, rows: Sequence[tuple[str, EngagementDay]]) -> RenderableType:
    """Received warmup emails, where they were found, what was done with them and the answers sent;
    one row per (label, day), e.g. per day of a mailbox or per mailbox of a day."""
    if not rows:
        return Text(f"{title}: nothing received or answered")
    return grid(title, [first, *_ENGAGEMENT_COLUMNS], [[label, *_engagement_cells(d)] for label, d in rows])


def placement_text(days: Sequence[EngagementDay]) -> str:
    """Inbox placement of what these rows received: what the whole system is judged by."""
    total = Placement()
    for d in days:
        for place in PLACES:
            total.add(place, getattr(d, place))
    return f"placement {total.text()}"


@dataclasses.dataclass(frozen=True)
class PoolStanding:
    """A mailbox in the recipient pool: why it gets no warmup mail ("" = it does), and the rules its
    picks relaxed today."""

    receiving_off: str
    relaxed: RelaxedRules


def mailbox_status_json(
    status: MailboxStatus,
    days: Sequence[EngagementDay],
    placement: PlacementScore,
    pool: PoolStanding | None = None,
) -> dict[str, object]:
    """The workflow's status with the ledger's engagement per day, the placement score and the
    mailbox's standing in the pool beside it."""
    data = _plain(status)
    assert isinstance(data, dict)
    return {
        **data,
        "engagement_by_day": _plain(list(days)),
        "placement": placement_json(placement),
        "receiving_off": pool.receiving_off if pool else "",
        "pool_rules_relaxed": pool.relaxed.by_rule if pool else {},
    }


def placement_json(score: PlacementScore | None) -> dict[str, object] | None:
    if score is None:
        return None
    data = _plain(score)
    assert isinstance(data, dict)
    return {**data, "inbox_share": score.inbox_share, "text": score.text()}


def mailbox_status_view(
    status: MailboxStatus,
    address: str,
    workflow_id: str,
    db_state: MailboxState,
    days: Sequence[EngagementDay],
    placement: PlacementScore,
    extra: str = "",
    pool: PoolStanding | None = None,
) -> RenderableType:
    """`starter status --mailbox`: the details, its own mail's placement and standing in the pool, then
    what the mailbox received and did per day."""
    more = [("Placement", placement.text())]
    if pool is not None and pool.receiving_off:
        more.append(("Receiving", f"off, out of the pool: {pool.receiving_off}"))
    if pool is not None and pool.relaxed.text():
        more.append(("Pool rules", pool.relaxed.text()))
    text = status_table(status, address, workflow_id, db_state, more) + extra
    title = f"Engagement by day (its local days, last {DAYS_SHOWN}): {placement_text(days)}"
    return Group(
        Text(text), Text(""), engagement_days_view(title, "DAY", [(d.day.isoformat(), d) for d in days])
    )


# --- the views ---------------------------------------------------------------------------------------


def list_table(rows: Sequence[MailboxRow]) -> RenderableType:
    if not rows:
        return Text("No mailboxes match.")
    return grid(
        None,
        ["ID", "MAILBOX", "USER", "STATE", "SENT TODAY", "TIMEZONE", "WINDOW", "RAMP", "REASON"],
        [
            [
                str(m.id),
                m.address,
                m.user_id,
                m.state.value,
                str(m.delivered_today),
                m.timezone,
                f"{m.window_start_hour:02d}-{m.window_end_hour:02d}h",
                f"{m.ramp_start}+{m.ramp_increment}/day, max {m.ramp_ceiling}",
                m.pause_reason,
            ]
            for m in rows
        ],
    )


def list_json(rows: Sequence[MailboxRow]) -> list[dict[str, object]]:
    return [
        {
            "mailbox_id": m.id,
            "workflow_id": m.workflow_id,
            "address": m.address,
            "user_id": m.user_id,
            "state": m.state.value,
            "pause_reason": m.pause_reason,
            "delivered_today": m.delivered_today,
            "timezone": m.timezone,
            "window_start_hour": m.window_start_hour,
            "window_end_hour": m.window_end_hour,
            "ramp_start": m.ramp_start,
            "ramp_increment": m.ramp_increment,
            "ramp_ceiling": m.ramp_ceiling,
        }
        for m in rows
    ]


def user_totals(days: Sequence[MailboxDay]) -> dict[str, int]:
    live = [d for d in days if d.status is not None]
    return {
        "mailboxes": len(days),
        "delivered_today": sum(d.delivered for d in live),
        "quota_today": sum(d.quota for d in live),
        "paused": sum(1 for d in live if d.status is not None and d.status.paused),
        "unanswered": sum(1 for d in days if d.status is None and d.mailbox.state.value != "removed"),
    }


def user_status_json(
    user_id: str,
    days: Sequence[MailboxDay],
    engaged_today: Mapping[int, EngagementDay],
    placement: Mapping[int, PlacementScore],
) -> dict[str, object]:
    return {
        "user_id": user_id,
        "totals": user_totals(days),
        "mailboxes": [
            {
                "mailbox_id": d.mailbox.id,
                "address": d.mailbox.address,
                "workflow_id": d.mailbox.workflow_id,
                "database_state": d.mailbox.state.value,
                "delivered_today": d.delivered,
                "fill": d.fill,
                "status": d.status,
                "error": d.error,
                "engagement_today": engaged_today.get(d.mailbox.id),
                "placement": placement_json(placement.get(d.mailbox.id)),
            }
            for d in days
        ],
    }


def _short_placement(score: PlacementScore | None) -> str:
    """`82% of 40 (7 d)`: a sender's inbox share, how many emails it rests on, over how many days."""
    if score is None or score.inbox_share is None:
        return "-"
    return f"{percent(score.inbox_share)} of {score.overall.judged} ({score.days} d)"


def user_status_view(
    user_id: str,
    days: Sequence[MailboxDay],
    engaged_today: Mapping[int, EngagementDay],
    placement: Mapping[int, PlacementScore],
    now: dt.datetime | None = None,
) -> RenderableType:
    rows: list[list[RenderableType]] = []
    for d in days:
        m, s = d.mailbox, d.status
        if s is None:
            rows.append([m.address, m.state.value, "-", "-", "-", "-", "-", d.error])
            continue
        # The reason a failure paused the mailbox is its last error too: say it once.
        error = "" if s.paused and s.pause_reason and s.pause_reason in s.last_error else s.last_error
        nxt = "-" if s.paused else s.next_send_at or "done for today"
        if s.waiting_for and not s.paused:
            nxt += f", waiting for {s.waiting_for}"
        rows.append(
            [
                m.address,
                state_text(s),
                bar(d.delivered, s.quota_today),
                nxt,
                str(s.ramp_day),
                f"{s.day} {s.timezone}",
                _short_placement(placement.get(m.id)),
                error or s.capped_reason,
            ]
        )
    t = user_totals(days)
    title = (
        f"User {user_id}: {t['delivered_today']} of {t['quota_today']} sent today across "
        f"{t['mailboxes']} mailboxes ({t['paused']} paused)"
    )
    if now is not None:
        title += f" at {now.astimezone(dt.UTC):%H:%M:%S} UTC"
    columns = ["MAILBOX", "STATE", "SENT/QUOTA", "NEXT SEND", "RAMP DAY", "DAY", "PLACEMENT", "LAST ERROR"]
    sends = grid(title, columns, rows)
    engaged = [
        (d.mailbox.address, engaged_today[d.mailbox.id]) for d in days if d.mailbox.id in engaged_today
    ]
    title = f"The receiving side today (each mailbox's own day): {placement_text([e for _, e in engaged])}"
    return Group(sends, Text(""), engagement_days_view(title, "MAILBOX", engaged))


def outcomes_view(verb: str, user_id: str, outcomes: Sequence[MailboxOutcome]) -> RenderableType:
    done = sum(1 for o in outcomes if o.ok)
    return grid(
        f"{verb} {done} of {len(outcomes)} mailboxes of user {user_id}",
        ["MAILBOX", "WORKFLOW", "RESULT"],
        [[o.address, o.workflow_id, o.detail if o.ok else f"FAILED: {o.detail}"] for o in outcomes],
    )


def outcomes_json(user_id: str, outcomes: Sequence[MailboxOutcome]) -> dict[str, object]:
    return {
        "user_id": user_id,
        "mailboxes": [
            {
                "mailbox_id": o.mailbox_id,
                "address": o.address,
                "workflow_id": o.workflow_id,
                "ok": o.ok,
                "detail": o.detail,
            }
            for o in outcomes
        ],
    }


# A file of more rows lists only those with problems (all of them are in --json).
BULK_ROWS_LISTED = 200


def bulk_view(results: Sequence[RowResult], dry_run: bool, stored: bool = True) -> RenderableType:
    listed = results if len(results) <= BULK_ROWS_LISTED else [r for r in results if r.problems]
    rows = []
    for r in listed:
        detail = "; ".join(r.problems) if r.problems else (r.workflow_id or "")
        rows.append([str(r.line), r.mailbox, r.status, detail])
    c = counts(list(results))
    if dry_run:
        summary = f"Dry run: {c['valid']} valid, {c['invalid']} invalid; nothing was stored"
    elif not stored:
        summary = (
            f"{c['invalid']} invalid and {c['failed']} refused of {len(results)} rows: nothing was stored; "
            "fix those rows and run the same file again"
        )
    else:
        summary = (
            f"{c['enrolled']} enrolled, {c['updated']} updated, {c['unchanged']} already enrolled "
            f"(unchanged, skipped), {c['invalid']} invalid and {c['failed']} failed (nothing was stored "
            "for those)"
        )
    return Group(grid(None, ["LINE", "MAILBOX", "RESULT", "DETAIL"], rows), Text(summary))


def report_view(report: Report, limit: int) -> RenderableType:
    parts: list[RenderableType] = [Text(f"Warmup report at {report.generated_at.isoformat()}")]
    for note in report.notes:
        parts.append(Text(f"({note})"))
    shown = report.under_quota[:limit] if limit > 0 else report.under_quota
    title = (
        f"1. Under quota today: {len(report.under_quota)} of {report.mailboxes_checked} mailboxes "
        "(lowest fill first)"
    )
    if len(shown) < len(report.under_quota):
        title += f", first {len(shown)} shown (--limit)"
    parts.append(
        grid(
            title,
            ["MAILBOX", "USER", "DAY", "SENT", "QUOTA", "FILL", "NEXT SEND", "STATE"],
            [
                [
                    r.address,
                    r.user_id,
                    r.day,
                    str(r.delivered),
                    str(r.quota),
                    percent(r.fill),
                    r.next_send_at or "-",
                    r.state,
                ]
                for r in shown
            ],
        )
    )
    if report.unanswered:
        parts.append(
            grid(
                f"   {len(report.unanswered)} mailbox workflow(s) did not answer",
                ["MAILBOX", "WHY"],
                [[u.address, u.error] for u in report.unanswered],
            )
        )
    parts.append(
        grid(
            "2. Hourly throughput, last 24 h (UTC)",
            ["HOUR", "DELIVERED", "ACTIVE MAILBOXES", "FAILED"],
            [
                [f"{h.hour:%Y-%m-%d %H:00}", str(h.delivered), str(h.active_mailboxes), str(h.failed)]
                for h in report.hourly
            ],
        )
    )
    q = report.queue
    parts.append(
        grid(
            f"3. Queue health: Temporal task queue {q.task_queue!r}",
            ["TASKS", "BACKLOG", "OLDEST WAITING", "ADDED/S", "DISPATCHED/S", "POLLERS"],
            [
                [
                    b.task_queue_type,
                    str(b.count),
                    f"{b.age_seconds:.0f}s",
                    f"{b.add_rate:.2f}",
                    f"{b.dispatch_rate:.2f}",
                    str(b.pollers),
                ]
                for b in q.backlog
            ],
        )
    )
    states = ", ".join(f"{k} {v}" for k, v in sorted(q.workflows.items())) or "none"
    lines = [f"   Mailbox workflows: {states}"]
    if q.warmup_status:
        lines.append(
            "   Running by WarmupStatus: " + ", ".join(f"{k} {v}" for k, v in q.warmup_status.items())
        )
    lines.append("   Mailboxes stored: " + ", ".join(f"{k} {v}" for k, v in q.mailbox_states.items()))
    parts.append(Text("\n".join(lines)))
    parts.append(
        grid(
            "   Sends recorded in the last 24 h (the ledger)",
            ["STATUS", "COUNT", "AVG AGE"],
            [[s.status.value, str(s.count), f"{s.avg_age_minutes:.0f} min"] for s in q.ledger_last_24h],
        )
    )
    parts.append(
        engagement_days_view(
            f"4. The receiving side, last {DAYS_SHOWN} days: {placement_text(report.engagement)}",
            "DAY",
            [(d.day.isoformat(), d) for d in report.engagement],
        )
    )
    placed = report.placement[:limit] if limit > 0 else report.placement
    title = f"5. Inbox placement of {len(report.placement)} senders (lowest first)"
    if len(placed) < len(report.placement):
        title += f", first {len(placed)} shown (--limit)"
    if not placed:
        parts.append(Text(f"{title}: no engaging receiver has looked for any sender's mail yet"))
    else:
        cells = [[p.address, p.user_id, *_placement_cells(p.score)] for p in placed]
        parts.append(grid(title, ["MAILBOX", "USER", "INBOX", "JUNK", "OTHER", "MISSING", "SCORE"], cells))
    return Group(*parts)


def _placement_cells(score: PlacementScore) -> list[RenderableType]:
    o = score.overall
    return [str(o.inbox), str(o.junk), str(o.other), str(o.missing), score.text()]
