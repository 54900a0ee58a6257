"""How the starter prints results: aligned plain-text tables for people, JSON for scripts."""

from __future__ import annotations

import dataclasses
import json

from warmup.models import MailboxState, MailboxStatus


def table(rows: list[tuple[str, str]]) -> str:
    width = max((len(label) for label, _ in rows), default=0)
    return "\n".join(f"{label.ljust(width)}  {value}" for label, value in rows)


def to_json(value: object) -> str:
    data = (
        dataclasses.asdict(value)
        if dataclasses.is_dataclass(value) and not isinstance(value, type)
        else value
    )
    return json.dumps(data, indent=2, sort_keys=True)


def status_table(status: MailboxStatus, address: str, workflow_id: str, db_state: MailboxState) -> str:
    if status.paused:
        state = f"paused ({status.pause_reason})" if status.pause_reason else "paused"
    else:
        state = "active"
    if status.paused:
        next_send = "- (paused)"
    elif status.next_send_at is None:
        next_send = "none today (quota reached or window closed)"
    else:
        next_send = status.next_send_at
    rows = [
        ("Mailbox", f"{address} (id {status.mailbox_id})"),
        ("Workflow", workflow_id),
        ("User", status.user_id),
        ("State", state),
        ("Day", f"{status.day or '(not started)'} in {status.timezone}"),
        ("Sent today", f"{status.sent_today} of {status.quota_today}"),
        ("Failed today", str(status.failed_today)),
        ("Unknown today", str(status.unknown_today)),
        ("Next send", next_send),
        ("Ramp day", str(status.ramp_day)),
        ("Sent in total", str(status.sent_total)),
    ]
    if status.capped_reason:
        rows.append(("Capped", status.capped_reason))
    if status.last_error:
        rows.append(("Last error", status.last_error))
    workflow_state = MailboxState.PAUSED if status.paused else MailboxState.ACTIVE
    if db_state is not workflow_state:
        # The workflow is the truth for sending; say so when the stored state lags behind it.
        rows.append(("Database state", f"{db_state.value} (the workflow's state above is what counts)"))
    return table(rows)
