"""MailboxWarmupWorkflow: one long-lived workflow per mailbox.

The story of a day: at the window's opening, take the ramp's quota for today, plan the sends over
the window, sleep on durable timers until each planned time, send, repeat; when the day is done,
sleep until tomorrow's window. A few times a day, at random points of the window, an inbox session
reads the mail the mailbox received (issue #11); it runs beside the sends, on a task queue of its own.
Pause, resume and removal arrive as signals (fire and forget, also
from the Temporal CLI); a settings change from `starter update` is an Update whose validator refuses
an invalid schedule before it enters history (the `update_settings` signal stays for the user
workflow, which cannot send Updates, and for running histories). Signals and updates wake the
sleep; all state travels across continue-as-new.
"""

from __future__ import annotations

import asyncio
import dataclasses
from datetime import UTC, datetime, timedelta

from temporalio import workflow
from temporalio.common import RetryPolicy
from temporalio.exceptions import ActivityError, ApplicationError, FailureError

with workflow.unsafe.imports_passed_through():
    # Passed through: pure modules (zoneinfo must be the real one, not the sandbox proxy).
    from warmup import search_attributes as sa
    from warmup.day_schedule import DaySchedule
    from warmup.errors import (
        ERR_DAILY_LIMIT,
        ERR_IMAP_AUTH,
        ERR_REFUSED,
        ERR_UNKNOWN_OUTCOME,
        PAUSING_ERRORS,
    )
    from warmup.mailbox_settings import schedule_problems
    from warmup.models import (
        AllowanceGrant,
        AllowanceRequest,
        InboxSessionRequest,
        MailboxStatus,
        MailboxWorkflowInput,
        MailboxWorkflowState,
        PauseRequest,
        PlacementCheckRequest,
        ScheduleSettings,
        SendRequest,
        SettingsUpdate,
    )
    from warmup.ramp_reaction import Reaction
    from warmup.workflow_ids import inbox_task_queue
    from workflows.engagement_contract import InboxSession
    from workflows.send_contract import USER_CAP_WAIT_SECONDS, SendEmail, send_activity_options

# Inbox sessions exist only in runs that started on code that has them: the patch is asked once, at a
# run's first task, so a run recorded before them replays without them (docs/versioning.md).
INBOX_SESSIONS_PATCH = "inbox-sessions"
# The ramp reacts to placement (issue #15) in runs that started on code that has it, the same way.
REACTIVE_RAMP_PATCH = "reactive-ramp"
# A run holds one local day (issue #13): runs that started before it continue as new when suggested.
DAY_PER_RUN_PATCH = "one-day-per-run"
# Sends held by their user's own cap wait inside the attempt (a longer start-to-close), in runs that
# started on code that has it, the same way.
CAP_WAIT_PATCH = "user-cap-wait-in-attempt"


