"""The starter's Temporal operations: connect, enroll through the user's workflow, update, signal, query.

Every call names the workflow's handler by method reference. Where the caller must know the outcome
(enroll, a settings change, a plan) it is a Temporal Update, whose validator's refusal comes back
here as a StarterError before anything is stored; pause, resume and remove stay signals.

Each failure becomes a StarterError whose message says what went wrong and which setting to check;
no business logic lives here, only the calls the workflow's interface defines.
"""

from __future__ import annotations

import asyncio
import dataclasses
import datetime as dt
from collections.abc import Awaitable, Mapping
from dataclasses import dataclass
from datetime import timedelta
from typing import TypeVar
from urllib.parse import quote

import asyncpg
from google.protobuf.field_mask_pb2 import FieldMask
from temporalio.api.activity.v1 import ActivityOptions
from temporalio.api.common.v1 import Priority, WorkflowExecution
from temporalio.api.workflowservice.v1 import UpdateActivityOptionsRequest
from temporalio.client import (
    Client,
    WithStartWorkflowOperation,
    WorkflowFailureError,
    WorkflowHandle,
    WorkflowQueryFailedError,
    WorkflowQueryRejectedError,
    WorkflowUpdateFailedError,
    WorkflowUpdateRPCTimeoutOrCancelledError,
)
from temporalio.common import WorkflowIDConflictPolicy
from temporalio.exceptions import ApplicationError
from temporalio.service import RPCError, RPCStatusCode

from starter.enroll_request import EnrollRequest
from warmup import fleet, temporal_connection
from warmup import mailbox_settings as ms
from warmup.config import Settings
from warmup.db import Conn
from warmup.mailboxes import (
    MailboxRecord,
    NewMailbox,
    OAuthClient,
    get_mailbox_by_address,
    set_state,
    upsert_mailbox,
)
from warmup.models import (
    EnrollResult,
    MailboxEnrollment,
    MailboxEnrollments,
    MailboxState,
    MailboxStatus,
    PauseRequest,
    ScheduleSettings,
    SettingsUpdate,
    UserPlan,
    UserWorkflowInput,
)
from warmup.process_exit import EXIT_FAILURE
from warmup.workflow_ids import mailbox_workflow_id, user_workflow_id
from workflows.mailbox import MailboxWarmupWorkflow
from workflows.send_contract import SendEmail
from workflows.user import UserWarmupWorkflow

_CONNECT_TIMEOUT = timedelta(seconds=10)
_RPC_TIMEOUT = timedelta(seconds=15)
# An Update is answered by a worker: this long for one to run the validator and the handler.
_UPDATE_TIMEOUT = timedelta(seconds=15)
# A batch's Update answers once its mailboxes' workflows run, behind the other batches' first tasks; on
# a loaded server that took over 60 s for one batch of 2,000 in a 100,000-row import.
_BATCH_UPDATE_TIMEOUT = timedelta(seconds=120)
DEFAULT_UI_PORT = 8233

T = TypeVar("T")


class StarterError(Exception):
    """A failure to report on one line and exit with `exit_code`."""

    def __init__(self, message: str, exit_code: int = EXIT_FAILURE) -> None:
        super().__init__(message)
        self.exit_code = exit_code


def _one_line(text: str, limit: int = 300) -> str:
    flat = " ".join(text.split())
    return flat if len(flat) <= limit else flat[: limit - 3] + "..."


async def connect_temporal(settings: Settings) -> Client:
    """The shared connection (warmup/temporal_connection.py): TLS, API key and profiles as configured."""
    try:
        return await temporal_connection.connect(
            settings.temporal_connection(), connect_timeout=_CONNECT_TIMEOUT
        )
    except temporal_connection.TemporalConnectError as exc:
        raise StarterError(str(exc)) from None


def _rpc_failure(action: str, workflow_id: str, exc: RPCError, settings: Settings) -> StarterError:
    if exc.status is RPCStatusCode.NOT_FOUND and "namespace" in exc.message.lower():
        return StarterError(
            f"cannot {action} {workflow_id}: namespace {settings.TEMPORAL_NAMESPACE!r} does not exist; "
            "check TEMPORAL_NAMESPACE"
        )
    if exc.status is RPCStatusCode.NOT_FOUND:
        return StarterError(
            f"cannot {action} {workflow_id}: the workflow is not running ({_one_line(exc.message)}); "
            "run `starter enroll` for this mailbox again to restart it"
        )
    return StarterError(f"Temporal refused to {action} {workflow_id}: {_one_line(exc.message)}")


