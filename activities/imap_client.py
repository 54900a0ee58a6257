"""The IMAP operations engagement needs, on `imapclient`: log in once, find warmup emails by Message-ID in
every folder, move one out of Junk, set flags, read the headers a reply needs.

Synchronous on purpose (imapclient is): an activity runs it in the worker's thread pool. Every network call
is bounded by `ImapAccount.timeout_seconds` (a socket timeout on connect and on every read). Failures come out
as one of four errors, none of which ever contains the password:

- ImapAuthError: the server refused the login (bad credentials, or it wants TLS): fix the account.
- ImapTransientError: network down, timeout, server BYE or [UNAVAILABLE]: try again later.
- ImapConfigError: these settings cannot work (certificate rejected, STARTTLS not offered): fix the account.
- ImapCommandError: the server answered NO/BAD to a command after login.

    account = ImapAccount(host="imap.example.com", port=993, username="ana@example.com")
    with ImapSession(account, password) as imap:
        found = imap.find_messages(["<id@example.com>"])
        for message in found.values():
            if message.kind is FolderKind.JUNK:
                message = imap.move_to_inbox(message)
            imap.add_flags(message, (SEEN, FLAGGED))
"""

from __future__ import annotations

import ssl
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from email.parser import BytesHeaderParser
from email.policy import default as default_policy
from enum import StrEnum
from types import TracebackType

from imapclient import IMAPClient
from imapclient.exceptions import CapabilityError, IMAPClientAbortError, IMAPClientError, LoginError

from warmup.mailbox_settings import is_loopback
from warmup.models import ImapSecurity

INBOX = "INBOX"
SEEN = r"\Seen"
FLAGGED = r"\Flagged"
JUNK_FLAG = r"\Junk"
# Where providers keep spam when they do not advertise SPECIAL-USE \Junk (checked in this order, any case).
JUNK_NAMES = ("Junk", "Spam", "Junk E-mail", "Junk Email", "[Gmail]/Spam", "Bulk Mail")
_NOT_SELECTABLE = {r"\noselect", r"\nonexistent"}
# Login answers that say "not now" rather than "not you" (RFC 5530 response codes).
_TRANSIENT_LOGIN_CODES = ("[UNAVAILABLE]", "[SERVERBUG]", "[INUSE]", "[LIMIT]")
_REPLY_HEADERS = ("Subject", "Message-ID", "In-Reply-To", "References")


class FolderKind(StrEnum):
    INBOX = "inbox"
    JUNK = "junk"
    OTHER = "other"


class ImapError(Exception):
    """An IMAP operation failed; the message names the step and the server's answer, never the password."""


class ImapAuthError(ImapError):
    """The server refused the login: the username/password (or the account's security) must be fixed."""


class ImapTransientError(ImapError):
    """Network, timeout, server BYE or a login answered [UNAVAILABLE]: retrying later may succeed."""


class ImapConfigError(ImapError):
    """These settings cannot work: certificate rejected, STARTTLS not offered."""


class ImapCommandError(ImapError):
    """The server answered NO or BAD to a command after login."""


@dataclass(frozen=True)
class ImapAccount:
    host: str
    port: int
    username: str
    security: ImapSecurity = ImapSecurity.TLS
    verify_tls: bool = True
    ca_file: str | None = None  # PEM of extra CAs to trust (a lab's); None: the system's store
    timeout_seconds: float = 30.0

    def __post_init__(self) -> None:
        if not self.host.strip():
            raise ValueError("imap host: empty (set the IMAP server's name, e.g. imap.example.com)")
        if not 0 < self.port < 65536:
            raise ValueError(f"imap port: {self.port} is not a TCP port (993 for TLS, 143 for STARTTLS)")
        if not self.username.strip():
            raise ValueError("imap username: empty (usually the mailbox's address)")
        if self.timeout_seconds <= 0:
            raise ValueError(f"imap timeout: {self.timeout_seconds} s (must be more than 0)")
        if self.security is ImapSecurity.NONE and not is_loopback(self.host):
            raise ValueError(
                f"imap security: clear text is allowed only to a loopback host, not {self.host!r} "
                "(use tls on port 993 or starttls on port 143)"
            )

    def ssl_context(self) -> ssl.SSLContext:
        context = ssl.create_default_context(cafile=self.ca_file)
        if not self.verify_tls:
            context.check_hostname = False
            context.verify_mode = ssl.CERT_NONE
        return context


