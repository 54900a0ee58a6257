"""The benchmark's machinery, at a size that takes seconds (numbers belong to `make bench`, not here):
the simulated day fills every quota inside its windows, the audit's loops reproduce the audit's
figures, the simulation's schedule is the real workflow's, and `python -m bench --tiny` runs whole."""

from __future__ import annotations

import json
import subprocess
import sys
from datetime import timedelta
from pathlib import Path

import aiosmtplib
from temporalio.api.enums.v1 import EventType
from temporalio.api.history.v1 import HistoryEvent
from temporalio.client import WorkflowExecutionStatus

from bench.aged import run_aged
from bench.costs import billable_actions, summarize
from bench.crosscheck import compare, run_crosscheck
from bench.engagement import run_engagement
from bench.fill import run_fill
from bench.fleet import SIM_DAY, make_fleet, spread_subset
from bench.legacy import simulate_loop
from bench.sink import start_sink
from bench.stack import Stack
from bench.throughput import LoopRate, pooled
from bench.warmup_sim import simulate_day
from devstack.temporal import SQLITE_PRAGMAS
from warmup.models import RampSettings

REPO = Path(__file__).resolve().parent.parent


def test_simulated_day_fills_every_quota_inside_windows_and_spacing() -> None:
    run = run_fill("200 mailboxes", make_fleet(200))
    by = {m.model: m for m in run.models}
    ours = by["warmup"]
    assert ours.quota > 200 * 5, "ramp quotas: every mailbox has at least the first day's 5"
    assert ours.full == ours.mailboxes and ours.sent == ours.quota, "a mailbox missed its quota"
    assert ours.outside_window == 0 and ours.spacing_violations == 0
    assert ours.min_gap_seconds is not None and ours.min_gap_seconds >= 120
    assert by["legacy"].fill < by["phase1"].fill < ours.fill
    assert run.binding_caps == [], "the scale profile's caps would shape a normal day"


def test_audit_loops_reproduce_the_audits_own_figures() -> None:
    # 48 mailboxes, 10 a day: the audit computes ~144 a day for the legacy loop (1440 min / 9 min
    # per mailbox) and expects 400-500 from Phase 1.
    fleet = make_fleet(48, ramp=RampSettings(10, 0, 10), zones=("UTC",))
    quotas = simulate_day(fleet, SIM_DAY).quotas
    legacy = simulate_loop("legacy", fleet, quotas, SIM_DAY, "t")
    phase1 = simulate_loop("phase1", fleet, quotas, SIM_DAY, "t")
    assert 130 <= sum(map(len, legacy.sends.values())) <= 180
    assert max(map(len, legacy.sends.values())) <= 4, "legacy sends one per mailbox per pass"
    assert sum(min(len(v), 10) for v in phase1.sends.values()) >= 400


async def test_simulation_gives_the_real_workflows_schedule() -> None:
    # Small quotas keep the time-skipping run to a couple of seconds; 20 mailboxes of 8 timezones.
    subset = spread_subset(make_fleet(1000, max_ramp_day=2), 20)
    check = await run_crosscheck(subset, SIM_DAY)
    assert check.timezones >= 5
    assert check.sends == sum(simulate_day(subset, SIM_DAY).quotas.values())
    assert check.identical, (check.missing[:5], check.max_planned_diff, check.max_dispatch_diff)
    per_email = check.costs.per_email()
    assert per_email["events"] <= 12 and per_email["workflow_tasks"] <= 2


async def test_engagement_adds_sessions_and_their_cost_only_when_on() -> None:
    subset = spread_subset(make_fleet(1000, max_ramp_day=2), 8)
    e = await run_engagement(subset, SIM_DAY)
    assert e.on.total.emails == e.off.total.emails > 0, "engagement must not change the sends"
    assert e.sessions_off == 0 and e.off.total.events < e.on.total.events
    # Counted from the activity's requests: every mailbox ran each of the day's sessions once.
    assert e.sessions_on == 8 * e.inbox_sessions_setting and e.logins_per_mailbox_day == 4
    added = e.added_per_email()
    assert added["events"] > 0 and added["workflow_tasks"] > 0
    assert e.added_per_session()["workflow_tasks"] >= 1, "a session's result needs a workflow task"


