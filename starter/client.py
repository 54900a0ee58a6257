"""The starter's Temporal operations: connect, start-or-update a mailbox workflow, signal, query.

Each failure becomes a StarterError whose message says what went wrong and which setting to check;
no business logic lives here, only the calls the workflow's interface defines.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from datetime import timedelta
from urllib.parse import quote

import asyncpg
from temporalio.client import (
    Client,
    WorkflowFailureError,
    WorkflowHandle,
    WorkflowQueryFailedError,
    WorkflowQueryRejectedError,
)
from temporalio.service import RPCError, RPCStatusCode

from starter.enroll_request import EnrollRequest
from warmup import fleet, temporal_connection
from warmup.config import Settings
from warmup.db import Conn
from warmup.mailboxes import MailboxRecord, get_mailbox_by_address, set_state, upsert_mailbox, workflow_id_for
from warmup.models import (
    MailboxEnrollment,
    MailboxState,
    MailboxStatus,
    MailboxWorkflowInput,
    PauseRequest,
    ScheduleSettings,
    SettingsUpdate,
    UserPlan,
    UserWorkflowInput,
)
from warmup.process_exit import EXIT_FAILURE as EXIT_FAILURE  # re-exported until callers import it
from warmup.process_exit import EXIT_USAGE as EXIT_USAGE  # from warmup.process_exit, its home
from warmup.workflow_ids import user_workflow_id
from workflows.mailbox import MailboxWarmupWorkflow
from workflows.user import UserWarmupWorkflow

_CONNECT_TIMEOUT = timedelta(seconds=10)
_RPC_TIMEOUT = timedelta(seconds=15)
DEFAULT_UI_PORT = 8233


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


async def user_plan(conn: Conn, user_id: str, settings: Settings) -> UserPlan:
    """The user's plan as stored, with its weight from WARMUP_PLAN_WEIGHTS."""
    row = await conn.fetchrow("SELECT plan, plan_daily_limit FROM users WHERE id = $1", user_id)
    plan = row["plan"] if row else "free"
    limit = row["plan_daily_limit"] if row else None
    return UserPlan(plan, limit, settings.plan_weight(plan))


async def start_or_update(
    client: Client,
    record: MailboxRecord,
    schedule: ScheduleSettings,
    update: SettingsUpdate,
    plan: UserPlan,
    settings: Settings,
) -> WorkflowHandle[MailboxWarmupWorkflow, None]:
    """Start the mailbox's workflow (or update the running one: signal-with-start, so enrolling
    twice never makes a second workflow), then enroll it with its user's workflow, which adopts
    it: the plan's daily share, user-wide pause and removal go through there."""
    workflow_id = workflow_id_for(record.id)
    try:
        handle = await client.start_workflow(
            MailboxWarmupWorkflow.run,
            MailboxWorkflowInput(
                record.id, record.user_id, schedule, settings.send_retry(), fairness_weight=plan.weight
            ),
            id=workflow_id,
            task_queue=settings.TASK_QUEUE,
            start_signal="update_settings",
            start_signal_args=[update],
            rpc_timeout=_RPC_TIMEOUT,
        )
    except RPCError as exc:
        raise _rpc_failure("start or update", workflow_id, exc, settings) from None
    user_id = user_workflow_id(record.user_id)
    try:
        await client.start_workflow(
            UserWarmupWorkflow.run,
            UserWorkflowInput(record.user_id, plan),
            id=user_id,
            task_queue=settings.TASK_QUEUE,
            start_signal="enroll",
            start_signal_args=[MailboxEnrollment(record.id, schedule, settings.send_retry(), record.user_id)],
            rpc_timeout=_RPC_TIMEOUT,
        )
    except RPCError as exc:
        raise _rpc_failure("enroll through", user_id, exc, settings) from None
    return handle


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
    """Give the user's running workflow its new plan; False when it has none yet (no mailbox)."""
    workflow_id = user_workflow_id(user_id)
    try:
        await client.get_workflow_handle(workflow_id).signal("set_plan", plan, rpc_timeout=_RPC_TIMEOUT)
    except RPCError as exc:
        if exc.status is RPCStatusCode.NOT_FOUND and "namespace" not in exc.message.lower():
            return False
        raise _rpc_failure("set the plan of", workflow_id, exc, settings) from None
    return True


async def signal_user(client: Client, user_id: str, name: str, arg: object, settings: Settings) -> None:
    """A signal to the user's workflow, which passes it on to each of its mailboxes."""
    workflow_id = user_workflow_id(user_id)
    handle = client.get_workflow_handle(workflow_id)
    try:
        if arg is None:
            await handle.signal(name, rpc_timeout=_RPC_TIMEOUT)
        else:
            await handle.signal(name, arg, rpc_timeout=_RPC_TIMEOUT)
    except RPCError as exc:
        raise _rpc_failure(name, workflow_id, exc, settings) from None


async def pause(client: Client, mailbox_id: int, reason: str, settings: Settings) -> None:
    workflow_id = workflow_id_for(mailbox_id)
    handle = client.get_workflow_handle_for(MailboxWarmupWorkflow.run, workflow_id)
    try:
        await handle.signal(MailboxWarmupWorkflow.pause, PauseRequest(reason), rpc_timeout=_RPC_TIMEOUT)
    except RPCError as exc:
        raise _rpc_failure("pause", workflow_id, exc, settings) from None


