"""The send activity as workflow code sees it: its name, argument and result, nothing else.

`activities/send.py` implements it with asyncpg, aiosmtplib and the secret box, far too heavy to
import into the workflow sandbox; this stub carries the same `@activity.defn`, so the workflow calls
it by method reference (`workflow.execute_activity_method(SendEmail.send_email, ...)`) with its types
checked. tests/test_mailbox_workflow.py checks that the real activity keeps the same name and types.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from temporalio import activity
from temporalio.common import Priority, RetryPolicy

from warmup.models import SendRequest, SendResult, SendRetrySettings

# How much longer than its SMTP round trips one attempt may run: an attempt held only by its user's
# per-minute window waits inside the attempt (activities/send.py) instead of being retried, because
# every retry is a dispatch the global cap's queue rate pays for (docs/caps.md).
USER_CAP_WAIT_SECONDS = 65.0


class SendEmail:
    @activity.defn(name="send_email")
    async def send_email(self, req: SendRequest) -> SendResult:
        raise NotImplementedError("the workflow only names this activity; workers run activities/send.py")


def send_activity_options(
    retry: SendRetrySettings, *, window_left: float, cap_wait: float, user_id: str, weight: float
) -> dict[str, Any]:
    """How a workflow runs one send (keyword arguments of `execute_activity`): the mailbox workflow's,
    and the throughput benchmark's bare loop with the same Temporal costs (bench/bare_workflow.py)."""
    smtp = retry.smtp_timeout_seconds * 6 + 10
    return {
        # Several SMTP round trips, each bounded by the SMTP timeout, and a wait for the user's cap.
        "start_to_close_timeout": timedelta(seconds=smtp + cap_wait),
        # A dead worker's send is retried after this, not after start-to-close.
        "heartbeat_timeout": timedelta(seconds=retry.heartbeat_seconds),
        # Waiting for a cap is a retry too, so attempts are unlimited here; the activity counts
        # SMTP failures itself, and nothing is retried past the window (plus time to finish).
        "schedule_to_close_timeout": timedelta(seconds=window_left + 600),
        "retry_policy": RetryPolicy(
            initial_interval=timedelta(seconds=retry.initial_seconds),
            backoff_coefficient=2.0,
            maximum_interval=timedelta(seconds=retry.max_seconds),
            maximum_attempts=0,
        ),
        # One fairness key per user: no user's backlog starves another's, and a higher plan's
        # weight gives it a larger share of the global cap.
        "priority": Priority(fairness_key=user_id, fairness_weight=weight),
    }
