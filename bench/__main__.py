"""`python -m bench` (`make bench`): every benchmark side by side in one run, results to bench/results/.

Sizes default to the issue's: fill rate for 1,000 and 10,000 mailboxes, 24 of them cross-checked on
Temporal, the same 300 mailboxes' day with engagement on and off (the inbox sessions' cost), one mailbox's
14 days of history with runs as long as Temporal suggests and of one day (the cost of a cache miss),
throughput with 1,000 workflows, memory with 5,000, and 100,000 mailboxes measured for 10 minutes.
`--tiny` runs every phase at a size that takes seconds (what `make test` checks).
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import shlex
import shutil
import signal
import sys
import tempfile
import time
from pathlib import Path

from bench import procstat, pyspy
from bench.aged import run_aged
from bench.crosscheck import run_crosscheck
from bench.deploy import run_deploy
from bench.engagement import run_engagement
from bench.fill import run_fill, standard_fleets
from bench.fleet import MAX_RAMP_DAY, SIM_DAY, make_fleet, spread_subset
from bench.memory import run_memory
from bench.placement_sim import compare_ramps
from bench.pool_stats import run_pool_day
from bench.pool_stats import summary as pool_summary
from bench.report import PHASES, Results, write
from bench.scale import run_scale
from bench.stack import Stack
from bench.text_variety import run_text_variety, summary
from bench.throughput import run_throughput
from warmup.process_exit import EXIT_INTERRUPTED, EXIT_OK, exit_skipping_teardown

RESULTS = Path(__file__).resolve().parent / "results"


def _sizes(text: str) -> list[int]:
    try:
        sizes = [int(s.replace("_", "")) for s in text.split(",") if s.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(  # noqa: B904 - argparse shows only this message
            f"{text!r}: give sizes as numbers separated by commas, e.g. 1000,10000"
        )
    if not sizes or min(sizes) < 1:
        raise argparse.ArgumentTypeError(f"{text!r}: every size must be at least 1")
    return sizes


def _positive(kind: type[int] | type[float]) -> "argparse._ActionType":  # noqa: UP037
    def parse(text: str) -> int | float:
        try:
            value = kind(text.replace("_", ""))
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not a {kind.__name__}") from None
        if value <= 0:
            raise argparse.ArgumentTypeError(f"{text!r} must be above 0")
        return value

    return parse


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m bench", description=__doc__.split("\n\n")[0] if __doc__ else ""
    )
    p.add_argument("--tiny", action="store_true", help="every phase at a size that takes seconds")
    p.add_argument(
        "--only", default=",".join(PHASES), help=f"phases to run, comma-separated ({','.join(PHASES)})"
    )
    p.add_argument(
        "--fill-sizes", type=_sizes, default=[1000, 10000], help="simulated fleets (default 1000,10000)"
    )
    p.add_argument("--max-ramp-day", type=int, default=MAX_RAMP_DAY, help="fleets' ramp days drawn in 0..N")
    p.add_argument("--crosscheck-mailboxes", type=_positive(int), default=24)
    p.add_argument(
        "--engagement-mailboxes",
        type=_positive(int),
        default=300,
        help="mailboxes whose simulated day runs with engagement on and off (default 300)",
    )
    p.add_argument(
        "--aged-days",
        type=_positive(float),
        default=14.0,
        help="days one mailbox at 40 sends a day runs for the aged-history phase (default 14: past its "
        "first continue-as-new, about 12 days)",
    )
    p.add_argument(
        "--aged-fleet",
        type=_positive(int),
        default=100_000,
        help="the fleet whose deploy (every workflow evicted at once) the aged and deploy phases price"
        " (default 100000)",
    )
    p.add_argument(
        "--deploy-mailboxes",
        type=_positive(int),
        default=200,
        help="workflows the deploy phase kills its worker under and brings back (default 200)",
    )
    p.add_argument(
        "--deploy-sends",
        type=_positive(int),
        default=20,
        help="sends of each before the deploy (default 20: the mean history a miss finds under the bound)",
    )
    p.add_argument("--throughput-mailboxes", type=_positive(int), default=1000)
    p.add_argument(
        "--throughput-warmup",
        type=_positive(float),
        default=10.0,
        help="seconds each loop runs before it is measured (default 10)",
    )
    p.add_argument(
        "--throughput-seconds",
        type=_positive(float),
        default=15.0,
        help="measured seconds of each loop in each round (default 15)",
    )
    p.add_argument(
        "--throughput-rounds",
        type=_positive(int),
        default=3,
        help="rounds of the three loops, in turn, each round in the reverse order of the last (default 3)",
    )
    p.add_argument(
        "--text-emails", type=_positive(int), default=100_000, help="emails of the text-variety day"
    )
    p.add_argument(
        "--text-replies", type=_positive(int), default=1000, help="of them answered twice (reply, its reply)"
    )
    p.add_argument(
        "--placement-mailboxes",
        type=_positive(int),
        default=1000,
        help="mailboxes of the reactive-vs-fixed ramp simulation (default 1000)",
    )
    p.add_argument("--placement-days", type=_positive(int), default=45, help="days it simulates (default 45)")
    p.add_argument(
        "--pool-mailboxes",
        type=_positive(int),
        default=10_000,
        help="mailboxes whose day of recipient picks the pool phase makes on PostgreSQL (default 10000)",
    )
    p.add_argument(
        "--pool-large",
        type=_positive(int),
        default=100_000,
        help="the pool the cost per pick is measured in (default 100000)",
    )
    p.add_argument("--memory-workflows", type=_positive(int), default=5000)
    p.add_argument(
        "--mailboxes-scale", "--scale-mailboxes", dest="scale_mailboxes", type=_positive(int), default=100_000
    )
    p.add_argument("--scale-minutes", type=_positive(float), default=10.0)
    p.add_argument(
        "--scale-emails-per-day",
        type=_positive(int),
        default=1_500_000,
        help="the fleet's daily volume (default 1.5M: 26/s, the busiest hour of a 1M day, so that even "
        "the quietest minute plans more than 17.4/s)",
    )
    p.add_argument(
        "--scale-cache", type=_positive(int), default=25_000, help="the scale worker's workflow cache"
    )
    p.add_argument(
        "--scale-grace", type=_positive(float), default=60.0, help="seconds to wait for late sends"
    )
    p.add_argument(
        "--scale-enroll",
        choices=("delayed", "immediate"),
        default="delayed",
        help="delayed (default): each workflow's first task runs at its first planned send (start delay); "
        "immediate: right after its start, which costs about 3x the server CPU per mailbox",
    )
    p.add_argument("--workers", type=_positive(int), default=1, help="worker processes per phase")
    p.add_argument("--results", type=Path, default=RESULTS, help="where the JSON and Markdown results go")
    p.add_argument(
        "--docs", type=Path, default=None, help="also put the table into this page (docs/benchmarks.md)"
    )
    p.add_argument("--keep", action="store_true", help="keep the servers' data folders after the run")
    return p


def _apply_tiny(a: argparse.Namespace) -> None:
    a.fill_sizes, a.max_ramp_day = [1000], 2
    a.crosscheck_mailboxes = 20
    a.engagement_mailboxes = 20
    # A span long enough that the send path's statements, not the fleet's start-up ones, make the
    # per-email count that make test checks (a 1 s warm-up and 2 s span read 7.9 on a busy CI machine).
    a.throughput_mailboxes, a.throughput_warmup, a.throughput_seconds = 50, 3.0, 3.0
    a.throughput_rounds = 2  # the reversed order runs too
    a.memory_workflows = 100
    a.aged_days, a.aged_fleet = 1.5, 1000
    a.deploy_mailboxes, a.deploy_sends = 20, 2
    a.placement_mailboxes, a.placement_days = 20, 20
    a.pool_mailboxes, a.pool_large = 200, 1000  # two users: the same-user rule has someone to keep
    a.text_emails, a.text_replies = 5000, 100
    # About 20 sends planned inside the 9 s span (2.3/s): a span of a few expected sends came out
    # empty in about one run in a hundred.
    a.scale_mailboxes, a.scale_minutes, a.scale_grace = 300, 0.15, 2.0
    a.scale_emails_per_day = 300 * 450


def say(text: str) -> None:
    print(text, flush=True)


class PhaseClock:
    """Wall seconds of each phase into `results.phase_seconds`: `start(name)` ends the phase before."""

    def __init__(self, results: Results) -> None:
        self._results = results
        self._current: tuple[str, float] | None = None

    def start(self, phase: str | None) -> None:
        now = time.perf_counter()
        if self._current is not None:
            name, began = self._current
            self._results.phase_seconds[name] = round(now - began, 1)
        self._current = None if phase is None else (phase, now)


async def run(a: argparse.Namespace) -> Results:
    phases = [p.strip() for p in a.only.split(",") if p.strip()]
    unknown = sorted(set(phases) - set(PHASES))
    if unknown:
        raise SystemExit(f"--only: unknown phase(s) {', '.join(unknown)}; choose from {', '.join(PHASES)}")
    results = Results(
        command=shlex.join(["python", "-m", "bench", *sys.argv[1:]]),
        started_at=dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        machine=procstat.machine(),
        options={k: (str(v) if isinstance(v, Path) else v) for k, v in vars(a).items()},
    )
    began, clock = time.perf_counter(), PhaseClock(results)
    if pyspy.py_spy() is None:
        results.notes.append("py-spy is not installed: no worker profiles (`.venv/bin/pip install py-spy`).")
    if "fill" in phases:
        clock.start("fill")
        say("fill rate: simulated day")
        for label, fleet in standard_fleets(a.fill_sizes, a.max_ramp_day):
            run_ = run_fill(label, fleet)
            results.fill.append(run_)
            say(f"  {label}: " + ", ".join(f"{m.model} {m.fill:.2%}" for m in run_.models))
    if "crosscheck" in phases:
        clock.start("crosscheck")
        say("cross-check: the real workflow on the time-skipping server")
        # The same mailboxes (ids, seeds, ramp days) as the first simulated fleet.
        fleet = make_fleet(max(a.fill_sizes[0], a.crosscheck_mailboxes), max_ramp_day=a.max_ramp_day)
        results.crosscheck = await run_crosscheck(spread_subset(fleet, a.crosscheck_mailboxes), SIM_DAY)
        c = results.crosscheck
        say(
            f"  {c.sends} sends, identical: {c.identical}"
            f" (dispatch within {c.max_dispatch_diff * 1000:.0f} ms)"
        )
    if "engagement" in phases:
        clock.start("engagement")
        say("engagement: the real workflow's day with inbox sessions on and off (time-skipping server)")
        fleet = make_fleet(max(a.fill_sizes[0], a.engagement_mailboxes), max_ramp_day=a.max_ramp_day)
        results.engagement = await run_engagement(spread_subset(fleet, a.engagement_mailboxes), SIM_DAY)
        e = results.engagement
        added = e.added_per_email()
        say(
            f"  {e.on.total.emails} emails; {e.logins_per_mailbox_day:.2f} IMAP logins per mailbox-day; "
            f"+{added['events']:.2f} events and +{added['workflow_tasks']:.2f} workflow tasks per email"
        )
    if "aged" in phases:
        clock.start("aged")
        say(f"aged histories: one mailbox over {a.aged_days:g} days, runs as today and one day per run")
        results.aged = await run_aged(days=a.aged_days, fleet=a.aged_fleet, workers=a.workers, say=say)
    if "text" in phases:
        clock.start("text")
        say(f"text variety: {a.text_emails:,} emails of one day")
        results.text = run_text_variety(a.text_emails, replies=min(a.text_replies, a.text_emails))
        say(f"  {summary(results.text)}")
    if "placement" in phases:
        clock.start("placement")
        say(f"placement: the reactive ramp against the fixed one, {a.placement_mailboxes:,} mailboxes")
        results.placement = compare_ramps(a.placement_mailboxes, a.placement_days)
        f, r = results.placement.fixed, results.placement.reactive
        say(f"  into spam: fixed {f.junk_share:.1%}, reactive {r.junk_share:.1%}")
    live = [p for p in ("pool", "throughput", "deploy", "memory", "scale") if p in phases]
    if live:
        a.results.mkdir(parents=True, exist_ok=True)
        workdir = Path(tempfile.mkdtemp(prefix="stack-", dir=a.results))
        say(f"starting PostgreSQL, the Temporal dev server (SQLite on disk) and the SMTP sink in {workdir}")
        clock.start("servers")
        ok = False
        try:
            async with Stack(workdir) as stack:
                if "pool" in live:
                    clock.start("pool")
                    say(f"pool: a day of recipient picks for {a.pool_mailboxes:,} mailboxes")
                    results.pool = await run_pool_day(stack.pg, a.pool_mailboxes, a.pool_large)
                    say(f"  {pool_summary(results.pool)}")
                if "throughput" in live:
                    clock.start("throughput")
                    say("throughput: end to end against a bare loop")
                    results.throughput = await run_throughput(
                        stack,
                        mailboxes=a.throughput_mailboxes,
                        warmup_seconds=a.throughput_warmup,
                        seconds=a.throughput_seconds,
                        rounds=a.throughput_rounds,
                        workers=a.workers,
                        say=say,
                    )
                if "deploy" in live:
                    clock.start("deploy")
                    say(f"deploy: {a.deploy_mailboxes} workflows, their worker killed and replaced")
                    results.deploy = await run_deploy(
                        stack,
                        mailboxes=a.deploy_mailboxes,
                        sends=a.deploy_sends,
                        fleet=a.aged_fleet,
                        workers=a.workers,
                        say=say,
                    )
                if "memory" in live:
                    clock.start("memory")
                    say("memory: resident mailbox workflows")
                    results.memory = await run_memory(stack, workflows=a.memory_workflows, say=say)
                    results.memory_isolated = await run_memory(
                        stack, workflows=a.memory_workflows, sandbox="isolated", say=say
                    )
                if "scale" in live:
                    clock.start("scale")
                    say(f"scale: {a.scale_mailboxes:,} mailboxes")
                    results.scale = await run_scale(
                        stack,
                        mailboxes=a.scale_mailboxes,
                        minutes=a.scale_minutes,
                        emails_per_day=a.scale_emails_per_day,
                        cache=a.scale_cache,
                        workers=a.workers,
                        enroll=a.scale_enroll,
                        grace_seconds=a.scale_grace,
                        profile_seconds=0 if a.tiny else 30,
                        say=say,
                    )
            ok = True
        finally:
            if ok and not a.keep:
                shutil.rmtree(workdir, ignore_errors=True)
            elif not ok:
                say(f"the servers' data and logs are kept in {workdir}")
    clock.start(None)
    results.wall_seconds = time.perf_counter() - began
    return results


async def _interruptible(a: argparse.Namespace) -> Results:
    """Ctrl-C or SIGTERM cancels the run, so every server and worker it started is stopped."""
    task = asyncio.current_task()
    assert task is not None
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, task.cancel)
    return await run(a)


def main() -> int:
    a = parser().parse_args()
    if a.tiny:
        _apply_tiny(a)
    try:
        results = asyncio.run(_interruptible(a))
    except asyncio.CancelledError:
        say("interrupted: everything the benchmark started is stopped; no results written")
        return EXIT_INTERRUPTED
    path = write(results, a.results, a.docs)
    say("")
    for target, measured, ok in results.targets():
        say(f"{'met ' if ok else 'MISS' if ok is not None else '  - '}  {target}: {measured}")
    say(f"\nresults: {path} (and {path.with_suffix('.json')}); {results.wall_seconds / 60:.1f} minutes")
    return EXIT_OK


if __name__ == "__main__":
    exit_skipping_teardown(main())