async def _rpc(action: str, workflow_id: str, settings: Settings, call: Awaitable[T]) -> T:
    """A signal or query: Temporal's refusal as a StarterError."""
    try:
        return await call
    except RPCError as exc:
        raise _rpc_failure(action, workflow_id, exc, settings) from None


async def _update(
    action: str,
    workflow_id: str,
    settings: Settings,
    call: Awaitable[T],
    limit: timedelta = _UPDATE_TIMEOUT,
) -> T:
    """An Update: the validator's refusal (or the handler's failure) and a missing worker as a
    StarterError, so the caller's database transaction rolls back."""
    try:
        async with asyncio.timeout(limit.total_seconds()):
            return await call
    except WorkflowUpdateFailedError as exc:
        cause = exc.cause
        reason = cause.message if isinstance(cause, ApplicationError) else str(cause)
        raise StarterError(f"{workflow_id} refused to {action}: {_one_line(reason)}") from None
    except (TimeoutError, WorkflowUpdateRPCTimeoutOrCancelledError):
        raise StarterError(
            f"no worker answered within {limit.total_seconds():g}s to {action} {workflow_id}; "
            f"check that a worker polls task queue {settings.TASK_QUEUE!r} (WARMUP_TASK_QUEUE). Nothing "
            "was stored; Temporal may still apply the change once a worker runs, so run the same "
            "command again then"
        ) from None
    except RPCError as exc:
        raise _rpc_failure(action, workflow_id, exc, settings) from None


def _user_handle(client: Client, user_id: str) -> WorkflowHandle[UserWarmupWorkflow, None]:
    return client.get_workflow_handle_for(UserWarmupWorkflow.run, user_workflow_id(user_id))


def _mailbox_handle(client: Client, mailbox_id: int) -> WorkflowHandle[MailboxWarmupWorkflow, None]:
    return client.get_workflow_handle_for(MailboxWarmupWorkflow.run, mailbox_workflow_id(mailbox_id))


async def user_plan(conn: Conn, user_id: str, settings: Settings) -> UserPlan:
    """The user's plan as stored, with its weight from WARMUP_PLAN_WEIGHTS."""
    row = await conn.fetchrow("SELECT plan, plan_daily_limit FROM users WHERE id = $1", user_id)
    plan = row["plan"] if row else "free"
    limit = row["plan_daily_limit"] if row else None
    return UserPlan(plan, limit, settings.plan_weight(plan))


async def start_or_update(
    client: Client, record: MailboxRecord, schedule: ScheduleSettings, plan: UserPlan, settings: Settings
) -> EnrollResult:
    """Enroll the mailbox with its user's workflow (update-with-start: the first enrollment starts
    that workflow). The user workflow is the one start path of a mailbox workflow: it starts it as
    its child with these settings, or gives the running one the new settings, once; a refusal
    (another user's mailbox, an unusable schedule) comes back as a StarterError."""
    user_id = user_workflow_id(record.user_id)
    start = WithStartWorkflowOperation(
        UserWarmupWorkflow.run,
        UserWorkflowInput(record.user_id, plan),
        id=user_id,
        task_queue=settings.TASK_QUEUE,
        id_conflict_policy=WorkflowIDConflictPolicy.USE_EXISTING,
    )
    enrollment = MailboxEnrollment(record.id, schedule, settings.send_retry(), record.user_id)
    return await _update(
        f"enroll mailbox {record.id} through",
        user_id,
        settings,
        client.execute_update_with_start_workflow(
            UserWarmupWorkflow.enroll_mailbox,
            enrollment,
            start_workflow_operation=start,
            rpc_timeout=_RPC_TIMEOUT,
        ),
    )


