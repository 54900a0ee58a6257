"""`starter pause`, `resume`, `update`, `remove`: signals to a mailbox's workflow, or to each of a
user's, with the mailboxes table kept in step (written only once Temporal accepted the signal)."""

from __future__ import annotations

import argparse
import dataclasses
from typing import Any

import asyncpg

from starter import operations, setting_flags, temporal_calls
from starter.cli_args import json_flag, target
from starter.context import Io, address, database, find_mailbox
from starter.temporal_calls import MailboxOutcome, StarterError
from starter.views import outcomes_json, outcomes_view
from warmup import mailbox_settings as ms
from warmup.config import Settings
from warmup.mailboxes import MailboxRecord
from warmup.models import MailboxState, PauseRequest
from warmup.process_exit import EXIT_FAILURE, EXIT_OK, EXIT_USAGE
from warmup.workflow_ids import mailbox_workflow_id


def _finish_user(
    verb: str, user_id: str, outcomes: list[MailboxOutcome], args: argparse.Namespace, io: Io
) -> int:
    if args.json:
        io.json(outcomes_json(user_id, outcomes))
    else:
        io.show(outcomes_view(verb, user_id, outcomes))
    failed = [o for o in outcomes if not o.ok]
    if failed:
        io.note(
            f"starter {args.command}: {len(failed)} mailbox(es) failed; run the same command again for them"
        )
        return EXIT_FAILURE
    return EXIT_OK


def _mailbox_json(record: MailboxRecord, **extra: object) -> dict[str, object]:
    return {
        "mailbox_id": record.id,
        "address": record.address,
        "workflow_id": mailbox_workflow_id(record.id),
        **extra,
    }


async def pause(args: argparse.Namespace, settings: Settings, io: Io) -> int:
    client = await temporal_calls.connect_temporal(settings)
    async with database(settings) as conn:
        if args.mailbox is None:
            outcomes = await temporal_calls.pause_user(client, conn, args.user, args.reason, settings)
            return _finish_user("Paused", args.user, outcomes, args, io)
        # The tenant check comes before any signal: a refused mailbox is left exactly as it was.
        record = await find_mailbox(conn, address(args.mailbox), args.user)
        await operations.pause_one(client, conn, record, args.reason, settings)
    if args.json:
        io.json(_mailbox_json(record, state=MailboxState.PAUSED.value, reason=args.reason))
    else:
        io.say(f"Paused {record.address} ({mailbox_workflow_id(record.id)}): {args.reason}")
    return EXIT_OK


async def resume(args: argparse.Namespace, settings: Settings, io: Io) -> int:
    client = await temporal_calls.connect_temporal(settings)
    async with database(settings) as conn:
        if args.mailbox is None:
            outcomes = await temporal_calls.resume_user(client, conn, args.user, settings)
            return _finish_user("Resumed", args.user, outcomes, args, io)
        record = await find_mailbox(conn, address(args.mailbox), args.user)
        await operations.resume_one(client, conn, record, settings)
    if args.json:
        io.json(_mailbox_json(record, state=MailboxState.ACTIVE.value))
    else:
        io.say(f"Resumed {record.address} ({mailbox_workflow_id(record.id)})")
    return EXIT_OK


# --- update -------------------------------------------------------------------------------------------


async def _targets(conn: asyncpg.Connection, args: argparse.Namespace, command: str) -> list[MailboxRecord]:
    mailbox = None if args.mailbox is None else address(args.mailbox)
    return await operations.targets(conn, mailbox, args.user, command)


async def update(args: argparse.Namespace, settings: Settings, io: Io) -> int:
    raw = setting_flags.given(args, ms.UPDATABLE)
    if all(v is None for v in raw.values()):
        flags = ", ".join(f for s in ms.UPDATABLE for f in (s.flag, s.off_flag) if f)
        raise StarterError(f"nothing to update: give at least one of {flags}", EXIT_USAGE)

    client = await temporal_calls.connect_temporal(settings)
    async with database(settings) as conn:
        records = await _targets(conn, args, "update")
        by_user = args.mailbox is None
        done = await operations.update_mailboxes(client, conn, records, raw, settings, by_user=by_user)

    if by_user:
        return _finish_user("Updated", args.user, [u.outcome for u in done], args, io)
    (one,) = done
    assert one.change is not None
    if args.json:
        io.json(
            _mailbox_json(one.record, changed=one.changed, schedule=dataclasses.asdict(one.change.schedule))
        )
    else:
        io.say(f"Updated {one.record.address} ({mailbox_workflow_id(one.record.id)}): {one.outcome.detail}")
    return EXIT_OK


# --- remove -------------------------------------------------------------------------------------------