async def test_aged_histories_bound_what_a_cache_miss_replays() -> None:
    # Two days at 40 sends: the unbounded run holds both days, the bounded one a day per run.
    aged = await run_aged(days=2, fleet=1000, say=lambda _: None)
    today, bound = aged.suggested, aged.bounded
    assert today.runs == 1 and bound.runs >= 2
    assert today.sends > 60 and abs(bound.sends - today.sends) <= today.sends // 10, (
        today.sends,
        bound.sends,
    )
    assert bound.miss_events_mean < today.miss_events_mean / 1.5
    assert today.replay_us_per_event > 0 and today.replay[-1].cpu_ms > today.replay[0].cpu_ms
    assert bound.miss_cpu_ms < today.miss_cpu_ms
    assert aged.recovery(bound)[0] < aged.recovery(today)[0]
    # A continue-as-new a day costs a few events and one task, spread over the day's sends.
    assert bound.events_per_email <= today.events_per_email + 0.5
    assert bound.tasks_per_email <= today.tasks_per_email + 0.1


def test_comparison_catches_a_schedule_that_differs() -> None:
    day = SIM_DAY.isoformat()
    sim = [((1, day, 0), 100.0, 100.0), ((1, day, 1), 300.0, 300.0)]
    empty = summarize("none", [])
    same = compare(sim, list(sim), SIM_DAY, mailboxes=1, timezones=1, wall_seconds=0, costs=empty)
    assert same.identical
    shifted = [sim[0], ((1, day, 1), 301.0, 301.0)]
    assert not compare(sim, shifted, SIM_DAY, mailboxes=1, timezones=1, wall_seconds=0, costs=empty).identical
    lost = [sim[0]]
    assert compare(sim, lost, SIM_DAY, mailboxes=1, timezones=1, wall_seconds=0, costs=empty).missing == [
        f"1:{day}:1"
    ]


def test_every_activity_attempt_bills_an_action() -> None:
    timer = HistoryEvent(event_id=5, event_type=EventType.EVENT_TYPE_TIMER_STARTED)
    scheduled = HistoryEvent(event_id=9, event_type=EventType.EVENT_TYPE_ACTIVITY_TASK_SCHEDULED)
    started = HistoryEvent(event_id=10, event_type=EventType.EVENT_TYPE_ACTIVITY_TASK_STARTED)
    started.activity_task_started_event_attributes.scheduled_event_id = 9
    started.activity_task_started_event_attributes.attempt = 3
    completed = HistoryEvent(event_id=11, event_type=EventType.EVENT_TYPE_WORKFLOW_TASK_COMPLETED)
    assert billable_actions([timer, scheduled, started, completed]) == 1 + 3


def test_pooled_rounds_weigh_every_second_alike() -> None:
    # A loop's rounds pooled: its rate is every completion over every measured second, not the mean of
    # the rounds' rates, and the CPU of a role is weighted by each round's seconds.
    fast = LoopRate("e2e", 10, 300, 10.0, 100.0, {"temporal": 1.0}, 50.0, pg_transactions=1500)
    slow = LoopRate("e2e", 10, 100, 30.0, 80.0, {"temporal": 0.6, "postgres": 0.2}, 70.0)
    both = pooled([fast, slow])
    assert (both.completed, both.seconds, both.per_second) == (400, 40.0, 10.0)
    assert both.cores == {"postgres": 0.15, "temporal": 0.7} and both.worker_rss_mb == 70.0
    assert both.pg_round_trips == 3.75


async def test_the_benchs_sink_takes_what_the_send_path_sends() -> None:
    # The far end of the throughput phase: a message only counts once its DATA ended, whatever way the
    # client logged in and however TCP cut the message up.
    server, counter = await start_sink()
    port = server.sockets[0].getsockname()[1]
    body = "\r\n".join(["Subject: hi", "", ".a line that starts with a dot", ".", "x" * 200_000, ""])
    try:
        client = aiosmtplib.SMTP(hostname="127.0.0.1", port=port, local_hostname="test")
        await client.connect()
        assert (await client.login("u", "p")).code == 235  # AUTH PLAIN with its initial response
        for n in range(2):
            _, reply = await client.sendmail("a@x.test", ["b@y.test"], body)
            assert reply.startswith("2.0.0 OK queued as m") and counter.received == n + 1
        assert (await client.rset()).code == 250
        assert (await client.auth_login("u", "p")).code == 235  # LOGIN, step by step
        assert (await client.auth_xoauth2("u", "token")).code == 235
        assert (await client.execute_command(b"VRFY", b"b")).code == 502
        await client.quit()
        assert counter.received == 2
    finally:
        server.close()
        await server.wait_closed()