async def start_or_update_many(
    client: Client,
    user_id: str,
    batch: list[tuple[MailboxRecord, ScheduleSettings]],
    plan: UserPlan,
    settings: Settings,
) -> list[EnrollResult]:
    """`start_or_update` for many mailboxes of one user in one Update (`enroll_mailboxes`), whose
    workflow starts their mailbox workflows together; refused whole or done whole."""
    user_wf = user_workflow_id(user_id)
    start = WithStartWorkflowOperation(
        UserWarmupWorkflow.run,
        UserWorkflowInput(user_id, plan),
        id=user_wf,
        task_queue=settings.TASK_QUEUE,
        id_conflict_policy=WorkflowIDConflictPolicy.USE_EXISTING,
    )
    enrollments = MailboxEnrollments(
        [MailboxEnrollment(r.id, schedule, settings.send_retry(), r.user_id) for r, schedule in batch]
    )
    return await _update(
        f"enroll {len(batch)} mailboxes through",
        user_wf,
        settings,
        client.execute_update_with_start_workflow(
            UserWarmupWorkflow.enroll_mailboxes,
            enrollments,
            start_workflow_operation=start,
            rpc_timeout=_BATCH_UPDATE_TIMEOUT,
        ),
        _BATCH_UPDATE_TIMEOUT,
    )


async def store_plan(conn: Conn, user_id: str, plan: str, limit: int | None, settings: Settings) -> UserPlan:
    await conn.execute(
        "INSERT INTO users (id, plan, plan_daily_limit) VALUES ($1, $2, $3)"
        " ON CONFLICT (id) DO UPDATE SET plan = EXCLUDED.plan, plan_daily_limit = EXCLUDED.plan_daily_limit",
        user_id,
        plan,
        limit,
    )
    return UserPlan(plan, limit, settings.plan_weight(plan))


async def send_plan(client: Client, user_id: str, plan: UserPlan, settings: Settings) -> bool:
    """Give the user's running workflow its new plan (an Update: a refusal raises StarterError);
    False when it has none yet (no mailbox)."""
    handle = _user_handle(client, user_id)

    async def change() -> bool:
        try:
            await handle.execute_update(UserWarmupWorkflow.change_plan, plan, rpc_timeout=_RPC_TIMEOUT)
        except RPCError as exc:
            if exc.status is RPCStatusCode.NOT_FOUND and "namespace" not in exc.message.lower():
                return False
            raise
        return True

    return await _update("change the plan of", handle.id, settings, change())


async def reprioritize_sends(client: Client, user_id: str, mailbox_ids: list[int], weight: float) -> int:
    """Give the user's sends already waiting in the task queue the new plan's weight; how many changed.

    The server fixes a task's place in the fair queue when it writes it, from the weight it carries;
    the workflows take a new plan for the sends they schedule next, but one already queued (or waiting
    out a retry) would keep the old weight until it ran. Updating its options makes the server write it
    again with the new weight, so the plan applies to the next dispatch.
    """
    changed = 0
    for mailbox_id in mailbox_ids:
        request = UpdateActivityOptionsRequest(
            namespace=client.namespace,
            execution=WorkflowExecution(workflow_id=mailbox_workflow_id(mailbox_id)),
            identity="warmup-starter",
            type=SendEmail.send_email.__name__,
            activity_options=ActivityOptions(priority=Priority(fairness_key=user_id, fairness_weight=weight)),
            update_mask=FieldMask(paths=["priority"]),
        )
        try:
            await client.workflow_service.update_activity_options(request, timeout=_RPC_TIMEOUT)
        except RPCError as exc:
            # No send in flight (or the workflow ended): its next one is scheduled with the new weight.
            if exc.status in (RPCStatusCode.NOT_FOUND, RPCStatusCode.FAILED_PRECONDITION):
                continue
            # The plan is stored and the workflows have it; only the sends in flight keep the old weight.
            raise StarterError(
                f"the plan is changed, but the sends in flight of {mailbox_workflow_id(mailbox_id)} keep "
                f"the old weight until they run (UpdateActivityOptions: {exc.message}); run `starter plan` "
                "again to retry",
                EXIT_FAILURE,
            ) from None
        changed += 1
    return changed


async def pause(client: Client, mailbox_id: int, reason: str, settings: Settings) -> None:
    handle = _mailbox_handle(client, mailbox_id)
    signal = handle.signal(MailboxWarmupWorkflow.pause, PauseRequest(reason), rpc_timeout=_RPC_TIMEOUT)
    await _rpc("pause", handle.id, settings, signal)


async def resume(client: Client, mailbox_id: int, settings: Settings) -> None:
    handle = _mailbox_handle(client, mailbox_id)
    await _rpc(
        "resume", handle.id, settings, handle.signal(MailboxWarmupWorkflow.resume, rpc_timeout=_RPC_TIMEOUT)
    )


