"""What the mailbox commands do, without printing: the starter's `cmd_*` modules and the HTTP API
(api/) both call these, so a pause, an update or a status means the same thing from either.

Each takes a Temporal client and a database connection and raises StarterError (or
EnrollValidationError for bad settings) exactly as the CLI reports them.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
from collections.abc import Mapping

from temporalio.client import Client

from starter import temporal_calls
from starter.context import find_mailbox
from starter.enroll_request import EnrollValidationError
from starter.mailbox_store import ledger_rows_of, update_schedule
from starter.temporal_calls import MailboxOutcome, StarterError
from starter.update_request import ScheduleUpdate, parse_schedule_change
from starter.views import PoolStanding, mailbox_status_json, user_status_json
from warmup import fleet
from warmup import mailbox_settings as ms
from warmup.config import Settings
from warmup.db import Conn
from warmup.engagement_days import EngagementDay, engagement_days, shown_since
from warmup.fleet import RelaxedRules, relaxed_rules_on
from warmup.mailboxes import MailboxRecord, get_mailbox, set_state
from warmup.models import MailboxState, MailboxStatus, UserPlan
from warmup.placement import PlacementScore, sender_scores
from warmup.process_exit import EXIT_USAGE
from warmup.workflow_ids import mailbox_workflow_id


def refuse_removed(record: MailboxRecord, command: str) -> None:
    if record.state is MailboxState.REMOVED:
        raise StarterError(
            f"--mailbox {record.address} was removed; `starter enroll` it again before `starter {command}`"
        )


async def targets(conn: Conn, mailbox: str | None, user_id: str | None, command: str) -> list[MailboxRecord]:
    """The mailbox at `mailbox` (owned by `user_id` when given), or every mailbox of `user_id` that is
    not removed."""
    if mailbox is not None:
        record = await find_mailbox(conn, mailbox, user_id)
        refuse_removed(record, command)
        return [record]
    rows = await fleet.list_mailboxes(conn, user_id=user_id)
    records = [r for m in rows if m.state is not MailboxState.REMOVED if (r := await get_mailbox(conn, m.id))]
    if not records:
        raise StarterError(
            f"--user {user_id}: no enrolled mailboxes (removed ones do not count); "
            "`starter list` shows the users and their mailboxes"
        )
    return records


# --- pause / resume ---------------------------------------------------------------------------------


async def pause_one(
    client: Client, conn: Conn, record: MailboxRecord, reason: str, settings: Settings
) -> None:
    refuse_removed(record, "pause")
    await temporal_calls.pause(client, record.id, reason, settings)
    # Mirrors the workflow, written only once the signal was accepted.
    await set_state(conn, record.id, MailboxState.PAUSED, reason)


async def resume_one(client: Client, conn: Conn, record: MailboxRecord, settings: Settings) -> None:
    refuse_removed(record, "resume")
    await temporal_calls.resume(client, record.id, settings)
    await set_state(conn, record.id, MailboxState.ACTIVE, "")


# --- update -----------------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class Updated:
    record: MailboxRecord
    change: ScheduleUpdate | None  # None: this mailbox failed at the server (see outcome)
    outcome: MailboxOutcome
    changed: dict[str, list[object]]


def _changes(update: ScheduleUpdate, before: MailboxRecord) -> dict[str, list[object]]:
    old, new = ms.schedule_values_of(before.schedule), ms.schedule_values_of(update.schedule)
    return {k: [old[k], new[k]] for k in new if old[k] != new[k]}


async def update_mailboxes(
    client: Client,
    conn: Conn,
    records: list[MailboxRecord],
    raw: Mapping[str, object],
    settings: Settings,
    *,
    by_user: bool,
    label: ms.Label = ms.flag_label,
) -> list[Updated]:
    """Every mailbox checked first (one that would end up invalid stops the whole update, nothing
    changed), then each stored and sent to its workflow, the row committed only once the workflow
    accepted. With `by_user`, a mailbox failing at the server is reported and the rest go on."""
    checked: list[tuple[MailboxRecord, ScheduleUpdate]] = []
    problems: list[str] = []
    for record in records:
        try:
            change = parse_schedule_change(record.schedule, raw, label)
        except EnrollValidationError as exc:
            prefix = f"{record.address}: " if by_user else ""
            problems += [prefix + p for p in exc.problems]
            continue
        checked.append((record, change))
    if problems:
        raise EnrollValidationError(problems)

    done: list[Updated] = []
    for record, change in checked:
        try:
            async with conn.transaction():
                await update_schedule(conn, record.id, change.schedule)
                await temporal_calls.update(client, record.id, change.signal, settings)
        except StarterError as exc:
            if not by_user:
                raise
            done.append(Updated(record, None, MailboxOutcome(record.id, record.address, False, str(exc)), {}))
            continue
        changed = _changes(change, record)
        described = ", ".join(f"{k} {a} -> {b}" for k, (a, b) in changed.items()) or "no change"
        done.append(
            Updated(record, change, MailboxOutcome(record.id, record.address, True, described), changed)
        )
    return done


# --- remove -----------------------------------------------------------------------------------------


@dataclasses.dataclass
class Removal:
    mailbox_id: int
    address: str
    workflow_id: str
    ok: bool
    detail: str = ""
    was_running: bool = False  # a running workflow took the remove signal
    stopped: bool = False  # the workflow has closed (or none was running)
    ledger_rows_kept: int = 0


async def remove_mailboxes(
    client: Client,
    conn: Conn,
    records: list[MailboxRecord],
    wait: float,
    settings: Settings,
    *,
    by_user: bool,
) -> list[Removal]:
    if wait < 0:
        raise StarterError(f"--wait must be 0 or more seconds, got {wait:g}", EXIT_USAGE)
    removals: list[Removal] = []
    for record in records:
        r = Removal(record.id, record.address, mailbox_workflow_id(record.id), ok=True)
        try:
            r.was_running = await temporal_calls.remove(client, record.id, record.user_id, settings)
        except StarterError as exc:
            if not by_user:
                raise
            r.ok, r.detail = False, str(exc)
            removals.append(r)
            continue
        # Out of the recipient pool at once; the ledger keeps every send the mailbox made.
        await set_state(conn, record.id, MailboxState.REMOVED, "removed by operator")
        r.ledger_rows_kept = await ledger_rows_of(conn, record.id)
        removals.append(r)

    async def settle(r: Removal) -> None:
        r.stopped = (not r.was_running) or await temporal_calls.wait_closed(client, r.mailbox_id, wait)
        r.detail = (
            "workflow finished"
            if r.stopped
            else f"stop requested; not finished within --wait {wait:g}s, it ends when a worker runs it"
        )

    await fleet.bounded_gather([r for r in removals if r.ok], settle)
    return removals


# --- status -----------------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class MailboxLook:
    """One mailbox now: the workflow's status, the ledger's days, the placement score and its standing
    in the pool."""

    status: MailboxStatus
    days: list[EngagementDay]
    placement: PlacementScore
    pool: PoolStanding

    def json(self) -> dict[str, object]:
        return mailbox_status_json(self.status, self.days, self.placement, self.pool)


async def look_mailbox(client: Client, conn: Conn, record: MailboxRecord, settings: Settings) -> MailboxLook:
    status = await temporal_calls.status(client, record.id, settings)
    days = await engagement_days(conn, [record.id], shown_since())
    score = await sender_scores(conn, [record.id], settings.PLACEMENT_DAYS)
    relaxed = (
        await relaxed_rules_on(conn, record.id, dt.date.fromisoformat(status.day)) if status.day else None
    )
    pool = PoolStanding(record.receiving_off, relaxed or RelaxedRules(0, {}))
    placement = score.get(record.id) or PlacementScore(settings.PLACEMENT_DAYS)
    return MailboxLook(status, days, placement, pool)


@dataclasses.dataclass(frozen=True)
class UserLook:
    user_id: str
    days: list[fleet.MailboxDay]
    today: dict[int, EngagementDay]
    placement: dict[int, PlacementScore]

    @property
    def complete(self) -> bool:
        return all(d.status is not None or d.mailbox.state is MailboxState.REMOVED for d in self.days)

    def json(self) -> dict[str, object]:
        return user_status_json(self.user_id, self.days, self.today, self.placement)


async def look_user(client: Client, conn: Conn, user_id: str, settings: Settings) -> UserLook:
    days = await temporal_calls.user_status(client, conn, user_id)
    placement = await sender_scores(conn, [d.mailbox.id for d in days], settings.PLACEMENT_DAYS)
    # Each mailbox's own today (the day its workflow reports), so a day before UTC's today is enough.
    engaged = await engagement_days(conn, [d.mailbox.id for d in days], shown_since(1))
    day_of = {d.mailbox.id: d.status.day for d in days if d.status is not None}
    today = {e.mailbox_id: e for e in engaged if day_of.get(e.mailbox_id) == e.day.isoformat()}
    return UserLook(user_id, days, today, placement)


# --- plan -------------------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class PlanChange:
    plan: UserPlan
    reached: bool  # the user's workflow has it (False: used when the first mailbox is enrolled)
    reweighted: int  # sends in flight given the new weight, so the next dispatch follows the new plan


async def set_plan(
    client: Client, conn: Conn, user_id: str, plan: str, limit: int | None, settings: Settings
) -> PlanChange:
    """Store the user's plan and give it to the user's workflow (committed only once it has it), then
    to the user's sends already in flight."""
    try:
        ms.USER.coerce(user_id, "--user")
    except ValueError as exc:
        raise StarterError(str(exc), EXIT_USAGE) from None
    weights = settings.plan_weights()
    if plan not in weights:
        known = ", ".join(sorted(weights))
        raise StarterError(
            f"--plan {plan!r} is not in WARMUP_PLAN_WEIGHTS ({known}); add it there first", EXIT_USAGE
        )
    if limit is not None and limit < 0:
        raise StarterError(f"--daily-limit must be 0 or more, got {limit}", EXIT_USAGE)
    async with conn.transaction():
        stored = await temporal_calls.store_plan(conn, user_id, plan, limit, settings)
        reached = await temporal_calls.send_plan(client, user_id, stored, settings)
    if not reached:
        return PlanChange(stored, reached, 0)
    rows = await conn.fetch("SELECT id FROM mailboxes WHERE user_id = $1 AND state <> 'removed'", user_id)
    ids = [int(r["id"]) for r in rows]
    return PlanChange(
        stored, reached, await temporal_calls.reprioritize_sends(client, user_id, ids, stored.weight)
    )
