"""The dev-stack launchers behave like the real servers they stand for."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import time
from email.message import EmailMessage
from pathlib import Path

import aiosmtplib
import asyncpg
import pytest

from devstack.mail_watch import MailWatch
from devstack.postgres import PgServer, PgServerError, free_port
from devstack.processes import PidRegistry
from devstack.smtp_sink import SmtpSink
from devstack.stack import StackError, mail_choice
from devstack.temporal import DevServer, temporal_cli


def _mail(subject: str = "hello", sender: str = "a@demo.test", to: str = "b@demo.test") -> EmailMessage:
    msg = EmailMessage()
    msg["From"] = sender
    msg["To"] = to
    msg["Subject"] = subject
    msg["Message-ID"] = f"<{subject.replace(' ', '-')}@demo.test>"
    msg.set_content("body of " + subject)
    return msg


async def _put(server: PgServer, value: str) -> None:
    await server.create_database("keep")
    conn = await asyncpg.connect(server.dsn("keep"))
    try:
        await conn.execute("CREATE TABLE IF NOT EXISTS notes (body TEXT)")
        await conn.execute("INSERT INTO notes VALUES ($1)", value)
    finally:
        await conn.close()


async def _notes(server: PgServer) -> list[str]:
    conn = await asyncpg.connect(server.dsn("keep"))
    try:
        return [r["body"] for r in await conn.fetch("SELECT body FROM notes ORDER BY body")]
    finally:
        await conn.close()


# --- PostgreSQL -------------------------------------------------------------------------------


async def test_postgres_restart_keeps_data(tmp_path: Path) -> None:
    data = tmp_path / "pg"
    with PgServer(data) as first:
        await _put(first, "before restart")
        assert await first.create_database("keep") is False  # exists: not created twice
    assert not first.running

    with PgServer(data) as second:  # new port, same folder
        assert await _notes(second) == ["before restart"]


async def test_postgres_restarts_after_being_killed(tmp_path: Path) -> None:
    data = tmp_path / "pg"
    first = PgServer(data, fast=False, die_with_parent=False)
    first.start()
    try:
        await _put(first, "committed")
        assert first.pid is not None
        os.kill(first.pid, signal.SIGKILL)  # leaves postmaster.pid and the socket lock behind
        await asyncio.sleep(0.2)
        assert (data / "postmaster.pid").exists()
    finally:
        first.stop()

    with PgServer(data, port=first.port) as second:  # same port: the stale socket lock must not block
        assert await _notes(second) == ["committed"]


async def test_postgres_replaces_an_orphaned_server_on_the_same_folder(tmp_path: Path) -> None:
    data = tmp_path / "pg"
    orphan = PgServer(data, fast=True, die_with_parent=False)
    orphan.start()  # never stopped through this object: stands for a server whose parent was killed
    orphan_pid = orphan.pid
    try:
        await _put(orphan, "from the orphan")
        with PgServer(data, fast=True) as again:
            assert await _notes(again) == ["from the orphan"]
            assert orphan._proc is not None and orphan._proc.poll() is not None  # the orphan was shut down
    finally:
        orphan.stop()
    assert orphan_pid != again.pid


async def test_postgres_failure_names_the_log(tmp_path: Path) -> None:
    # Two servers cannot share a fixed port: the second one fails with the reason and the log path.
    with PgServer(tmp_path / "a", fast=True) as first:
        second = PgServer(tmp_path / "b", port=first.port, fast=True)
        with pytest.raises(PgServerError, match=r"log .*/b\.log") as excinfo:
            second.start(timeout=10)
        assert "could not bind" in str(excinfo.value) or "in use" in str(excinfo.value)
        assert not second.running


# --- SMTP sink --------------------------------------------------------------------------------


async def test_sink_receives_mail_sent_with_auth(smtp_sink: SmtpSink) -> None:
    smtp_sink.credentials["a@demo.test"] = "s3cret"
    await aiosmtplib.send(
        _mail("first mail"),
        hostname=smtp_sink.host,
        port=smtp_sink.port,
        username="a@demo.test",
        password="s3cret",
        start_tls=False,
        use_tls=False,
    )
    [got] = await smtp_sink.wait_for(1, timeout=5)
    assert got.mail_from == "a@demo.test"
    assert got.rcpt_tos == ["b@demo.test"]
    assert got.message["Subject"] == "first mail"
    assert got.message_id == "<first-mail@demo.test>"
    assert got.auth_login == "a@demo.test"
    assert b"body of first mail" in got.raw


async def test_sink_rejects_a_wrong_password_with_535(smtp_sink: SmtpSink) -> None:
    smtp_sink.credentials["a@demo.test"] = "s3cret"
    with pytest.raises(aiosmtplib.SMTPAuthenticationError) as excinfo:
        await aiosmtplib.send(
            _mail(),
            hostname=smtp_sink.host,
            port=smtp_sink.port,
            username="a@demo.test",
            password="wrong",
            start_tls=False,
        )
    assert excinfo.value.code == 535
    assert "5.7.8" in excinfo.value.message
    assert smtp_sink.messages == []


async def test_sink_requires_auth_when_it_has_credentials(smtp_sink: SmtpSink) -> None:
    smtp_sink.credentials["a@demo.test"] = "s3cret"
    with pytest.raises(aiosmtplib.SMTPSenderRefused) as excinfo:
        await aiosmtplib.send(_mail(), hostname=smtp_sink.host, port=smtp_sink.port, start_tls=False)
    assert excinfo.value.code == 530
    assert smtp_sink.messages == []


async def test_sink_returns_a_scripted_451_then_250(smtp_sink: SmtpSink) -> None:
    smtp_sink.script_data_replies(["451 4.3.0 try again later", None])
    with pytest.raises(aiosmtplib.SMTPDataError) as excinfo:
        await aiosmtplib.send(_mail("try 1"), hostname=smtp_sink.host, port=smtp_sink.port, start_tls=False)
    assert excinfo.value.code == 451
    assert smtp_sink.messages == []  # a refused message was not delivered

    errors, reply = await aiosmtplib.send(
        _mail("try 2"), hostname=smtp_sink.host, port=smtp_sink.port, start_tls=False
    )
    assert errors == {}
    assert "OK" in reply
    assert [m.message["Subject"] for m in smtp_sink.messages] == ["try 2"]


async def test_sink_stall_keeps_the_mail_but_withholds_the_reply(smtp_sink: SmtpSink) -> None:
    smtp_sink.stall_after_data(5)
    started = time.monotonic()
    with pytest.raises(aiosmtplib.SMTPTimeoutError):
        await aiosmtplib.send(
            _mail("stalled"), hostname=smtp_sink.host, port=smtp_sink.port, start_tls=False, timeout=0.5
        )
    assert time.monotonic() - started < 3
    # Delivered although the client never heard so: the "unknown outcome" case.
    assert [m.message["Subject"] for m in smtp_sink.messages] == ["stalled"]

    # Only the next DATA stalls.
    await aiosmtplib.send(
        _mail("after"), hostname=smtp_sink.host, port=smtp_sink.port, start_tls=False, timeout=2
    )
    assert len(smtp_sink.messages) == 2


async def test_sink_stall_before_data_withholds_the_rcpt_reply_and_delivers_nothing(
    smtp_sink: SmtpSink,
) -> None:
    smtp_sink.stall_before_data(5)
    with pytest.raises(aiosmtplib.SMTPTimeoutError):
        await aiosmtplib.send(
            _mail("stalled"), hostname=smtp_sink.host, port=smtp_sink.port, start_tls=False, timeout=0.5
        )
    assert smtp_sink.stalled.is_set()
    assert smtp_sink.messages == []  # the client gave up before DATA: nothing to resend safely
    # Only the next RCPT stalls.
    await aiosmtplib.send(
        _mail("after"), hostname=smtp_sink.host, port=smtp_sink.port, start_tls=False, timeout=2
    )
    assert [m.message["Subject"] for m in smtp_sink.messages] == ["after"]
    assert smtp_sink.sessions == 2


async def test_sink_hangs_up_after_a_scripted_421(smtp_sink: SmtpSink) -> None:
    smtp_sink.script_data_replies(["421 4.3.2 closing"])
    client = aiosmtplib.SMTP(hostname=smtp_sink.host, port=smtp_sink.port, start_tls=False, timeout=2)
    await client.connect()
    await client.mail("a@warmup.test")
    await client.rcpt("b@warmup.test")
    with pytest.raises(aiosmtplib.SMTPDataError) as excinfo:
        await client.data(_mail("refused").as_bytes())
    assert excinfo.value.code == 421
    with pytest.raises(aiosmtplib.SMTPServerDisconnected):  # the server closed the channel
        for _ in range(20):
            await client.noop()
            await asyncio.sleep(0.05)
    client.close()
    assert smtp_sink.messages == []


async def test_sink_wait_for_reports_what_arrived() -> None:
    async with SmtpSink() as sink:
        with pytest.raises(TimeoutError, match="only 0 of 1 messages"):
            await sink.wait_for(1, timeout=0.1)
    with pytest.raises(OSError):  # stopped: nothing listens any more
        await aiosmtplib.send(_mail(), hostname=sink.host, port=sink.port, start_tls=False, timeout=2)


# --- Temporal dev server ----------------------------------------------------------------------


def _search_attributes(address: str) -> str:
    return subprocess.run(
        [temporal_cli(), "operator", "search-attribute", "list", "--address", address],
        capture_output=True,
        text=True,
        check=True,
        timeout=20,
    ).stdout


def test_dev_server_restarts_on_its_database_with_the_search_attributes(tmp_path: Path) -> None:
    server = DevServer(tmp_path / "temporal.db", port=free_port(), ui_port=free_port())
    server.start()
    try:
        subprocess.run(
            [temporal_cli(), "workflow", "start", "--address", server.address, "--task-queue", "nobody",
             "--type", "Nothing", "--workflow-id", "survives-restart"],
            capture_output=True,
            check=True,
            timeout=20,
        )  # fmt: skip
    finally:
        server.stop()
    assert not server.running

    server.start()  # same file, same --search-attribute flags
    try:
        listed = _search_attributes(server.address)
        for name in ("UserId", "MailboxId", "WarmupStatus"):
            assert name in listed
        described = subprocess.run(
            [temporal_cli(), "workflow", "describe", "--address", server.address, "-w", "survives-restart"],
            capture_output=True,
            text=True,
            timeout=20,
            check=False,
        )
        assert described.returncode == 0, described.stderr
    finally:
        server.stop()


# --- leftovers of a killed `make dev` ---------------------------------------------------------


def _sigint_default() -> None:
    # A shell running `make test` in the background makes its children ignore SIGINT (POSIX); the
    # processes of this test must die of it, as `make dev`'s children do in a terminal.
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def test_pid_registry_stops_recorded_leftovers_only(tmp_path: Path) -> None:
    leftover = subprocess.Popen(["sleep", "60"], start_new_session=True, preexec_fn=_sigint_default)
    bystander = subprocess.Popen(["sleep", "60"], start_new_session=True, preexec_fn=_sigint_default)
    try:
        registry = PidRegistry(tmp_path / "dev.pids")
        registry.add(leftover.pid)
        registry.add(bystander.pid)
        registry.remove(bystander.pid)  # stopped in order by its owner: forgotten
        assert registry.stop_leftovers(timeout=5) == [leftover.pid]
        assert leftover.wait(5) == -signal.SIGINT
        assert bystander.poll() is None
        assert not registry.path.exists()
    finally:
        for proc in (leftover, bystander):
            proc.kill()
            proc.wait()


# --- make dev's mail: the lab or the sink, and what its watch reports ---------------------------------


def test_make_dev_takes_the_lab_where_it_runs_and_says_why_not_otherwise() -> None:
    assert mail_choice("auto", None) == (True, "")
    assert mail_choice("lab", None) == (True, "")
    use, why = mail_choice("auto", "the mail lab needs root")
    assert not use and "cannot run here (the mail lab needs root)" in why and "SMTP sink instead" in why
    assert mail_choice("sink", None)[0] is False
    with pytest.raises(StackError, match=r"--mail lab.*needs root"):
        mail_choice("lab", "the mail lab needs root")


def _deliver(home: Path, folder: str, name: str, msg: EmailMessage) -> Path:
    """As Dovecot's LMTP does: a file in the folder's new/ (Maildir++: INBOX is Maildir itself)."""
    path = home / "Maildir" / ("" if folder == "INBOX" else f".{folder}")
    for sub in ("new", "cur", "tmp"):
        (path / sub).mkdir(parents=True, exist_ok=True)
    target = path / "new" / name
    target.write_bytes(msg.as_bytes())
    return target


def test_the_mail_watch_reports_landing_rescue_read_flag_and_answers(tmp_path: Path) -> None:
    home = tmp_path / "demo2"
    old = _deliver(home, "INBOX", "100.old", _mail("already there", to="demo2@demo.test"))
    watch = MailWatch({"demo2@demo.test": home})
    watch.prime()
    assert watch.scan() == []  # what was there before is not news (a restart on kept Maildirs)

    junked = _deliver(home, "Junk", "101.a", _mail("lunch?", sender="demo5@demo.test", to="demo2@demo.test"))
    (landed,) = watch.scan()
    assert (landed.kind, landed.folder, landed.headers.subject) == ("mail", "Junk", "lunch?")
    assert landed.line("10:00:00") == "10:00:00  mail  demo5@demo.test -> demo2@demo.test  Junk  lunch?"

    # The session moves it to INBOX and marks it read (a MOVE is a new file in the other folder).
    junked.rename(home / "Maildir" / "cur" / "102.b:2,S")
    assert [e.kind for e in watch.scan()] == ["rescued", "read"]
    (home / "Maildir" / "cur" / "102.b:2,S").rename(home / "Maildir" / "cur" / "102.b:2,FS")
    old.rename(home / "Maildir" / "cur" / "100.old:2,S")
    assert sorted((e.kind, e.headers.subject) for e in watch.scan()) == [
        ("flagged", "lunch?"),
        ("read", "already there"),
    ]
    answer = _mail("Re: hello", sender="demo4@demo.test", to="demo2@demo.test")
    answer["In-Reply-To"] = "<hello@demo.test>"
    _deliver(home, "INBOX", "103.c", answer)
    (got,) = watch.scan()
    assert (got.kind, got.folder) == ("reply", "INBOX")
    assert watch.scan() == []