@workflow.defn
class MailboxWarmupWorkflow:
    @workflow.init
    def __init__(self, inp: MailboxWorkflowInput) -> None:
        self._inp = inp
        self._s = inp.state or MailboxWorkflowState()
        self._day = DaySchedule(inp.mailbox_id, inp.schedule, self._s)
        self._wake = False  # set by signals to cut a sleep short
        self._removed = False
        self._published_status = ""
        # What the loop is waiting on right now, for the status query (never carried over: the
        # loop continues as new only between sends).
        self._in_flight: SendRequest | None = None
        self._asked_at: float | None = None
        self._sessions_on = False
        self._session: asyncio.Task[None] | None = None  # the inbox session in flight, if any
        self._reacts = False
        self._day_per_run = False
        self._check: asyncio.Task[None] | None = None  # today's placement check in flight, if any
        self._cap_wait = 0.0

    @workflow.run
    async def run(self, inp: MailboxWorkflowInput) -> None:
        self._sessions_on = workflow.patched(INBOX_SESSIONS_PATCH)
        self._reacts = workflow.patched(REACTIVE_RAMP_PATCH)
        self._day_per_run = inp.one_day_per_run and workflow.patched(DAY_PER_RUN_PATCH)
        self._cap_wait = USER_CAP_WAIT_SECONDS if workflow.patched(CAP_WAIT_PATCH) else 0.0
        if inp.search_attributes:
            workflow.upsert_search_attributes(
                [sa.USER_ID.value_set(inp.user_id), sa.MAILBOX_ID.value_set(str(inp.mailbox_id))]
            )
        sends_this_run = 0
        while not self._removed:
            if self._time_to_continue_as_new(sends_this_run):
                await self._background_finished()
                await workflow.wait_condition(workflow.all_handlers_finished)
                workflow.continue_as_new(self._next_run_input())
            if self._s.paused:
                self._publish()
                await workflow.wait_condition(lambda: not self._s.paused or self._removed)
                continue
            now = self._now()
            if self._day.start_day_if_new(now) and self._engages():
                self._day.schedule_sessions(now)
                # Mailboxes that read their mail are the engaged pool; their ramp follows placement.
                if self._reacts and self._check is None:
                    self._check = asyncio.create_task(self._placement_check())
            if self._day.respread_needed:
                self._day.respread(now)
            self._publish()
            due = self._day.next_send_at()
            session = self._day.next_session_at() if self._session is None else None
            if session is not None and session <= now:
                self._session = asyncio.create_task(self._inbox_session(self._day.take_session()))
            elif due is None or due > now:
                wake = self._day.next_wake(now)
                await self._sleep_until(wake if session is None else min(wake, session))
            elif self._inp.plan_parent_id and self._s.today.allowance is None:
                # Asked at the first due send, not at midnight: by then the user's other mailboxes
                # are known to the parent, so the shares are fair.
                await self._ask_for_allowance(self._inp.plan_parent_id)
            else:
                await self._send()
                sends_this_run += 1
        await self._background_finished()
        await workflow.wait_condition(workflow.all_handlers_finished)
        self._set_status(sa.REMOVED)
        workflow.set_current_details(f"removed after {self._s.sent_total} warmup emails")

    # --- signals and query -------------------------------------------------------------------

    @workflow.signal
    def pause(self, req: PauseRequest | None = None) -> None:
        # No payload is fine: `temporal workflow signal --name pause` sends none.
        self._s.paused, self._s.pause_reason = True, (req or PauseRequest()).reason
        self._poke()

    @workflow.signal
    def resume(self) -> None:
        if self._s.paused:
            self._s.paused, self._s.pause_reason = False, ""
            self._day.respread_needed = True  # slots that passed while paused are re-spread
            self._engage_again()
        self._poke()

    @workflow.signal
    def remove(self) -> None:
        """Stop warming this mailbox: the workflow completes; the ledger keeps its history."""
        self._removed = True
        self._poke()

    @workflow.signal
    def update_settings(self, update: SettingsUpdate) -> None:
        # From the user workflow (a workflow can only signal another) and in recorded histories.
        self._apply(update)

    @workflow.update
    def change_settings(self, update: SettingsUpdate) -> ScheduleSettings:
        """`starter update`: the same change as the signal, answered with the schedule now in force."""
        self._apply(update)
        return self._day.settings

    @change_settings.validator
    def _check_settings(self, update: SettingsUpdate) -> None:
        problems = schedule_problems(_merged(self._day.settings, update))
        if update.fairness_weight is not None and not update.fairness_weight > 0:
            problems.append(f"fairness_weight must be above 0, got {update.fairness_weight}")
        if problems:
            raise ApplicationError("; ".join(problems), type=ERR_REFUSED, non_retryable=True)

    @workflow.update
    def read_inbox_now(self) -> str:
        """`starter read-inbox`: an inbox session now, beside the day's own, as a person who checks their
        mail once more (after fixing a mailbox, to see placement now, in the `make dev` demo). It starts
        once the loop wakes, after a session in flight; the answer is when it was asked for."""
        now = self._now()
        self._day.add_session(now)
        self._poke()
        return _iso(now)

    @read_inbox_now.validator
    def _check_read_inbox(self) -> None:
        why = ""
        if not self._sessions_on:
            why = "this workflow run started on code without inbox sessions; its next run has them"
        elif self._s.paused:
            why = f"the mailbox is paused ({self._s.pause_reason}); resume it first"
        elif not self._s.today.day:
            why = "the mailbox has not started its first day yet; try again in a moment"
        elif (off := self._s.engagement_off or self._s.today.engagement_note) or not self._engages():
            why = f"engagement is off: {off or 'no IMAP settings; `starter update` it with --imap-host'}"
        if why:
            raise ApplicationError(why, type=ERR_REFUSED, non_retryable=True)

    @workflow.signal
    def grant_allowance(self, grant: AllowanceGrant) -> None:
        if grant.day == self._s.today.day:
            self._day.limit_quota(grant.allowance)
        self._poke()

    @workflow.query
    def status(self) -> MailboxStatus:
        t = self._s.today
        due = self._day.next_send_at()
        session = self._day.next_session_at()
        sending = self._in_flight
        return MailboxStatus(
            mailbox_id=self._inp.mailbox_id,
            user_id=self._inp.user_id,
            day=t.day,
            sent_today=t.sent,
            quota_today=t.quota,
            failed_today=t.failed,
            unknown_today=t.unknown,
            next_send_at=None if due is None or self._s.paused else _iso(due),
            ramp_day=self._s.ramp_day,
            paused=self._s.paused,
            pause_reason=self._s.pause_reason,
            last_error=self._s.last_error,
            sent_total=self._s.sent_total,
            capped_reason=t.capped_reason,
            timezone=self._day.settings.timezone,
            binding_cap=t.binding_cap,
            weekdays_only=self._day.settings.weekdays_only,
            waiting_for=self._waiting_for(),
            sending_since=None if sending is None else _iso(sending.dispatched_at),
            next_session_at=None if session is None or self._s.paused else _iso(session),
            engagement_off=self._s.engagement_off or t.engagement_note,
            engagement=self._s.engagement,
            ramp_note=t.ramp_note,
        )

    def _waiting_for(self) -> str:
        if self._s.paused:
            return "a resume (paused)"
        if self._in_flight is not None:
            req = self._in_flight
            return (
                f"send {req.slot + 1} of today (planned {_iso(req.planned_at)}) in flight since "
                f"{_iso(req.dispatched_at)}: its attempts wait for a free cap or retry an error"
            )
        if self._asked_at is not None:
            return f"the plan's allowance from {self._inp.plan_parent_id} (asked {_iso(self._asked_at)})"
        return ""

    # --- one send -------------------------------------------------------------------------------

    async def _send(self) -> None:
        now = self._now()
        req = self._day.take_slot(now)
        self._in_flight = req
        try:
            result = await workflow.execute_activity_method(
                SendEmail.send_email,
                req,
                **send_activity_options(
                    self._inp.retry,
                    window_left=max(req.not_after - now, 0),
                    cap_wait=self._cap_wait,
                    user_id=self._inp.user_id,
                    weight=self._inp.fairness_weight,
                ),
            )
            self._day.record_sent(self._now(), result.binding_cap)
        except ActivityError as err:
            self._record_failure(err)
        finally:
            self._in_flight = None

    def _record_failure(self, err: ActivityError) -> None:
        cause = err.cause
        kind = cause.type if isinstance(cause, ApplicationError) else None
        message = cause.message if isinstance(cause, ApplicationError) else str(cause or err)
        error = f"{kind or type(cause).__name__}: {message}"
        self._day.record_failed(self._now(), error, unknown=kind == ERR_UNKNOWN_OUTCOME)
        if kind == ERR_DAILY_LIMIT and isinstance(cause, ApplicationError):
            # Only raised by code that has this rule, so no recorded history takes this branch.
            self._day.stop_today(str(cause.details[0]) if cause.details else message)
            workflow.logger.warning("mailbox %s: no more sends today: %s", self._inp.mailbox_id, message)
        elif kind in PAUSING_ERRORS:
            self._s.paused, self._s.pause_reason = True, message
            workflow.logger.warning("mailbox %s paused: %s", self._inp.mailbox_id, message)

    # --- the ramp's reaction to placement (issue #15) ----------------------------------------------

    async def _placement_check(self) -> None:
        """Today's placement, read beside the sends; once it is back the ramp reacts: climb, hold, step
        down (fewer sends, wider spacing) or pause, re-spreading the rest of today."""
        day = self._s.today.day
        try:
            report = await workflow.execute_activity_method(
                InboxSession.placement_check,
                PlacementCheckRequest(self._inp.mailbox_id, day),
                task_queue=inbox_task_queue(workflow.info().task_queue),
                start_to_close_timeout=timedelta(seconds=30),
                # No inbox worker, or PostgreSQL down for long: today ramps as configured.
                schedule_to_close_timeout=timedelta(minutes=10),
                retry_policy=RetryPolicy(
                    initial_interval=timedelta(seconds=5), maximum_interval=timedelta(minutes=1)
                ),
            )
        except ActivityError as err:
            workflow.logger.warning(
                "mailbox %s: no placement check on %s (%s); ramping as configured",
                self._inp.mailbox_id,
                day,
                err,
            )
            return
        finally:
            self._check = None
        if self._s.today.day != day:
            return  # a new day began meanwhile: its own check decides
        decision = self._day.apply_placement(report)
        if decision.reaction is Reaction.PAUSE and not self._s.paused:
            self._s.paused, self._s.pause_reason = True, decision.reason
            workflow.logger.warning("mailbox %s paused: %s", self._inp.mailbox_id, decision.reason)
        self._poke()

    # --- inbox sessions ---------------------------------------------------------------------------

    async def _inbox_session(self, req: InboxSessionRequest) -> None:
        """One IMAP session, beside the sends: finds, rescues, flags what the mailbox received and
        decides the answers (sent later from its send slots)."""
        t = self._s.today
        try:
            report = await workflow.execute_activity_method(
                InboxSession.inbox_session,
                req,
                task_queue=inbox_task_queue(workflow.info().task_queue),
                # A session acts on each email after a human's dwell, heartbeating throughout.
                start_to_close_timeout=timedelta(minutes=30),
                heartbeat_timeout=timedelta(minutes=2),
                # No inbox worker, or a server down for long: give this session up, the next one tries.
                schedule_to_close_timeout=timedelta(hours=2),
                retry_policy=RetryPolicy(
                    initial_interval=timedelta(seconds=30),
                    backoff_coefficient=2.0,
                    maximum_interval=timedelta(minutes=10),
                ),
            )
        except ActivityError as err:
            cause = err.cause
            if isinstance(cause, ApplicationError) and cause.type == ERR_IMAP_AUTH:
                self._s.engagement_off, t.sessions = cause.message, []
            workflow.logger.warning(
                "mailbox %s: inbox session %s failed: %s", req.mailbox_id, req.session, cause
            )
            return
        finally:
            self._session = None
            self._poke()
        if report.off:
            t.engagement_note, t.sessions = report.off, []
        else:
            self._s.engagement.add(report.found)
            self._s.engagement.sessions += 1

    async def _background_finished(self) -> None:
        """The inbox session and the placement check in flight, if any, done (before continue-as-new
        or the end: their results belong to this run)."""
        for task in (self._session, self._check):
            if task is not None:
                await task

    def _engage_again(self) -> None:
        """After a settings change or a resume: a login refused earlier is tried again, and the rest of
        today's sessions follow the (new) settings."""
        if not (self._sessions_on and self._s.today.day):
            return
        self._s.engagement_off = self._s.today.engagement_note = ""
        if self._engages():
            self._day.schedule_sessions(self._now())
        else:
            self._s.today.sessions = []  # IMAP settings taken away

    def _engages(self) -> bool:
        """Inbox sessions run in runs that have them, for a mailbox with IMAP settings whose login
        was not refused."""
        return self._sessions_on and self._day.settings.engagement.enabled and not self._s.engagement_off

    # --- plumbing -------------------------------------------------------------------------------

    async def _ask_for_allowance(self, parent_id: str) -> None:
        """The user's plan caps the day across all its mailboxes: ask the parent for today's share."""
        with workflow.unsafe.imports_passed_through():
            # Here, not at the top: workflows.user imports this module.
            from workflows.user import UserWarmupWorkflow

        t = self._s.today
        parent = workflow.get_external_workflow_handle_for(UserWarmupWorkflow.run, parent_id)
        self._asked_at = self._now()
        try:
            await parent.signal(
                UserWarmupWorkflow.request_allowance, AllowanceRequest(self._inp.mailbox_id, t.day, t.quota)
            )
            self._publish()
            await workflow.wait_condition(lambda: t.allowance is not None, timeout=timedelta(hours=1))
        except (FailureError, TimeoutError) as err:
            # A user workflow that is gone or silent must not stop warmup: today goes by the ramp
            # alone (asked again tomorrow), and the ledger still shows the user's total per day.
            workflow.logger.warning(
                "mailbox %s: no plan allowance from %s (%s); using the ramp quota today",
                self._inp.mailbox_id,
                parent_id,
                err,
            )
            self._day.limit_quota(t.quota)
        finally:
            self._asked_at = None

    def _apply(self, update: SettingsUpdate) -> None:
        if update.fairness_weight is not None:
            self._inp = dataclasses.replace(self._inp, fairness_weight=update.fairness_weight)
        if update.plan_parent_id is not None:
            self._inp = dataclasses.replace(self._inp, plan_parent_id=update.plan_parent_id or None)
        self._day.settings = _merged(self._day.settings, update)
        self._day.respread_needed = True
        self._engage_again()
        self._poke()

    def _set_status(self, status: str) -> None:
        if self._inp.search_attributes and status != self._published_status:
            workflow.upsert_search_attributes([sa.WARMUP_STATUS.value_set(status)])
            self._published_status = status

    async def _sleep_until(self, when: float) -> None:
        """Durable timer to `when`, cut short by any signal."""
        self._wake = False
        delay = max(0.0, when - self._now())
        try:
            await workflow.wait_condition(lambda: self._wake, timeout=timedelta(seconds=delay))
        except TimeoutError:
            pass

    def _poke(self) -> None:
        self._wake = True

    def _now(self) -> float:
        return workflow.now().timestamp()

    def _time_to_continue_as_new(self, sends_this_run: int) -> bool:
        limit = self._inp.continue_as_new_after_sends
        if limit is not None and sends_this_run >= limit:
            return True
        # A new local day after one that sent: the next run starts it, so a replay holds one day.
        if self._day_per_run and sends_this_run > 0 and self._day.is_new_day(self._now()):
            return True
        return workflow.info().is_continue_as_new_suggested()

    def _next_run_input(self) -> MailboxWorkflowInput:
        self._s.runs += 1
        return dataclasses.replace(self._inp, schedule=self._day.settings, state=self._s)

    def _publish(self) -> None:
        """One line for the Web UI's 'current details'."""
        t, s = self._s.today, self._s
        due = self._day.next_send_at()
        if s.paused:
            line = f"paused: {s.pause_reason}"
        else:
            nxt = f"next send {_iso(due)}" if due is not None else "done for today"
            line = f"sent {t.sent}/{t.quota} on {t.day}; {nxt}"
        self._set_status(sa.PAUSED if s.paused else sa.SENDING if due is not None else sa.IDLE)
        line += f"; ramp day {s.ramp_day}"
        if t.ramp_note:
            line += f" ({t.ramp_note})"
        if t.capped_reason:
            line += f"; {t.capped_reason}"
        if t.binding_cap:
            line += f"; held back by {t.binding_cap}"
        if s.last_error:
            line += f"; last error {s.last_error}"
        workflow.set_current_details(line)


def _merged(current: ScheduleSettings, update: SettingsUpdate) -> ScheduleSettings:
    """`current` with the schedule fields `update` gives (None: keep)."""
    changes = {
        f.name: getattr(update, f.name)
        for f in dataclasses.fields(ScheduleSettings)
        if getattr(update, f.name, None) is not None
    }
    return dataclasses.replace(current, **changes)


def _iso(epoch: float) -> str:
    return datetime.fromtimestamp(epoch, UTC).isoformat(timespec="seconds")
