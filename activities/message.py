"""Builds the warmup email: pure functions, no I/O beyond reading the packaged text corpus once.

A warmup email must read like ordinary correspondence and must carry nothing that marks it as
warmup mail: only the standard headers, a Message-ID on the sender's own domain, and text drawn
from a varied corpus (warmup/corpus/*.json). Everything is seeded by the idempotency key so the
same key always yields the same email.
"""

from __future__ import annotations

import datetime as dt
import functools
import hashlib
import hmac
import json
import random
import re
import textwrap
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from email.message import EmailMessage
from email.utils import format_datetime, formataddr
from importlib import resources

_WRAP = 72  # keeps every line short so the body goes out as plain 7bit text


@dataclass(frozen=True)
class Topic:
    name: str
    subjects: tuple[str, ...]
    sentences: tuple[str, ...]


@dataclass(frozen=True)
class Corpus:
    greetings: tuple[str, ...]  # may hold "{name}"
    openers: tuple[str, ...]
    closers: tuple[str, ...]
    signoffs: tuple[str, ...]
    topics: tuple[Topic, ...]


class CorpusError(Exception):
    """The packaged corpus is missing a section or malformed."""


def parse_corpus(documents: Sequence[Mapping[str, object]]) -> Corpus:
    """Merge corpus documents: list sections are concatenated, so a new file only adds text."""
    lists: dict[str, list[str]] = {"greetings": [], "openers": [], "closers": [], "signoffs": []}
    topics: list[Topic] = []
    for doc in documents:
        for section, items in lists.items():
            value = doc.get(section, [])
            if not isinstance(value, list) or not all(isinstance(v, str) and v.strip() for v in value):
                raise CorpusError(f"corpus section {section!r} must be a list of non-empty strings")
            items.extend(value)
        raw_topics = doc.get("topics", [])
        if not isinstance(raw_topics, list):
            raise CorpusError("corpus section 'topics' must be a list")
        for t in raw_topics:
            if not isinstance(t, dict):
                raise CorpusError("each corpus topic must be an object with name, subjects, sentences")
            subjects, sentences = t.get("subjects"), t.get("sentences")
            if not (
                isinstance(subjects, list)
                and subjects
                and isinstance(sentences, list)
                and len(sentences) >= 2
            ):
                raise CorpusError(f"corpus topic {t.get('name')!r} needs subjects and at least 2 sentences")
            topics.append(
                Topic(str(t.get("name", "")), tuple(map(str, subjects)), tuple(map(str, sentences)))
            )
    missing = [name for name, items in lists.items() if not items] + ([] if topics else ["topics"])
    if missing:
        raise CorpusError(f"corpus has no {', '.join(missing)}")
    if not any("{name}" not in g for g in lists["greetings"]):
        raise CorpusError("corpus needs at least one greeting without {name}")
    return Corpus(
        greetings=tuple(lists["greetings"]),
        openers=tuple(lists["openers"]),
        closers=tuple(lists["closers"]),
        signoffs=tuple(lists["signoffs"]),
        topics=tuple(topics),
    )


@functools.cache
def load_corpus() -> Corpus:
    """The corpus shipped in warmup/corpus/*.json (read once per process)."""
    folder = resources.files("warmup") / "corpus"
    docs = [
        json.loads(entry.read_text(encoding="utf-8"))
        for entry in sorted(folder.iterdir(), key=lambda e: e.name)
        if entry.name.endswith(".json")
    ]
    return parse_corpus(docs)


def _seed(key: str, salt: bytes) -> bytes:
    # With a salt unknown outside (the activity passes one), nobody can recompute a Message-ID from the
    # guessable key "mailbox:day:slot" and so recognise warmup mail.
    return hmac.new(salt or b"warmup-message", key.encode("utf-8"), hashlib.sha256).digest()


def _domain(address: str, field: str) -> str:
    local, sep, domain = address.strip().rpartition("@")
    if not sep or not local or not domain or " " in address.strip():
        raise ValueError(f"{field} {address!r} is not an email address (expected local@domain)")
    return domain.lower()


