"""Builds the warmup email and the reply to one: pure functions, no I/O beyond reading the packaged
text corpus once.

A warmup email must read like ordinary correspondence and must carry nothing that marks it as
warmup mail: only the standard headers, a Message-ID on the sender's own domain, and text drawn
from a varied corpus (warmup/corpus/*.json). Everything is seeded by the idempotency key so the
same key always yields the same email.

Variety is combinatorial so that no subject or body repeats often enough in a day's mail for a
provider to cluster it (bench/text_variety.py measures it): the corpus's subjects and sentences are
templates with slots ("Quick update on {thing}"), filled once per email so subject and body agree,
and a topic's `replies`/`answers` let a reply answer what the original said.
"""

from __future__ import annotations

import datetime as dt
import email
import email.policy
import functools
import hashlib
import hmac
import itertools
import json
import random
import re
import textwrap
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from email.message import EmailMessage
from email.utils import format_datetime, formataddr, getaddresses, parsedate_to_datetime
from importlib import resources

_WRAP = 72  # keeps every line short so the body goes out as plain 7bit text
_PLACEHOLDER = re.compile(r"\{([A-Za-z]+)\}")
_RE_PREFIX = re.compile(r"^\s*(?:(?:re|aw|sv)(?:\[\d+\])?\s*:\s*)+", re.IGNORECASE)

Slots = tuple[tuple[str, tuple[str, ...]], ...]  # (slot name, fillers): hashable, unlike a dict


@dataclass(frozen=True)
class Topic:
    name: str
    subjects: tuple[str, ...]  # templates: "{thing}" is the filler, "{Thing}" the same capitalised
    sentences: tuple[str, ...]
    slots: Slots = ()  # the topic's own fillers, e.g. ("thing", ("the website", ...))
    replies: tuple[str, ...] = ()  # lines a reply to this topic may say
    answers: tuple[tuple[str, tuple[str, ...]], ...] = ()  # (sentence, what a reply may say to it)


@dataclass(frozen=True)
class Corpus:
    greetings: tuple[str, ...]  # may hold "{name}"
    openers: tuple[str, ...]
    closers: tuple[str, ...]
    signoffs: tuple[str, ...]
    topics: tuple[Topic, ...]
    slots: Slots = ()  # fillers every topic may use ("day", "when")
    reply_openers: tuple[str, ...] = ()
    reply_lines: tuple[str, ...] = ()  # what a reply says when the original's topic is not recognised
    reply_closers: tuple[str, ...] = ()


class CorpusError(Exception):
    """The packaged corpus is missing a section or malformed."""


_LISTS = ("greetings", "openers", "closers", "signoffs", "reply_openers", "reply_lines", "reply_closers")
_REQUIRED = ("greetings", "openers", "closers", "signoffs")


def _strings(value: object, where: str) -> list[str]:
    if not isinstance(value, list) or not all(isinstance(v, str) and v.strip() for v in value):
        raise CorpusError(f"corpus {where} must be a list of non-empty strings")
    return list(value)


def _slots(value: object, where: str) -> dict[str, tuple[str, ...]]:
    if not isinstance(value, dict):
        raise CorpusError(f"corpus {where} must be an object of slot name -> list of fillers")
    out = {}
    for name, fillers in value.items():
        if not re.fullmatch(r"[a-z]+", name) or name == "name":
            raise CorpusError(f"corpus {where}: slot name {name!r} must be lower-case letters, not 'name'")
        out[name] = tuple(_strings(fillers, f"{where}.{name}"))
        if not out[name]:
            raise CorpusError(f"corpus {where}.{name} needs at least one filler")
    return out


