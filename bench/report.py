"""The results of one `make bench` run: a JSON file with everything measured, and the readable
table (Markdown) that docs/benchmarks.md holds."""

from __future__ import annotations

import dataclasses
import json
import math
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bench.aged import Aged
from bench.aged import markdown as aged_markdown
from bench.costs import CostSummary
from bench.crosscheck import CrossCheck
from bench.deploy import Deploy
from bench.deploy import markdown as deploy_markdown
from bench.engagement import GROUP_MAILBOXES, GROUPS_AT_ONCE, EngagementCost
from bench.fill import FillRun
from bench.memory import Memory
from bench.pgsample import SqlProfile
from bench.placement_sim import RampComparison
from bench.placement_sim import markdown as placement_markdown
from bench.pool_stats import PoolDay
from bench.pool_stats import markdown as pool_markdown
from bench.scale import ScaleResult
from bench.text_variety import (
    MIN_JUDGED_EMAILS,
    TARGET_NEAR_DUPLICATE_SHARE,
    TARGET_TOP_SUBJECT_SHARE,
    TextVariety,
)
from bench.text_variety import markdown as text_markdown
from bench.throughput import Throughput

TARGET_RATE = 1_000_000 / (16 * 3600)  # 17.4 sends/s: a million emails in a 16-hour window
TARGET_RUN_MINUTES = 40  # issue #13: the whole benchmark on a 2-core machine
# `make bench`'s phases, in the order they run (bench/__main__.py).
PHASES = (
    "fill",
    "crosscheck",
    "engagement",
    "aged",
    "text",
    "placement",
    "pool",
    "throughput",
    "deploy",
    "memory",
    "scale",
)
DOCS_BEGIN = "<!-- bench:begin -->"
DOCS_END = "<!-- bench:end -->"


