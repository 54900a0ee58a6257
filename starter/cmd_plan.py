"""`starter plan`: a user's plan (its weight under the global caps) and its daily limit."""

from __future__ import annotations

import argparse
from typing import Any

from starter import operations, temporal_calls
from starter.context import Io, database
from warmup.config import Settings
from warmup.process_exit import EXIT_OK


def add_parsers(sub: Any) -> None:  # argparse's private _SubParsersAction type
    plan = sub.add_parser(
        "plan",
        help="set a user's plan and daily limit",
        description="The plan's weight (WARMUP_PLAN_WEIGHTS) is its share of the global caps when users "
        "contend; the daily limit caps the user's warmup emails a day across all its mailboxes.",
        allow_abbrev=False,
    )
    plan.add_argument("--user", required=True, metavar="USER")
    plan.add_argument("--plan", required=True, metavar="NAME", help="a plan named in WARMUP_PLAN_WEIGHTS")
    limit = plan.add_mutually_exclusive_group(required=True)
    limit.add_argument(
        "--daily-limit", type=int, metavar="N", help="emails a day across the user's mailboxes"
    )
    limit.add_argument("--no-limit", action="store_true", help="no daily limit: every mailbox fills its ramp")
    plan.add_argument("--json", action="store_true", help="print the result as JSON")
    plan.set_defaults(handler=set_plan)


async def set_plan(args: argparse.Namespace, settings: Settings, io: Io) -> int:
    limit = None if args.no_limit else args.daily_limit
    client = await temporal_calls.connect_temporal(settings)
    async with database(settings) as conn:
        change = await operations.set_plan(client, conn, args.user, args.plan, limit, settings)
    plan, reached, requeued = change.plan, change.reached, change.reweighted
    if args.json:
        io.json(
            {
                "user": args.user,
                "plan": plan.plan,
                "daily_limit": limit,
                "weight": plan.weight,
                "sends_reweighted": requeued,
            }
        )
    else:
        where = "its workflow updated" if reached else "used when its first mailbox is enrolled"
        shown = "no daily limit" if limit is None else f"{limit} emails a day"
        io.say(
            f"User {args.user}: plan {plan.plan} (weight {plan.weight:g}), {shown}; {where}"
            + (f"; {requeued} send(s) in flight take the new weight" if requeued else "")
        )
    return EXIT_OK