def _topic(t: object, shared: Mapping[str, object]) -> Topic:
    if not isinstance(t, dict):
        raise CorpusError("each corpus topic must be an object with name, subjects, sentences")
    name = str(t.get("name", ""))
    subjects, sentences = t.get("subjects"), t.get("sentences")
    if not (isinstance(subjects, list) and subjects and isinstance(sentences, list) and len(sentences) >= 2):
        raise CorpusError(f"corpus topic {name!r} needs subjects and at least 2 sentences")
    slots = _slots(t.get("slots", {}), f"topic {name!r} slots")
    raw_answers = t.get("answers", {})
    if not isinstance(raw_answers, dict):
        raise CorpusError(f"corpus topic {name!r} answers must be an object of sentence -> answers")
    answers = tuple((q, tuple(_strings(a, f"topic {name!r} answer"))) for q, a in raw_answers.items())
    topic = Topic(
        name,
        tuple(_strings(subjects, f"topic {name!r} subjects")),
        tuple(_strings(sentences, f"topic {name!r} sentences")),
        tuple(slots.items()),
        tuple(_strings(t.get("replies", []), f"topic {name!r} replies")),
        answers,
    )
    known = set(slots) | set(shared)
    for q, _ in answers:
        if q not in topic.sentences:
            raise CorpusError(f"corpus topic {name!r}: answered question {q!r} is not one of its sentences")
    for text in (*topic.subjects, *topic.sentences, *topic.replies, *(a for _, aa in answers for a in aa)):
        for slot in _PLACEHOLDER.findall(text):
            if slot.lower() not in known:
                raise CorpusError(
                    f"corpus topic {name!r}: {{{slot}}} in {text!r} is not a slot; "
                    f"declare it under the topic's or the frame's 'slots'"
                )
    return topic


def parse_corpus(documents: Sequence[Mapping[str, object]]) -> Corpus:
    """Merge corpus documents: list sections are concatenated, so a new file only adds text."""
    lists: dict[str, list[str]] = {section: [] for section in _LISTS}
    shared: dict[str, tuple[str, ...]] = {}
    for doc in documents:
        for section, items in lists.items():
            items.extend(_strings(doc.get(section, []), f"section {section!r}"))
        shared.update(_slots(doc.get("slots", {}), "section 'slots'"))
    topics: list[Topic] = []
    for doc in documents:
        raw_topics = doc.get("topics", [])
        if not isinstance(raw_topics, list):
            raise CorpusError("corpus section 'topics' must be a list")
        topics += [_topic(t, shared) for t in raw_topics]
    missing = [name for name in _REQUIRED if not lists[name]] + ([] if topics else ["topics"])
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
        slots=tuple(shared.items()),
        reply_openers=tuple(lists["reply_openers"]),
        reply_lines=tuple(lists["reply_lines"]),
        reply_closers=tuple(lists["reply_closers"]),
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


def _rng(key: str, salt: bytes) -> random.Random:
    return random.Random(int.from_bytes(_seed(key, salt)[12:], "big"))  # bytes 0-11 make the Message-ID


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


def _first(name: str | None) -> str | None:
    return name.split()[0] if name and name.strip() else None


def fill(template: str, values: Mapping[str, str]) -> str:
    """Put the slot values into a template: "{thing}" as chosen, "{Thing}" with a capital first letter."""

    def one(m: re.Match[str]) -> str:
        slot = m.group(1)
        value = values[slot.lower()]
        return value[:1].upper() + value[1:] if slot[:1].isupper() else value

    return _PLACEHOLDER.sub(one, template)


def _fits(template: str, values: Mapping[str, str]) -> bool:
    return all(s.lower() in values for s in _PLACEHOLDER.findall(template))


def _paragraphs(rng: random.Random, sentences: list[str]) -> list[str]:
    """1-3 paragraphs: people split a longer note where it suits them, not at fixed places."""
    count = len(sentences)
    if count < 3 or rng.random() < 0.35:
        return [" ".join(sentences)]
    cuts = sorted(rng.sample(range(1, count), 2 if count >= 5 and rng.random() < 0.3 else 1))
    bounds = [0, *cuts, count]
    return [" ".join(sentences[a:b]) for a, b in itertools.pairwise(bounds)]


