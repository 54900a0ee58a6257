"""The mail lab for tests: one real Postfix + Dovecot + rspamd per pytest session (`mail_lab` fixture; import
`mail_lab_fixture` into a test module to use it), fresh mailboxes per test, and a submit helper.

Skips, saying why, where the lab cannot run (no root, not Debian, packages not installable).
"""

from __future__ import annotations

import itertools
import secrets
import sys
from collections.abc import Iterator
from dataclasses import dataclass, field
from email.message import EmailMessage
from email.utils import make_msgid

import aiosmtplib
import pytest

from devstack.mail_lab import MailLab, MailLabUnavailable, ensure_installed
from tests.helpers.oauth_server import shared_token_server

# rspamd's GTUBE variant for "add header" (enable_test_patterns): the lab files it into Junk. Only tests
# ever write it; the product's messages carry no marker of any kind.
GTUBE_ADD_HEADER = "YJS*C4JDBQADN1.NSBN3*2IDNEN*GTUBE-STANDARD-ANTI-UBE-TEST-EMAIL*C.34X"
LAB_DOMAIN = "lab.test"
_serial = itertools.count(1)


# One lab per session even though each test module imports the fixture (which makes it a fixture of that
# module): the first user starts it, the last one's teardown (all at session end) stops it.
_shared: list[MailLab] = []
_users = [0]


@pytest.fixture(name="mail_lab", scope="session")
def mail_lab_fixture(tmp_path_factory: pytest.TempPathFactory) -> Iterator[MailLab]:
    if not _shared:
        try:
            ensure_installed()
        except MailLabUnavailable as exc:
            pytest.skip(f"the mail lab cannot run here: {exc}")
        # Dovecot takes OAuth2 logins too, checking each token with the session's local token server.
        introspection = shared_token_server().introspection_url
        lab = MailLab(tmp_path_factory.mktemp("mail-lab"), oauth2_introspection_url=introspection)
        lab.start()
        print(f"\nmail lab up in {lab.start_seconds:.2f} s", file=sys.stderr)
        _shared.append(lab)
    _users[0] += 1
    try:
        yield _shared[0]
    finally:
        _users[0] -= 1
        if _users[0] == 0:
            lab = _shared.pop()
            lab.stop()
            print(f"\nmail lab stopped in {lab.stop_seconds:.2f} s", file=sys.stderr)


@dataclass(frozen=True)
class LabUser:
    address: str
    password: str = field(repr=False)


def new_user(lab: MailLab, name: str = "user", domain: str = LAB_DOMAIN) -> LabUser:
    """A fresh mailbox with a random password (addresses are unique within the session)."""
    user = LabUser(f"{name}{next(_serial)}-{secrets.token_hex(3)}@{domain}", secrets.token_urlsafe(12))
    lab.add_mailbox(user.address, user.password)
    return user


def message(sender: str, recipient: str, subject: str = "Lunch on Thursday?", body: str = "") -> EmailMessage:
    msg = EmailMessage()
    msg["From"] = sender
    msg["To"] = recipient
    msg["Subject"] = subject
    msg["Message-ID"] = make_msgid(domain=sender.split("@", 1)[1])
    msg.set_content(
        body or "Hi, are you free for lunch on Thursday? The new place on the corner looks good.\n"
    )
    return msg


async def submit(lab: MailLab, user: LabUser, msg: EmailMessage) -> None:
    """Through the lab's submission port like a mail client: STARTTLS (certificate verified), AUTH."""
    await aiosmtplib.send(
        msg,
        hostname=lab.host,
        port=lab.submission_port,
        start_tls=True,
        tls_context=lab.ssl_context(),
        username=user.address,
        password=user.password,
        timeout=15,
    )