async def resume(client: Client, mailbox_id: int, settings: Settings) -> None:
    workflow_id = workflow_id_for(mailbox_id)
    handle = client.get_workflow_handle_for(MailboxWarmupWorkflow.run, workflow_id)
    try:
        await handle.signal(MailboxWarmupWorkflow.resume, rpc_timeout=_RPC_TIMEOUT)
    except RPCError as exc:
        raise _rpc_failure("resume", workflow_id, exc, settings) from None


async def status(client: Client, mailbox_id: int, settings: Settings) -> MailboxStatus:
    workflow_id = workflow_id_for(mailbox_id)
    handle = client.get_workflow_handle_for(MailboxWarmupWorkflow.run, workflow_id)
    try:
        return await handle.query(MailboxWarmupWorkflow.status, rpc_timeout=_RPC_TIMEOUT)
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


def web_ui_url(settings: Settings, workflow_id: str, ui_base: str | None = None) -> str:
    """Link to the workflow in the Temporal Web UI (the dev server's UI port unless `ui_base` is given)."""
    if not ui_base:
        host = settings.TEMPORAL_ADDRESS.rsplit(":", 1)[0] or "localhost"
        ui_base = f"http://{host}:{DEFAULT_UI_PORT}"
    namespace = quote(settings.TEMPORAL_NAMESPACE, safe="")
    return f"{ui_base.rstrip('/')}/namespaces/{namespace}/workflows/{quote(workflow_id, safe='')}"


async def update(client: Client, mailbox_id: int, update: SettingsUpdate, settings: Settings) -> None:
    workflow_id = workflow_id_for(mailbox_id)
    handle = client.get_workflow_handle_for(MailboxWarmupWorkflow.run, workflow_id)
    try:
        await handle.signal(MailboxWarmupWorkflow.update_settings, update, rpc_timeout=_RPC_TIMEOUT)
    except RPCError as exc:
        raise _rpc_failure("update", workflow_id, exc, settings) from None


async def remove(client: Client, mailbox_id: int, user_id: str, settings: Settings) -> bool:
    """Ask the workflow to finish; False when none was running (already removed, or never started).

    The user's workflow hears of it first, so the plan's daily share no longer counts this mailbox.
    """
    try:
        await signal_user(client, user_id, "remove_mailbox", mailbox_id, settings)
    except StarterError:
        pass  # no user workflow (enrolled before there was one): the mailbox's own signal suffices
    workflow_id = workflow_id_for(mailbox_id)
    handle = client.get_workflow_handle_for(MailboxWarmupWorkflow.run, workflow_id)
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
    handle = client.get_workflow_handle(workflow_id_for(mailbox_id))
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
        return workflow_id_for(self.mailbox_id)


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
    await signal_user(client, user_id, "pause", PauseRequest(reason), settings)
    for m in rows:
        await set_state(conn, m.id, MailboxState.PAUSED, reason)
    return [MailboxOutcome(m.id, m.address, True, "paused") for m in rows]


async def resume_user(client: Client, conn: Conn, user_id: str, settings: Settings) -> list[MailboxOutcome]:
    rows = await _user_mailboxes(conn, user_id)
    await signal_user(client, user_id, "resume", None, settings)
    for m in rows:
        await set_state(conn, m.id, MailboxState.ACTIVE, "")
    return [MailboxOutcome(m.id, m.address, True, "resumed") for m in rows]


async def user_status(client: Client, conn: Conn, user_id: str) -> list[fleet.MailboxDay]:
    """Today's status of each of the user's mailboxes (removed ones included, marked so)."""
    rows = await fleet.list_mailboxes(conn, user_id=user_id)
    if not rows:
        raise StarterError(f"--user {user_id}: no such user has mailboxes; `starter list` shows the users")
    return await fleet.mailbox_days(client, conn, rows, rpc_seconds=_RPC_TIMEOUT.total_seconds())


async def enroll(
    client: Client, conn: Conn, req: EnrollRequest, ciphertext: str, settings: Settings
) -> tuple[MailboxRecord, bool]:
    """Store the mailbox and start (or update) its workflow, all or nothing; True when it is new.

    The row commits only once Temporal has accepted the workflow (or the update).
    """
    try:
        async with conn.transaction():
            existing = await get_mailbox_by_address(conn, req.address)
            try:
                record = await upsert_mailbox(
                    conn,
                    user_id=req.user_id,
                    address=req.address,
                    smtp=req.smtp,
                    secret_ciphertext=ciphertext,
                    schedule=req.schedule,
                )
            except PermissionError:
                raise StarterError(
                    f"--mailbox {req.address} is already enrolled under another user, not --user "
                    f"{req.user_id}; enroll it under its owner or remove it there first"
                ) from None
            plan = await user_plan(conn, req.user_id, settings)
            await start_or_update(client, record, req.schedule, req.settings_update(), plan, settings)
    except (asyncpg.PostgresError, asyncpg.InterfaceError, OSError) as exc:
        raise StarterError(
            f"database error while enrolling ({type(exc).__name__}: {exc}); run the same enroll again"
        ) from None
    return record, existing is None
