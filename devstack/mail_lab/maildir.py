"""Read a lab mailbox straight from its Maildir, for assertions that must not depend on the IMAP client
under test."""

from __future__ import annotations

import email
import email.policy
import mailbox
from email.message import EmailMessage
from pathlib import Path


def folder_path(home: Path, folder: str) -> Path:
    """Dovecot's Maildir++ layout: INBOX is ~/Maildir, folder `A/B` is ~/Maildir/.A.B"""
    root = home / "Maildir"
    if folder.upper() == "INBOX":
        return root
    return root / ("." + folder.replace("/", "."))


def folders(home: Path) -> list[str]:
    root = home / "Maildir"
    if not root.is_dir():
        return []
    names = ["INBOX"]
    names += sorted(
        p.name[1:].replace(".", "/") for p in root.iterdir() if p.name.startswith(".") and p.is_dir()
    )
    return names


def messages(home: Path, folder: str) -> list[EmailMessage]:
    path = folder_path(home, folder)
    if not (path / "cur").is_dir():
        return []
    box = mailbox.Maildir(path, factory=None, create=False)
    try:
        # Dovecot creates a folder's cur/, new/ and tmp/ one after the other: one still missing is a
        # folder being made, which holds nothing yet.
        keys = list(box.iterkeys())
    except FileNotFoundError:
        return []
    out: list[EmailMessage] = []
    for key in keys:
        try:
            with box.get_file(key) as raw:
                data = raw.read()
        except FileNotFoundError:
            continue  # moved or expunged while we listed the folder
        parsed = email.message_from_bytes(data, policy=email.policy.default)
        assert isinstance(parsed, EmailMessage)
        out.append(parsed)
    return out


def locate(home: Path, message_id: str) -> list[str]:
    """Every folder holding a message with this Message-ID (angle brackets optional)."""
    wanted = _normalise(message_id)
    return [
        f
        for f in folders(home)
        if any(_normalise(str(m["Message-ID"] or "")) == wanted for m in messages(home, f))
    ]


def _normalise(message_id: str) -> str:
    return message_id.strip().strip("<>").strip()