@dataclass
class Results:
    command: str
    started_at: str
    machine: dict[str, Any]
    options: dict[str, Any]
    fill: list[FillRun] = field(default_factory=list)
    crosscheck: CrossCheck | None = None
    engagement: EngagementCost | None = None
    aged: Aged | None = None
    deploy: Deploy | None = None
    throughput: Throughput | None = None
    memory: Memory | None = None
    memory_isolated: Memory | None = None  # the same measure with WARMUP_WORKFLOW_SANDBOX=isolated
    scale: ScaleResult | None = None
    text: TextVariety | None = None
    placement: RampComparison | None = None
    pool: PoolDay | None = None
    wall_seconds: float = 0.0
    phase_seconds: dict[str, float] = field(default_factory=dict)  # bench/__main__.py PhaseClock
    notes: list[str] = field(default_factory=list)

    def targets(self) -> list[tuple[str, str, bool | None]]:
        """(target, measured, met); met is None when the phase did not run."""
        out: list[tuple[str, str, bool | None]] = []
        ours = [next(m for m in run.models if m.model == "warmup") for run in self.fill]
        if ours:
            worst = min(m.fill for m in ours)
            every = all(m.full == m.mailboxes for m in ours)
            out.append(
                (
                    "every mailbox at 100% of quota (>= 99.5% overall at worst)",
                    f"{'every mailbox' if every else 'not every mailbox'}; worst overall {worst:.2%}",
                    every or worst >= 0.995,
                )
            )
            clean = all(m.outside_window == 0 and m.spacing_violations == 0 for m in ours)
            out.append(("every send inside its window and spacing", "yes" if clean else "no", clean))
        if self.crosscheck is not None:
            c = self.crosscheck
            out.append(
                (
                    "time-skipping run of the real workflow = simulation",
                    f"{c.sends} sends of {c.mailboxes} mailboxes; "
                    f"plans identical: {c.max_planned_diff == 0}; "
                    f"dispatch within {c.max_dispatch_diff * 1000:.0f} ms",
                    c.identical,
                )
            )
        if self.engagement is not None:
            e = self.engagement
            out.append(
                (
                    "engagement on: IMAP logins per mailbox-day = sessions set; engagement off: none",
                    f"{e.logins_per_mailbox_day:.2f} (set {e.inbox_sessions_setting}); off: {e.sessions_off}",
                    e.logins_per_mailbox_day == e.inbox_sessions_setting and e.sessions_off == 0,
                )
            )
        if self.text is not None:
            t = self.text
            judged = t.emails >= MIN_JUDGED_EMAILS
            out.append(
                (
                    f"no subject in more than {TARGET_TOP_SUBJECT_SHARE:.1%} of a day's mail",
                    f"{t.top_subject_share:.3%} ({t.distinct_subjects:,} subjects in {t.emails:,} emails)"
                    + ("" if judged else "; too few emails to judge a 0.2% share"),
                    t.top_subject_share <= TARGET_TOP_SUBJECT_SHARE if judged else None,
                )
            )
            out.append(
                (
                    f"near-duplicate bodies (Jaccard >= 0.8) in <= {TARGET_NEAR_DUPLICATE_SHARE:.0%} "
                    "of emails",
                    f"{t.near_duplicate_share:.3%}",
                    t.near_duplicate_share <= TARGET_NEAR_DUPLICATE_SHARE,
                )
            )
            out.append(
                (
                    "replies: 'Re: <subject>', threaded, original quoted",
                    f"{t.reply_subject_ok} / {t.reply_threading_ok} / {t.reply_quoted_ok} of {t.replies}",
                    t.replies_ok,
                )
            )
        if self.placement is not None:
            fixed, reactive = self.placement.fixed, self.placement.reactive
            out.append(
                (
                    "reactive ramp sends less mail into spam than the fixed ramp, and ends better placed",
                    f"into spam {reactive.junk_share:.1%} vs {fixed.junk_share:.1%}; placement "
                    f"{reactive.final_placement:.1%} vs {fixed.final_placement:.1%}",
                    reactive.junk_share < fixed.junk_share
                    and reactive.final_placement > fixed.final_placement,
                )
            )
        if self.pool is not None:
            d = self.pool
            out.append(
                (
                    f"no same-user or same-domain pair in a day of {d.mailboxes:,} mailboxes",
                    f"{d.same_user} same-user, {d.same_domain} same-domain of {d.picks:,} picks",
                    d.same_user == 0 and d.same_domain == 0,
                )
            )
            out.append(
                (
                    f"<= 2 statements per pick at {d.large_pool:,} mailboxes",
                    f"{d.statements_per_pick:.2f} ({d.ms_per_pick:.2f} ms)",
                    d.statements_per_pick <= 2,
                )
            )
        if self.throughput is not None:
            r = self.throughput.ratio
            out.append(("end-to-end / bare throughput >= 0.8", f"{r:.2f}", r >= 0.8))
        if self.scale is not None:
            s = self.scale
            out.append(
                (
                    f">= {TARGET_RATE:.1f} sends/s sustained with {s.mailboxes:,} mailboxes",
                    f"{s.sends_per_second:.1f}/s (slowest minute {s.min_minute_rate:.1f}/s)",
                    s.sends_per_second >= TARGET_RATE and s.min_minute_rate >= TARGET_RATE,
                )
            )
            out.append(("p99 lateness < 60 s", _secs(s.lateness.p99), s.lateness.p99 < 60))
        steady = self._steady_costs()
        if steady is not None:
            pe = steady.per_email()
            out.append(("<= 12 history events per email", f"{pe['events']:.1f}", pe["events"] <= 12))
            out.append(
                ("<= 2 workflow tasks per email", f"{pe['workflow_tasks']:.2f}", pe["workflow_tasks"] <= 2)
            )
        if self.memory is not None:
            kb = self.memory.kb_per_workflow
            out.append(("<= 100 KB worker memory per resident workflow", f"{kb:.0f} KB", kb <= 100))
        if not self.options.get("tiny") and set(PHASES) <= set(self.phase_seconds):
            minutes = self.wall_seconds / 60
            out.append(
                (
                    f"every phase at full size in < {TARGET_RUN_MINUTES} minutes",
                    f"{minutes:.1f} minutes",
                    minutes < TARGET_RUN_MINUTES,
                )
            )
        return out

    def _steady_costs(self) -> CostSummary | None:
        if self.throughput is not None and self.throughput.costs.steady.emails:
            return self.throughput.costs
        if self.crosscheck is not None:
            return self.crosscheck.costs
        return None