async def remove(args: argparse.Namespace, settings: Settings, io: Io) -> int:
    if args.wait < 0:
        raise StarterError(f"--wait must be 0 or more seconds, got {args.wait:g}", EXIT_USAGE)
    client = await temporal_calls.connect_temporal(settings)
    async with database(settings) as conn:
        by_user = args.mailbox is None
        if not by_user:
            # Removing twice is fine, so no refusal of a removed one; the tenant check still comes first.
            records = [await find_mailbox(conn, address(args.mailbox), args.user)]
        else:
            records = await _targets(conn, args, "remove")
        removals = await operations.remove_mailboxes(
            client, conn, records, args.wait, settings, by_user=by_user
        )
    if args.json:
        items = [dataclasses.asdict(r) for r in removals]
        io.json(items[0] if not by_user else {"user_id": args.user, "mailboxes": items})
    else:
        for r in removals:
            if r.ok:
                io.say(
                    f"Removed {r.address} ({r.workflow_id}): {r.detail}; "
                    f"{r.ledger_rows_kept} sends kept in the ledger"
                )
            else:
                io.say(f"NOT removed {r.address} ({r.workflow_id}): {r.detail}")
    failed = [r for r in removals if not r.ok]
    if failed:
        io.note(f"starter remove: {len(failed)} mailbox(es) failed; run the same command again for them")
        return EXIT_FAILURE
    return EXIT_OK


# --- read-inbox -------------------------------------------------------------------------------------


async def read_inbox(args: argparse.Namespace, settings: Settings, io: Io) -> int:
    """An inbox session now, for the mailbox or each of the user's (one refused does not stop the rest)."""
    client = await temporal_calls.connect_temporal(settings)
    async with database(settings) as conn:
        records = await _targets(conn, args, "read-inbox")
    outcomes = []
    for record in records:
        try:
            at = await temporal_calls.read_inbox(client, record.id, settings)
            outcomes.append(MailboxOutcome(record.id, record.address, True, f"inbox session asked at {at}"))
        except StarterError as exc:
            outcomes.append(MailboxOutcome(record.id, record.address, False, str(exc)))
    if args.mailbox is None:
        return _finish_user("Inbox sessions asked for", args.user, outcomes, args, io)
    (one,) = outcomes
    if not one.ok:
        raise StarterError(one.detail)
    if args.json:
        io.json(_mailbox_json(records[0], detail=one.detail))
    else:
        io.say(
            f"{records[0].address} ({one.workflow_id}): {one.detail}; `starter status` shows what it found"
        )
    return EXIT_OK


def add_parsers(sub: Any) -> None:  # argparse's private _SubParsersAction type
    pause_cmd = sub.add_parser("pause", help="pause a mailbox's (or a user's) warmup", allow_abbrev=False)
    target(pause_cmd, "pause")
    pause_cmd.add_argument("--reason", default=PauseRequest().reason, metavar="TEXT", help="shown in status")
    json_flag(pause_cmd)

    resume_cmd = sub.add_parser("resume", help="resume a paused mailbox (or a user's)", allow_abbrev=False)
    target(resume_cmd, "resume")
    json_flag(resume_cmd)

    update_cmd = sub.add_parser(
        "update",
        help="change the ramp, window, timezone or spacing of a mailbox (or a user's)",
        allow_abbrev=False,
        description="Change schedule settings; a flag left out keeps the mailbox's current value. The "
        "running workflow re-spreads the rest of today at once.",
    )
    target(update_cmd, "update")
    setting_flags.add_update_flags(update_cmd.add_argument_group("schedule"))
    json_flag(update_cmd)

    remove_cmd = sub.add_parser(
        "remove",
        help="stop a mailbox's (or a user's) warmup for good; the send history is kept",
        allow_abbrev=False,
        description="Signal the workflow to finish, mark the mailbox removed (it leaves the recipient "
        "pool) and keep its ledger. `starter enroll` brings it back.",
    )
    target(remove_cmd, "remove")
    remove_cmd.add_argument(
        "--wait", type=float, default=10.0, metavar="SECONDS", help="wait this long for the workflow to end"
    )
    json_flag(remove_cmd)

    read_cmd = sub.add_parser(
        "read-inbox",
        help="run an inbox session of a mailbox (or of each of a user's) now",
        allow_abbrev=False,
        description="Beside the day's own sessions: log in over IMAP now, find, rescue, read, flag and "
        "decide answers like a scheduled session. Refused, saying why, when the mailbox is paused or its "
        "engagement is off.",
    )
    target(read_cmd, "read the inbox of")
    json_flag(read_cmd)
    read_cmd.set_defaults(handler=read_inbox)
    pause_cmd.set_defaults(handler=pause)
    resume_cmd.set_defaults(handler=resume)
    update_cmd.set_defaults(handler=update)
    remove_cmd.set_defaults(handler=remove)
