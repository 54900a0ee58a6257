"""The mail lab's real servers: submission policy, delivery, rspamd's verdict filed by sieve, TLS only."""

from __future__ import annotations

import asyncio
import imaplib
import socket
import ssl
from pathlib import Path

import aiosmtplib
import pytest

from devstack.mail_lab import JUNK, MailLab
from devstack.mail_lab.daemon import port_open
from tests.helpers.mail_lab import (
    GTUBE_ADD_HEADER,
    mail_lab_fixture,
    message,
    new_user,
    submit,
)

__all__ = ["mail_lab_fixture"]


async def test_submitted_mail_reaches_the_recipients_inbox(mail_lab: MailLab) -> None:
    ana, bob = new_user(mail_lab, "ana"), new_user(mail_lab, "bob")
    msg = message(ana.address, bob.address)
    await submit(mail_lab, ana, msg)
    folder = await asyncio.to_thread(mail_lab.wait_for, bob.address, str(msg["Message-ID"]))
    assert folder == "INBOX"
    delivered = next(m for m in mail_lab.messages(bob.address) if m["Message-ID"] == msg["Message-ID"])
    # rspamd scored it on the way (its milter headers), and it was not spam.
    assert "X-Spamd-Result" in delivered
    assert str(delivered["X-Spam-Status"]).startswith("No")
    assert delivered["Subject"] == msg["Subject"]


async def test_rspamd_spam_verdict_is_filed_into_junk(mail_lab: MailLab) -> None:
    ana, bob = new_user(mail_lab, "ana"), new_user(mail_lab, "bob")
    msg = message(ana.address, bob.address, body=f"Have a look at this offer.\n{GTUBE_ADD_HEADER}\n")
    await submit(mail_lab, ana, msg)
    assert await asyncio.to_thread(mail_lab.wait_for, bob.address, str(msg["Message-ID"])) == JUNK
    junked = next(m for m in mail_lab.messages(bob.address, JUNK) if m["Message-ID"] == msg["Message-ID"])
    assert junked["X-Spam"] == "Yes"


async def test_forced_junk_sender_lands_in_junk_and_others_do_not(mail_lab: MailLab) -> None:
    spammy, clean, bob = new_user(mail_lab, "spammy"), new_user(mail_lab, "clean"), new_user(mail_lab, "bob")
    mail_lab.force_junk_from({spammy.address})
    try:
        forced, normal = message(spammy.address, bob.address), message(clean.address, bob.address)
        await submit(mail_lab, spammy, forced)
        await submit(mail_lab, clean, normal)
        assert await asyncio.to_thread(mail_lab.wait_for, bob.address, str(forced["Message-ID"])) == JUNK
        assert await asyncio.to_thread(mail_lab.wait_for, bob.address, str(normal["Message-ID"])) == "INBOX"
        # Nothing in the message marks it: rspamd found it clean, only the lab rule filed it.
        junked = next(
            m for m in mail_lab.messages(bob.address, JUNK) if m["Message-ID"] == forced["Message-ID"]
        )
        assert "X-Spam" not in junked
    finally:
        mail_lab.force_junk_from(())
    again = message(spammy.address, bob.address)
    await submit(mail_lab, spammy, again)
    assert await asyncio.to_thread(mail_lab.wait_for, bob.address, str(again["Message-ID"])) == "INBOX"


async def test_submission_without_starttls_is_refused(mail_lab: MailLab) -> None:
    ana, bob = new_user(mail_lab, "ana"), new_user(mail_lab, "bob")
    smtp = aiosmtplib.SMTP(hostname=mail_lab.host, port=mail_lab.submission_port, start_tls=False, timeout=10)
    await smtp.connect()
    try:
        await smtp.ehlo()
        assert not smtp.supports_extension("auth")  # no AUTH offered before TLS
        with pytest.raises(aiosmtplib.SMTPResponseException) as refused:
            await smtp.sendmail(ana.address, [bob.address], message(ana.address, bob.address).as_bytes())
        assert refused.value.code == 530  # "Must issue a STARTTLS command first"
    finally:
        smtp.close()


async def test_submission_without_auth_is_refused(mail_lab: MailLab) -> None:
    ana, bob = new_user(mail_lab, "ana"), new_user(mail_lab, "bob")
    msg = message(ana.address, bob.address)
    with pytest.raises(aiosmtplib.SMTPRecipientsRefused) as refused:
        await aiosmtplib.send(
            msg,
            hostname=mail_lab.host,
            port=mail_lab.submission_port,
            start_tls=True,
            tls_context=mail_lab.ssl_context(),
            timeout=10,
        )
    assert refused.value.recipients[0].code == 554
    await asyncio.sleep(0.3)
    assert mail_lab.locate(bob.address, str(msg["Message-ID"])) == []


