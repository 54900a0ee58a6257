"""How the starter prints results: tables for people (rich), JSON for scripts.

User data (addresses, reasons, SMTP replies) is printed as-is: rich markup and emoji codes are off,
so a `[` in a server's reply cannot restyle the table.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import enum
import json
from collections.abc import Sequence
from typing import TextIO

from rich import box
from rich.console import Console, Group, RenderableType
from rich.progress_bar import ProgressBar
from rich.table import Table
from rich.text import Text

from warmup.models import MailboxState, MailboxStatus

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


def status_table(status: MailboxStatus, address: str, workflow_id: str, db_state: MailboxState) -> str:
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
        ("Sent in total", str(status.sent_total)),
    ]
    if status.capped_reason:
        rows.append(("Capped", status.capped_reason))
    if status.binding_cap:
        rows.append(("Held back by", status.binding_cap))
    if status.last_error:
        rows.append(("Last error", status.last_error))
    workflow_state = MailboxState.PAUSED if status.paused else MailboxState.ACTIVE
    if db_state is not workflow_state:
        # The workflow is the truth for sending; say so when the stored state lags behind it.
        rows.append(("Database state", f"{db_state.value} (the workflow's state above is what counts)"))
    return table(rows)