async def test_a_setup_restart_keeps_the_workflows_and_measures_on_durable_pragmas(tmp_path: Path) -> None:
    async with Stack(tmp_path) as stack:
        async with stack.unsynced_temporal():
            assert "synchronous=off" in stack.temporal.command()
            handle = await stack.client.start_workflow(
                "MailboxWarmupWorkflow",
                id="setup-restart",
                task_queue="nobody",
                start_delay=timedelta(hours=1),
            )
        # The same file and port: the client reconnects and the workflow is still there.
        assert stack.temporal.pragmas == SQLITE_PRAGMAS and "synchronous=off" not in stack.temporal.command()
        assert (await handle.describe()).status == WorkflowExecutionStatus.RUNNING


def test_tiny_bench_runs_every_phase(tmp_path: Path) -> None:
    docs = tmp_path / "benchmarks.md"
    docs.write_text("# Benchmarks\n\nintro\n")
    run = subprocess.run(
        [sys.executable, "-m", "bench", "--tiny", "--results", str(tmp_path), "--docs", str(docs)],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=360,
        check=False,
    )
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    data = json.loads((tmp_path / "latest.json").read_text())
    tp = data["throughput"]
    assert tp["e2e"]["completed"] > 0 and tp["bare"]["completed"] > 0 and tp["bare_send"]["completed"] > 0
    # Two rounds, the second in the reverse order, pooled into the loops' rates.
    assert [r["order"] for r in tp["rounds"]] == [["e2e", "bare", "bare_send"], ["bare_send", "bare", "e2e"]]
    assert tp["e2e"]["completed"] == sum(r["e2e"]["completed"] for r in tp["rounds"])
    assert all(0 < r[loop]["fixed_work_seconds"] < 5 for r in tp["rounds"] for loop in ("e2e", "bare"))
    assert data["scale"]["sent"] > 0 and data["scale"]["planned"] > 0
    assert data["memory"]["rss_mb"] > data["memory"]["rss_idle_mb"]
    assert data["aged"]["bounded"]["runs"] > data["aged"]["suggested"]["runs"] == 1
    # The send path's statements (activities/send_start.py): start, pick, insert, claim, mark sent.
    assert 4 <= data["throughput"]["e2e"]["pg_round_trips"] <= 7
    dep = data["deploy"]
    # After the rollout every workflow came back; after the crash each waited out the sticky queue.
    assert dep["history_events"] > 20 and dep["misses"]["seconds"] < dep["crash"]["seconds"]
    assert dep["crash"]["seconds"] >= 5
    # docs/benchmarks.md says why these two run without inbox sessions; the report must say so too.
    assert data["throughput"]["engagement"] is False and data["scale"]["engagement"] is False
    eng = data["engagement"]
    assert eng["sessions_off"] == 0 and eng["logins_per_mailbox_day"] == eng["inbox_sessions_setting"]
    assert eng["added_per_email"]["events"] > 0 and eng["added_per_email"]["workflow_tasks"] > 0
    assert all(f["models"][-1]["fill"] == 1.0 for f in data["fill"])
    assert {t["target"] for t in data["targets"]} >= {"end-to-end / bare throughput >= 0.8"}
    page = docs.read_text()
    assert page.startswith("# Benchmarks\n\nintro\n") and "### Targets" in page
    assert "### Engagement: the cost of inbox sessions" in page
    assert "### Aged histories: cache misses" in page and "### A deploy, measured" in page
    assert (
        "### The reactive ramp against the fixed ramp (simulation)" in page
        and "### Pool rules over a day" in page
    )
    pool = data["pool"]
    assert pool["picks"] > 0 and pool["same_user"] == 0 and pool["same_domain"] == 0
    assert 1 <= pool["statements_per_pick"] <= 2
    assert data["placement"]["reactive"]["sent"] > 0 and data["placement"]["fixed"]["sent"] > 0
    assert not list(tmp_path.glob("stack-*")), "the servers' data folder was left behind"