@dataclass(frozen=True)
class Folder:
    name: str
    flags: frozenset[str]  # as the server listed them, e.g. {"\\HasNoChildren", "\\Junk"}
    kind: FolderKind


@dataclass(frozen=True)
class FoundMessage:
    message_id: str  # as asked for, e.g. "<abc@example.com>"
    folder: str
    uid: int
    flags: frozenset[str]
    kind: FolderKind


@dataclass(frozen=True)
class MessageHeaders:
    subject: str
    message_id: str
    in_reply_to: str
    references: tuple[str, ...] = field(default=())


class ImapSession:
    """One IMAP connection and one login, as a context manager."""

    def __init__(self, account: ImapAccount, password: str, *, oauth2: bool = False) -> None:
        """`oauth2`: `password` is an OAuth2 access token, presented with XOAUTH2 (which Gmail, Outlook
        and Dovecot's oauth2 passdb take)."""
        self.account = account
        self._password = password
        self._oauth2 = oauth2
        self._client: IMAPClient | None = None
        self._selected: tuple[str, bool] | None = None  # folder, readonly
        self._folders: list[Folder] | None = None

    # --- connection --------------------------------------------------------------------------

    def __enter__(self) -> ImapSession:
        self.open()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    def open(self) -> None:
        a = self.account
        with self._guard("connect"):
            client = IMAPClient(
                a.host,
                a.port,
                ssl=a.security is ImapSecurity.TLS,
                ssl_context=a.ssl_context() if a.security is ImapSecurity.TLS else None,
                timeout=a.timeout_seconds,
            )
        self._client = client
        try:
            if a.security is ImapSecurity.STARTTLS:
                with self._guard("starttls"):
                    if not client.has_capability("STARTTLS"):
                        raise ImapConfigError(
                            f"IMAP server {a.host}:{a.port} does not offer STARTTLS: "
                            "use security tls (port 993)"
                        )
                    client.starttls(a.ssl_context())
            self._login(client)
        except BaseException:
            self.close()
            raise

    def close(self) -> None:
        client, self._client = self._client, None
        if client is None:
            return
        try:
            client.logout()
        except (IMAPClientError, OSError):
            # Best effort: the connection may already be gone; the server ends the session anyway.
            try:
                client.shutdown()
            except OSError:
                pass

    def _login(self, client: IMAPClient) -> None:
        a = self.account
        try:
            if self._oauth2:
                client.oauth2_login(a.username, self._password)
            else:
                client.login(a.username, self._password)
        except LoginError as exc:
            answer = self._scrub(str(exc))
            if any(code in answer.upper() for code in _TRANSIENT_LOGIN_CODES):
                raise ImapTransientError(f"IMAP login to {a.host} deferred by the server: {answer}") from None
            what = "the OAuth2 sign-in" if self._oauth2 else "the username and password"
            raise ImapAuthError(
                f"IMAP login refused for {a.username} at {a.host}: {answer} (check {what})"
            ) from None
        except IMAPClientError as exc:
            answer = self._scrub(str(exc))
            if isinstance(exc, IMAPClientAbortError):
                raise ImapTransientError(f"IMAP login to {a.host} cut off: {answer}") from None
            # e.g. BAD/NO to LOGIN on a clear-text connection the server will not take a password on.
            raise ImapAuthError(f"IMAP login refused for {a.username} at {a.host}: {answer}") from None
        except (OSError, ssl.SSLError) as exc:
            raise ImapTransientError(f"IMAP login to {a.host} failed: {self._describe(exc)}") from None

    @property
    def client(self) -> IMAPClient:
        if self._client is None:
            raise ImapError("the IMAP session is not open")
        return self._client

    def capabilities(self) -> frozenset[str]:
        with self._guard("capability"):
            return frozenset(c.decode().upper() for c in self.client.capabilities())

    # --- folders -----------------------------------------------------------------------------

    def folders(self) -> list[Folder]:
        """Every selectable folder, INBOX and Junk first (the order a search visits them)."""
        if self._folders is None:
            with self._guard("list"):
                listed = self.client.list_folders()
            raw = [
                (name, frozenset(f.decode() if isinstance(f, bytes) else str(f) for f in flags))
                for flags, _sep, name in listed
            ]
            raw = [(n, f) for n, f in raw if not {x.lower() for x in f} & _NOT_SELECTABLE]
            junk = _pick_junk(raw)
            out = [Folder(n, f, _kind(n, junk)) for n, f in raw]
            order = {FolderKind.INBOX: 0, FolderKind.JUNK: 1, FolderKind.OTHER: 2}
            self._folders = sorted(out, key=lambda f: order[f.kind])
        return self._folders

    def junk_folder(self) -> str | None:
        """The spam folder: SPECIAL-USE \\Junk, else the first of JUNK_NAMES that exists; None if neither."""
        return next((f.name for f in self.folders() if f.kind is FolderKind.JUNK), None)

    # --- messages ----------------------------------------------------------------------------

    def find_messages(self, message_ids: Iterable[str]) -> dict[str, FoundMessage]:
        """Where each Message-ID is: INBOX first, then Junk, then every other selectable folder (a message
        found in one folder is not looked for in the next). Ids not found are absent from the result."""
        wanted = [bracket(m) for m in message_ids]
        found: dict[str, FoundMessage] = {}
        for folder in self.folders():
            todo = [m for m in wanted if m not in found]
            if not todo:
                break
            self._select(folder.name, readonly=True)
            for message_id in todo:
                hit = self._search_one(folder, message_id)
                if hit is not None:
                    found[message_id] = hit
        return found

    def find_message(self, message_id: str) -> FoundMessage | None:
        return self.find_messages([message_id]).get(bracket(message_id))

    def move_to_inbox(self, message: FoundMessage) -> FoundMessage:
        """Move a message into INBOX (MOVE, or COPY + \\Deleted + EXPUNGE where MOVE is not offered) and
        return where it is now. A message already in INBOX is returned as it is."""
        if message.kind is FolderKind.INBOX:
            return message
        self._select(message.folder, readonly=False)
        with self._guard(f"move from {message.folder}"):
            if self.client.has_capability("MOVE"):
                self.client.move([message.uid], INBOX)
            else:
                self.client.copy([message.uid], INBOX)
                self.client.add_flags([message.uid], [r"\Deleted"])
                if self.client.has_capability("UIDPLUS"):
                    self.client.uid_expunge([message.uid])
                else:
                    self.client.expunge()
        inbox = next(f for f in self.folders() if f.kind is FolderKind.INBOX)
        self._select(inbox.name, readonly=True)
        moved = self._search_one(inbox, message.message_id)
        if moved is None:
            raise ImapCommandError(
                f"{message.message_id} was moved from {message.folder} but is not in INBOX"
            )
        return moved

    def add_flags(self, message: FoundMessage, flags: Sequence[str] = (SEEN, FLAGGED)) -> FoundMessage:
        """Add flags (\\Seen, \\Flagged) to a message; returns it with the flags the server now reports."""
        self._select(message.folder, readonly=False)
        with self._guard(f"store flags in {message.folder}"):
            answer = self.client.add_flags([message.uid], list(flags))
        now = answer.get(message.uid)
        new_flags = _flags(now) if now is not None else message.flags | frozenset(flags)
        return FoundMessage(message.message_id, message.folder, message.uid, new_flags, message.kind)

    def headers(self, message: FoundMessage) -> MessageHeaders:
        """Subject, Message-ID, In-Reply-To and References, without marking the message \\Seen."""
        self._select(message.folder, readonly=True)
        fields = b"HEADER.FIELDS (" + " ".join(_REPLY_HEADERS).upper().encode() + b")"
        with self._guard(f"fetch headers in {message.folder}"):
            data = self.client.fetch([message.uid], [b"BODY.PEEK[" + fields + b"]"])
        raw = data.get(message.uid, {}).get(b"BODY[" + fields + b"]", b"")
        parsed = BytesHeaderParser(policy=default_policy).parsebytes(raw if isinstance(raw, bytes) else b"")
        return MessageHeaders(
            subject=str(parsed.get("Subject", "")),
            message_id=str(parsed.get("Message-ID", "")).strip(),
            in_reply_to=str(parsed.get("In-Reply-To", "")).strip(),
            references=tuple(str(parsed.get("References", "")).split()),
        )

    def unread_delivery_reports(self) -> list[tuple[FoundMessage, bytes]]:
        """Unread delivery status notifications (RFC 3464 bounces) in INBOX and Junk, each with its full
        text, fetched without marking it \\Seen."""
        out: list[tuple[FoundMessage, bytes]] = []
        for folder in self.folders():
            if folder.kind not in (FolderKind.INBOX, FolderKind.JUNK):
                continue
            self._select(folder.name, readonly=True)
            with self._guard(f"search {folder.name} for delivery reports"):
                uids = self.client.search(["UNSEEN", "HEADER", "Content-Type", "delivery-status"])
                data = self.client.fetch(uids, [b"FLAGS", b"BODY.PEEK[]"]) if uids else {}
            for uid, item in data.items():
                raw = item.get(b"BODY[]", b"")
                if isinstance(raw, bytes):
                    found = FoundMessage("", folder.name, uid, _flags(item.get(b"FLAGS")), folder.kind)
                    out.append((found, raw))
        return out

    # --- internals ---------------------------------------------------------------------------

    def _select(self, folder: str, *, readonly: bool) -> None:
        if self._selected == (folder, readonly):
            return
        with self._guard(f"select {folder}"):
            self.client.select_folder(folder, readonly=readonly)
        self._selected = (folder, readonly)

    def _search_one(self, folder: Folder, message_id: str) -> FoundMessage | None:
        # HEADER search is a substring match: confirm the header itself before trusting a hit.
        with self._guard(f"search {folder.name}"):
            uids = self.client.search(["HEADER", "Message-ID", message_id])
            if not uids:
                return None
            data = self.client.fetch(uids, [b"FLAGS", b"BODY.PEEK[HEADER.FIELDS (MESSAGE-ID)]"])
        for uid in sorted(uids):
            row = data.get(uid, {})
            raw = row.get(b"BODY[HEADER.FIELDS (MESSAGE-ID)]", b"")
            parsed = BytesHeaderParser(policy=default_policy).parsebytes(
                raw if isinstance(raw, bytes) else b""
            )
            if bracket(str(parsed.get("Message-ID", ""))) == message_id:
                return FoundMessage(
                    message_id, folder.name, int(uid), _flags(row.get(b"FLAGS", ())), folder.kind
                )
        return None

    @contextmanager
    def _guard(self, step: str) -> Iterator[None]:
        """Turn whatever the network or the server throws during `step` into one of our errors."""
        where = f"{self.account.host}:{self.account.port}"
        try:
            yield
        except ImapError:
            raise
        except ssl.SSLCertVerificationError as exc:
            raise ImapConfigError(
                f"IMAP {step} to {where}: TLS certificate rejected ({exc.verify_message or exc}); fix the "
                "server certificate, give its CA file, or turn TLS verification off for this mailbox"
            ) from None
        except CapabilityError as exc:
            raise ImapConfigError(f"IMAP {step} at {where}: {self._scrub(str(exc))}") from None
        except IMAPClientAbortError as exc:
            raise ImapTransientError(f"IMAP {step} at {where} cut off: {self._scrub(str(exc))}") from None
        except IMAPClientError as exc:
            raise ImapCommandError(f"IMAP {step} at {where} refused: {self._scrub(str(exc))}") from None
        except TimeoutError:
            raise ImapTransientError(
                f"IMAP {step} at {where}: no answer within {self.account.timeout_seconds} s"
            ) from None
        except (OSError, ssl.SSLError) as exc:
            raise ImapTransientError(f"IMAP {step} at {where} failed: {self._describe(exc)}") from None

    def _describe(self, exc: BaseException) -> str:
        text = str(exc)
        return self._scrub(f"{type(exc).__name__}: {text}" if text else type(exc).__name__)

    def _scrub(self, text: str) -> str:
        return text.replace(self._password, "***") if self._password else text


def _pick_junk(folders: list[tuple[str, frozenset[str]]]) -> str | None:
    for name, flags in folders:
        if JUNK_FLAG.lower() in {f.lower() for f in flags}:
            return name
    by_name = {name.lower(): name for name, _ in folders}
    return next((by_name[n.lower()] for n in JUNK_NAMES if n.lower() in by_name), None)


def _kind(name: str, junk: str | None) -> FolderKind:
    if name.upper() == INBOX:
        return FolderKind.INBOX
    if name == junk:
        return FolderKind.JUNK
    return FolderKind.OTHER


def _flags(raw: object) -> frozenset[str]:
    if not isinstance(raw, tuple | list):
        return frozenset()
    return frozenset(f.decode() if isinstance(f, bytes) else str(f) for f in raw)


def bracket(message_id: str) -> str:
    """Message-IDs compare with their angle brackets: "<a@b>"."""
    inner = message_id.strip().strip("<>").strip()
    return f"<{inner}>"
