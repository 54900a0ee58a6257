"""activities.imap_client against the lab's real Dovecot: find by Message-ID, rescue from Junk, flags,
headers, and how failures are classified."""

from __future__ import annotations

import asyncio
import socket

import pytest

from activities.imap_client import (
    FLAGGED,
    SEEN,
    FolderKind,
    ImapAccount,
    ImapAuthError,
    ImapConfigError,
    ImapSession,
    ImapTransientError,
)
from devstack.mail_lab import JUNK, MailLab
from tests.helpers.mail_lab import GTUBE_ADD_HEADER, LabUser, mail_lab_fixture, message, new_user, submit
from warmup.models import ImapSecurity

__all__ = ["mail_lab_fixture"]


def account(
    lab: MailLab, user: LabUser, security: ImapSecurity = ImapSecurity.TLS, **extra: object
) -> ImapAccount:
    port = lab.imaps_port if security is ImapSecurity.TLS else lab.imap_port
    return ImapAccount(
        host=lab.host,
        port=port,
        username=user.address,
        security=security,
        ca_file=str(lab.ca_file),
        timeout_seconds=10,
        **extra,  # type: ignore[arg-type]
    )


async def deliver(lab: MailLab, sender: LabUser, recipient: LabUser, *, spam: bool = False) -> str:
    body = f"See the attached figures.\n{GTUBE_ADD_HEADER}\n" if spam else ""
    msg = message(sender.address, recipient.address, body=body)
    await submit(lab, sender, msg)
    await asyncio.to_thread(lab.wait_for, recipient.address, str(msg["Message-ID"]))
    return str(msg["Message-ID"])


@pytest.mark.parametrize("security", [ImapSecurity.TLS, ImapSecurity.STARTTLS])
async def test_finds_messages_in_inbox_and_junk_rescues_and_flags(
    mail_lab: MailLab, security: ImapSecurity
) -> None:
    ana, bob = new_user(mail_lab, "ana"), new_user(mail_lab, "bob")
    ham = await deliver(mail_lab, ana, bob)
    spam = await deliver(mail_lab, ana, bob, spam=True)
    missing = "<never-sent@lab.test>"

    def session() -> None:
        with ImapSession(account(mail_lab, bob, security), bob.password) as imap:
            assert imap.junk_folder() == JUNK
            found = imap.find_messages([ham, spam, missing])
            assert set(found) == {ham, spam}
            assert (found[ham].folder, found[ham].kind) == ("INBOX", FolderKind.INBOX)
            assert (found[spam].folder, found[spam].kind) == (JUNK, FolderKind.JUNK)
            assert SEEN not in found[ham].flags
            rescued = imap.move_to_inbox(found[spam])
            assert rescued.kind is FolderKind.INBOX and rescued.message_id == spam
            flagged = imap.add_flags(rescued, (SEEN, FLAGGED))
            assert {SEEN, FLAGGED} <= flagged.flags
            headers = imap.headers(flagged)
            assert headers.message_id == spam and headers.subject

    await asyncio.to_thread(session)
    # On the server: gone from Junk, in INBOX, flagged (read straight from the Maildir).
    assert mail_lab.locate(bob.address, spam) == ["INBOX"]
    with ImapSession(account(mail_lab, bob), bob.password) as imap:
        again = imap.find_message(spam)
        assert again is not None and {SEEN, FLAGGED} <= again.flags


async def test_finds_a_message_in_any_other_folder(mail_lab: MailLab) -> None:
    ana, bob = new_user(mail_lab, "ana"), new_user(mail_lab, "bob")
    mid = await deliver(mail_lab, ana, bob)

    def session() -> None:
        with ImapSession(account(mail_lab, bob), bob.password) as imap:
            found = imap.find_message(mid)
            assert found is not None
            imap.client.create_folder("Archive/2026")
            imap.client.select_folder("INBOX")
            imap.client.move([found.uid], "Archive/2026")
        with ImapSession(account(mail_lab, bob), bob.password) as imap:
            there = imap.find_message(mid)
            assert there is not None
            assert (there.folder, there.kind) == ("Archive/2026", FolderKind.OTHER)
            assert imap.move_to_inbox(there).kind is FolderKind.INBOX

    await asyncio.to_thread(session)


