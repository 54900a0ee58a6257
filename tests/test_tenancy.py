"""Tenancy (issue #5, item 6): every command that names a mailbox takes `--user` as its tenant scope,
and a mailbox named under a user who does not own it is refused with nothing changed: no signal
reaches any workflow, no row is written. The user-wide forms and the views show one user's rows
only, and a user's workflow refuses another user's mailbox (its enroll_mailbox Update fails, so the
caller learns it). Two users, the real CLI, the real stack."""

from __future__ import annotations

import dataclasses
import uuid
from pathlib import Path

import pytest
from temporalio.api.enums.v1 import EventType
from temporalio.client import WorkflowExecutionStatus, WorkflowUpdateFailedError
from temporalio.exceptions import ApplicationError

from tests.helpers.operator_cli import (  # noqa: F401  (the fixtures)
    NO_SENDS,
    PASSWORD,
    Op,
    eventually,
    op_fixture,
    starter,
    worker_fixture,
)
from warmup.errors import ERR_REFUSED
from warmup.models import MailboxEnrollment, ScheduleSettings, UserPlan
from warmup.workflow_ids import mailbox_workflow_id, user_workflow_id
from workflows.user import UserWarmupWorkflow

# Fields of `status --json` that only a command (never the clock) changes while nothing is sent.
_STABLE = ("paused", "pause_reason", "timezone", "quota_today", "sent_total", "ramp_day", "user_id")


@dataclasses.dataclass
class Tenants:
    owner: str
    other: str
    victim: str  # the owner's mailbox the other user will name
    victim_id: int
    own: str  # the other user's own mailbox
    own_id: int


async def _tenants(op: Op) -> Tenants:
    tag = uuid.uuid4().hex[:8]
    owner, other = f"own-{tag}", f"eve-{tag}"  # unique: user workflows live on the shared dev server
    victim, own = f"victim-{tag}@tenancy.test", f"eve-{tag}@tenancy.test"
    victim_id = await op.enroll(victim, owner, *NO_SENDS)
    own_id = await op.enroll(own, other, *NO_SENDS)
    await _adopted(op, victim_id, owner)
    await _adopted(op, own_id, other)
    return Tenants(owner, other, victim, victim_id, own, own_id)


async def _signals(op: Op, workflow_id: str) -> list[tuple[str, str]]:
    """Every signal the workflow's history recorded, in order: (name, the sending workflow's id, or
    "client" for a signal from outside any workflow)."""
    signals = []
    async for event in op.client.get_workflow_handle(workflow_id).fetch_history_events():
        if event.event_type == EventType.EVENT_TYPE_WORKFLOW_EXECUTION_SIGNALED:
            attrs = event.workflow_execution_signaled_event_attributes
            sender = attrs.external_workflow_execution.workflow_id or "client"
            signals.append((attrs.signal_name, sender))
    return signals


async def _adopted(op: Op, mailbox_id: int, user: str) -> None:
    """The user's workflow adopted the mailbox: `enroll` returns once it has started the mailbox's
    workflow as its child, so from then on a mailbox that sends nothing receives no signal unless a
    command sends one."""
    desc = await op.client.get_workflow_handle(mailbox_workflow_id(mailbox_id)).describe()
    assert desc.parent_id == user_workflow_id(user)
    user_wf = op.client.get_workflow_handle_for(UserWarmupWorkflow.run, user_workflow_id(user))
    assert mailbox_id in (await user_wf.query(UserWarmupWorkflow.status)).mailbox_ids


async def _snapshot(op: Op, t: Tenants) -> dict[str, object]:
    """Everything a refused command could have touched: the victim's row, its workflow's state and
    the signals its mailbox workflow and its user's workflow have received."""
    rows = await op.fetch("SELECT * FROM mailboxes WHERE address = $1", t.victim)
    status = await op.status(t.victim)
    return {
        "row": dict(rows[0]),
        "status": {k: status[k] for k in _STABLE},
        "mailbox signals": await _signals(op, mailbox_workflow_id(t.victim_id)),
        "user signals": await _signals(op, user_workflow_id(t.owner)),
    }


