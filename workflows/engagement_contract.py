"""The inbox-session activity as workflow code sees it: its name, argument and result, nothing else.

`activities/engagement.py` implements it with asyncpg and imapclient, far too heavy for the workflow
sandbox; this stub carries the same `@activity.defn`, so the workflow calls it by method reference with
its types checked (tests/test_inbox_sessions.py checks that the real activity keeps them).
"""

from __future__ import annotations

from temporalio import activity

from warmup.models import InboxSessionReport, InboxSessionRequest, PlacementCheckRequest, PlacementReport


class InboxSession:
    @activity.defn(name="inbox_session")
    async def inbox_session(self, req: InboxSessionRequest) -> InboxSessionReport:
        raise NotImplementedError(
            "the workflow only names this activity; workers run activities/engagement.py"
        )

    @activity.defn(name="placement_check")
    async def placement_check(self, req: PlacementCheckRequest) -> PlacementReport:
        raise NotImplementedError(
            "the workflow only names this activity; workers run activities/engagement.py"
        )
