"""The starter's Temporal operations: connect, start-or-update a mailbox workflow, signal, query.

Each failure becomes a StarterError whose message says what went wrong and which setting to check;
no business logic lives here, only the calls the workflow's interface defines.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
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
from warmup import fleet
from warmup.config import Settings
from warmup.db import Conn
from warmup.mailboxes import MailboxRecord, get_mailbox_by_address, set_state, upsert_mailbox, workflow_id_for
from warmup.models import (
    MailboxState,
    MailboxStatus,
    MailboxWorkflowInput,
    PauseRequest,
    ScheduleSettings,
    SettingsUpdate,
)
from workflows.mailbox import MailboxWarmupWorkflow

EXIT_FAILURE = 1
EXIT_USAGE = 2

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
    address, namespace = settings.TEMPORAL_ADDRESS, settings.TEMPORAL_NAMESPACE
    try:
        return await Client.connect(address, namespace=namespace, connect_timeout=_CONNECT_TIMEOUT)
    except Exception as exc:  # the bridge raises RuntimeError, DNS/TLS problems other types
        cause = "connection refused" if "Connection refused" in str(exc) else _one_line(str(exc))
        raise StarterError(f"cannot reach Temporal at {address} ({cause}); check TEMPORAL_ADDRESS") from None


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


async def start_or_update(
    client: Client,
    record: MailboxRecord,
    schedule: ScheduleSettings,
    update: SettingsUpdate,
    settings: Settings,
) -> WorkflowHandle[MailboxWarmupWorkflow, None]:
    """Signal-with-start: a running workflow gets the new settings, otherwise one starts with them.

    The workflow id is the mailbox's, so enrolling twice can never make a second workflow.
    """
    workflow_id = workflow_id_for(record.id)
    try:
        return await client.start_workflow(
            MailboxWarmupWorkflow.run,
            MailboxWorkflowInput(record.id, record.user_id, schedule, settings.send_retry()),
            id=workflow_id,
            task_queue=settings.TASK_QUEUE,
            start_signal="update_settings",
            start_signal_args=[update],
            rpc_timeout=_RPC_TIMEOUT,
        )
    except RPCError as exc:
        raise _rpc_failure("start or update", workflow_id, exc, settings) from None


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


async def remove(client: Client, mailbox_id: int, settings: Settings) -> bool:
    """Ask the workflow to finish; False when none was running (already removed, or never started)."""
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


async def _each(
    rows: list[fleet.MailboxRow], call: Callable[[fleet.MailboxRow], Awaitable[str]]
) -> list[MailboxOutcome]:
    async def one(m: fleet.MailboxRow) -> MailboxOutcome:
        try:
            return MailboxOutcome(m.id, m.address, True, await call(m))
        except StarterError as exc:
            return MailboxOutcome(m.id, m.address, False, str(exc))

    return await fleet.bounded_gather(rows, one)


async def pause_user(
    client: Client, conn: Conn, user_id: str, reason: str, settings: Settings
) -> list[MailboxOutcome]:
    """Pause every mailbox of the user; the database follows each workflow that took the signal."""
    rows = await _user_mailboxes(conn, user_id)

    async def one(m: fleet.MailboxRow) -> str:
        await pause(client, m.id, reason, settings)
        return "paused"

    outcomes = await _each(rows, one)
    for o in outcomes:
        if o.ok:
            await set_state(conn, o.mailbox_id, MailboxState.PAUSED, reason)
    return outcomes


async def resume_user(client: Client, conn: Conn, user_id: str, settings: Settings) -> list[MailboxOutcome]:
    rows = await _user_mailboxes(conn, user_id)

    async def one(m: fleet.MailboxRow) -> str:
        await resume(client, m.id, settings)
        return "resumed"

    outcomes = await _each(rows, one)
    for o in outcomes:
        if o.ok:
            await set_state(conn, o.mailbox_id, MailboxState.ACTIVE, "")
    return outcomes


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
            await start_or_update(client, record, req.schedule, req.settings_update(), settings)
    except (asyncpg.PostgresError, asyncpg.InterfaceError, OSError) as exc:
        raise StarterError(
            f"database error while enrolling ({type(exc).__name__}: {exc}); run the same enroll again"
        ) from None
    return record, existing is None