async def test_every_command_refuses_a_mailbox_named_under_another_user(op: Op, worker: None) -> None:
    t = await _tenants(op)
    before = await _snapshot(op, t)
    attempts: list[tuple[str, ...]] = [
        ("status",),
        ("status", "--json"),
        ("status", "--watch", "--count", "1", "--json"),
        ("pause", "--reason", "taken over"),
        ("update", "--timezone", "Asia/Tokyo", "--ramp-ceiling", "5"),
        ("remove", "--wait", "0"),
    ]
    for command, *extra in attempts:
        run = await op.run(command, "--mailbox", t.victim, "--user", t.other, *extra)
        assert run.code == 1, (command, run.code, run.err)
        assert f"no mailbox {t.victim} for user {t.other}" in run.err, run.err
        assert "nothing was changed" in run.err
        # Nothing about the other tenant: not its user id, not the mailbox's id or workflow.
        assert run.out == ""
        assert t.owner not in run.err and str(t.victim_id) not in run.err
    assert await _snapshot(op, t) == before

    # The refusal is the same as for an address nobody enrolled: it tells nothing about other tenants.
    ghost = f"ghost-{t.victim}"
    foreign = await op.run("pause", "--mailbox", t.victim, "--user", t.other)
    missing = await op.run("pause", "--mailbox", ghost, "--user", t.other)
    assert foreign.code == missing.code == 1
    assert foreign.err.replace(t.victim, "ADDRESS") == missing.err.replace(ghost, "ADDRESS")

    # The owner may, with the same flags; the other user then cannot resume what the owner paused.
    paused = await op.run("pause", "--mailbox", t.victim, "--user", t.owner, "--reason", "owner's call")
    assert paused.code == 0, paused.err
    await eventually(lambda: _is_paused(op, t.victim))
    held = await _snapshot(op, t)
    resume = await op.run("resume", "--mailbox", t.victim, "--user", t.other)
    assert resume.code == 1 and f"no mailbox {t.victim} for user {t.other}" in resume.err
    assert await _snapshot(op, t) == held
    assert (await op.states())[t.victim] == "paused"

    # The other user's own mailbox answers to it, scoped the same way.
    updated = await op.run("update", "--mailbox", t.own, "--user", t.other, "--ramp-ceiling", "3")
    assert updated.code == 0, updated.err
    status = await op.run("status", "--mailbox", t.own, "--user", t.other, "--json")
    assert status.code == 0, status.err
    victim_status = await op.status(t.victim)
    assert victim_status["paused"] is True and victim_status["pause_reason"] == "owner's call"
    desc = await op.client.get_workflow_handle(mailbox_workflow_id(t.victim_id)).describe()
    assert desc.status is WorkflowExecutionStatus.RUNNING


async def _is_paused(op: Op, address: str) -> bool:
    return (await op.status(address))["paused"] is True


async def test_user_wide_commands_and_views_see_only_that_users_mailboxes(op: Op, worker: None) -> None:
    t = await _tenants(op)
    before = await _snapshot(op, t)

    listed = (await op.ok("list", "--user", t.other, "--json")).json()
    assert isinstance(listed, list) and [m["address"] for m in listed] == [t.own]
    status = (await op.ok("status", "--user", t.other, "--json")).json()
    assert isinstance(status, dict) and [m["address"] for m in status["mailboxes"]] == [t.own]
    report = (await op.ok("report", "--user", t.other, "--json")).json()
    assert isinstance(report, dict)
    assert report["mailboxes_checked"] == 1
    assert all(r["user_id"] == t.other for r in report["under_quota"])
    assert sum(report["queue"]["mailbox_states"].values()) == 1  # the fleet has two or more
    assert t.victim not in str(report)

    paused = (await op.ok("pause", "--user", t.other, "--reason", "billing", "--json")).json()
    assert isinstance(paused, dict) and [m["address"] for m in paused["mailboxes"]] == [t.own]
    removed = (await op.ok("remove", "--user", t.other, "--json")).json()
    assert isinstance(removed, dict) and [m["address"] for m in removed["mailboxes"]] == [t.own]
    assert (await op.states())[t.victim] == "active"
    assert await _snapshot(op, t) == before


