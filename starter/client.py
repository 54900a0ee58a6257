"""The starter's Temporal operations: connect, start-or-update a mailbox workflow, signal, query.

Each failure becomes a StarterError whose message says what went wrong and which setting to check;
no business logic lives here, only the calls the workflow's interface defines.
"""

from __future__ import annotations

from datetime import timedelta
from urllib.parse import quote

from temporalio.client import (
    Client,
    WorkflowHandle,
    WorkflowQueryFailedError,
    WorkflowQueryRejectedError,
)
from temporalio.service import RPCError, RPCStatusCode

from warmup.config import Settings
from warmup.mailboxes import MailboxRecord, workflow_id_for
from warmup.models import MailboxStatus, MailboxWorkflowInput, PauseRequest, ScheduleSettings, SettingsUpdate
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