def message_id_for(key: str, sender_address: str, salt: bytes = b"") -> str:
    """`<24 hex digits@sender's domain>`, the same for the same key, sender and salt."""
    return f"<{_seed(key, salt).hex()[:24]}@{_domain(sender_address, 'sender_address')}>"


_NAME_PART = re.compile(r"^[A-Za-z]{2,20}$")


def name_from_address(address: str) -> str | None:
    """'alice.smith@x' -> 'Alice Smith'; None when the local part does not look like a name."""
    local = address.strip().rpartition("@")[0]
    parts = [p for p in re.split(r"[._-]+", local) if p]
    if 1 <= len(parts) <= 3 and all(_NAME_PART.match(p) for p in parts):
        return " ".join(p.capitalize() for p in parts)
    return None


def compose(
    rng: random.Random, corpus: Corpus, recipient_first: str | None, sender_first: str | None
) -> tuple[str, str]:
    """(subject, body) for one email: greeting, 2-5 sentences on one topic in 1-2 paragraphs, sign-off."""
    topic = rng.choice(corpus.topics)
    subject = rng.choice(topic.subjects)
    greetings = (
        corpus.greetings if recipient_first else tuple(g for g in corpus.greetings if "{name}" not in g)
    )
    greeting = rng.choice(greetings).replace("{name}", recipient_first or "")

    count = rng.randint(2, min(5, len(topic.sentences)))
    sentences = rng.sample(topic.sentences, count)
    first = [rng.choice(corpus.openers)] if rng.random() < 0.75 else []
    split = count if count < 4 or rng.random() < 0.4 else rng.randint(2, count - 1)
    paragraphs = [" ".join(first + sentences[:split])]
    if split < count:
        paragraphs.append(" ".join(sentences[split:]))
    if rng.random() < 0.85:
        paragraphs.append(rng.choice(corpus.closers))

    signoff = rng.choice(corpus.signoffs)
    closing = f"{signoff}\n{sender_first}" if sender_first else signoff
    body = "\n\n".join([greeting, *(textwrap.fill(p, _WRAP) for p in paragraphs), closing]) + "\n"
    return subject, body


def build_message(
    key: str,
    sender_address: str,
    sender_name: str | None,
    recipient_address: str,
    now: dt.datetime,
    *,
    salt: bytes = b"",
) -> tuple[str, str]:
    """(Message-ID, full RFC 5322 text) of the warmup email for idempotency key `key`.

    `now` (timezone-aware; its offset is used in the Date header) and `salt` are the only inputs
    besides the addresses: the same arguments always give the same text.
    """
    if now.tzinfo is None or now.utcoffset() is None:
        raise ValueError("now must be timezone-aware (its offset goes into the Date header)")
    _domain(recipient_address, "recipient_address")
    message_id = message_id_for(key, sender_address, salt)

    seed = _seed(key, salt)
    rng = random.Random(int.from_bytes(seed[12:], "big"))  # bytes 0-11 already went into the Message-ID
    display = (
        sender_name.strip() if sender_name and sender_name.strip() else name_from_address(sender_address)
    )
    recipient_name = name_from_address(recipient_address)
    subject, body = compose(
        rng,
        load_corpus(),
        recipient_name.split()[0] if recipient_name else None,
        display.split()[0] if display else None,
    )

    msg = EmailMessage()
    msg["From"] = formataddr((display, sender_address.strip())) if display else sender_address.strip()
    msg["To"] = (
        formataddr((recipient_name, recipient_address.strip()))
        if recipient_name
        else recipient_address.strip()
    )
    msg["Subject"] = subject
    msg["Date"] = format_datetime(now)
    msg["Message-ID"] = message_id
    # Plain 7bit for ASCII text, quoted-printable otherwise: a base64 text body is a spam signal.
    msg.set_content(body, cte="7bit" if body.isascii() else "quoted-printable")  # adds MIME-Version too
    return message_id, msg.as_string()
