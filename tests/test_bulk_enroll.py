"""Bulk enrollment at fleet scale (issue #16 item 5): `starter enroll --csv` runs many rows at once,
an import killed midway is run again to completion without enrolling anything twice, and enrolls no
longer wait for each other in PostgreSQL. Real PostgreSQL, the Temporal dev server and a real worker;
the rows per second at 100,000 rows come from `python -m bench.bulk_enroll`."""

from __future__ import annotations

import asyncio
import datetime as dt
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import asyncpg
import pytest
from temporalio.client import WithStartWorkflowOperation
from temporalio.common import WorkflowIDConflictPolicy

from bench.scale import zone_for_local_hour
from starter import temporal_calls
from tests.helpers.operator_cli import (  # noqa: F401  (the fixtures)
    PASSWORD,
    Op,
    eventually,
    op_fixture,
    unique_mailbox_ids,
    worker_fixture,
)
from warmup.mailboxes import NewMailbox, SmtpAccount, ensure_user, upsert_mailbox
from warmup.models import (
    MailboxEnrollment,
    MailboxEnrollments,
    ScheduleSettings,
    SmtpSecurity,
    UserPlan,
    UserWorkflowInput,
)
from warmup.workflow_ids import mailbox_workflow_id, user_workflow_id
from workflows.user import UserWarmupWorkflow

HEADER = (
    "mailbox,user,smtp_host,smtp_port,smtp_security,username,timezone,secret_env,ramp_start,ramp_ceiling\n"
)
USERS, PER_USER = 30, 20


def _csv(path: Path, port: int, users: int = USERS) -> list[str]:
    """A legacy export: each user's mailboxes together, as a product's database lists them."""
    addresses = [f"m{u}-{i}@bulk{u}.test" for u in range(users) for i in range(PER_USER)]
    path.write_text(
        HEADER
        + "".join(
            f"{a},user{a.split('@')[1]},127.0.0.1,{port},none,{a},UTC,SMTP_PASSWORD,0,0\n" for a in addresses
        )
    )
    return addresses


async def test_an_import_killed_midway_runs_again_to_completion_enrolling_nothing_twice(
    op: Op, worker: None, tmp_path: Path
) -> None:
    file = tmp_path / "legacy.csv"
    addresses = _csv(file, op.sink.port)
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "starter", "enroll", "--csv", str(file),
        env={**os.environ, **op.env}, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    try:

        async def some_enrolled() -> bool:
            assert proc.returncode is None, "the import ended before it could be killed"
            return len(await op.fetch("SELECT id FROM mailboxes")) >= 40

        await eventually(some_enrolled, 120)
        proc.send_signal(signal.SIGKILL)  # a crash or a closed laptop, at any row
    finally:
        await asyncio.wait_for(proc.wait(), 30)
    before = {r["address"] for r in await op.fetch("SELECT address FROM mailboxes")}
    assert 40 <= len(before) < len(addresses)

    again = await op.run("enroll", "--csv", str(file), "--json")
    assert again.code == 0, again.err
    data = again.json()
    assert isinstance(data, dict)
    status = {r["mailbox"]: r["status"] for r in data["rows"]}
    assert {a for a, s in status.items() if s == "unchanged"} == before, "rows stored before the kill"
    assert {a for a, s in status.items() if s == "enrolled"} == set(addresses) - before
    assert data["counts"]["failed"] == 0 and data["counts"]["updated"] == 0

    rows = await op.fetch("SELECT id, address, pick_slot FROM mailboxes")
    assert sorted(r["address"] for r in rows) == sorted(addresses), "one row per address"
    assert len({r["pick_slot"] for r in rows}) == len(rows) and min(r["pick_slot"] for r in rows) >= 0
    # Every row has its running workflow, the one its user's workflow started.
    descs = await asyncio.gather(
        *(op.client.get_workflow_handle(mailbox_workflow_id(r["id"])).describe() for r in rows)
    )
    assert {d.status.name if d.status else None for d in descs} == {"RUNNING"}

    third = await op.run("enroll", "--csv", str(file))
    assert third.code == 0, third.err
    assert f"0 enrolled, 0 updated, {len(addresses)} already enrolled" in third.out, third.out
    assert len(third.out.splitlines()) < 20, "a large file lists only the rows with problems"


