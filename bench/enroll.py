"""Enrollment at benchmark scale: mailboxes inserted with COPY, workflows started concurrently.

`starter enroll` does one mailbox per process (validation, SMTP check, signal-with-start); for
100,000 mailboxes the benchmark writes the same rows in bulk and starts the same workflow with the
same input shape, with bounded concurrency.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import asyncpg
from temporalio.client import Client

from warmup import mailbox_settings as ms
from warmup.mailboxes import NewMailbox, SmtpAccount, mailbox_row
from warmup.models import MailboxWorkflowInput, ScheduleSettings, SmtpSecurity
from warmup.workflow_ids import mailbox_workflow_id
from workflows.mailbox import MailboxWarmupWorkflow


@dataclass(frozen=True)
class Enrolled:
    mailbox_id: int
    user_id: str
    schedule: ScheduleSettings


async def insert_mailboxes(
    pool: asyncpg.Pool,
    prefix: str,
    mailboxes: Sequence[tuple[str, ScheduleSettings]],
    smtp_port: int,
    ciphertext: str,
) -> list[Enrolled]:
    """One COPY for the users and one for the mailboxes (SMTP: the sink on loopback, clear text).

    Each user's mailboxes share a domain of their own, as in a real pool: with one domain for all,
    every recipient pick would break the pool's same-domain rule and fall back to its scan."""
    users = sorted({u for u, _ in mailboxes})
    rows = []
    addresses = [f"{prefix}-{i}@{user.lower()}.bench.test" for i, (user, _) in enumerate(mailboxes)]
    for i, (user, s) in enumerate(mailboxes):
        smtp = SmtpAccount("127.0.0.1", smtp_port, SmtpSecurity.NONE, f"{prefix}-{i}", verify_tls=False)
        rows.append(
            mailbox_row(
                NewMailbox(
                    user_id=user,
                    address=addresses[i],
                    smtp=smtp,
                    secret_ciphertext=ciphertext,
                    schedule=s,
                )
            )
        )
    async with pool.acquire() as conn, conn.transaction():
        await conn.copy_records_to_table("users", records=[(u,) for u in users], columns=["id"])
        await conn.copy_records_to_table("mailboxes", records=rows, columns=ms.COLUMNS)
        ids = await conn.fetch("SELECT id, address FROM mailboxes WHERE address = ANY($1::text[])", addresses)
    by_address = {r["address"]: int(r["id"]) for r in ids}
    return [Enrolled(by_address[a], user, s) for a, (user, s) in zip(addresses, mailboxes, strict=True)]


@dataclass(frozen=True)
class StartStats:
    started: int
    seconds: float

    @property
    def per_second(self) -> float:
        return self.started / self.seconds if self.seconds else 0.0


async def start_workflows(
    client: Client,
    task_queue: str,
    mailboxes: Sequence[Enrolled],
    make_input: Callable[[Enrolled], MailboxWorkflowInput],
    *,
    concurrency: int = 64,
    progress: Callable[[int], None] | None = None,
    start_delay: Callable[[MailboxWorkflowInput], dt.timedelta | None] | None = None,
) -> StartStats:
    """Start one MailboxWarmupWorkflow per mailbox, `concurrency` requests in flight at a time.

    `make_input` is called right before each start (the scale phase computes each mailbox's state
    for the moment it starts). `start_delay` may defer a workflow's first task (Temporal's start delay)."""
    began = time.perf_counter()
    queue = iter(mailboxes)
    done = 0

    async def starter() -> None:
        nonlocal done
        for m in queue:
            inp = make_input(m)
            await client.start_workflow(
                MailboxWarmupWorkflow.run,
                inp,
                id=mailbox_workflow_id(m.mailbox_id),
                task_queue=task_queue,
                start_delay=start_delay(inp) if start_delay is not None else None,
            )
            done += 1
            if progress is not None and done % 5000 == 0:
                progress(done)

    await asyncio.gather(*(starter() for _ in range(concurrency)))
    return StartStats(done, time.perf_counter() - began)