def _letter(
    rng: random.Random, corpus: Corpus, recipient_first: str | None, sender_first: str | None, text: list[str]
) -> list[str]:
    """Greeting, the text's paragraphs, sign-off: the blocks of a short letter."""
    greetings = (
        corpus.greetings if recipient_first else tuple(g for g in corpus.greetings if "{name}" not in g)
    )
    greeting = rng.choice(greetings).replace("{name}", recipient_first or "")
    signoff = rng.choice(corpus.signoffs)
    closing = f"{signoff}\n{sender_first}" if sender_first else signoff
    return [greeting, *(textwrap.fill(p, _WRAP, break_on_hyphens=False) for p in text), closing]


def compose(
    rng: random.Random, corpus: Corpus, recipient_first: str | None, sender_first: str | None
) -> tuple[str, str]:
    """(subject, body) for one email: greeting, 1-6 sentences on one topic in 1-3 paragraphs, sign-off."""
    topic = rng.choice(corpus.topics)
    values = {name: rng.choice(options) for name, options in (*corpus.slots, *topic.slots)}
    subject = fill(rng.choice(topic.subjects), values)
    count = min(rng.choices((1, 2, 3, 4, 5, 6), weights=(2, 5, 6, 5, 3, 1))[0], len(topic.sentences))
    sentences = [fill(s, values) for s in rng.sample(topic.sentences, count)]
    first = [rng.choice(corpus.openers)] if rng.random() < 0.7 or count == 1 else []
    text = _paragraphs(rng, first + sentences)
    if rng.random() < 0.8:
        closer = rng.choice(corpus.closers)
        if rng.random() < 0.5:
            text[-1] += " " + closer
        else:
            text.append(closer)
    body = "\n\n".join(_letter(rng, corpus, recipient_first, sender_first, text)) + "\n"
    return subject, body


def message_text(
    key: str, sender_address: str, sender_name: str | None, recipient_address: str, *, salt: bytes = b""
) -> tuple[str, str]:
    """(subject, body) of the warmup email for `key`: what build_message puts into the message."""
    display = _display(sender_name, sender_address)
    return compose(
        _rng(key, salt), load_corpus(), _first(name_from_address(recipient_address)), _first(display)
    )


def _display(name: str | None, address: str) -> str | None:
    return name.strip() if name and name.strip() else name_from_address(address)


def _email(
    sender: tuple[str | None, str],
    recipient: tuple[str | None, str],
    subject: str,
    body: str,
    now: dt.datetime,
    message_id: str,
    thread: Sequence[str] = (),
) -> EmailMessage:
    """The message with only the headers a mail client writes; `thread` is the replied-to Message-IDs
    oldest first (In-Reply-To is the last one)."""
    if now.tzinfo is None or now.utcoffset() is None:
        raise ValueError("now must be timezone-aware (its offset goes into the Date header)")
    msg = EmailMessage()
    msg["From"] = formataddr(sender) if sender[0] else sender[1]
    msg["To"] = formataddr(recipient) if recipient[0] else recipient[1]
    msg["Subject"] = subject
    msg["Date"] = format_datetime(now)
    msg["Message-ID"] = message_id
    if thread:
        msg["In-Reply-To"] = thread[-1]
        msg["References"] = " ".join(thread)
    # Plain 7bit for ASCII text, quoted-printable otherwise: a base64 text body is a spam signal.
    msg.set_content(body, cte="7bit" if body.isascii() else "quoted-printable")  # adds MIME-Version too
    return msg


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
    subject, body = message_text(key, sender_address, sender_name, recipient_address, salt=salt)
    sender = (_display(sender_name, sender_address), sender_address.strip())
    recipient = (name_from_address(recipient_address), recipient_address.strip())
    text = _plain_text(sender, recipient, subject, body, now, message_id)
    if text is None:
        text = _email(sender, recipient, subject, body, now, message_id).as_string()
    return message_id, text


