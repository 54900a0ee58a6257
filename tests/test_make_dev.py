"""`make dev` end to end: the real stack starts on the mail lab, demo mail lands in real mailboxes (some in
Junk), is rescued, read and answered, the banner's IMAP command opens a demo mailbox, Ctrl-C stops everything
and the data (database, key, Maildirs) stays; with `--mail sink` the demo runs on the SMTP sink."""

from __future__ import annotations

import json
import os
import re
import signal
import stat
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from devstack.devenv import read_env_file
from devstack.mail_lab import LAB_HOST, unavailable_reason
from devstack.postgres import free_port

MAIL_LINE = re.compile(r"^\d\d:\d\d:\d\d  mail  (demo\d@demo\.test) -> (demo\d@demo\.test)  \S", re.MULTILINE)
# On the lab: the folder the filter chose, then the subject.
LANDED = re.compile(
    r"^\d\d:\d\d:\d\d  (mail|reply)  (demo\d@demo\.test) -> (demo\d@demo\.test)  (INBOX|Junk)  (.+)$", re.M
)
IMAP_COMMAND = re.compile(r"^  (curl .*imaps://.*)   # a demo mailbox over IMAP$", re.MULTILINE)
DASHBOARD = re.compile(r"^  Dashboard        (http://127\.0\.0\.1:\d+)/dashboard ", re.MULTILINE)
DEMO_TOKEN = re.compile(r"^  Demo token       (wu_\S+)  \(user (\S+)\)$", re.MULTILINE)


def _dashboard_answers(output: str) -> None:
    """The banner's dashboard and demo token work: the API lists the demo user's mailboxes, and the
    dashboard shows them once signed in with that token."""
    (base,), ((token, user),) = DASHBOARD.findall(output), DEMO_TOKEN.findall(output)
    request = urllib.request.Request(f"{base}/v1/mailboxes", headers={"Authorization": f"Bearer {token}"})
    with urllib.request.urlopen(request, timeout=10) as r:
        listed = json.load(r)
    assert listed and {m["user_id"] for m in listed} == {user}, listed
    page = urllib.request.Request(f"{base}/dashboard", headers={"Cookie": f"warmup_token={token}"})
    with urllib.request.urlopen(page, timeout=30) as r:
        html = r.read().decode()
    assert all(m["address"] in html for m in listed), html[:2000]


def _command(data_dir: Path, *extra: str) -> list[str]:
    ports = [free_port() for _ in range(5)]
    lab = [free_port(LAB_HOST) for _ in range(3)]
    return [
        sys.executable, "-m", "devstack", "--data-dir", str(data_dir),
        "--pg-port", str(ports[0]), "--temporal-port", str(ports[1]), "--ui-port", str(ports[2]),
        "--smtp-port", str(ports[3]), "--api-port", str(ports[4]),
        "--submission-port", str(lab[0]), "--imap-port", str(lab[1]), "--imaps-port", str(lab[2]), *extra,
    ]  # fmt: skip


def _clean_env() -> dict[str, str]:
    # The developer's own WARMUP_* / TEMPORAL_* settings must not steer this test.
    return {k: v for k, v in os.environ.items() if not k.startswith(("WARMUP_", "TEMPORAL_"))}


def _run(data_dir: Path, *extra: str, timeout: float) -> subprocess.CompletedProcess[str]:
    """`make dev` with these flags, to its end (it stops itself: --exit-after-*, --timeout or an error)."""
    return subprocess.run(
        _command(data_dir, *extra),
        capture_output=True,
        text=True,
        timeout=timeout,
        env=_clean_env(),
        check=False,
    )


def _processes_using(path: Path) -> list[str]:
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            argv = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            state = (entry / "stat").read_text().rsplit(")", 1)[1].split()[0]
        except (OSError, IndexError):
            continue
        if str(path) in argv and state != "Z":
            found.append(f"{entry.name}: {argv[:200]}")
    return found


