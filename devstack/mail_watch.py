"""`make dev` on the mail lab: what happens in the demo mailboxes, read from their Maildirs.

Each scan lists the folders' files (a Maildir file's name carries its IMAP flags, `:2,FS`), reads the
headers of files it has not seen, and reports what changed since the last scan: warmup mail or an
answer landing (and in which folder: rspamd and the lab's sieve decide), a message moved out of Junk,
marked read or flagged. Read from disk, not over IMAP, so watching never logs in as the demo users.
"""

from __future__ import annotations

import email.policy
import os
from collections.abc import Mapping
from dataclasses import dataclass
from email.parser import BytesHeaderParser
from pathlib import Path

from devstack.mail_lab import JUNK
from devstack.mail_lab.maildir import folder_path, folders

_HEADER_BYTES = 16384  # enough for any warmup message's headers
_PARSER = BytesHeaderParser(policy=email.policy.default)


@dataclass(frozen=True)
class Headers:
    message_id: str
    sender: str
    subject: str
    answers: bool  # has In-Reply-To: an answer, not a new thread


@dataclass(frozen=True)
class MailEvent:
    kind: str  # "mail" (a new thread landed), "reply" (an answer landed), "rescued", "read", "flagged"
    mailbox: str  # the mailbox it happened in
    headers: Headers
    folder: str  # where the message is now

    def line(self, stamp: str) -> str:
        h = self.headers
        if self.kind in ("mail", "reply"):
            return f"{stamp}  {self.kind}  {h.sender} -> {self.mailbox}  {self.folder}  {h.subject}"
        if self.kind == "rescued":
            return f"{stamp}  rescued  {self.mailbox} moved {h.subject!r} from {JUNK} to {self.folder}"
        return f"{stamp}  {self.kind}  {self.mailbox} {self.kind} {h.subject!r} (from {h.sender})"


def _headers(path: Path) -> Headers | None:
    try:
        with open(path, "rb") as f:
            head = f.read(_HEADER_BYTES)
    except FileNotFoundError:
        return None  # moved or expunged between listing and reading: the next scan sees where
    msg = _PARSER.parsebytes(head)
    return Headers(
        message_id=str(msg.get("Message-ID", "")).strip(),
        sender=str(msg.get("From", "")).strip(),
        subject=" ".join(str(msg.get("Subject", "")).split()),
        answers=bool(msg.get("In-Reply-To")),
    )


class MailWatch:
    def __init__(self, homes: Mapping[str, Path]) -> None:
        self._homes = dict(homes)  # address -> home folder
        self._files: dict[tuple[str, str, str], Headers] = {}  # (address, folder, Maildir key)
        self._last: dict[tuple[str, str], tuple[str, str]] = {}  # (address, Message-ID) -> folder, flags

    def prime(self) -> None:
        """Take what is already there as known (a restart on kept Maildirs reports only what is new)."""
        self.scan()

    def scan(self) -> list[MailEvent]:
        events: list[MailEvent] = []
        for address, home in self._homes.items():
            now: dict[str, tuple[str, str, Headers]] = {}
            for folder in folders(home):
                path = folder_path(home, folder)
                for sub in ("new", "cur"):
                    try:
                        names = os.listdir(path / sub)
                    except FileNotFoundError:
                        continue
                    for name in names:
                        key, _, flags = name.partition(":2,")
                        h = self._files.get((address, folder, key)) or _headers(path / sub / name)
                        if h is None or not h.message_id:
                            continue
                        self._files[(address, folder, key)] = h
                        # Mid-MOVE a message can be in two folders for a moment: the one out of Junk wins.
                        if h.message_id not in now or folder != JUNK:
                            now[h.message_id] = (folder, flags, h)
            for message_id, (folder, flags, h) in now.items():
                before = self._last.get((address, message_id))
                self._last[(address, message_id)] = (folder, flags)
                if before is None:
                    events.append(MailEvent("reply" if h.answers else "mail", address, h, folder))
                    continue
                if before[0] == JUNK and folder != JUNK:
                    events.append(MailEvent("rescued", address, h, folder))
                for flag, kind in (("S", "read"), ("F", "flagged")):
                    if flag in flags and flag not in before[1]:
                        events.append(MailEvent(kind, address, h, folder))
        return events