async def test_a_users_workflow_refuses_another_users_mailbox(op: Op, worker: None) -> None:
    t = await _tenants(op)
    owner_wf = op.client.get_workflow_handle_for(UserWarmupWorkflow.run, user_workflow_id(t.owner))
    own_wf = mailbox_workflow_id(t.own_id)
    own_signals = await _signals(op, own_wf)

    # Straight to the owner's workflow, past the starter's checks: adopt and remove the other's mailbox.
    stranger = MailboxEnrollment(t.own_id, ScheduleSettings(timezone="UTC"), user_id=t.other)
    # As an Update (what `starter enroll` sends), the refusal reaches the caller.
    with pytest.raises(WorkflowUpdateFailedError) as info:
        await owner_wf.execute_update(UserWarmupWorkflow.enroll_mailbox, stranger)
    cause = info.value.cause
    assert isinstance(cause, ApplicationError) and cause.type == ERR_REFUSED
    assert "belongs to another user" in cause.message and t.other not in cause.message
    # As the older signal, the refusal is only logged; either way nothing is adopted.
    await owner_wf.signal(UserWarmupWorkflow.enroll, stranger)
    await owner_wf.signal(UserWarmupWorkflow.remove_mailbox, t.own_id)
    # Signals are handled in order: once this plan shows, the two above have been handled too.
    await owner_wf.signal(UserWarmupWorkflow.set_plan, UserPlan("pro", None, 3.0))

    async def plan_applied() -> bool:
        return (await owner_wf.query(UserWarmupWorkflow.status)).plan == "pro"

    await eventually(plan_applied)
    state = await owner_wf.query(UserWarmupWorkflow.status)
    assert state.mailbox_ids == [t.victim_id] and state.removed_ids == []
    # Nothing reached the other user's mailbox workflow, which still runs.
    assert await _signals(op, own_wf) == own_signals
    assert not [s for s in own_signals if s[1] == user_workflow_id(t.owner)]
    desc = await op.client.get_workflow_handle(own_wf).describe()
    assert desc.status is WorkflowExecutionStatus.RUNNING


async def test_required_user_scope_refuses_unscoped_commands(op: Op, worker: None) -> None:
    t = await _tenants(op)
    strict = {**op.env, "WARMUP_REQUIRE_USER_SCOPE": "true"}
    for argv in (
        ["status", "--mailbox", t.victim],
        ["pause", "--mailbox", t.victim],
        ["remove", "--mailbox", t.victim],
        ["list"],
        ["report"],
    ):
        run = await starter(strict, *argv)
        assert run.code == 2, (argv, run.err)
        assert "--user USER is required (WARMUP_REQUIRE_USER_SCOPE=true)" in run.err
    assert (await op.states())[t.victim] == "active"
    scoped = await starter(strict, "pause", "--mailbox", t.victim, "--user", t.owner)
    assert scoped.code == 0, scoped.err
    neither = await op.run("status")
    assert neither.code == 2 and "--mailbox" in neither.err and "--user" in neither.err


async def _snapshot_rows(op: Op) -> list[list[dict[str, object]]]:
    mailboxes = await op.fetch("SELECT * FROM mailboxes ORDER BY id")
    users = await op.fetch("SELECT * FROM users ORDER BY id")
    return [[dict(r) for r in mailboxes], [dict(r) for r in users]]


async def test_a_csv_row_naming_another_users_mailbox_stores_nothing(
    op: Op, worker: None, tmp_path: Path
) -> None:
    t = await _tenants(op)
    before = await _snapshot_rows(op)
    header = (
        "mailbox,user,smtp_host,smtp_port,smtp_security,username,timezone,secret,ramp_start,ramp_ceiling\n"
    )
    file = tmp_path / "takeover.csv"
    fresh = f"fresh-{t.own}"
    file.write_text(
        header
        + f"{fresh},{t.other},127.0.0.1,2525,none,{fresh},UTC,{PASSWORD},0,0\n"
        + f"{t.victim},{t.other},127.0.0.1,2525,none,{t.victim},UTC,{PASSWORD},0,0\n"
    )
    file.chmod(0o600)
    run = await op.run("enroll", "--csv", str(file), "--json")
    assert run.code == 1, run.err
    data = run.json()
    assert isinstance(data, dict) and data["stored"] is False
    rows = {r["line"]: r for r in data["rows"]}
    assert rows[3]["status"] == "failed" and "already enrolled under another user" in rows[3]["problems"][0]
    assert t.owner not in run.out + run.err
    assert f"line 3: mailbox {t.victim}" in run.err and "nothing was stored" in run.err
    # Not even the good row was stored: the file is checked whole before the first write.
    assert await _snapshot_rows(op) == before
