"""The warmup email itself: deterministic, ordinary-looking, nothing that marks it as warmup mail."""

from __future__ import annotations

import datetime as dt
import email
import email.policy
import re
from email.message import EmailMessage
from email.utils import parseaddr, parsedate_to_datetime
from zoneinfo import ZoneInfo

import pytest

from activities.message import (
    CorpusError,
    build_message,
    load_corpus,
    message_id_for,
    name_from_address,
    parse_corpus,
)
from activities.recipients import start_point

NOW = dt.datetime(2026, 3, 2, 9, 30, tzinfo=ZoneInfo("Europe/Paris"))
ALLOWED_HEADERS = {
    "from",
    "to",
    "subject",
    "date",
    "message-id",
    "mime-version",
    "content-type",
    "content-transfer-encoding",
}


def parse(text: str) -> EmailMessage:
    msg = email.message_from_string(text, policy=email.policy.default)
    assert isinstance(msg, EmailMessage)
    return msg


def build(key: str = "7:2026-03-02:0", **kw: object) -> tuple[str, EmailMessage, str]:
    args: dict[str, object] = {
        "sender_address": "alice.martin@sender.example",
        "sender_name": None,
        "recipient_address": "bob@receiver.example",
        "now": NOW,
    }
    args.update(kw)
    message_id, text = build_message(key, **args)  # type: ignore[arg-type]
    return message_id, parse(text), text


def test_headers_are_only_the_standard_ones() -> None:
    message_id, msg, text = build()
    assert {k.lower() for k in msg.keys()} == ALLOWED_HEADERS
    assert not any(k.lower().startswith("x-") for k in msg.keys())
    assert parseaddr(str(msg["From"])) == ("Alice Martin", "alice.martin@sender.example")
    assert parseaddr(str(msg["To"])) == ("Bob", "bob@receiver.example")
    assert str(msg["Message-ID"]) == message_id
    assert str(msg["Subject"]).strip()
    assert parsedate_to_datetime(str(msg["Date"])) == NOW
    assert "+0100" in str(msg["Date"])  # the sender's local offset, like a real mail client
    assert msg.get_content_type() == "text/plain"
    assert msg["Content-Transfer-Encoding"] == "7bit"
    # Nothing in the text points back to the key, the slot or the word "warmup".
    assert "warmup" not in text.lower()
    assert "7:2026-03-02:0" not in text


def test_message_id_is_on_the_sender_domain_and_depends_on_key_and_salt() -> None:
    message_id, _, _ = build()
    assert re.fullmatch(r"<[0-9a-f]{24}@sender\.example>", message_id)
    assert message_id_for("7:2026-03-02:0", "Alice.Martin@Sender.Example") == message_id
    assert build("7:2026-03-02:1")[0] != message_id
    salted = message_id_for("7:2026-03-02:0", "alice.martin@sender.example", b"install secret")
    assert salted != message_id and salted.endswith("@sender.example>")


def test_same_inputs_rebuild_the_same_text() -> None:
    assert build(salt=b"s")[2] == build(salt=b"s")[2]
    assert build(salt=b"s")[2] != build(salt=b"t")[2]


def test_emails_vary_across_keys() -> None:
    subjects, bodies, openings = set(), set(), set()
    for slot in range(300):
        _, msg, _ = build(f"7:2026-03-02:{slot}")
        subjects.add(str(msg["Subject"]))
        body = msg.get_content()
        bodies.add(body)
        openings.add(body.split("\n\n")[1][:40])
    assert len(bodies) == 300  # no two identical emails
    assert len(subjects) >= 40
    assert len(openings) >= 100


def test_body_reads_like_a_short_letter() -> None:
    _, msg, _ = build()
    body = msg.get_content()
    paragraphs = body.strip().split("\n\n")
    assert len(paragraphs) >= 3  # greeting, text, sign-off
    assert paragraphs[-1].splitlines()[-1] == "Alice"  # signed with the sender's first name
    assert all(len(line) <= 78 for line in body.splitlines())
    # The greeting names the recipient or is a generic one; never an unfilled placeholder.
    assert "{name}" not in body