def _secs(x: float) -> str:
    return "never (not sent)" if math.isinf(x) else f"{x:.2f} s"


def _pct(x: float) -> str:
    return f"{x:.1%}" if x < 0.999 or x == 1 else f"{x:.2%}"


def _jsonable(obj: Any) -> Any:
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        out = {f.name: _jsonable(getattr(obj, f.name)) for f in dataclasses.fields(obj)}
        for name in (
            "fill",
            "full_share",
            "per_second",
            "ratio",
            "sends_per_second",
            "planned_per_second",
            "top_subject_share",
            "near_duplicate_share",
            "exact_duplicate_share",
            "logins_per_mailbox_day",
            "pg_round_trips",
            "ratio_to_bare_send",
        ):
            if hasattr(type(obj), name) and isinstance(getattr(type(obj), name), property):
                out[name] = _jsonable(getattr(obj, name))
        if isinstance(obj, Memory):
            out["kb_per_workflow"] = obj.kb_per_workflow
        if isinstance(obj, EngagementCost):
            out["added_per_email"] = obj.added_per_email()
            out["added_per_session"] = obj.added_per_session()
            out["ratio"] = obj.ratio()
        if isinstance(obj, CostSummary):
            out["per_email_steady"] = obj.per_email()
            out["per_email_total"] = obj.per_email(steady=False)
            if obj.mailbox_days:
                out["per_mailbox_day"] = obj.per_mailbox_day()
        return out
    if isinstance(obj, dict):
        return {str(k): _jsonable(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [_jsonable(v) for v in obj]
    if isinstance(obj, float) and math.isinf(obj):
        return "inf"
    return obj


def to_json(results: Results) -> str:
    data = _jsonable(results)
    data["targets"] = [{"target": t, "measured": m, "met": ok} for t, m, ok in results.targets()]
    return json.dumps(data, indent=2)


def to_markdown(r: Results) -> str:
    lines: list[str] = []
    m = r.machine
    lines += [
        f"Run {r.started_at} on {m.get('cpus')} CPUs ({m.get('cpu_model')}), {m.get('memory_gb')} GB RAM; "
        f"load average before the run {m.get('load_before')}; {r.wall_seconds / 60:.1f} minutes in all.",
        "",
        f"Command: `{r.command}`",
        "",
    ]
    lines += ["### Targets", "", "| Target | Measured | Met |", "|---|---|---|"]
    for target, measured, ok in r.targets():
        lines.append(f"| {target} | {measured} | {'yes' if ok else 'NO' if ok is not None else '-'} |")
    lines.append("")
    if r.fill:
        lines += _fill(r.fill)
    if r.crosscheck is not None:
        lines += _crosscheck(r.crosscheck)
    if r.engagement is not None:
        lines += _engagement(r.engagement)
    if r.aged is not None:
        lines += aged_markdown(r.aged)
    if r.deploy is not None:
        lines += deploy_markdown(r.deploy)
    if r.text is not None:
        lines += text_markdown(r.text)
    if r.placement is not None:
        lines += placement_markdown(r.placement)
    if r.pool is not None:
        lines += pool_markdown(r.pool)
    if r.throughput is not None:
        lines += _throughput(r.throughput)
    if r.scale is not None:
        lines += _scale(r.scale)
    lines += _costs(r)
    if r.memory is not None or r.scale is not None:
        lines += _memory(r)
    if r.phase_seconds:
        lines += _phases(r)
    if r.notes:
        lines += ["### Notes", ""] + [f"- {n}" for n in r.notes] + [""]
    return "\n".join(lines)


def _phases(r: Results) -> list[str]:
    out = ["### Where the time went", "", "| Phase | Minutes |", "|---|---|"]
    out += [f"| {name} | {seconds / 60:.1f} |" for name, seconds in r.phase_seconds.items()]
    return [*out, f"| all | {r.wall_seconds / 60:.1f} |", ""]


def _fill(runs: list[FillRun]) -> list[str]:
    from bench.fleet import SIM_DAY

    out = [
        f"### Fill rate: a simulated day ({SIM_DAY}, several timezones)",
        "",
        "Sent/quota overall, and the share of mailboxes at 100% of their quota, for the same mailboxes",
        "and quotas under the audit's legacy loop, its Phase 1 fix and this system (discrete-event",
        "simulation driving `DaySchedule`, the workflow's own scheduling code).",
        "",
        "| Fleet | Quota | Legacy | Phase 1 | This system | This system: outside window / closest gap |",
        "|---|---|---|---|---|---|",
    ]
    for run in runs:
        by = {m.model: m for m in run.models}
        ours = by["warmup"]
        cells = [
            f"{_pct(by[k].fill)} ({_pct(by[k].full_share)} at 100%)" for k in ("legacy", "phase1", "warmup")
        ]
        gap = f"{ours.min_gap_seconds:.0f} s" if ours.min_gap_seconds is not None else "-"
        out.append(f"| {run.label} | {ours.quota:,} | {' | '.join(cells)} | {ours.outside_window} / {gap} |")
    out.append("")
    big = runs[-1]
    p = big.peaks
    out += [
        f"Peak send rates of the largest fleet: {p.global_per_minute}/min and {p.global_per_hour:,}/hour "
        "in all, "
        f"{p.user_per_minute}/min and {p.user_per_hour}/hour for one user (100 mailboxes); caps of the scale "
        f"profile reached: {', '.join(big.binding_caps) or 'none'}. "
        "Legacy and Phase 1 send around the clock, "
        "so many of their sends fall outside the mailboxes' local 6-22 windows.",
        "",
    ]
    return out


def _crosscheck(c: CrossCheck) -> list[str]:
    return [
        "### Simulation against the real workflow",
        "",
        f"{c.mailboxes} mailboxes of the first fleet above ({c.timezones} timezones, "
        "same ids, seeds and ramp days) "
        "ran the same day on the "
        f"time-skipping Temporal server with the real `MailboxWarmupWorkflow`: {c.sends} sends, "
        f"{len(c.missing)} missing on either side, planned times identical (largest difference "
        f"{c.max_planned_diff} s), dispatch times within {c.max_dispatch_diff * 1000:.0f} ms "
        f"({c.wall_seconds:.1f} s of wall time).",
        "",
    ]


def _engagement(e: EngagementCost) -> list[str]:
    on, off = e.on.per_email(steady=False), e.off.per_email(steady=False)
    added, per_session, ratio = e.added_per_email(), e.added_per_session(), e.ratio()
    rows = [
        ("Engagement off, per email", off),
        ("Engagement on, per email", on),
        ("Added per email (on - off)", added),
        ("Added per inbox session", per_session),
        ("Ratio on / off, per email", ratio),
    ]
    out = [
        "### Engagement: the cost of inbox sessions",
        "",
        f"{e.mailboxes} mailboxes of the first fleet above ran {e.day} twice, side by side on "
        f"time-skipping servers (groups of up to {GROUP_MAILBOXES}, {GROUPS_AT_ONCE} at a time) with the "
        "real `MailboxWarmupWorkflow`: with engagement on (IMAP settings, "
        f"{e.inbox_sessions_setting} inbox sessions a day, the default) and off. `send_email` and "
        "`inbox_session` are bench-side recorders under the real names (the workflow's cost, not SMTP's or "
        f"IMAP's). Both runs sent {e.on.total.emails:,} and {e.off.total.emails:,} emails; the on-run's "
        f"workflows asked for {e.sessions_on:,} sessions ({e.session_attempts:,} activity calls), "
        f"**{e.logins_per_mailbox_day:.2f} IMAP logins per mailbox-day**; the off-run's for "
        f"{e.sessions_off} ({e.wall_seconds:.1f} s of wall time).",
        "",
        "| | History events | Workflow tasks | Billable actions |",
        "|---|---|---|---|",
    ]
    for name, v in rows:
        out.append(f"| {name} | {v['events']:.2f} | {v['workflow_tasks']:.2f} | {v['actions']:.2f} |")
    out.append("")
    return out


def _engagement_note(on: bool) -> str:
    if on:
        return "Engagement on: the mailboxes ran inbox sessions."
    return (
        "Engagement off: these mailboxes have no IMAP settings, so no inbox sessions ran; what sessions add "
        "is the engagement phase's figure (docs/benchmarks.md says why)."
    )


def _cores(cores: dict[str, float]) -> str:
    return ", ".join(f"{k} {v:.2f}" for k, v in sorted(cores.items(), key=lambda kv: -kv[1]) if v >= 0.005)


def _throughput(t: Throughput) -> list[str]:
    out = [
        "### Throughput (dev server on SQLite on disk, one worker process)",
        "",
        "| Loop | Workflows | Sustained | CPU cores used (by process) | CPU ms per completion |",
        "|---|---|---|---|---|",
    ]
    for rate in (t.e2e, t.bare, *([t.bare_send] if t.bare_send else [])):
        ms = ", ".join(f"{k} {v}" for k, v in rate.cpu_ms_per_completion().items())
        out.append(
            f"| {rate.name} | {rate.workflows:,} | {rate.per_second:.1f}/s | {_cores(rate.cores)} | {ms} |"
        )
    out += ["", *_rounds(t)] if t.rounds else []
    out += [
        "",
        f"Ratio end to end / bare: **{t.ratio:.2f}**. End to end is the real `send_email` (ledger in "
        "PostgreSQL, aiosmtplib to the SMTP sink process), caps on (set far above the machine's rate). "
        + _engagement_note(t.engagement),
        "",
        *(
            [
                f"Ratio end to end / the bare loop with a send's activity options and payloads: "
                f"**{t.ratio_to_bare_send:.2f}** (what is left is the send path's own cost and the mailbox "
                "workflow's logic).",
                "",
            ]
            if t.bare_send
            else []
        ),
        f"PostgreSQL transactions per email end to end: {t.e2e.pg_round_trips:.1f} (each statement of the "
        "send path is one, so this counts its round trips).",
        "",
    ]
    if t.e2e.profile:
        out += ["Hottest frames of the end-to-end worker (py-spy, share of busy samples, inclusive):", ""]
        out += [f"- {share:.0%} `{frame}`" for share, frame in t.e2e.profile[:12]]
        out.append("")
    out += _sql(t.e2e.sql)
    return out


def _rounds(t: Throughput) -> list[str]:
    short = {"e2e": "end to end", "bare": "bare", "bare_send": "a send's options"}
    out = [
        f"The loops ran in {len(t.rounds)} rounds, in turn, each round in the reverse order of the one "
        "before; each loop above is its rounds pooled. *CPU ms* is what every process spent per completion "
        "(end to end / bare); *fixed work* is the CPU seconds a fixed piece of Python took around each "
        "span (end to end / bare / a send's options): the machine's speed of the moment, higher is slower.",
        "",
        "| Round | Order | End to end | Bare loop | Bare loop, a send's options | Ratio | CPU ms "
        "| Fixed work (s) |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for n, r in enumerate(t.rounds, 1):
        loops = (r.e2e, r.bare, r.bare_send)
        cpu = " / ".join(f"{sum(x.cpu_ms_per_completion().values()):.1f}" for x in (r.e2e, r.bare))
        work = " / ".join(f"{x.fixed_work_seconds:.3f}" for x in loops)
        out.append(
            f"| {n} | {', '.join(short[x] for x in r.order)} | "
            + " | ".join(f"{x.per_second:.1f}/s" for x in loops)
            + f" | {r.ratio:.2f} | {cpu} | {work} |"
        )
    ratios = [r.ratio for r in t.rounds]
    return [
        *out,
        "",
        f"Pooled: **{t.ratio:.2f}**; between rounds the ratio went from {min(ratios):.2f} to "
        f"{max(ratios):.2f}.",
    ]


def _scale(s: ScaleResult) -> list[str]:
    out = [
        f"### Scale: {s.mailboxes:,} mailboxes on one machine",
        "",
        f"Enrollment ({s.enroll_mode}): {s.mailboxes:,} workflows started in {s.enroll_seconds:.0f} s "
        f"({s.start_per_second:.0f}/s)"
        + (
            ", each with a start delay to its first planned send (so its first task is that send's)"
            if s.enroll_mode == "delayed"
            else ", each running its first task at once"
        )
        + " (setup: the dev server enrolls without fsync, then restarts on its durable pragmas for the "
        "measured span)"
        + f". Each mailbox sends {s.quota_per_day} a day in its 6-22 window ({s.timezone}, mid-window): "
        f"{s.mailboxes * s.quota_per_day:,} emails a day.",
        "",
        "| Measured span | Planned | Sent | Sustained | Slowest minute | Not sent "
        "| Lateness p50 / p99 / max |",
        "|---|---|---|---|---|---|---|",
        f"| {s.measured_seconds / 60:.1f} min | {s.planned:,} ({s.planned_per_second:.1f}/s) | {s.sent:,} | "
        f"{s.sends_per_second:.1f}/s | {s.min_minute_rate:.1f}/s | {s.not_sent} | "
        f"{_secs(s.lateness.p50)} / {_secs(s.lateness.p99)} / {_secs(s.lateness.max)} |",
        "",
        f"Lateness is the SMTP server's 250 (`sent_at`) minus the planned time; the workflow's dispatch "
        f"alone: p50 {_secs(s.dispatch_lateness.p50)}, p99 {_secs(s.dispatch_lateness.p99)}. "
        + (
            "Not sent, by ledger status: "
            + ", ".join(f"{k} {v}" for k, v in sorted(s.not_sent_by_status.items()))
            + ". "
            if s.not_sent_by_status
            else ""
        )
        + f"Mailboxes whose workflow re-spread its day (a send finished less than delay_min before the next "
        f"planned one; judged by the ledger's planned times): {s.respread_mailboxes}. "
        f"CPU cores used: {_cores(s.cores)}. " + _engagement_note(s.engagement),
        "",
    ]
    if s.cap_checks:
        checks = "; ".join(
            f"{c.ms_per_check:.1f} ms with {c.permits_last_hour:,} permits in the last hour and statistics "
            f"{c.statistics} (at most {c.locked_checks_per_second:.0f} locked checks/s)"
            for c in s.cap_checks
        )
        out += [
            f"One cap check (`cap_gate.peek`, PostgreSQL otherwise idle): {checks}. Each email makes two, "
            "the second under the global advisory lock; 62,500 permits is the last hour at 1,000,000 "
            "emails a day.",
            "",
        ]
    if s.profile:
        out += ["Hottest frames of the worker at this scale (py-spy, share of busy samples, inclusive):", ""]
        out += [f"- {share:.0%} `{frame}`" for share, frame in s.profile[:12]]
        out.append("")
    out += _sql(s.sql)
    return out


def _sql(q: SqlProfile | None) -> list[str]:
    if q is None or not q.samples:
        return []
    out = [
        f"What PostgreSQL was running (pg_stat_activity, {q.samples} samples; busy in {q.busy_share:.0%}; "
        "a statement can be running in several connections at once):",
        "",
    ]
    out += [f"- {share:.0%} `{stmt}`" for share, stmt in q.top]
    out.append("")
    return out


def _costs(r: Results) -> list[str]:
    rows = []
    if r.throughput is not None:
        rows.append(("Per email, steady state (dev server)", r.throughput.costs.per_email()))
    if r.crosscheck is not None:
        c = r.crosscheck.costs
        rows.append(("Per email, whole simulated day", c.per_email(steady=False)))
        rows.append(("Per mailbox-day", c.per_mailbox_day()))
    if not rows:
        return []
    out = [
        "### Cost per email",
        "",
        "History events, workflow tasks and Temporal Cloud billable actions, counted in the real histories.",
        "",
        "| | History events | Workflow tasks | Billable actions |",
        "|---|---|---|---|",
    ]
    for name, v in rows:
        out.append(f"| {name} | {v['events']:.2f} | {v['workflow_tasks']:.2f} | {v['actions']:.2f} |")
    if r.crosscheck is not None:
        emails = r.crosscheck.costs.per_mailbox_day()["emails"]
        out += ["", f"(The simulated day's mailboxes sent {emails:.1f} emails a day on average.)"]
    out.append("")
    return out


def _memory(r: Results) -> list[str]:
    out = ["### Worker memory", ""]
    if r.memory is not None:
        mem = r.memory
        out.append(
            f"- {mem.kb_per_workflow:.0f} KB per resident mailbox workflow: "
            f"RSS {mem.rss_idle_mb:.0f} MB idle, "
            f"{mem.rss_mb:.0f} MB with {mem.workflows:,} workflows cached."
        )
        ms = ", ".join(f"{k} {v} ms" for k, v in sorted(mem.enroll_cpu_ms.items(), key=lambda kv: -kv[1]))
        out.append(
            f"- Enrolling them (start, then the first workflow task at once): {mem.enroll_per_second:.0f} "
            f"mailboxes/s; CPU per mailbox: {ms}."
        )
    if r.memory_isolated is not None:
        u = r.memory_isolated
        ms = ", ".join(f"{k} {v} ms" for k, v in sorted(u.enroll_cpu_ms.items(), key=lambda kv: -kv[1]))
        out.append(
            f"- With `WARMUP_WORKFLOW_SANDBOX=isolated` (each run re-imports the workflow modules; see "
            f"workers/sandbox.py): {u.kb_per_workflow:.0f} KB per resident workflow; enrolling CPU per "
            f"mailbox: {ms}."
        )
    if r.scale is not None:
        s = r.scale
        out.append(
            f"- With {s.mailboxes:,} mailboxes (cache {s.cache_size:,} workflows): "
            f"worker RSS {s.worker_rss_mb:.0f} MB ({s.worker_rss_mb_idle:.0f} MB idle) after "
            f"{s.workflows_run:,} of them had run on it."
        )
    out.append("")
    return out


def write(results: Results, directory: Path, docs: Path | None) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    stamp = re.sub(r"[^0-9T]", "", results.started_at)[:15]
    (directory / f"{stamp}.json").write_text(to_json(results))
    table = to_markdown(results)
    (directory / f"{stamp}.md").write_text(table)
    (directory / "latest.md").write_text(table)
    (directory / "latest.json").write_text(to_json(results))
    if docs is not None:
        replace_section(docs, table)
    return directory / f"{stamp}.md"


def replace_section(docs: Path, table: str) -> None:
    """Put `table` between the bench markers of `docs`, keeping the rest of the page."""
    text = docs.read_text() if docs.exists() else ""
    block = f"{DOCS_BEGIN}\n{table}\n{DOCS_END}"
    if DOCS_BEGIN in text and DOCS_END in text:
        head, rest = text.split(DOCS_BEGIN, 1)
        _, tail = rest.split(DOCS_END, 1)
        text = head + block + tail
    else:
        text = text.rstrip() + ("\n\n" if text else "") + block + "\n"
    docs.write_text(text)