@pytest.mark.timeout(420)
def test_make_dev_on_the_mail_lab_lands_rescues_and_answers_then_restarts_on_the_same_data(
    tmp_path: Path,
) -> None:
    why = unavailable_reason()
    if why is not None:
        pytest.skip(f"the mail lab cannot run here: {why} (the sink run below still covers `make dev`)")
    data = tmp_path / "data"

    # First run: fresh folder, stops by itself once an answer landed in a demo mailbox.
    first = _run(data, "--exit-after-replies", "1", "--timeout", "240", timeout=300)
    out = first.stdout
    assert first.returncode == 0, out + first.stderr
    assert "database warmup (created)" in out and "http://localhost:" in out
    assert "mail lab on 127.0.0.2: Postfix submission" in out and "SMTP sink" not in out
    landed = LANDED.findall(out)
    assert all(sender != rcpt for _, sender, rcpt, _, _ in landed), out
    # rspamd and the lab's rule decide the folder; the product writes no marker: demo5's mail is in Junk.
    assert {
        folder for kind, sender, *_, folder, _ in landed if kind == "mail" and sender == "demo5@demo.test"
    } <= {"Junk"}
    assert any(folder == "INBOX" for *_, folder, _ in landed), out
    replies = [subject for kind, *_, subject in landed if kind == "reply"]
    assert replies and replies[0].startswith("Re: "), out
    assert " read " in out and "1 answer(s) arrived" in out
    assert _processes_using(data) == []

    env_file = data / "dev.env"
    assert stat.S_IMODE(env_file.stat().st_mode) == 0o600
    dev_env = read_env_file(env_file)
    key, secret = dev_env["WARMUP_SECRET_KEYS"], dev_env["DEMO_SMTP_SECRET"]
    for value in (key, secret):
        assert value and value not in out + first.stderr  # secrets never appear in the output

    # Second run on the same folder: database, key and Maildirs kept; the banner's IMAP command opens a
    # demo mailbox as a newcomer would; Ctrl-C stops it cleanly.
    proc = subprocess.Popen(
        _command(data, "--timeout", "200"),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env=_clean_env(),
    )
    assert proc.stdout is not None
    lines: list[str] = []
    deadline = time.monotonic() + 150
    try:
        for line in proc.stdout:
            lines.append(line)
            # Events can print before the banner: the kept workflows go on while the demo re-enrolls.
            shown = "".join(lines)
            if (IMAP_COMMAND.search(shown) and LANDED.search(shown)) or time.monotonic() > deadline:
                break
        _dashboard_answers("".join(lines))
        (command,) = IMAP_COMMAND.findall("".join(lines))
        listing = subprocess.run(
            ["sh", "-c", command],
            capture_output=True,
            text=True,
            timeout=30,
            env={**_clean_env(), "DEMO_SMTP_SECRET": secret},
            cwd=Path(__file__).resolve().parents[1],  # the banner's paths are relative to the project
            check=False,
        )
        proc.send_signal(signal.SIGINT)
        rest, _ = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    output = "".join(lines) + rest
    assert proc.returncode == 0, output
    assert "database warmup (created)" not in output and "received SIGINT" in output
    assert listing.returncode == 0, listing.stdout + listing.stderr
    # demo1's INBOX over IMAPS: kept from the first run, with flags and envelopes (subject, addresses).
    fetched = [line for line in listing.stdout.splitlines() if " FETCH (FLAGS (" in line]
    assert fetched and all('"demo.test"' in line for line in fetched), listing.stdout
    # Reverse order: workers before the lab before Temporal before PostgreSQL.
    order = [output.index(f"stopped {name}") for name in ("workers", "mail lab", "Temporal", "PostgreSQL")]
    assert order == sorted(order), output
    assert read_env_file(env_file)["WARMUP_SECRET_KEYS"] == key
    assert _processes_using(data) == []


@pytest.mark.timeout(240)
def test_make_dev_on_the_sink_delivers_demo_mail_and_says_so(tmp_path: Path) -> None:
    run = _run(
        tmp_path / "data", "--mail", "sink", "--exit-after-mails", "3", "--timeout", "120", timeout=180
    )
    assert run.returncode == 0, run.stdout + run.stderr
    assert "demo mail goes to the SMTP sink (--mail sink)" in run.stdout
    # The demo's 3 mails may stop it before the banner; the API started before the demo enrolled.
    assert re.search(r"\[dev\] HTTP API and dashboard on http://127\.0\.0\.1:\d+", run.stdout), run.stdout
    mails = MAIL_LINE.findall(run.stdout)
    assert len(mails) >= 3 and all(sender != rcpt for sender, rcpt in mails), run.stdout
    order = [
        run.stdout.index(f"stopped {name}") for name in ("workers", "SMTP sink", "Temporal", "PostgreSQL")
    ]
    assert order == sorted(order), run.stdout
    assert _processes_using(tmp_path / "data") == []
    # Answers need mailboxes that read their mail: refused on the sink, which has none.
    refused = _run(
        tmp_path / "data", "--mail", "sink", "--exit-after-replies", "1", "--timeout", "60", timeout=120
    )
    assert refused.returncode == 1 and "--exit-after-replies needs the mail lab" in refused.stdout