async def read_inbox(client: Client, mailbox_id: int, settings: Settings) -> str:
    """An inbox session now (the workflow's `read_inbox_now` Update); when it was asked for, ISO UTC."""
    handle = _mailbox_handle(client, mailbox_id)
    call = handle.execute_update(MailboxWarmupWorkflow.read_inbox_now, rpc_timeout=_RPC_TIMEOUT)
    return await _update("read its inbox", handle.id, settings, call)


async def status(client: Client, mailbox_id: int, settings: Settings) -> MailboxStatus:
    workflow_id = mailbox_workflow_id(mailbox_id)
    handle = _mailbox_handle(client, mailbox_id)
    try:
        st = await handle.query(MailboxWarmupWorkflow.status, rpc_timeout=_RPC_TIMEOUT)
        return await _with_last_attempt(handle, st) if st.sending_since else st
    except (WorkflowQueryFailedError, WorkflowQueryRejectedError) as exc:
        raise StarterError(f"the workflow {workflow_id} could not answer the status query: {exc}") from None
    except RPCError as exc:
        if exc.status in (RPCStatusCode.DEADLINE_EXCEEDED, RPCStatusCode.CANCELLED):
            raise StarterError(
                f"no worker answered the status query for {workflow_id} within "
                f"{_RPC_TIMEOUT.total_seconds():g}s; check that a worker polls task queue "
                f"{settings.TASK_QUEUE!r} (WARMUP_TASK_QUEUE)"
            ) from None
        raise _rpc_failure("query", workflow_id, exc, settings) from None


async def _with_last_attempt(
    handle: WorkflowHandle[MailboxWarmupWorkflow, None], st: MailboxStatus
) -> MailboxStatus:
    """The workflow knows only that its send is in flight; the server knows the attempts so far:
    add the last one's failure (a cap's CapDeferred, an SMTP error being retried) to `waiting_for`."""
    desc = await handle.describe(rpc_timeout=_RPC_TIMEOUT)
    for pending in desc.raw_description.pending_activities:
        if pending.activity_type.name != "send_email" or not pending.HasField("last_failure"):
            continue
        failure = pending.last_failure
        kind = failure.application_failure_info.type or "error"
        tried = max(pending.attempt - 1, 1)  # `attempt` is the number of the attempt to come
        more = f"; {tried} attempt(s) so far, the last failed with {kind}: {_one_line(failure.message, 200)}"
        if pending.HasField("next_attempt_schedule_time"):
            at = pending.next_attempt_schedule_time.ToDatetime().replace(microsecond=0)
            more += f"; next attempt {at.isoformat()}+00:00"
        return dataclasses.replace(st, waiting_for=st.waiting_for + more)
    return st


def web_ui_url(settings: Settings, workflow_id: str, ui_base: str | None = None) -> str:
    """Link to the workflow in the Temporal Web UI (the dev server's UI port unless `ui_base` is given)."""
    if not ui_base:
        host = settings.TEMPORAL_ADDRESS.rsplit(":", 1)[0] or "localhost"
        ui_base = f"http://{host}:{DEFAULT_UI_PORT}"
    namespace = quote(settings.TEMPORAL_NAMESPACE, safe="")
    return f"{ui_base.rstrip('/')}/namespaces/{namespace}/workflows/{quote(workflow_id, safe='')}"


async def update(client: Client, mailbox_id: int, update: SettingsUpdate, settings: Settings) -> None:
    """The new settings, as an Update: the workflow's validator refuses an unusable schedule."""
    handle = _mailbox_handle(client, mailbox_id)
    change = handle.execute_update(MailboxWarmupWorkflow.change_settings, update, rpc_timeout=_RPC_TIMEOUT)
    await _update("update", handle.id, settings, change)


async def remove(client: Client, mailbox_id: int, user_id: str, settings: Settings) -> bool:
    """Ask the workflow to finish; False when none was running (already removed, or never started).

    The user's workflow hears of it first, so the plan's daily share no longer counts this mailbox.
    """
    user = _user_handle(client, user_id)
    try:
        await user.signal(UserWarmupWorkflow.remove_mailbox, mailbox_id, rpc_timeout=_RPC_TIMEOUT)
    except RPCError:
        pass  # no user workflow (enrolled before there was one): the mailbox's own signal suffices
    workflow_id = mailbox_workflow_id(mailbox_id)
    handle = _mailbox_handle(client, mailbox_id)
    try:
        await handle.signal(MailboxWarmupWorkflow.remove, rpc_timeout=_RPC_TIMEOUT)
    except RPCError as exc:
        if exc.status is RPCStatusCode.NOT_FOUND and "namespace" not in exc.message.lower():
            return False
        raise _rpc_failure("remove", workflow_id, exc, settings) from None
    return True


