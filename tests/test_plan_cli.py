"""`starter plan`: a user's plan reaches its workflow, and bad plans are refused naming the flag."""

from __future__ import annotations

import uuid

from tests.helpers.operator_cli import (  # noqa: F401  (the fixtures)
    NO_SENDS,
    Op,
    eventually,
    op_fixture,
    worker_fixture,
)
from warmup.workflow_ids import user_workflow_id
from workflows.user import UserWarmupWorkflow


async def test_a_plan_set_before_and_after_enrollment_reaches_the_user_workflow(op: Op, worker: None) -> None:
    user = f"p{uuid.uuid4().hex[:8]}"
    await op.ok("plan", "--user", user, "--plan", "pro", "--daily-limit", "12")
    await op.enroll(f"{user}@plan.test", user, *NO_SENDS)
    handle = op.client.get_workflow_handle_for(UserWarmupWorkflow.run, user_workflow_id(user))

    async def plan_is(name: str, limit: int | None) -> bool:
        st = await handle.query(UserWarmupWorkflow.status)
        return (st.plan, st.daily_limit) == (name, limit)

    await eventually(lambda: plan_is("pro", 12))
    run = await op.ok("plan", "--user", user, "--plan", "agency", "--no-limit", "--json")
    # No send in flight (NO_SENDS): nothing queued to re-weight.
    want = {"user": user, "plan": "agency", "daily_limit": None, "weight": 4.0, "sends_reweighted": 0}
    assert run.json() == want
    await eventually(lambda: plan_is("agency", None))
    rows = await op.fetch("SELECT plan, plan_daily_limit FROM users WHERE id = $1", user)
    assert (rows[0]["plan"], rows[0]["plan_daily_limit"]) == ("agency", None)


async def test_bad_plans_are_refused_naming_the_flag_and_nothing_is_stored(op: Op) -> None:
    for argv, flag in [
        (("--user", "u1", "--plan", "platinum", "--no-limit"), "--plan"),
        (("--user", "u1", "--plan", "pro", "--daily-limit", "-3"), "--daily-limit"),
        (("--user", "not a user", "--plan", "pro", "--no-limit"), "--user"),
    ]:
        run = await op.run("plan", *argv)
        assert run.code == 2 and flag in run.err, (argv, run.err)
    assert await op.fetch("SELECT id FROM users") == []
