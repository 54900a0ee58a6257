"""Drill 4: what each SMTP reply does, end to end (workflow, worker process, SMTP server, starter).

One mailbox per reply, each with an SMTP server of its own, all running at once: 421/451/452 are
retried with backoff and then delivered; 535 (a real AUTH refusal), 550 and 554 pause the mailbox
with the reason and are not retried; a DATA reply that never comes leaves the send UNKNOWN, never
resent. The outcome is read back through `starter status --json`.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from pathlib import Path

from temporalio.testing import WorkflowEnvironment

from devstack.smtp_sink import SmtpSink
from tests.drills.support import DrillStack, Sender, assert_clean
from warmup.config import Settings

QUOTA = 2
TRANSIENT = {
    # 421 also closes the connection (the sink hangs up, as a real server does).
    "421": "421 4.3.2 Service not available, closing transmission channel",
    "451": "451 4.3.0 Temporary local problem, try again later",
    "452": "452 4.3.1 Insufficient system storage",
}
REFUSED = {"550": "550 5.7.1 Message rejected by policy", "554": "554 5.7.1 Spam message rejected"}
STALL_SECONDS = 6.0  # past the drill's 2 s SMTP timeout


def _replies(*replies: str) -> Callable[[SmtpSink], None]:
    return lambda sink: sink.script_data_replies(list(replies))


async def test_smtp_replies_retry_pause_or_stay_unknown(
    temporal_env: WorkflowEnvironment,
    make_settings: Callable[..., Settings],
    tmp_path: Path,
) -> None:
    client = temporal_env.client
    stack = DrillStack.on(client, make_settings(), tmp_path)
    try:
        stack.workers.start(1)
        await stack.prepare()
        transient: dict[str, Sender] = {}
        for code, reply in TRANSIENT.items():
            # The first send fails twice, then goes through.
            transient[code] = await stack.sender(f"smtp{code}", QUOTA, arm=_replies(reply, reply))
        refused: dict[str, Sender] = {}
        # The sink knows another password than the one enrolled: a genuine 535 at AUTH.
        refused["535"] = await stack.sender("smtp535", QUOTA, credentials={"nobody": "other"})
        for code, reply in REFUSED.items():
            refused[code] = await stack.sender(f"smtp{code}", QUOTA, arm=_replies(reply))
        stalled = await stack.sender("stall", QUOTA, arm=lambda sink: sink.stall_after_data(STALL_SECONDS))
        await stack.wait_worker_ready()

        async def done() -> bool:
            if not await stack.all_final(*transient.values(), stalled):
                return False
            for s in refused.values():
                if [r["status"] for r in await stack.ledger(s)] != ["FAILED"]:
                    return False
            return True

        await stack.settle(done, within=60)
        # Still nothing resent after the stalled reply ended.
        await asyncio.sleep(STALL_SECONDS - 2)

        for code, s in transient.items():
            rows = await stack.ledger(s)
            retries = rows[0]["transient_failures"]
            f = await stack.figures(
                f"SMTP {code} twice, then 250", s, QUOTA, f"retried {retries}x, delivered"
            )
            assert_clean(f)
            assert f.ledger == {"SENT": QUOTA}, f
            assert retries == 2, rows[0]
            st = await stack.status(s)
            assert not st["paused"] and st["sent_today"] == QUOTA, st

        for code, s in refused.items():
            st = await stack.status(s)
            reason = str(st["pause_reason"])
            # "mailbox 7: SMTP DATA refused (550 ...)" -> "SMTP DATA refused (550)"
            shown = reason.split(": ", 1)[-1].split(" (", 1)[0]
            f = await stack.figures(f"SMTP {code}", s, 0, f"paused: {shown} ({code}), 1 try")
            assert_clean(f)
            assert f.ledger == {"FAILED": 1}, f  # not retried, and the rest of the day waits
            assert st["paused"] and code in reason, st
        for s in refused.values():
            # One connection (aiosmtplib tries each AUTH mechanism the server offers on it), no retry.
            assert s.sink.sessions == 1, f"{s.address}: a refused send was tried again"

        st = await stack.status(stalled)
        rows = await stack.ledger(stalled)
        f = await stack.figures(
            "no reply after DATA",
            stalled,
            QUOTA,
            f"UNKNOWN, not resent; status unknown_today={st['unknown_today']}",
        )
        # The stalled message did arrive (the server kept it); the client could not know, so it is
        # UNKNOWN and the slot is used up; the day goes on with the next slot.
        assert_clean(f)
        assert f.ledger == {"SENT": 1, "UNKNOWN": 1}, f
        assert rows[0]["status"] == "UNKNOWN", rows
        assert st["unknown_today"] == 1 and st["sent_today"] == 1 and not st["paused"], st
    finally:
        await stack.close(client)
