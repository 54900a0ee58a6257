"""The Temporal workflow ids: one per mailbox and one per user, derived from the database ids.

Deterministic ids are what make enrolling twice safe (Temporal refuses a second running workflow
with the same id) and let the Temporal CLI and Web UI find a workflow from the id alone.
"""

from __future__ import annotations


def mailbox_workflow_id(mailbox_id: int) -> str:
    return f"mailbox-{mailbox_id}"


def user_workflow_id(user_id: str) -> str:
    return f"user-{user_id}"


def inbox_task_queue(task_queue: str) -> str:
    """Where inbox sessions run: a queue of their own, since the send queue's dispatch rate is the global
    send cap, which IMAP sessions must not use up."""
    return f"{task_queue}-inbox"


def webhook_delivery_workflow_id(task_queue: str) -> str:
    """The one webhook delivery workflow of a task queue (workflows/webhooks.py)."""
    return f"webhooks-{task_queue}"


def ledger_upkeep_workflow_id(task_queue: str) -> str:
    """The one ledger upkeep workflow of a task queue (workflows/ledger_upkeep.py)."""
    return f"ledger-upkeep-{task_queue}"
