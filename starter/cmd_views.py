"""`starter list`, `status` (one mailbox or a user, once or `--watch`) and `report`: read-only."""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
from collections.abc import Awaitable, Callable
from typing import Any

import asyncpg
from rich.console import Group, RenderableType
from rich.live import Live
from rich.text import Text
from temporalio.client import Client

from starter import operations, temporal_calls
from starter.cli_args import json_flag, target
from starter.context import Io, address, database, find_mailbox, ui_link
from starter.report import build_report
from starter.temporal_calls import StarterError
from starter.views import (
    bar,
    console,
    list_json,
    list_table,
    mailbox_status_view,
    report_view,
    user_status_view,
)
from warmup import fleet
from warmup.config import Settings
from warmup.mailboxes import MailboxRecord
from warmup.models import MailboxState
from warmup.process_exit import EXIT_FAILURE, EXIT_OK, EXIT_USAGE
from warmup.workflow_ids import mailbox_workflow_id

DEFAULT_WATCH_INTERVAL = 5.0


async def list_mailboxes(args: argparse.Namespace, settings: Settings, io: Io) -> int:
    state = None if args.state is None else MailboxState(args.state)
    async with database(settings) as conn:
        rows = await fleet.list_mailboxes(conn, user_id=args.user, state=state)
    if args.json:
        io.json(list_json(rows))
    else:
        io.show(list_table(rows))
    return EXIT_OK


async def report(args: argparse.Namespace, settings: Settings, io: Io) -> int:
    if args.limit < 0:
        raise StarterError(f"--limit must be 0 (all) or more, got {args.limit}", EXIT_USAGE)
    client = await temporal_calls.connect_temporal(settings)
    async with database(settings) as conn:
        result = await build_report(client, conn, settings, args.user)
    if args.json:
        io.json(result)
    else:
        io.show(report_view(result, args.limit))
    return EXIT_OK


# --- status ---------------------------------------------------------------------------------------


class _Snapshot:
    """One look at the target: what to print as a table and as JSON, and whether all of it answered."""

    def __init__(self, view: RenderableType, data: object, complete: bool) -> None:
        self.view, self.data, self.complete = view, data, complete


async def _mailbox_snapshot(
    client: Client,
    conn: asyncpg.Connection,
    record: MailboxRecord,
    settings: Settings,
    io: Io,
    watching: bool,
) -> _Snapshot:
    workflow_id = mailbox_workflow_id(record.id)
    look = await operations.look_mailbox(client, conn, record, settings)
    status = look.status
    link = f"\n{'Web UI'.ljust(14)}  {ui_link(settings, workflow_id, io)}"
    view = mailbox_status_view(
        status, record.address, workflow_id, record.state, look.days, look.placement, link, look.pool
    )
    if not watching:
        return _Snapshot(view, look.json(), True)
    now = dt.datetime.now(dt.UTC)
    head = Text(f"{record.address} at {now:%H:%M:%S} UTC (Ctrl-C stops)")
    return _Snapshot(Group(head, bar(status.sent_today, status.quota_today, 40), view), look.json(), True)


async def _user_snapshot(
    client: Client, conn: asyncpg.Connection, user_id: str, settings: Settings, watching: bool
) -> _Snapshot:
    look = await operations.look_user(client, conn, user_id, settings)
    now = dt.datetime.now(dt.UTC) if watching else None
    view = user_status_view(user_id, look.days, look.today, look.placement, now)
    return _Snapshot(view, look.json(), look.complete)


async def status(args: argparse.Namespace, settings: Settings, io: Io) -> int:
    if (args.count is not None or args.interval is not None) and not args.watch:
        raise StarterError("--interval and --count only apply with --watch", EXIT_USAGE)
    if args.interval is None:
        args.interval = DEFAULT_WATCH_INTERVAL
    if args.interval <= 0:
        raise StarterError(f"--interval must be above 0 seconds, got {args.interval:g}", EXIT_USAGE)
    if args.count is not None and args.count < 1:
        raise StarterError(f"--count must be 1 or more, got {args.count}", EXIT_USAGE)
    client = await temporal_calls.connect_temporal(settings)
    async with database(settings) as conn:
        record = None
        if args.mailbox is not None:
            record = await find_mailbox(conn, address(args.mailbox), args.user)

        async def look() -> _Snapshot:
            if record is not None:
                return await _mailbox_snapshot(client, conn, record, settings, io, args.watch)
            return await _user_snapshot(client, conn, args.user, settings, args.watch)

        if not args.watch:
            snap = await look()
            if args.json:
                io.json(snap.data)
            else:
                io.show(snap.view)
            if not snap.complete:
                io.note("starter status: some mailbox workflows did not answer (see the table)")
                return EXIT_FAILURE
            return EXIT_OK
        return await _watch(look, args, io)


async def _watch(look: Callable[[], Awaitable[_Snapshot]], args: argparse.Namespace, io: Io) -> int:
    """Refresh every --interval seconds: a live table on a terminal, one JSON line each with --json,
    a new table each time into a pipe. A failed look is shown and the watch goes on."""
    terminal = io.out.isatty() and not args.json
    live = Live(console=console(io.out), auto_refresh=False, transient=False) if terminal else None
    shown = 0
    try:
        if live is not None:
            live.start()
        while True:
            try:
                snap = await look()
                view, data = snap.view, snap.data
            except StarterError as exc:
                view, data = Text(f"no answer: {exc}"), {"error": str(exc)}
            if args.json:
                io.json(data, compact=True)
            elif live is not None:
                live.update(view, refresh=True)
            else:
                io.show(view)
                io.out.flush()
            shown += 1
            if args.count is not None and shown >= args.count:
                return EXIT_OK
            await asyncio.sleep(args.interval)
    finally:
        if live is not None:
            live.stop()


def add_parsers(sub: Any) -> None:  # argparse's private _SubParsersAction type
    lst_cmd = sub.add_parser("list", help="list mailboxes, by user and state", allow_abbrev=False)
    lst_cmd.add_argument("--user", metavar="USER", help="only this user's mailboxes")
    lst_cmd.add_argument(
        "--state", choices=[s.value for s in MailboxState], help="only mailboxes in this state"
    )
    json_flag(lst_cmd)

    status_cmd = sub.add_parser(
        "status",
        help="today's progress of a mailbox or of a user's mailboxes",
        allow_abbrev=False,
        description="Sent today against today's quota, next send, ramp day, state and reason, last error.",
    )
    target(status_cmd, "show")
    status_cmd.add_argument("--watch", action="store_true", help="refresh until Ctrl-C (live progress today)")
    status_cmd.add_argument(
        "--interval",
        type=float,
        metavar="SECONDS",
        help="with --watch: seconds between refreshes (default 5)",
    )
    status_cmd.add_argument("--count", type=int, metavar="N", help="with --watch: stop after N refreshes")
    json_flag(status_cmd)

    report_cmd = sub.add_parser(
        "report",
        help="under-quota mailboxes, hourly throughput, queue health",
        allow_abbrev=False,
        description="The audit's three dashboard queries: mailboxes under quota today with fill %%, "
        "hourly throughput over the last 24 h, and queue health (Temporal's backlog, workflow states).",
    )
    report_cmd.add_argument("--user", metavar="USER", help="only this user's mailboxes in the quota section")
    report_cmd.add_argument(
        "--limit", type=int, default=50, metavar="N", help="rows of the quota table (0 = all; JSON has all)"
    )
    json_flag(report_cmd)
    lst_cmd.set_defaults(handler=list_mailboxes)
    status_cmd.set_defaults(handler=status)
    report_cmd.set_defaults(handler=report)