# What `_plain_text` writes by hand: headers the `email` package renders exactly as given (no quoting,
# encoding or folding), and a 7bit body. Anything else goes through `email.message` (0.8 ms an email
# against 0.05; tests/test_message.py checks both give the same text).
_PLAIN_NAME = re.compile(r"[A-Za-z0-9]+( [A-Za-z0-9]+)*")
_PLAIN_ADDRESS = re.compile(r"[A-Za-z0-9][A-Za-z0-9._+-]*@[A-Za-z0-9-]+(\.[A-Za-z0-9-]+)+")
_PLAIN_SUBJECT = re.compile(r"[!-~]+( [!-~]+)*")
_MAX_HEADER_LINE = 78  # email.policy.default.max_line_length: longer lines would be folded
_MAX_BODY_LINE = 998  # RFC 5322's line limit: a longer line is left to `email.message`


def _plain_text(
    sender: tuple[str | None, str],
    recipient: tuple[str | None, str],
    subject: str,
    body: str,
    now: dt.datetime,
    message_id: str,
) -> str | None:
    """`_email(...).as_string()` for a message whose headers need no MIME treatment, else None."""
    if not body.isascii() or "=?" in subject or not _PLAIN_SUBJECT.fullmatch(subject):
        return None
    parties = []
    for name, address in (sender, recipient):
        if not _PLAIN_ADDRESS.fullmatch(address) or (name and not _PLAIN_NAME.fullmatch(name)):
            return None
        parties.append(f"{name} <{address}>" if name else address)
    headers = [
        f"From: {parties[0]}",
        f"To: {parties[1]}",
        f"Subject: {subject}",
        f"Date: {format_datetime(now)}",
        f"Message-ID: {message_id}",
    ]
    lines = body.encode("ascii").splitlines()
    if max(map(len, headers)) > _MAX_HEADER_LINE or any(len(line) > _MAX_BODY_LINE for line in lines):
        return None
    mime = 'Content-Type: text/plain; charset="utf-8"\nContent-Transfer-Encoding: 7bit\nMIME-Version: 1.0'
    return "\n".join([*headers, mime, "", b"\n".join(lines).decode("ascii"), ""])


# --- replies --------------------------------------------------------------------------------------


def reply_subject(subject: str) -> str:
    """'Re: ' + the original subject, without stacking ("Re: Re:", "RE:", "Aw:" all become one "Re:")."""
    return f"Re: {_RE_PREFIX.sub('', subject).strip()}"


@dataclass(frozen=True)
class Recognised:
    """What a reply can answer: the original's topic, the slot values it used, the questions it asked."""

    topic: Topic
    values: Mapping[str, str]
    asked: tuple[str, ...]  # the topic's answered sentences (templates) in the original's own text


@dataclass(frozen=True)
class _Matcher:
    topic: Topic
    subjects: tuple[re.Pattern[str], ...]
    sentences: tuple[tuple[str, re.Pattern[str]], ...]


def _pattern(template: str, fillers: Mapping[str, tuple[str, ...]]) -> re.Pattern[str]:
    parts, seen, at = [], set(), 0
    for m in _PLACEHOLDER.finditer(template):
        slot = m.group(1).lower()
        parts.append(re.escape(template[at : m.start()]))
        if slot in seen:
            parts.append(f"(?P={slot})")
        else:
            seen.add(slot)
            alternatives = sorted(fillers[slot], key=len, reverse=True)
            parts.append(f"(?P<{slot}>{'|'.join(map(re.escape, alternatives))})")
        at = m.end()
    parts.append(re.escape(template[at:]))
    return re.compile("".join(parts).replace(r"\ ", r"\s+"), re.IGNORECASE)


@functools.cache
def _matchers(corpus: Corpus) -> tuple[_Matcher, ...]:
    out = []
    for topic in corpus.topics:
        fillers = dict((*corpus.slots, *topic.slots))
        out.append(
            _Matcher(
                topic,
                tuple(_pattern(s, fillers) for s in topic.subjects),
                tuple((s, _pattern(s, fillers)) for s in topic.sentences),
            )
        )
    return tuple(out)


def _own_text(body: str) -> tuple[str, str]:
    """(the writer's own words, the whole thread) of a body, each unwrapped to one line of text."""
    own: list[str] = []
    every: list[str] = []
    quoting = False
    for line in body.splitlines():
        stripped = line.lstrip()
        if stripped.startswith(">") or (stripped.endswith("wrote:") and not quoting):
            quoting = True
        if not quoting:
            own.append(line)
        every.append(stripped.lstrip("> "))
    return " ".join(" ".join(own).split()), " ".join(" ".join(every).split())


