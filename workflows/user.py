"""UserWarmupWorkflow: one per user, the parent of that user's mailbox workflows.

Enrolling, removing, pausing and resuming go through it; it owns the user's plan and, when the
plan limits the daily total, answers each mailbox's morning request with a fair share of it.

It is the one place a mailbox workflow is started from: `starter enroll` sends the `enroll_mailbox`
Update (with start, so the first enrollment starts this workflow), whose validator refuses another
user's mailbox or an unusable schedule before anything is recorded; the handler starts the mailbox
workflow as a child with its settings, or gives a running one the new settings in one signal. The
`enroll` and `set_plan` signals stay for running histories and for clients without Updates.
"""

from __future__ import annotations

import asyncio
import dataclasses
from dataclasses import dataclass

from temporalio import workflow
from temporalio.exceptions import ApplicationError, FailureError, WorkflowAlreadyStartedError
from temporalio.workflow import ParentClosePolicy

with workflow.unsafe.imports_passed_through():
    from warmup import search_attributes as sa
    from warmup.errors import ERR_REFUSED
    from warmup.mailbox_settings import schedule_problems, settings_update
    from warmup.models import (
        AllowanceGrant,
        AllowanceRequest,
        ChildMailbox,
        EnrollResult,
        MailboxEnrollment,
        MailboxEnrollments,
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
    from workflows.mailbox import MailboxWarmupWorkflow

_KEEP_GRANT_DAYS = 3
# The enrollments waiting in one workflow task start their mailbox workflows together (one task for
# them all, instead of one task per mailbox): a bulk import's batch of a user's mailboxes.
PARALLEL_ENROLL_PATCH = "parallel-enroll"


@dataclass(frozen=True)
class Resume:
    """The `resume` signal to a mailbox (it has no argument)."""


@dataclass(frozen=True)
class Remove:
    """The `remove` signal to a mailbox (it has no argument)."""


# What a mailbox is told, one type per mailbox signal: pause, update_settings, grant_allowance,
# resume, remove.
MailboxMessage = PauseRequest | SettingsUpdate | AllowanceGrant | Resume | Remove


@dataclass(frozen=True)
class MailboxCommand:
    """A signal the main loop owes a mailbox workflow (handlers only queue these)."""

    mailbox_id: int
    message: MailboxMessage


@dataclass
class _Enrolling:
    """An enrollment waiting for the main loop; `result` is set once it is done."""

    enrollment: MailboxEnrollment
    result: EnrollResult | None = None


@workflow.defn
class UserWarmupWorkflow:
    @workflow.init
    def __init__(self, inp: UserWorkflowInput) -> None:
        self._inp = inp
        self._plan = inp.plan
        self._s = inp.state or UserWorkflowState()
        # Signal handlers only record what to do; the main loop does the I/O, in arrival order.
        self._enrollments: list[_Enrolling] = []
        self._outbox: list[MailboxCommand] = []

    @workflow.run
    async def run(self, inp: UserWorkflowInput) -> None:
        if inp.search_attributes:
            workflow.upsert_search_attributes([sa.USER_ID.value_set(inp.user_id)])
        while True:
            await workflow.wait_condition(
                lambda: bool(self._enrollments or self._outbox) or self._time_to_continue_as_new()
            )
            done: list[tuple[_Enrolling, EnrollResult]] = []
            if self._enrollments and workflow.patched(PARALLEL_ENROLL_PATCH):
                jobs, self._enrollments = self._enrollments, []
                results = await asyncio.gather(*(self._start_or_update(j.enrollment) for j in jobs))
                done += zip(jobs, results, strict=True)
            while self._enrollments:
                job = self._enrollments.pop(0)
                done.append((job, await self._start_or_update(job.enrollment)))
            while self._outbox:
                await self._deliver(self._outbox.pop(0))
            for job, result in done:
                job.result = result  # answered once its settings and pause signals went out too
            if self._time_to_continue_as_new() and not (self._enrollments or self._outbox):
                await workflow.wait_condition(workflow.all_handlers_finished)
                self._s.runs += 1
                workflow.continue_as_new(dataclasses.replace(self._inp, plan=self._plan, state=self._s))

    # --- updates and signals ----------------------------------------------------------------------

    @workflow.update
    async def enroll_mailbox(self, enrollment: MailboxEnrollment) -> EnrollResult:
        """Adopt the mailbox: start its workflow, or update the running one; answered once done."""
        job = _Enrolling(enrollment)
        self._enrollments.append(job)
        await workflow.wait_condition(lambda: job.result is not None)
        assert job.result is not None
        return job.result

    @enroll_mailbox.validator
    def _check_enrollment(self, enrollment: MailboxEnrollment) -> None:
        problems = self._tenancy_problems(enrollment) or schedule_problems(enrollment.schedule)
        if problems:
            raise ApplicationError("; ".join(problems), type=ERR_REFUSED, non_retryable=True)

    @workflow.update
    async def enroll_mailboxes(self, batch: MailboxEnrollments) -> list[EnrollResult]:
        """A bulk import's mailboxes of this user, adopted together; answered once all are done."""
        jobs = [_Enrolling(e) for e in batch.enrollments]
        self._enrollments += jobs
        await workflow.wait_condition(lambda: all(job.result is not None for job in jobs))
        return [job.result for job in jobs if job.result is not None]

    @enroll_mailboxes.validator
    def _check_enrollments(self, batch: MailboxEnrollments) -> None:
        # All or none: the caller stores the batch's rows in one transaction.
        problems = [
            f"mailbox {e.mailbox_id}: {p}"
            for e in batch.enrollments
            for p in self._tenancy_problems(e) or schedule_problems(e.schedule)
        ]
        if not batch.enrollments:
            problems.append("no mailbox to enroll")
        if problems:
            raise ApplicationError("; ".join(problems), type=ERR_REFUSED, non_retryable=True)

    @workflow.signal
    def enroll(self, enrollment: MailboxEnrollment) -> None:
        # The signal cannot answer: a refusal is only logged (the enroll_mailbox Update reports it).
        # Tenancy only, as when histories that carry this signal were recorded.
        problems = self._tenancy_problems(enrollment)
        if problems:
            workflow.logger.warning("enroll of mailbox %s refused: %s", enrollment.mailbox_id, problems)
            return
        self._enrollments.append(_Enrolling(enrollment))

    @workflow.signal
    def remove_mailbox(self, mailbox_id: int) -> None:
        child = self._s.mailboxes.get(str(mailbox_id))
        if child is None:
            # Only mailboxes this workflow adopted are its to remove (another user's are not).
            workflow.logger.warning("remove of mailbox %s ignored: not a mailbox of this user", mailbox_id)
            return
        if not child.removed:
            child.removed = True
            self._outbox.append(MailboxCommand(mailbox_id, Remove()))

    @workflow.signal
    def pause(self, req: PauseRequest | None = None) -> None:
        reason = (req or PauseRequest()).reason
        self._s.paused, self._s.pause_reason = True, reason
        for mailbox_id in self._active_ids():
            self._outbox.append(MailboxCommand(mailbox_id, PauseRequest(reason)))

    @workflow.signal
    def resume(self) -> None:
        self._s.paused, self._s.pause_reason = False, ""
        for mailbox_id in self._active_ids():
            self._outbox.append(MailboxCommand(mailbox_id, Resume()))

    @workflow.update
    def change_plan(self, plan: UserPlan) -> None:
        """`starter plan`: the new plan, refused by the validator if it is not one."""
        self._apply_plan(plan)

    @change_plan.validator
    def _check_plan(self, plan: UserPlan) -> None:
        problems = []
        if not plan.plan:
            problems.append("plan must be named (a plan of WARMUP_PLAN_WEIGHTS)")
        if plan.daily_limit is not None and plan.daily_limit < 0:
            problems.append(f"daily_limit must be 0 or more (or None: no limit), got {plan.daily_limit}")
        if not plan.weight > 0:
            problems.append(f"weight must be above 0, got {plan.weight}")
        if problems:
            raise ApplicationError("; ".join(problems), type=ERR_REFUSED, non_retryable=True)

    @workflow.signal
    def set_plan(self, plan: UserPlan) -> None:
        self._apply_plan(plan)

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
        self._outbox.append(MailboxCommand(req.mailbox_id, AllowanceGrant(req.day, n)))

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

    def _tenancy_problems(self, e: MailboxEnrollment) -> list[str]:
        # Adopting another user's mailbox would give this user pause, remove and settings over it.
        # "" (histories recorded before the field existed) is this workflow's own user.
        if e.user_id and e.user_id != self._inp.user_id:
            return [f"mailbox {e.mailbox_id} belongs to another user: enroll it through its owner's workflow"]
        return []

    def _apply_plan(self, plan: UserPlan) -> None:
        old, self._plan = self._plan, plan
        if plan.weight != old.weight or (plan.daily_limit is None) != (old.daily_limit is None):
            update = SettingsUpdate(fairness_weight=plan.weight, plan_parent_id=self._parent_id() or "")
            for mailbox_id in self._active_ids():
                self._outbox.append(MailboxCommand(mailbox_id, update))

    async def _deliver(self, cmd: MailboxCommand) -> None:
        mailbox_id, m = cmd.mailbox_id, cmd.message
        handle = workflow.get_external_workflow_handle_for(
            MailboxWarmupWorkflow.run, mailbox_workflow_id(mailbox_id)
        )
        W = MailboxWarmupWorkflow
        try:
            match m:
                case PauseRequest():
                    await handle.signal(W.pause, m)
                case SettingsUpdate():
                    await handle.signal(W.update_settings, m)
                case AllowanceGrant():
                    await handle.signal(W.grant_allowance, m)
                case Resume():
                    await handle.signal(W.resume)
                case Remove():
                    await handle.signal(W.remove)
        except FailureError as err:
            # The mailbox's workflow is gone (terminated, or removed meanwhile): stop counting it in
            # the plan's shares rather than failing every other mailbox of the user.
            child = self._s.mailboxes.get(str(mailbox_id))
            if child is not None:
                child.removed = True
            workflow.logger.warning(
                "%s to mailbox %s failed (%s); marked removed", type(m).__name__, mailbox_id, err
            )

    async def _start_or_update(self, e: MailboxEnrollment) -> EnrollResult:
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
        started = True
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
            # Re-enrolled (or started before this user workflow existed): update it in place.
            started = False
            update = dataclasses.replace(
                settings_update(e.schedule),
                fairness_weight=self._plan.weight,
                plan_parent_id=self._parent_id() or "",
            )
            self._outbox.append(MailboxCommand(e.mailbox_id, update))
        if self._s.paused:
            self._outbox.append(MailboxCommand(e.mailbox_id, PauseRequest(self._s.pause_reason)))
        return EnrollResult(e.mailbox_id, started)

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