async def test_a_workflow_left_by_an_enroll_killed_before_its_commit_is_retired_by_the_next_import(
    op: Op, worker: None, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The kill the test above risks: Temporal started a mailbox's workflow, the row rolled back. The
    next import removes that workflow, so it stops counting in its user's plan share."""
    user = "userbulk0.test"  # the first user of the file
    orphan = await unique_mailbox_ids(op.dsn) - 1  # an id the database handed out and lost
    start = WithStartWorkflowOperation(
        UserWarmupWorkflow.run,
        UserWorkflowInput(user, UserPlan()),
        id=user_workflow_id(user),
        task_queue=op.settings.TASK_QUEUE,
        id_conflict_policy=WorkflowIDConflictPolicy.USE_EXISTING,
    )
    await op.client.execute_update_with_start_workflow(
        UserWarmupWorkflow.enroll_mailboxes,
        # At 2 am in its zone the orphan's window is shut, so it sleeps rather than retrying a send for a
        # mailbox that is not in the database: a removed workflow ends only once its send in flight does.
        MailboxEnrollments(
            [
                MailboxEnrollment(
                    orphan, ScheduleSettings(timezone=zone_for_local_hour(time.time(), 2)), user_id=user
                )
            ]
        ),
        start_workflow_operation=start,
    )
    file = tmp_path / "legacy.csv"
    _csv(file, op.sink.port, users=1)
    monkeypatch.setattr(temporal_calls, "ORPHAN_AFTER", dt.timedelta(0))
    assert (await op.run("enroll", "--csv", str(file))).code == 0

    handle = op.client.get_workflow_handle_for(UserWarmupWorkflow.run, user_workflow_id(user))
    st = await handle.query(UserWarmupWorkflow.status)
    assert orphan not in st.mailbox_ids and orphan in st.removed_ids
    assert len(st.mailbox_ids) == PER_USER

    async def finished() -> bool:
        desc = await op.client.get_workflow_handle(mailbox_workflow_id(orphan)).describe()
        return desc.status is not None and desc.status.name == "COMPLETED"

    await eventually(finished, 30)


async def test_enrolls_do_not_wait_for_each_other_and_a_re_enroll_burns_no_pick_slot(db_dsn: str) -> None:
    """An enroll holds its transaction open across its Temporal call; a second enroll must not wait
    for it (migration 0010's slot lock made every enroll wait for the one before: 9 rows a second)."""

    def mailbox(address: str) -> NewMailbox:
        smtp = SmtpAccount("127.0.0.1", 2525, SmtpSecurity.NONE, address, verify_tls=False)
        return NewMailbox("u1", address, smtp, "ciphertext", ScheduleSettings())

    first, second = await asyncpg.connect(db_dsn), await asyncpg.connect(db_dsn)
    try:
        await ensure_user(first, "u1")  # a bulk import stores its users first (one statement)
        async with first.transaction():
            one = await upsert_mailbox(first, mailbox("one@slots.test"))  # ... its Temporal call here
            async with second.transaction():
                two = await asyncio.wait_for(upsert_mailbox(second, mailbox("two@slots.test")), 5)
        slots = {
            r["address"]: r["pick_slot"]
            for r in await first.fetch("SELECT address, pick_slot FROM mailboxes")
        }
        assert sorted(slots.values()) == [0, 1] and one.id != two.id

        for _ in range(5):  # re-enrolls: the conflicting upserts keep the row's slot and burn none
            await upsert_mailbox(first, mailbox("one@slots.test"))
        three = await upsert_mailbox(first, mailbox("three@slots.test"))
        rows = {
            r["address"]: r["pick_slot"]
            for r in await first.fetch("SELECT address, pick_slot FROM mailboxes")
        }
        assert rows == {**slots, three.address: 2}
    finally:
        await first.close()
        await second.close()


__all__ = ["PASSWORD"]