def recognise(subject: str, body: str, corpus: Corpus | None = None) -> Recognised | None:
    """The corpus topic an email is about, from its subject and its text; None if none fits."""
    corpus = corpus or load_corpus()
    base = _RE_PREFIX.sub("", subject).strip()
    own, every = _own_text(body)
    best: tuple[int, int] | None = None
    found: Recognised | None = None
    for index, matcher in enumerate(_matchers(corpus)):
        values: dict[str, str] = {}
        score = 0
        for pattern in matcher.subjects:
            m = pattern.fullmatch(base)
            if m:
                values.update({k: v for k, v in m.groupdict().items() if v})
                score += 10
                break
        asked = []
        for template, pattern in matcher.sentences:
            m = pattern.search(every)
            if m:
                score += 1
                for k, v in m.groupdict().items():
                    values.setdefault(k, v)
                if pattern.search(own):
                    asked.append(template)
        if score and (best is None or (score, -index) > best):
            best = (score, -index)
            answered = {q for q, _ in matcher.topic.answers}
            found = Recognised(matcher.topic, values, tuple(q for q in asked if q in answered))
    if found is None:
        return None
    # A filler read from the text is used in the case a template wants, so keep the corpus spelling.
    spelled = {
        k: next((f for f in fillers if f.lower() == v.lower()), v)
        for k, fillers in (*corpus.slots, *found.topic.slots)
        if (v := found.values.get(k)) is not None
    }
    return Recognised(found.topic, spelled, found.asked)


