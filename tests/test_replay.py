"""Replay safety: today's workflow code must replay every recorded history without non-determinism.

The histories in tests/replay/histories/ were recorded from real runs on the time-skipping server
(`python -m tests.replay.record`). A change to workflow code that would break running workflows
fails here; docs/versioning.md says how to make such a change safely with workflow.patched.
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pytest
from temporalio import workflow
from temporalio.client import WorkflowHistory
from temporalio.testing import WorkflowEnvironment
from temporalio.worker import Replayer, Worker, WorkflowReplayResult

from tests.helpers.workflows import skip_to, start_mailboxes, status
from tests.test_mailbox_workflow import UTC_DAY, Recorder
from warmup.models import MailboxWorkflowInput
from workers.sandbox import workflow_runner
from workflows.mailbox import MailboxWarmupWorkflow
from workflows.user import UserWarmupWorkflow

HISTORIES = Path(__file__).parent / "replay" / "histories"
SEND_HISTORY = "mailbox_day_with_sends"
PATCH_ID = "pause-before-send"


def _histories() -> list[Path]:
    return sorted(HISTORIES.glob("*.json"))


def _load(path: Path) -> WorkflowHistory:
    return WorkflowHistory.from_json(path.stem, path.read_text())


async def _replay(path: Path, *workflows: type) -> WorkflowReplayResult:
    replayer = Replayer(workflows=list(workflows), workflow_runner=workflow_runner("isolated"))
    return await replayer.replay_workflow(_load(path), raise_on_replay_failure=False)


# A change a developer might make: a short breather before each send. Registered under the real
# name, it stands in for an edited MailboxWarmupWorkflow.
@workflow.defn(name="MailboxWarmupWorkflow")
class UnpatchedChange(MailboxWarmupWorkflow):
    @workflow.run
    async def run(self, inp: MailboxWorkflowInput) -> None:
        await super().run(inp)

    async def _send(self) -> None:
        await workflow.sleep(dt.timedelta(seconds=1))
        await super()._send()


# The same change behind workflow.patched (the worked example in docs/versioning.md): histories
# recorded before it take the old path, new runs the new one.
@workflow.defn(name="MailboxWarmupWorkflow")
class PatchedChange(MailboxWarmupWorkflow):
    @workflow.run
    async def run(self, inp: MailboxWorkflowInput) -> None:
        await super().run(inp)

    async def _send(self) -> None:
        if workflow.patched(PATCH_ID):
            await workflow.sleep(dt.timedelta(seconds=1))
        await super()._send()


def test_the_recorded_histories_cover_the_scenarios() -> None:
    names = {p.stem for p in _histories()}
    wanted = {
        SEND_HISTORY,
        "mailbox_continue_as_new_first_run",
        "user_lifecycle",
        "search_attributes_mailbox",
        # Since the Updates: enroll_mailbox (with start), change_plan, change_settings.
        "user_updates",
        "user_updates_child_mailbox",
        "mailbox_change_settings",
        # Since issue #11: inbox sessions, a refused IMAP login, engagement on again.
        "mailbox_inbox_sessions",
        # Since issue #16: a bulk import's batch (enroll_mailboxes, the parallel-enroll patch).
        "user_bulk_enroll",
        # Since issue #13: a run per local day.
        "mailbox_one_day_per_run_first_run",
        # Since issue #13: sends that may wait for the user's cap inside the attempt.
        "mailbox_user_cap_wait",
    }
    assert wanted <= names, f"histories missing ({sorted(wanted - names)}): see tests/replay/record.py"


@pytest.mark.parametrize("path", _histories(), ids=lambda p: p.stem)
async def test_current_code_replays_every_recorded_history(path: Path) -> None:
    result = await _replay(path, MailboxWarmupWorkflow, UserWarmupWorkflow)
    assert result.replay_failure is None, f"{path.name} no longer replays: {result.replay_failure}"


async def test_a_changed_workflow_is_caught() -> None:
    result = await _replay(HISTORIES / f"{SEND_HISTORY}.json", UnpatchedChange)
    assert isinstance(result.replay_failure, workflow.NondeterminismError), result.replay_failure


async def test_the_same_change_behind_a_patch_replays_old_histories() -> None:
    for path in _histories():
        result = await _replay(path, PatchedChange, UserWarmupWorkflow)
        assert result.replay_failure is None, f"{path.name}: {result.replay_failure}"


async def test_a_patched_run_records_a_marker_old_code_cannot_replay(
    time_skipping_env: WorkflowEnvironment,
) -> None:
    # Why a patch is one-way: once new runs record the marker, rolling back to the old code breaks them.
    env, rec = time_skipping_env, Recorder()
    now = await env.get_current_time()
    await skip_to(env, dt.datetime.combine(now.date() + dt.timedelta(days=1), dt.time(), dt.UTC))
    async with Worker(
        env.client,
        task_queue="replay-patched",
        workflows=[PatchedChange],
        activities=[rec.send_email],
        workflow_runner=workflow_runner("isolated"),
    ):
        (h,) = await start_mailboxes(env.client, "replay-patched", [(301, UTC_DAY)])
        # A query waits for the worker to run the first task; skipping 12 hours before that (a loaded
        # machine) made the workflow start at noon and see the remove signal before its first send.
        await status(h)
        # The whole window: where in it the day's first send falls depends on the date.
        await env.sleep(dt.timedelta(hours=23))
        await h.signal(MailboxWarmupWorkflow.remove)
        await h.result()
    assert rec.requests, "the patched workflow sent nothing"
    history = await h.fetch_history()
    assert any(e.marker_recorded_event_attributes.marker_name == "core_patch" for e in history.events)
    replayer = Replayer(workflows=[MailboxWarmupWorkflow], workflow_runner=workflow_runner("isolated"))
    result = await replayer.replay_workflow(history, raise_on_replay_failure=False)
    assert isinstance(result.replay_failure, workflow.NondeterminismError), result.replay_failure
    await Replayer(workflows=[PatchedChange], workflow_runner=workflow_runner("isolated")).replay_workflow(
        history
    )
