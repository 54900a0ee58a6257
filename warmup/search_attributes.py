"""The search attributes the workflows keep current so the Web UI can filter: ids and a state only,
never addresses or secrets (search attributes are stored unencrypted)."""

from __future__ import annotations

from temporalio.common import SearchAttributeKey

USER_ID = SearchAttributeKey.for_keyword("UserId")
MAILBOX_ID = SearchAttributeKey.for_keyword("MailboxId")
WARMUP_STATUS = SearchAttributeKey.for_keyword("WarmupStatus")

ALL = (USER_ID, MAILBOX_ID, WARMUP_STATUS)
NAMES = tuple(k.name for k in ALL)

# WarmupStatus values
SENDING = "sending"  # inside today's window with sends left
IDLE = "idle"  # done for today, or before the window opens
PAUSED = "paused"
REMOVED = "removed"