async def wait_closed(client: Client, mailbox_id: int, seconds: float) -> bool:
    """True once the workflow (following continue-as-new) has closed, False if still open after `seconds`."""
    if seconds <= 0:
        return False
    handle = client.get_workflow_handle(mailbox_workflow_id(mailbox_id))
    try:
        async with asyncio.timeout(seconds):
            await handle.result()
    except TimeoutError:
        return False
    except WorkflowFailureError:
        pass  # failed or terminated: closed all the same
    except RPCError as exc:
        if exc.status is not RPCStatusCode.NOT_FOUND:
            raise StarterError(f"cannot follow {handle.id}: {_one_line(exc.message)}") from None
    return True


# --- a whole user -----------------------------------------------------------------------------------
# Today these go mailbox by mailbox (the database lists the user's mailboxes, each workflow gets the
# signal); they are the one place to route through a per-user workflow once there is one.


@dataclass(frozen=True)
class MailboxOutcome:
    mailbox_id: int
    address: str
    ok: bool
    detail: str  # what happened, or why it did not

    @property
    def workflow_id(self) -> str:
        return mailbox_workflow_id(self.mailbox_id)


async def _user_mailboxes(conn: Conn, user_id: str) -> list[fleet.MailboxRow]:
    rows = [
        m for m in await fleet.list_mailboxes(conn, user_id=user_id) if m.state is not MailboxState.REMOVED
    ]
    if not rows:
        raise StarterError(
            f"--user {user_id}: no enrolled mailboxes (removed ones do not count); "
            "`starter list` shows the users and their mailboxes"
        )
    return rows


async def pause_user(
    client: Client, conn: Conn, user_id: str, reason: str, settings: Settings
) -> list[MailboxOutcome]:
    """Pause the user through its workflow, which pauses every mailbox and keeps later enrollments
    paused too; the database follows once Temporal accepted the signal."""
    rows = await _user_mailboxes(conn, user_id)
    user = _user_handle(client, user_id)
    await _rpc(
        "pause",
        user.id,
        settings,
        user.signal(UserWarmupWorkflow.pause, PauseRequest(reason), rpc_timeout=_RPC_TIMEOUT),
    )
    for m in rows:
        await set_state(conn, m.id, MailboxState.PAUSED, reason)
    return [MailboxOutcome(m.id, m.address, True, "paused") for m in rows]


async def resume_user(client: Client, conn: Conn, user_id: str, settings: Settings) -> list[MailboxOutcome]:
    rows = await _user_mailboxes(conn, user_id)
    user = _user_handle(client, user_id)
    await _rpc("resume", user.id, settings, user.signal(UserWarmupWorkflow.resume, rpc_timeout=_RPC_TIMEOUT))
    for m in rows:
        await set_state(conn, m.id, MailboxState.ACTIVE, "")
    return [MailboxOutcome(m.id, m.address, True, "resumed") for m in rows]


# An enroll's transaction lasts at most its Update's timeout; a workflow its user workflow adopted this
# long ago whose row is not in the database belongs to an enroll that was killed before its commit.
ORPHAN_AFTER = timedelta(minutes=5)


async def retire_orphans(client: Client, conn: Conn, user_id: str, settings: Settings) -> list[int]:
    """Remove the mailbox workflows of `user_id` whose row never committed (an import killed between
    Temporal's answer and the commit): without it, they would wait paused for ever and count in the
    user's plan share. Returns their ids; none when the user has no workflow yet."""
    try:
        st = await _user_handle(client, user_id).query(UserWarmupWorkflow.status, rpc_timeout=_RPC_TIMEOUT)
    except (RPCError, WorkflowQueryFailedError, WorkflowQueryRejectedError):
        return []
    stored = {r["id"] for r in await conn.fetch("SELECT id FROM mailboxes WHERE user_id = $1", user_id)}
    orphans = []
    for mailbox_id in (i for i in st.mailbox_ids if i not in stored):
        try:
            desc = await _mailbox_handle(client, mailbox_id).describe(rpc_timeout=_RPC_TIMEOUT)
        except RPCError:
            continue
        # A younger one may be an enroll still in flight elsewhere (the API, another starter).
        if desc.start_time <= dt.datetime.now(dt.UTC) - ORPHAN_AFTER:
            await remove(client, mailbox_id, user_id, settings)
            orphans.append(mailbox_id)
    return orphans