async def test_wrong_password_is_refused_by_smtp(mail_lab: MailLab) -> None:
    ana, bob = new_user(mail_lab, "ana"), new_user(mail_lab, "bob")
    with pytest.raises(aiosmtplib.SMTPAuthenticationError) as refused:
        await aiosmtplib.send(
            message(ana.address, bob.address),
            hostname=mail_lab.host,
            port=mail_lab.submission_port,
            start_tls=True,
            tls_context=mail_lab.ssl_context(),
            username=ana.address,
            password="not-" + ana.password,
            timeout=10,
        )
    assert refused.value.code == 535


async def test_tls_certificate_verifies_against_the_lab_ca_only(mail_lab: MailLab) -> None:
    ana, bob = new_user(mail_lab, "ana"), new_user(mail_lab, "bob")
    # The system's trust store does not know the lab CA: verification fails, as it must.
    with pytest.raises(ssl.SSLCertVerificationError):
        await aiosmtplib.send(
            message(ana.address, bob.address),
            hostname=mail_lab.host,
            port=mail_lab.submission_port,
            start_tls=True,
            tls_context=ssl.create_default_context(),
            username=ana.address,
            password=ana.password,
            timeout=10,
        )
    # The lab CA verifies every name in the certificate.
    for name in ("localhost", "127.0.0.1", mail_lab.host):
        with socket.create_connection((mail_lab.host, mail_lab.imaps_port), timeout=10) as raw:
            with mail_lab.ssl_context().wrap_socket(raw, server_hostname=name) as tls:
                assert tls.recv(100).startswith(b"* OK")


def test_clear_text_imap_login_is_refused(mail_lab: MailLab) -> None:
    ana = new_user(mail_lab, "ana")
    with imaplib.IMAP4(mail_lab.host, mail_lab.imap_port, timeout=10) as imap:
        assert "LOGINDISABLED" in imap.capabilities
        assert "STARTTLS" in imap.capabilities
        # imaplib would not even try after LOGINDISABLED; send the command anyway, as a careless client would.
        typ, data = imap._simple_command("LOGIN", ana.address, ana.password)
        assert typ == "NO" and b"PRIVACYREQUIRED" in data[-1]
    with imaplib.IMAP4(mail_lab.host, mail_lab.imap_port, timeout=10) as imap:
        imap.starttls(mail_lab.ssl_context())
        assert imap.login(ana.address, ana.password)[0] == "OK"


def test_wrong_password_is_refused_by_imap(mail_lab: MailLab) -> None:
    ana = new_user(mail_lab, "ana")
    with imaplib.IMAP4_SSL(
        mail_lab.host, mail_lab.imaps_port, ssl_context=mail_lab.ssl_context(), timeout=10
    ) as imap:
        with pytest.raises(imaplib.IMAP4.error, match="AUTHENTICATIONFAILED"):
            imap.login(ana.address, "not-" + ana.password)


async def test_mail_to_an_unknown_lab_address_is_not_delivered_and_bounces(mail_lab: MailLab) -> None:
    ana = new_user(mail_lab, "ana")
    msg = message(ana.address, "nobody-here@lab.test")
    await submit(mail_lab, ana, msg)  # accepted: only Dovecot knows the mailboxes
    # Dovecot refuses it over LMTP and Postfix returns it to the sender.
    for _ in range(200):
        bounces = [m for m in mail_lab.messages(ana.address) if "Undelivered" in str(m["Subject"])]
        if bounces:
            break
        await asyncio.sleep(0.1)
    assert bounces, "no bounce for an unknown lab address"


def test_stop_ends_every_process_it_started(tmp_path: Path) -> None:
    lab = MailLab(tmp_path / "lab")
    lab.start()
    try:
        forked = {pid for d in lab._daemons for pid in [d.pid, *d.descendants()] if pid is not None}
        assert len(forked) > 6  # the three masters and their workers
        ports = [(lab.host, lab.submission_port), (lab.host, lab.imap_port), (lab.host, lab.imaps_port)]
        ports.append(("127.0.0.1", lab.milter_port))
        assert all(port_open(port, host) for host, port in ports)
    finally:
        lab.stop()
    print(f"\nsecond lab: start {lab.start_seconds:.2f} s, stop {lab.stop_seconds:.2f} s")
    assert not [pid for pid in forked if Path(f"/proc/{pid}").exists() and _not_zombie(pid)]
    assert not any(port_open(port, host) for host, port in ports)


def _not_zombie(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False
