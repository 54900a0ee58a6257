"""The send activity as workflow code sees it: its name, argument and result, nothing else.

`activities/send.py` implements it with asyncpg, aiosmtplib and the secret box, far too heavy to
import into the workflow sandbox; this stub carries the same `@activity.defn`, so the workflow calls
it by method reference (`workflow.execute_activity_method(SendEmail.send_email, ...)`) with its types
checked. tests/test_mailbox_workflow.py checks that the real activity keeps the same name and types.
"""

from __future__ import annotations

from temporalio import activity

from warmup.models import SendRequest, SendResult

# How much longer than its SMTP round trips one attempt may run: an attempt held only by its user's
# per-minute window waits inside the attempt (activities/send.py) instead of being retried, because
# every retry is a dispatch the global cap's queue rate pays for (docs/caps.md).
USER_CAP_WAIT_SECONDS = 65.0


class SendEmail:
    @activity.defn(name="send_email")
    async def send_email(self, req: SendRequest) -> SendResult:
        raise NotImplementedError("the workflow only names this activity; workers run activities/send.py")