async def test_reply_headers_survive_delivery(mail_lab: MailLab) -> None:
    ana, bob = new_user(mail_lab, "ana"), new_user(mail_lab, "bob")
    original = message(bob.address, ana.address)
    reply = message(ana.address, bob.address, subject=f"Re: {original['Subject']}")
    reply["In-Reply-To"] = original["Message-ID"]
    reply["References"] = original["Message-ID"]
    await submit(mail_lab, ana, reply)
    await asyncio.to_thread(mail_lab.wait_for, bob.address, str(reply["Message-ID"]))

    def session() -> None:
        with ImapSession(account(mail_lab, bob), bob.password) as imap:
            found = imap.find_message(str(reply["Message-ID"]))
            assert found is not None
            headers = imap.headers(found)
            assert headers.subject == f"Re: {original['Subject']}"
            assert headers.in_reply_to == original["Message-ID"]
            assert headers.references == (original["Message-ID"],)

    await asyncio.to_thread(session)


def test_wrong_password_is_an_auth_error_without_the_password(mail_lab: MailLab) -> None:
    bob = new_user(mail_lab, "bob")
    wrong = "Wr0ng-" + bob.password
    with pytest.raises(ImapAuthError) as refused:
        ImapSession(account(mail_lab, bob), wrong).open()
    assert "AUTHENTICATIONFAILED" in str(refused.value)
    assert wrong not in str(refused.value) and bob.password not in str(refused.value)


def test_clear_text_login_is_refused_by_the_server(mail_lab: MailLab) -> None:
    bob = new_user(mail_lab, "bob")
    plain = ImapAccount(
        host=mail_lab.host, port=mail_lab.imap_port, username=bob.address, security=ImapSecurity.NONE
    )
    with pytest.raises(ImapAuthError, match=r"PRIVACYREQUIRED|disabled|LOGINDISABLED") as refused:
        ImapSession(plain, bob.password).open()
    assert bob.password not in str(refused.value)


def test_untrusted_certificate_is_a_config_error(mail_lab: MailLab) -> None:
    bob = new_user(mail_lab, "bob")
    system_store = ImapAccount(
        host=mail_lab.host, port=mail_lab.imaps_port, username=bob.address, timeout_seconds=10
    )
    with pytest.raises(ImapConfigError, match="certificate"):
        ImapSession(system_store, bob.password).open()
    # Verification off: the same server is accepted (an explicit per-mailbox choice).
    with ImapSession(
        ImapAccount(host=mail_lab.host, port=mail_lab.imaps_port, username=bob.address, verify_tls=False),
        bob.password,
    ) as imap:
        assert imap.junk_folder() == JUNK


def test_network_failures_are_transient() -> None:
    with socket.socket() as idle:  # listens but never answers: the greeting times out
        idle.bind(("127.0.0.1", 0))
        idle.listen()
        port = idle.getsockname()[1]
        silent = ImapAccount(host="127.0.0.1", port=port, username="u@lab.test", timeout_seconds=0.5)
        with pytest.raises(ImapTransientError, match=r"no answer within|timed out"):
            ImapSession(silent, "pw").open()
    closed = ImapAccount(host="127.0.0.1", port=port, username="u@lab.test", timeout_seconds=2)
    with pytest.raises(ImapTransientError, match=r"refused|failed"):
        ImapSession(closed, "pw").open()


def test_clear_text_off_loopback_is_refused_before_connecting() -> None:
    with pytest.raises(ValueError, match="imap security"):
        ImapAccount(host="imap.example.com", port=143, username="u@example.com", security=ImapSecurity.NONE)