def test_addresses_that_do_not_look_like_names_get_generic_greeting_and_no_display_name() -> None:
    for slot in range(40):
        _, msg, _ = build(f"k:{slot}", sender_address="warm7@s.example", recipient_address="x91@r.example")
        assert str(msg["From"]) == "warm7@s.example"
        assert str(msg["To"]) == "x91@r.example"
        assert "{name}" not in msg.get_content()


def test_non_ascii_display_name_is_encoded_and_body_is_not_base64() -> None:
    _, msg, text = build(sender_name="Zoë Ünal")
    assert parseaddr(str(msg["From"]))[0] == "Zoë Ünal"
    assert text.isascii()
    assert msg["Content-Transfer-Encoding"] == "quoted-printable"
    assert msg.get_content().rstrip().endswith("Zoë")


def test_bad_inputs_are_named() -> None:
    with pytest.raises(ValueError, match="timezone-aware"):
        build(now=dt.datetime(2026, 3, 2, 9, 30))
    with pytest.raises(ValueError, match="sender_address"):
        build(sender_address="not-an-address")
    with pytest.raises(ValueError, match="recipient_address"):
        build(recipient_address="bob")


def test_name_from_address() -> None:
    assert name_from_address("jean-luc.picard@x.example") == "Jean Luc Picard"
    assert name_from_address("bob@x.example") == "Bob"
    assert name_from_address("sales2024@x.example") is None
    assert name_from_address("a@x.example") is None


def test_packaged_corpus_is_large() -> None:
    corpus = load_corpus()
    assert len(corpus.topics) >= 10
    assert sum(len(t.subjects) for t in corpus.topics) >= 60
    assert sum(len(t.sentences) for t in corpus.topics) >= 150
    assert len(corpus.greetings) >= 10 and len(corpus.openers) >= 20
    assert len(corpus.closers) >= 20 and len(corpus.signoffs) >= 15


def test_corpus_files_merge_and_bad_ones_are_refused() -> None:
    frame = {"greetings": ["Hi,"], "openers": ["Hello."], "closers": ["Bye."], "signoffs": ["Best,"]}
    topic = {"name": "t", "subjects": ["S"], "sentences": ["One.", "Two."]}
    corpus = parse_corpus([frame, {"topics": [topic]}, {"topics": [topic], "openers": ["More."]}])
    assert len(corpus.topics) == 2 and corpus.openers == ("Hello.", "More.")
    with pytest.raises(CorpusError, match="topics"):
        parse_corpus([frame])
    with pytest.raises(CorpusError, match="at least 2 sentences"):
        parse_corpus([frame, {"topics": [{"name": "t", "subjects": ["S"], "sentences": ["One."]}]}])
    with pytest.raises(CorpusError, match="without"):
        parse_corpus([{**frame, "greetings": ["Hi {name},"]}, {"topics": [topic]}])


def test_recipient_start_point_is_stable_and_spread() -> None:
    assert start_point("1:2026-03-02:0", 10, 20) == start_point("1:2026-03-02:0", 10, 20)
    points = {start_point(f"1:2026-03-02:{i}", 1, 100_000) for i in range(200)}
    assert len(points) > 190 and all(1 <= p <= 100_000 for p in points)
    assert start_point("x", 5, 5) == 5


def test_no_email_names_a_season_or_holiday() -> None:
    # Mailboxes warm up all year in both hemispheres: "Spring at last" in November reads as a bot.
    corpus = load_corpus()
    texts = [*corpus.greetings, *corpus.openers, *corpus.closers, *corpus.signoffs]
    for topic in corpus.topics:
        texts += [*topic.subjects, *topic.sentences]
    seasonal = re.compile(r"\b(spring|summer|autumn|winter|christmas|easter|thanksgiving|halloween)\b", re.I)
    assert [t for t in texts if seasonal.search(t)] == []