async def user_status(client: Client, conn: Conn, user_id: str) -> list[fleet.MailboxDay]:
    """Today's status of each of the user's mailboxes (removed ones included, marked so)."""
    rows = await fleet.list_mailboxes(conn, user_id=user_id)
    if not rows:
        raise StarterError(f"--user {user_id}: no such user has mailboxes; `starter list` shows the users")
    return await fleet.mailbox_days(client, conn, rows, rpc_seconds=_RPC_TIMEOUT.total_seconds())


def _oauth_client(req: EnrollRequest, ciphertexts: Mapping[str, str]) -> OAuthClient | None:
    oauth = req.oauth
    if oauth is None:
        return None
    return dataclasses.replace(
        oauth,
        client_secret_ciphertext=ciphertexts.get(ms.OAUTH_CLIENT_SECRET.name),
        refresh_token_ciphertext=ciphertexts[ms.OAUTH_REFRESH_TOKEN.name],
    )


def new_mailbox(req: EnrollRequest, ciphertexts: Mapping[str, str]) -> NewMailbox:
    """The row an enroll stores: the request's settings and its secrets' ciphertexts."""
    return NewMailbox(
        user_id=req.user_id,
        address=req.address,
        smtp=req.smtp,
        secret_ciphertext=ciphertexts[ms.SMTP_SECRET.name],
        schedule=req.schedule,
        imap=req.imap,
        imap_secret_ciphertext=ciphertexts.get(ms.IMAP_SECRET.name),
        oauth=_oauth_client(req, ciphertexts),
    )


async def enroll(
    client: Client, conn: Conn, req: EnrollRequest, ciphertexts: Mapping[str, str], settings: Settings
) -> tuple[MailboxRecord, bool]:
    """Store the mailbox and start (or update) its workflow, all or nothing; True when it is new.

    The row commits only once Temporal has accepted the workflow (or the update).
    """
    try:
        async with conn.transaction():
            record, created = await _store(conn, req, ciphertexts, flags=True)
            plan = await user_plan(conn, req.user_id, settings)
            await start_or_update(client, record, req.schedule, plan, settings)
    except (asyncpg.PostgresError, asyncpg.InterfaceError, OSError) as exc:
        raise StarterError(
            f"database error while enrolling ({type(exc).__name__}: {exc}); run the same enroll again"
        ) from None
    return record, created


async def _store(
    conn: Conn, req: EnrollRequest, ciphertexts: Mapping[str, str], *, flags: bool
) -> tuple[MailboxRecord, bool]:
    """Upsert the request's row (inside the caller's transaction); True when it is new. `flags`: name
    the fields as the single enroll's flags."""
    existing = await get_mailbox_by_address(conn, req.address)
    try:
        record = await upsert_mailbox(conn, new_mailbox(req, ciphertexts))
    except PermissionError:
        mailbox, user = ("--mailbox", "--user") if flags else ("mailbox", "user")
        raise StarterError(
            f"{mailbox} {req.address} is already enrolled under another user, not {user} {req.user_id}; "
            "enroll it under its owner or remove it there first"
        ) from None
    return record, existing is None


async def enroll_many(
    client: Client,
    conn: Conn,
    reqs: list[EnrollRequest],
    ciphertexts: list[Mapping[str, str]],
    settings: Settings,
) -> list[tuple[MailboxRecord, bool]]:
    """`enroll` for many mailboxes of one user in one transaction and one Update: all are stored and
    started, or none (the rows commit only once Temporal has accepted them all)."""
    user_id = reqs[0].user_id
    assert all(r.user_id == user_id for r in reqs), "one user per batch"
    try:
        async with conn.transaction():
            stored = [
                await _store(conn, req, secrets, flags=False)
                for req, secrets in zip(reqs, ciphertexts, strict=True)
            ]
            plan = await user_plan(conn, user_id, settings)
            batch = [(record, req.schedule) for (record, _), req in zip(stored, reqs, strict=True)]
            await start_or_update_many(client, user_id, batch, plan, settings)
    except (asyncpg.PostgresError, asyncpg.InterfaceError, OSError) as exc:
        raise StarterError(
            f"database error while enrolling ({type(exc).__name__}: {exc}); run the same import again"
        ) from None
    return stored
