"""Every `starter` command on the real stack: PostgreSQL, the Temporal dev server, an SMTP sink and a
worker; each with its table, its `--json` and its errors for bad input."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path

import pytest
from temporalio.api.enums.v1 import EventType
from temporalio.client import WorkflowExecutionStatus

from tests.helpers.operator_cli import (  # noqa: F401  (the fixtures)
    NO_SENDS,
    PASSWORD,
    Op,
    eventually,
    op_fixture,
    worker_fixture,
)
from warmup.secrets import SecretBox

# ---- list ------------------------------------------------------------------------------------------


async def test_list_filters_by_user_and_state(op: Op, worker: None) -> None:
    for address, user in [("a1@list.test", "ann"), ("a2@list.test", "ann"), ("b1@list.test", "bob")]:
        await op.enroll(address, user, *NO_SENDS)
    await op.ok("pause", "--mailbox", "a2@list.test", "--reason", "holiday")

    everything = (await op.ok("list", "--json")).json()
    assert isinstance(everything, list)
    assert [(m["address"], m["user_id"], m["state"]) for m in everything] == [
        ("a1@list.test", "ann", "active"),
        ("a2@list.test", "ann", "paused"),
        ("b1@list.test", "bob", "active"),
    ]
    assert everything[1]["pause_reason"] == "holiday"
    assert everything[0]["workflow_id"] == f"mailbox-{everything[0]['mailbox_id']}"

    anns = (await op.ok("list", "--user", "ann", "--state", "active", "--json")).json()
    assert isinstance(anns, list)
    assert [m["address"] for m in anns] == ["a1@list.test"]

    table = (await op.ok("list", "--user", "ann")).out
    assert "a1@list.test" in table and "a2@list.test" in table and "b1@list.test" not in table
    assert "holiday" in table and "MAILBOX" in table
    assert "No mailboxes match" in (await op.ok("list", "--user", "nobody")).out

    bad = await op.run("list", "--state", "sleeping")
    assert bad.code == 2 and "--state" in bad.err


# ---- status: a user, and --watch -----------------------------------------------------------------


async def test_status_of_a_user_sums_its_mailboxes_from_the_ledger(op: Op, worker: None) -> None:
    op.sink.credentials.update({"s1@status.test": PASSWORD, "s2@status.test": PASSWORD})
    for address in ("s1@status.test", "s2@status.test"):
        await op.enroll(address, "sue", "--ramp-start", "2", "--ramp-ceiling", "2")
    await op.sink.wait_for(4, timeout=30)

    async def settled() -> bool:
        data = (await op.ok("status", "--user", "sue", "--json")).json()
        assert isinstance(data, dict)
        return bool(data["totals"]["delivered_today"] == 4 and data["totals"]["quota_today"] == 4)

    await eventually(settled)
    data = (await op.ok("status", "--user", "sue", "--json")).json()
    assert isinstance(data, dict)
    assert data["totals"] == {
        "mailboxes": 2,
        "delivered_today": 4,
        "quota_today": 4,
        "paused": 0,
        "unanswered": 0,
    }
    assert {m["address"]: m["delivered_today"] for m in data["mailboxes"]} == await op.delivered()
    # Each one received the other's two: the receiving side of the same day.
    assert {m["address"]: m["engagement_today"]["received"] for m in data["mailboxes"]} == {
        "s1@status.test": 2,
        "s2@status.test": 2,
    }
    assert all(m["status"]["sent_today"] == 2 and m["fill"] == 1.0 for m in data["mailboxes"])

    table = (await op.ok("status", "--user", "sue")).out
    assert "User sue: 4 of 4 sent today across 2 mailboxes" in table
    assert "s1@status.test" in table and "2/2" in table

    unknown = await op.run("status", "--user", "nobody")
    assert unknown.code == 1 and "nobody" in unknown.err


async def test_status_watch_shows_progress_until_the_count(op: Op, worker: None) -> None:
    op.sink.credentials["w@watch.test"] = PASSWORD
    await op.enroll("inbox@watch.test", "ida", *NO_SENDS)  # someone to send to
    await op.enroll("w@watch.test", "wes", "--ramp-start", "4", "--ramp-ceiling", "4")
    run = await op.ok(
        "status", "--mailbox", "w@watch.test", "--watch", "--interval", "0.7", "--count", "5", "--json"
    )
    frames = [json.loads(line) for line in run.out.splitlines()]
    assert len(frames) == 5  # one compact JSON document per refresh
    sent = [f["sent_today"] for f in frames]
    assert sent == sorted(sent) and sent[-1] > sent[0], f"no progress seen: {sent}"
    assert {f["quota_today"] for f in frames} == {4}

    tables = (await op.ok("status", "--user", "wes", "--watch", "--interval", "0.1", "--count", "2")).out
    assert tables.count("User wes:") == 2 and "UTC" in tables

    for argv, flag in [
        (["--count", "2"], "--watch"),
        (["--watch", "--interval", "0"], "--interval"),
        (["--watch", "--count", "0"], "--count"),
    ]:
        bad = await op.run("status", "--mailbox", "w@watch.test", *argv)
        assert bad.code == 2 and flag in bad.err, bad.err


# ---- pause / resume a whole user -----------------------------------------------------------------


async def test_pause_and_resume_every_mailbox_of_a_user(op: Op, worker: None) -> None:
    for address, user in [("p1@pause.test", "pat"), ("p2@pause.test", "pat"), ("q1@pause.test", "quinn")]:
        await op.enroll(address, user, *NO_SENDS)

    paused = await op.ok("pause", "--user", "pat", "--reason", "billing", "--json")
    data = paused.json()
    assert isinstance(data, dict)
    assert [(m["address"], m["ok"]) for m in data["mailboxes"]] == [
        ("p1@pause.test", True),
        ("p2@pause.test", True),
    ]
    assert await op.states() == {
        "p1@pause.test": "paused",
        "p2@pause.test": "paused",
        "q1@pause.test": "active",
    }

    async def workflows_paused(expected: bool) -> bool:
        return all([(await op.status(a))["paused"] is expected for a in ("p1@pause.test", "p2@pause.test")])

    await eventually(lambda: workflows_paused(True))
    assert (await op.status("p1@pause.test"))["pause_reason"] == "billing"
    assert (await op.status("q1@pause.test"))["paused"] is False

    resumed = await op.ok("resume", "--user", "pat")
    assert "Resumed 2 of 2 mailboxes of user pat" in resumed.out
    assert set((await op.states()).values()) == {"active"}
    await eventually(lambda: workflows_paused(False))

    # Out of the recipient pool (its address was refused at RCPT): its status says why, a resume readmits it.
    reason = "its address was refused at RCPT on 2026-03-02 (550 5.1.1 User unknown); fix the address"
    await op.fetch("UPDATE mailboxes SET receiving_off = $1 WHERE address = 'q1@pause.test'", reason)
    shown = await op.ok("status", "--mailbox", "q1@pause.test")
    assert "Receiving" in shown.out and "550 5.1.1 User unknown" in shown.out
    assert (await op.status("q1@pause.test"))["receiving_off"] == reason
    one = (await op.ok("pause", "--mailbox", "q1@pause.test", "--json")).json()
    assert isinstance(one, dict) and one["state"] == "paused" and one["address"] == "q1@pause.test"
    back = (await op.ok("resume", "--mailbox", "q1@pause.test", "--json")).json()
    assert isinstance(back, dict) and back["state"] == "active" and back["workflow_id"] == one["workflow_id"]
    assert (await op.states())["q1@pause.test"] == "active"
    assert (await op.status("q1@pause.test"))["receiving_off"] == ""
    neither = await op.run("resume")
    assert neither.code == 2 and "--mailbox" in neither.err and "--user" in neither.err

    nobody = await op.run("pause", "--user", "nobody")
    assert nobody.code == 1 and "no enrolled mailboxes" in nobody.err
    # Both flags: the mailbox, only under its owner (tests/test_tenancy.py covers every command).
    scoped = await op.run("pause", "--user", "pat", "--mailbox", "p1@pause.test", "--reason", "scoped")
    assert scoped.code == 0, scoped.err
    assert (await op.states())["p1@pause.test"] == "paused"
    foreign = await op.run("pause", "--user", "pat", "--mailbox", "q1@pause.test")
    assert foreign.code == 1 and "no mailbox q1@pause.test for user pat" in foreign.err
    assert (await op.states())["q1@pause.test"] == "active"


# ---- update ----------------------------------------------------------------------------------------


async def test_update_changes_the_stored_schedule_and_the_running_workflow(op: Op, worker: None) -> None:
    mailbox_id = await op.enroll("u1@update.test", "uma", *NO_SENDS)
    await op.enroll("u2@update.test", "uma", *NO_SENDS)

    run = await op.ok(
        "update", "--mailbox", "u1@update.test", "--timezone", "Asia/Tokyo", "--window-start", "8",
        "--window-end", "20", "--ramp-ceiling", "12", "--json",
    )  # fmt: skip
    data = run.json()
    assert isinstance(data, dict)
    assert data["changed"] == {
        "timezone": ["Europe/Lisbon", "Asia/Tokyo"],
        "window_start_hour": [0, 8],
        "window_end_hour": [24, 20],
        "ramp_ceiling": [0, 12],
    }
    rows = await op.fetch(
        "SELECT timezone, window_start_hour, window_end_hour, ramp_ceiling FROM mailboxes WHERE id = $1",
        mailbox_id,
    )
    assert tuple(rows[0]) == ("Asia/Tokyo", 8, 20, 12)
    # The workflow got the whole schedule and re-spread today with it.
    await eventually(lambda: _status_has(op, "u1@update.test", "timezone", "Asia/Tokyo"))
    history = await op.client.get_workflow_handle(f"mailbox-{mailbox_id}").fetch_history()
    updates = [
        e.workflow_execution_update_accepted_event_attributes.accepted_request.input
        for e in history.events
        if e.event_type == EventType.EVENT_TYPE_WORKFLOW_EXECUTION_UPDATE_ACCEPTED
    ]
    assert updates[-1].name == "change_settings"  # an Update: its validator checked the schedule
    payload = json.loads(updates[-1].args.payloads[0].data)
    assert (payload["timezone"], payload["window_start_hour"], payload["ramp"]["ceiling"]) == (
        "Asia/Tokyo",
        8,
        12,
    )

    # A whole user, and the table.
    table = await op.ok("update", "--user", "uma", "--delay-min", "1", "--delay-max", "3")
    assert "Updated 2 of 2 mailboxes of user uma" in table.out
    rows = await op.fetch("SELECT DISTINCT delay_min_minutes, delay_max_minutes FROM mailboxes")
    assert [tuple(r) for r in rows] == [(1.0, 3.0)]

    # Weekdays only: stored, signalled, and seen by the workflow; --all-days turns it back off.
    data = (await op.ok("update", "--mailbox", "u2@update.test", "--weekdays-only", "--json")).json()
    assert isinstance(data, dict) and data["changed"] == {"weekdays_only": [False, True]}
    stored = await op.fetch("SELECT weekdays_only FROM mailboxes WHERE address = 'u2@update.test'")
    assert [tuple(r) for r in stored] == [(True,)]
    await eventually(lambda: _status_has(op, "u2@update.test", "weekdays_only", True))
    await op.ok("update", "--user", "uma", "--all-days")
    assert [tuple(r) for r in await op.fetch("SELECT DISTINCT weekdays_only FROM mailboxes")] == [(False,)]
    await eventually(lambda: _status_has(op, "u2@update.test", "weekdays_only", False))


async def _status_has(op: Op, address: str, key: str, value: object) -> bool:
    return (await op.status(address))[key] == value


async def test_update_refuses_bad_input_and_changes_nothing(op: Op, worker: None) -> None:
    await op.enroll("b@update.test", "bea", *NO_SENDS, "--window-start", "6", "--window-end", "22")
    before = await op.fetch("SELECT * FROM mailboxes")

    crossed = await op.run("update", "--mailbox", "b@update.test", "--window-start", "23")
    assert crossed.code == 2
    assert "--window-start (23) must be before --window-end (22)" in crossed.err
    assert "keeps the mailbox's current value" in crossed.err and "nothing was changed" in crossed.err

    for argv, expected in [
        (["--timezone", "Mars/Olympus"], "--timezone"),
        (["--ramp-variance", "2"], "--ramp-variance"),
        (["--delay-min", "abc"], "--delay-min"),
        ([], "nothing to update"),
    ]:
        run = await op.run("update", "--mailbox", "b@update.test", *argv)
        assert run.code == 2 and expected in run.err, (argv, run.err)

    unknown = await op.run("update", "--mailbox", "nobody@update.test", "--ramp-start", "1")
    assert unknown.code == 1 and "no such mailbox" in unknown.err
    malformed = await op.run("update", "--mailbox", "not-an-address", "--ramp-start", "1")
    assert malformed.code == 2 and "--mailbox" in malformed.err
    assert await op.fetch("SELECT * FROM mailboxes") == before


# ---- remove ----------------------------------------------------------------------------------------


async def test_remove_ends_the_workflow_and_keeps_the_send_history(op: Op, worker: None) -> None:
    op.sink.credentials.update({"r1@remove.test": PASSWORD, "r2@remove.test": PASSWORD})
    mailbox_id = await op.enroll("r1@remove.test", "rex", "--ramp-start", "2", "--ramp-ceiling", "2")
    await op.enroll("r2@remove.test", "rex", *NO_SENDS)
    await op.sink.wait_for(2, timeout=30)
    kept = await op.fetch("SELECT idempotency_key, status::text FROM send_ledger ORDER BY idempotency_key")
    assert len(kept) == 2

    data = (await op.ok("remove", "--mailbox", "r1@remove.test", "--json")).json()
    assert isinstance(data, dict)
    assert (data["ok"], data["was_running"], data["stopped"], data["ledger_rows_kept"]) == (
        True,
        True,
        True,
        2,
    )
    desc = await op.client.get_workflow_handle(f"mailbox-{mailbox_id}").describe()
    assert desc.status is WorkflowExecutionStatus.COMPLETED  # finished cleanly, not terminated
    assert (await op.states())["r1@remove.test"] == "removed"
    assert (
        await op.fetch("SELECT idempotency_key, status::text FROM send_ledger ORDER BY idempotency_key")
        == kept
    )

    # Removing again is harmless; pausing a removed mailbox is refused with the way back.
    again = await op.ok("remove", "--mailbox", "r1@remove.test")
    assert "Removed r1@remove.test" in again.out and "2 sends kept" in again.out
    paused = await op.run("pause", "--mailbox", "r1@remove.test")
    assert paused.code == 1 and "starter enroll" in paused.err
    # The user-wide form skips what is already removed.
    rest = (await op.ok("remove", "--user", "rex", "--json")).json()
    assert isinstance(rest, dict)
    assert [m["address"] for m in rest["mailboxes"]] == ["r2@remove.test"]
    assert set((await op.states()).values()) == {"removed"}

    bad = await op.run("remove", "--mailbox", "r1@remove.test", "--wait", "-1")
    assert bad.code == 2 and "--wait" in bad.err


# ---- report ------------------------------------------------------------------------------------------


async def test_report_answers_the_three_dashboard_queries(op: Op, worker: None) -> None:
    op.sink.credentials.update({"ok@report.test": PASSWORD, "bad@report.test": PASSWORD})
    await op.enroll("inbox@report.test", "ida", *NO_SENDS)  # someone to send to
    await op.enroll("ok@report.test", "rita", "--ramp-start", "3", "--ramp-ceiling", "3")
    await op.sink.wait_for(3, timeout=30)
    op.sink.script_data_replies(["550 5.7.1 policy says no"])  # the next send is refused: paused
    await op.enroll("bad@report.test", "rita", "--ramp-start", "3", "--ramp-ceiling", "3")
    await eventually(lambda: _status_has(op, "bad@report.test", "paused", True))
    await eventually(lambda: _status_has(op, "ok@report.test", "sent_today", 3))

    data = (await op.ok("report", "--json")).json()
    assert isinstance(data, dict)
    # 1. Under quota today: the paused mailbox, with its fill from the ledger.
    delivered = await op.delivered()
    under = data["under_quota"]
    assert [(r["address"], r["quota"]) for r in under] == [("bad@report.test", 3)]
    assert under[0]["delivered"] == delivered.get("bad@report.test", 0)
    assert under[0]["fill"] == pytest.approx(under[0]["delivered"] / 3)
    assert under[0]["state"].startswith("paused (") and "550" in under[0]["state"]
    # 2. Hourly throughput: every delivery of the last 24 h, by hour.
    assert sum(h["delivered"] for h in data["hourly"]) == sum(delivered.values())
    assert sum(h["failed"] for h in data["hourly"]) == 1
    hour = dt.datetime.fromisoformat(data["hourly"][-1]["hour"])
    assert dt.datetime.now(dt.UTC) - hour < dt.timedelta(hours=1)
    # 3. Queue health: Temporal's backlog with the worker polling, workflow states, stored states.
    queue = data["queue"]
    assert {b["task_queue_type"] for b in queue["backlog"]} == {"workflow", "activity"}
    assert all(b["pollers"] >= 1 for b in queue["backlog"])
    assert queue["workflows"] == {"Running": 3}
    assert queue["mailbox_states"] == {"active": 2, "paused": 1, "removed": 0}
    assert {s["status"]: s["count"] for s in queue["ledger_last_24h"]} == {
        "SENT": sum(delivered.values()),
        "FAILED": 1,
    }
    # 4. The receiving side: every delivery was received by a pool mailbox; none was looked for, as
    # these mailboxes have no IMAP settings.
    assert sum(d["received"] for d in data["engagement"]) == sum(delivered.values())
    assert sum(d["inbox"] + d["junk"] + d["other"] + d["missing"] for d in data["engagement"]) == 0
    assert data["placement"] == []  # 5. no sender has a placement yet: nobody looked

    table = (await op.ok("report")).out
    for title in ("1. Under quota today", "2. Hourly throughput", "3. Queue health", "4. The receiving side"):
        assert title in table
    assert "5. Inbox placement of 0 senders (lowest first): no engaging receiver" in table
    assert "bad@report.test" in table and "ok@report.test" not in table.split("2. Hourly")[0]

    bad = await op.run("report", "--limit", "-1")
    assert bad.code == 2 and "--limit" in bad.err


# ---- enroll --csv ------------------------------------------------------------------------------------

HEADER = "mailbox,user,smtp_host,smtp_port,smtp_security,username,timezone,secret,ramp_start,ramp_ceiling\n"


def _row(address: str, port: str = "2525", tz: str = "UTC", secret: str = PASSWORD, user: str = "csv") -> str:
    return f"{address},{user},127.0.0.1,{port},none,{address},{tz},{secret},0,0\n"


async def test_csv_with_a_bad_row_stores_nothing_and_names_each_bad_line(
    op: Op, worker: None, tmp_path: Path
) -> None:
    file = tmp_path / "mailboxes.csv"
    file.write_text(
        HEADER
        + _row("good1@csv.test")
        + _row("badport@csv.test", port="70000")
        + _row("badtz@csv.test", tz="Mars/Olympus")
        + _row("good2@csv.test", user="other")
        + _row("GOOD1@csv.test")  # the same mailbox again
        + _row("nosecret@csv.test", secret="")
    )
    file.chmod(0o600)
    run = await op.run("enroll", "--csv", str(file), "--json")
    assert run.code == 2, run.err
    report = run.json()
    assert isinstance(report, dict)
    rows = {r["line"]: r for r in report["rows"]}
    assert {n: r["status"] for n, r in rows.items()} == {
        2: "valid",
        3: "invalid",
        4: "invalid",
        5: "valid",
        6: "invalid",
        7: "invalid",
    }
    assert "smtp_port" in rows[3]["problems"][0] and "70000" in rows[3]["problems"][0]
    assert "timezone" in rows[4]["problems"][0]
    assert "also on line 2" in rows[6]["problems"][0]
    assert "secret" in rows[7]["problems"][0]
    assert report["counts"] == {
        "enrolled": 0, "updated": 0, "unchanged": 0, "valid": 2, "invalid": 4, "failed": 0
    }  # fmt: skip
    assert report["stored"] is False
    assert f"--csv {file} line 3: smtp_port" in run.err and "nothing was stored" in run.err
    assert PASSWORD not in run.out + run.err

    # The whole file was checked first: not even the good rows were stored or started.
    assert await op.states() == {}

    # Fixed file: every row enrolls, each with a running workflow; run again (an import interrupted and
    # resumed), every row is already enrolled and skipped; one row changed, that row alone is updated.
    file.write_text(HEADER + _row("good1@csv.test") + _row("badport@csv.test") + _row("badtz@csv.test"))
    fixed = await op.run("enroll", "--csv", str(file), "--json")
    assert fixed.code == 0, fixed.err
    data = fixed.json()
    assert isinstance(data, dict) and data["counts"]["enrolled"] == 3 and data["stored"] is True
    for r in data["rows"]:
        desc = await op.client.get_workflow_handle(r["workflow_id"]).describe()
        assert desc.status is WorkflowExecutionStatus.RUNNING
    stored = await op.fetch("SELECT secret_ciphertext FROM mailboxes")
    assert len(stored) == 3 and all(
        SecretBox(op.settings.secret_keys()).decrypt(r["secret_ciphertext"]) == PASSWORD for r in stored
    )
    again = await op.run("enroll", "--csv", str(file))
    assert again.code == 0, again.err
    assert "0 updated, 3 already enrolled (unchanged, skipped)" in again.out, again.out
    assert "badtz@csv.test" in again.out
    file.write_text(
        HEADER + _row("good1@csv.test", port="2526") + _row("badport@csv.test") + _row("badtz@csv.test")
    )
    changed = await op.run("enroll", "--csv", str(file), "--json")
    assert changed.code == 0, changed.err
    changes = changed.json()
    assert isinstance(changes, dict)
    assert {r["mailbox"]: r["status"] for r in changes["rows"]} == {
        "good1@csv.test": "updated", "badport@csv.test": "unchanged", "badtz@csv.test": "unchanged"
    }  # fmt: skip


async def test_csv_file_problems_and_dry_runs_store_nothing(op: Op, worker: None, tmp_path: Path) -> None:
    file = tmp_path / "m.csv"
    file.write_text(HEADER + _row("dry@csv.test") + _row("dry2@csv.test", port="x"))
    dry = await op.run("enroll", "--csv", str(file), "--dry-run", "--json")
    assert dry.code == 2
    data = dry.json()
    assert isinstance(data, dict) and data["counts"]["valid"] == 1 and data["counts"]["invalid"] == 1

    for text, expected in [
        ("mailbox,user,smtp_host,smtp_port,username,timezone,secret,colour\n", "unknown column(s) 'colour'"),
        ("mailbox,user,smtp_host,username,timezone,secret\n", "missing column(s) smtp_port"),
        ("mailbox,user,smtp_host,smtp_port,username,timezone\n", "no password column"),
        ("", "the file is empty"),
        (HEADER, "no rows"),
    ]:
        file.write_text(text)
        run = await op.run("enroll", "--csv", str(file))
        assert run.code == 2 and expected in run.err and "nothing was stored" in run.err, run.err
    missing = await op.run("enroll", "--csv", str(tmp_path / "nope.csv"))
    assert missing.code == 2 and "cannot read" in missing.err
    mixed = await op.run("enroll", "--csv", str(file), "--mailbox", "x@csv.test")
    assert mixed.code == 2 and "--mailbox" in mixed.err
    assert await op.fetch("SELECT * FROM mailboxes") == []

    # From stdin, and a readable file with passwords gets a warning.
    piped = await op.run("enroll", "--csv", "-", "--json", stdin=HEADER + _row("stdin@csv.test"))
    assert piped.code == 0, piped.err
    file.write_text(HEADER + _row("loose@csv.test"))
    file.chmod(0o644)
    loose = await op.run("enroll", "--csv", str(file))
    assert loose.code == 0 and "chmod 600" in loose.err
    assert set(await op.states()) == {"stdin@csv.test", "loose@csv.test"}


async def test_single_enroll_still_names_missing_flags(op: Op) -> None:
    run = await op.run("enroll", "--mailbox", "x@csv.test")
    assert run.code == 2
    assert "--user" in run.err and "--timezone" in run.err and "--csv" in run.err


async def test_weekdays_only_at_enroll_single_and_csv(op: Op, worker: None, tmp_path: Path) -> None:
    await op.enroll("wk@csv.test", "wendy", *NO_SENDS, "--weekdays-only")
    file = tmp_path / "wk.csv"
    file.write_text(
        HEADER.rstrip("\n") + ",weekdays_only\n" + _row("wk2@csv.test").rstrip("\n") + ",true\n"
        + _row("wk3@csv.test").rstrip("\n") + ",maybe\n"
    )  # fmt: skip
    file.chmod(0o600)
    bad = await op.run("enroll", "--csv", str(file))
    assert bad.code == 2 and "line 3: weekdays_only" in bad.err and "true or false" in bad.err, bad.err
    file.write_text(HEADER.rstrip("\n") + ",weekdays_only\n" + _row("wk2@csv.test").rstrip("\n") + ",true\n")
    assert (await op.run("enroll", "--csv", str(file))).code == 0
    stored = await op.fetch("SELECT address, weekdays_only FROM mailboxes ORDER BY address")
    assert [tuple(r) for r in stored] == [("wk2@csv.test", True), ("wk@csv.test", True)]
    await eventually(lambda: _status_has(op, "wk@csv.test", "weekdays_only", True))
    await eventually(lambda: _status_has(op, "wk2@csv.test", "weekdays_only", True))