def _answer_lines(rng: random.Random, corpus: Corpus, seen: Recognised | None) -> list[str]:
    """Answers to the original's questions first, then to what else it said, then the topic's lines."""
    if seen is None:
        return rng.sample(corpus.reply_lines, min(len(corpus.reply_lines), rng.randint(1, 2)))
    answers = dict(seen.topic.answers)
    questions = [q for q in seen.asked if q.endswith("?")]
    statements = [q for q in seen.asked if not q.endswith("?")]
    said = rng.sample(questions, min(2, len(questions)))
    said += rng.sample(statements, min(max(0, rng.randint(1, 2) - len(said) // 2), len(statements)))
    lines = []
    for sentence in said:
        options = [a for a in answers[sentence] if _fits(a, seen.values)]
        if options:
            lines.append(fill(rng.choice(options), seen.values))
    replies = [r for r in seen.topic.replies if _fits(r, seen.values) and fill(r, seen.values) not in lines]
    want = (1 if rng.random() < 0.5 else 0) if lines else rng.randint(1, 2)
    lines[0:0] = [fill(r, seen.values) for r in rng.sample(replies, min(want, len(replies)))]
    return lines or rng.sample(corpus.reply_lines, 1)


def _attribution(style: int, name: str | None, address: str, date: dt.datetime | None) -> str:
    who = f"{name} <{address}>" if name else address
    if date is None:
        return f"{who} wrote:"
    if style == 0:  # the Gmail way
        return f"On {date:%a}, {date.day} {date:%b %Y} at {date:%H:%M}, {who} wrote:"
    if style == 1:  # Thunderbird's
        return f"On {date:%d/%m/%Y %H:%M}, {name or address} wrote:"
    return f"On {date:%Y-%m-%d} at {date:%H:%M}, {who} wrote:"


def _quote(body: str) -> str:
    return "\n".join(f"> {line}" if line.strip() else ">" for line in body.rstrip("\n").splitlines())


def reply_text(
    key: str,
    original_subject: str,
    original_body: str,
    *,
    original_sender: tuple[str | None, str],
    replier: tuple[str | None, str],
    original_date: dt.datetime | None = None,
    salt: bytes = b"",
) -> tuple[str, str]:
    """(subject, body) of the reply for `key` to an email: 'Re: <subject>', a short answer to what it
    said (its topic's reply lines and answers to its questions), the replier's sign-off, then the
    original quoted the way a mail client does. `original_sender` and `replier` are (display name
    or None, address); a missing name is read from the address when it looks like one."""
    rng = _rng(key, salt)
    corpus = load_corpus()
    sender_name = _display(original_sender[0], original_sender[1])
    replier_name = _display(replier[0], replier[1])
    seen = recognise(original_subject, original_body, corpus)
    text = ([rng.choice(corpus.reply_openers)] if corpus.reply_openers and rng.random() < 0.6 else []) + (
        _answer_lines(rng, corpus, seen)
    )
    paragraphs = _paragraphs(rng, text)
    if corpus.reply_closers and rng.random() < 0.6:
        paragraphs.append(rng.choice(corpus.reply_closers))
    letter = _letter(rng, corpus, _first(sender_name), _first(replier_name), paragraphs)
    # One person keeps one mail client: the attribution style follows the replier, not the message.
    style = hashlib.sha256(replier[1].strip().lower().encode()).digest()[0] % 3
    quoted = _attribution(style, sender_name, original_sender[1].strip(), original_date)
    body = "\n\n".join(letter) + "\n\n" + quoted + "\n" + _quote(original_body) + "\n"
    return reply_subject(original_subject), body


def _mailbox(header: object, field: str) -> tuple[str | None, str]:
    pairs = getaddresses([str(header)]) if header is not None else []
    if not pairs or not pairs[0][1]:
        raise ValueError(f"the original email has no {field} address to reply to")
    name, address = pairs[0]
    _domain(address, f"the original's {field}")
    return (name or None), address


def reply_email(
    original: EmailMessage,
    key: str,
    now: dt.datetime,
    *,
    salt: bytes = b"",
    replier_name: str | None = None,
) -> EmailMessage:
    """The reply, from the original's recipient to its sender, for idempotency key `key`.

    In-Reply-To is the original's Message-ID and References its References followed by that ID, so
    every mail client threads it; the reply's own Message-ID is on the replier's domain, derived from
    `key` and `salt` like build_message's. The same arguments always give the same message.
    """
    original_id = original.get("Message-ID")
    if not original_id or not str(original_id).strip():
        raise ValueError("the original email has no Message-ID: a reply could not be threaded to it")
    to_name, to_address = _mailbox(original.get("From"), "From")
    from_name, from_address = _mailbox(original.get("To"), "To")
    replier = (replier_name or from_name, from_address)
    date_header = original.get("Date")
    try:
        date = parsedate_to_datetime(str(date_header)) if date_header else None
    except (TypeError, ValueError):
        date = None
    body_part = original.get_body(("plain",))
    original_body = body_part.get_content() if isinstance(body_part, EmailMessage) else ""
    subject, body = reply_text(
        key,
        str(original.get("Subject", "")),
        original_body,
        original_sender=(to_name, to_address),
        replier=replier,
        original_date=date,
        salt=salt,
    )
    thread = [*_ids(original.get("References")), str(original_id).strip()]
    return _email(
        (_display(*replier), from_address),
        (to_name, to_address),
        subject,
        body,
        now,
        message_id_for(key, from_address, salt),
        _dedupe(thread),
    )


def _ids(header: object) -> list[str]:
    return re.findall(r"<[^<>\s]+>", str(header)) if header is not None else []


def _dedupe(ids: Iterable[str]) -> list[str]:
    out: list[str] = []
    for i in ids:
        if i in out:
            out.remove(i)
        out.append(i)
    return out


def build_reply(
    original: EmailMessage | str,
    key: str,
    now: dt.datetime,
    *,
    salt: bytes = b"",
    replier_name: str | None = None,
) -> tuple[str, str]:
    """(Message-ID, full RFC 5322 text) of the reply to `original` (a message or its text): see
    reply_email."""
    if isinstance(original, str):
        parsed = email.message_from_string(original, policy=email.policy.default)
        assert isinstance(parsed, EmailMessage)
        original = parsed
    msg = reply_email(original, key, now, salt=salt, replier_name=replier_name)
    return str(msg["Message-ID"]), msg.as_string()
