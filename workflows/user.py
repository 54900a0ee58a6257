"""UserWarmupWorkflow: one per user, the parent of that user's mailbox workflows.

Enrolling, removing, pausing and resuming go through it; it owns the user's plan and, when the
plan limits the daily total, answers each mailbox's morning request with a fair share of it.
"""

from __future__ import annotations

import dataclasses

from temporalio import workflow
from temporalio.exceptions import FailureError, WorkflowAlreadyStartedError
from temporalio.workflow import ParentClosePolicy

with workflow.unsafe.imports_passed_through():
    from warmup import search_attributes as sa
    from warmup.models import (
        AllowanceGrant,
        AllowanceRequest,
        ChildMailbox,
        MailboxEnrollment,
        MailboxWorkflowInput,
        PauseRequest,
        SettingsUpdate,
        UserPlan,
        UserStatus,
        UserWorkflowInput,
        UserWorkflowState,
    )
    from warmup.plan_share import allowance
    from warmup.workflow_ids import mailbox_workflow_id
    from warmup.workflow_ids import user_workflow_id as user_workflow_id  # re-exported for the tests
    from workflows.mailbox import MailboxWarmupWorkflow

_KEEP_GRANT_DAYS = 3


@workflow.defn
class UserWarmupWorkflow:
    @workflow.init
    def __init__(self, inp: UserWorkflowInput) -> None:
        self._inp = inp
        self._plan = inp.plan
        self._s = inp.state or UserWorkflowState()
        # Signal handlers only record what to do; the main loop does the I/O, in arrival order.
        self._enrollments: list[MailboxEnrollment] = []
        self._outbox: list[tuple[int, str, object]] = []  # (mailbox id, signal name, argument)

    @workflow.run
    async def run(self, inp: UserWorkflowInput) -> None:
        if inp.search_attributes:
            workflow.upsert_search_attributes([sa.USER_ID.value_set(inp.user_id)])
        while True:
            await workflow.wait_condition(
                lambda: bool(self._enrollments or self._outbox) or self._time_to_continue_as_new()
            )
            while self._enrollments:
                await self._start_or_update(self._enrollments.pop(0))
            while self._outbox:
                await self._deliver(*self._outbox.pop(0))
            if self._time_to_continue_as_new() and not (self._enrollments or self._outbox):
                await workflow.wait_condition(workflow.all_handlers_finished)
                self._s.runs += 1
                workflow.continue_as_new(dataclasses.replace(self._inp, plan=self._plan, state=self._s))

    # --- signals -------------------------------------------------------------------------------

    @workflow.signal
    def enroll(self, enrollment: MailboxEnrollment) -> None:
        # Tenancy: adopting another user's mailbox would give this user pause, remove and settings
        # over it. Refused here, in the handler, so nothing is recorded or started for it.
        if enrollment.user_id and enrollment.user_id != self._inp.user_id:
            workflow.logger.warning(
                "enroll of mailbox %s refused: it belongs to another user", enrollment.mailbox_id
            )
            return
        self._enrollments.append(enrollment)

    @workflow.signal
    def remove_mailbox(self, mailbox_id: int) -> None:
        child = self._s.mailboxes.get(str(mailbox_id))
        if child is None:
            # Only mailboxes this workflow adopted are its to remove (another user's are not).
            workflow.logger.warning("remove of mailbox %s ignored: not a mailbox of this user", mailbox_id)
            return
        if not child.removed:
            child.removed = True
            self._outbox.append((mailbox_id, "remove", None))

    @workflow.signal
    def pause(self, req: PauseRequest | None = None) -> None:
        reason = (req or PauseRequest()).reason
        self._s.paused, self._s.pause_reason = True, reason
        for mailbox_id in self._active_ids():
            self._outbox.append((mailbox_id, "pause", PauseRequest(reason)))

    @workflow.signal
    def resume(self) -> None:
        self._s.paused, self._s.pause_reason = False, ""
        for mailbox_id in self._active_ids():
            self._outbox.append((mailbox_id, "resume", None))

    @workflow.signal
    def set_plan(self, plan: UserPlan) -> None:
        old, self._plan = self._plan, plan
        if plan.weight != old.weight or (plan.daily_limit is None) != (old.daily_limit is None):
            update = SettingsUpdate(fairness_weight=plan.weight, plan_parent_id=self._parent_id() or "")
            for mailbox_id in self._active_ids():
                self._outbox.append((mailbox_id, "update_settings", update))

    @workflow.signal
    def request_allowance(self, req: AllowanceRequest) -> None:
        child = self._s.mailboxes.get(str(req.mailbox_id))
        if child is None or child.removed:
            return
        child.wanted, child.wanted_day = req.wanted, req.day
        granted = self._s.grants.setdefault(req.day, {})
        if self._plan.daily_limit is None:
            n = req.wanted
        else:
            wanted = {
                int(k): self._estimate(c, req.day) for k, c in self._s.mailboxes.items() if not c.removed
            }
            others = {int(k): v for k, v in granted.items()}
            n = allowance(self._plan.daily_limit, wanted, others, req.mailbox_id)
        granted[str(req.mailbox_id)] = n
        for old in sorted(self._s.grants)[:-_KEEP_GRANT_DAYS]:
            del self._s.grants[old]
        self._outbox.append((req.mailbox_id, "grant_allowance", AllowanceGrant(req.day, n)))

    @workflow.query
    def status(self) -> UserStatus:
        return UserStatus(
            user_id=self._inp.user_id,
            plan=self._plan.plan,
            daily_limit=self._plan.daily_limit,
            mailbox_ids=self._active_ids(),
            removed_ids=sorted(int(k) for k, c in self._s.mailboxes.items() if c.removed),
            paused=self._s.paused,
            pause_reason=self._s.pause_reason,
            granted={day: sum(g.values()) for day, g in self._s.grants.items()},
        )

    # --- internals -------------------------------------------------------------------------------

    async def _deliver(self, mailbox_id: int, name: str, arg: object) -> None:
        handle = workflow.get_external_workflow_handle(mailbox_workflow_id(mailbox_id))
        try:
            await handle.signal(name, arg) if arg is not None else await handle.signal(name)
        except FailureError as err:
            # The mailbox's workflow is gone (terminated, or removed meanwhile): stop counting it in
            # the plan's shares rather than failing every other mailbox of the user.
            child = self._s.mailboxes.get(str(mailbox_id))
            if child is not None:
                child.removed = True
            workflow.logger.warning("%s to mailbox %s failed (%s); marked removed", name, mailbox_id, err)

    async def _start_or_update(self, e: MailboxEnrollment) -> None:
        key = str(e.mailbox_id)
        self._s.mailboxes[key] = ChildMailbox(e.mailbox_id, e.schedule.ramp, e.schedule.ramp.start_volume)
        child_input = MailboxWorkflowInput(
            mailbox_id=e.mailbox_id,
            user_id=self._inp.user_id,
            schedule=e.schedule,
            retry=e.retry,
            fairness_weight=self._plan.weight,
            plan_parent_id=self._parent_id(),
            search_attributes=self._inp.search_attributes,
        )
        try:
            await workflow.start_child_workflow(
                MailboxWarmupWorkflow.run,
                child_input,
                id=mailbox_workflow_id(e.mailbox_id),
                # Abandon: the mailboxes outlive this run's continue-as-new, and keep sending if the
                # user workflow is ever restarted.
                parent_close_policy=ParentClosePolicy.ABANDON,
                # The SDK default (1 day) would bound a workflow meant to run for weeks.
                execution_timeout=None,
            )
        except WorkflowAlreadyStartedError:
            # Re-enrolled (or enrolled before this user workflow existed): update it in place.
            fields = dataclasses.asdict(e.schedule)
            fields["ramp"] = e.schedule.ramp
            update = SettingsUpdate(
                **fields, fairness_weight=self._plan.weight, plan_parent_id=self._parent_id() or ""
            )
            self._outbox.append((e.mailbox_id, "update_settings", update))
        if self._s.paused:
            self._outbox.append((e.mailbox_id, "pause", PauseRequest(self._s.pause_reason)))

    def _estimate(self, child: ChildMailbox, day: str) -> int:
        """A mailbox's quota today: what it asked for today, else yesterday's plus one ramp step."""
        if child.wanted_day == day or not child.wanted_day:
            return child.wanted
        return min(child.ramp.ceiling, child.wanted + child.ramp.daily_increment)

    def _parent_id(self) -> str | None:
        # Mailboxes ask for a daily allowance only while the plan limits the day: the round trip
        # costs history events an unlimited plan does not need.
        return workflow.info().workflow_id if self._plan.daily_limit is not None else None

    def _active_ids(self) -> list[int]:
        return sorted(int(k) for k, c in self._s.mailboxes.items() if not c.removed)

    def _time_to_continue_as_new(self) -> bool:
        limit = self._inp.continue_as_new_after_events
        if limit is not None and workflow.info().get_current_history_length() >= limit:
            return True
        return workflow.info().is_continue_as_new_suggested()
