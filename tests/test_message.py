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
from hypothesis import given, settings
from hypothesis import strategies as st

from activities.message import (
    CorpusError,
    _email,
    _fits,
    _plain_text,
    build_message,
    build_reply,
    fill,
    load_corpus,
    message_id_for,
    name_from_address,
    parse_corpus,
    recognise,
    reply_subject,
    reply_text,
)
from activities.recipients import start_point
from bench.text_variety import run_text_variety

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


# --- variety and replies ---------------------------------------------------------------------------

REPLY_HEADERS = ALLOWED_HEADERS | {"in-reply-to", "references"}
_keys = st.builds(
    "{}:{}:{}".format, st.integers(1, 10**6), st.dates().map(dt.date.isoformat), st.integers(0, 500)
)


def reply_to(
    original: str, key: str = "9:2026-03-02:0:r", salt: bytes = b"r"
) -> tuple[str, EmailMessage, str]:
    reply_id, text = build_reply(original, key, NOW + dt.timedelta(hours=2), salt=salt)
    return reply_id, parse(text), text


def test_corpus_templates_fill_subject_and_body_with_the_same_thing() -> None:
    corpus = load_corpus()
    assert all(t.slots for t in corpus.topics), "every topic has fillers, so subjects combine"
    for slot in range(200):
        _, msg, _ = build(f"7:2026-03-02:{slot}")
        subject, body = str(msg["Subject"]), msg.get_content()
        assert "{" not in subject + body and "}" not in subject + body
        seen = recognise(subject, body)
        assert seen is not None, subject
        thing = seen.values.get("thing")
        assert thing is not None and thing.lower() in subject.lower()


def test_a_day_of_mail_has_no_dominant_subject_and_rare_near_duplicates() -> None:
    # A property of the generator (not a timing): 20,000 emails of one simulated day.
    t = run_text_variety(20_000, mailboxes=1_000, replies=100)
    assert t.top_subject_share <= 0.002, (t.top_subject, t.top_subject_count)
    assert t.distinct_subjects >= 1_500
    assert t.near_duplicate_share <= 0.005 and t.exact_duplicate_bodies == 0
    assert t.replies_ok and t.reply_on_topic == t.replies


def test_reply_threads_to_the_original_and_quotes_it() -> None:
    original_id, original, original_text = build(salt=b"s")
    reply_id, reply, text = reply_to(original_text)
    assert {k.lower() for k in reply.keys()} == REPLY_HEADERS
    assert str(reply["Subject"]) == f"Re: {original['Subject']}"
    assert str(reply["In-Reply-To"]) == original_id
    assert str(reply["References"]).split() == [original_id]
    assert re.fullmatch(r"<[0-9a-f]{24}@receiver\.example>", reply_id) and reply_id != original_id
    assert parseaddr(str(reply["From"])) == ("Bob", "bob@receiver.example")
    assert parseaddr(str(reply["To"])) == ("Alice Martin", "alice.martin@sender.example")
    body = reply.get_content()
    head, quoted = body.split(" wrote:\n", 1)
    answer, attribution = head.rsplit("\n\n", 1)
    assert "Alice Martin" in attribution  # "On <date>, Alice Martin ... wrote:", like a mail client
    assert answer.endswith("\nBob")  # signed by the replier
    assert "> " + original.get_content().splitlines()[0] in quoted
    assert "warmup" not in text.lower() and "9:2026-03-02" not in text

    # The answer to the reply: one "Re:", References grow by the reply's ID.
    _, second, _ = reply_to(text, key="9:2026-03-02:0:rr", salt=b"s")
    assert str(second["Subject"]) == f"Re: {original['Subject']}"
    assert str(second["In-Reply-To"]) == reply_id
    assert str(second["References"]).split() == [original_id, reply_id]
    assert parseaddr(str(second["From"]))[1] == "alice.martin@sender.example"
    assert "> > " in second.get_content()


def test_reply_answers_what_the_original_said() -> None:
    corpus = load_corpus()
    for slot in range(60):
        _, original, text = build(f"7:2026-03-02:{slot}")
        seen = recognise(str(original["Subject"]), original.get_content())
        assert seen is not None
        _, reply, _ = reply_to(text, key=f"r{slot}")
        answer = reply.get_content().split(" wrote:\n")[0]
        said = {fill(r, seen.values) for r in seen.topic.replies if _fits(r, seen.values)} | {
            fill(a, seen.values)
            for _, answers in seen.topic.answers
            for a in answers
            if _fits(a, seen.values)
        }
        assert any(line in " ".join(answer.split()) for line in said), (original["Subject"], answer)
        generic = set(corpus.reply_lines)
        assert not any(g in answer for g in generic)


def test_reply_subject_never_stacks() -> None:
    assert reply_subject("Lunch?") == "Re: Lunch?"
    assert reply_subject("Re: Lunch?") == "Re: Lunch?"
    assert reply_subject("RE: re:  Lunch?") == "Re: Lunch?"
    assert reply_subject("Re[2]: Aw: Lunch?") == "Re: Lunch?"


@settings(max_examples=40, deadline=None)
@given(key=_keys, salt=st.binary(max_size=8))
def test_same_key_gives_the_same_email_and_reply(key: str, salt: bytes) -> None:
    _, first, text = build(key, salt=salt)
    assert build(key, salt=salt)[2] == text
    assert build_reply(text, key, NOW, salt=salt) == build_reply(text, key, NOW, salt=salt)
    subject = str(first["Subject"])
    _, reply, reply_raw = reply_to(text, key=key, salt=salt)
    assert str(reply["Subject"]) == reply_subject(subject) == f"Re: {subject}"
    assert {k.lower() for k in reply.keys()} == REPLY_HEADERS
    assert "warmup" not in reply_raw.lower() and key not in reply.get_content()


@settings(max_examples=60, deadline=None)
@given(subject=st.text(max_size=40), body=st.text(max_size=300))
def test_reply_text_to_any_email_is_a_reply(subject: str, body: str) -> None:
    # Mail that did not come from the corpus still gets a sensible, generic answer.
    reply_subject_, text = reply_text(
        "k", subject, body, original_sender=(None, "x@a.example"), replier=("Bob Stone", "bob@b.example")
    )
    assert reply_subject_.startswith("Re: ") and not reply_subject_[4:].lower().startswith("re:")
    assert "x@a.example wrote:" in text and text.rstrip().splitlines()[0].strip()
    assert "\nBob\n" in text


def test_reply_refuses_an_original_without_message_id_or_addresses() -> None:
    _, original, _ = build()
    del original["Message-ID"]
    with pytest.raises(ValueError, match="Message-ID"):
        build_reply(original, "k", NOW)
    _, original, _ = build()
    del original["From"]
    with pytest.raises(ValueError, match="From"):
        build_reply(original, "k", NOW)


def test_corpus_slots_are_checked() -> None:
    frame = {"greetings": ["Hi,"], "openers": ["Hello."], "closers": ["Bye."], "signoffs": ["Best,"]}
    topic = {"name": "t", "subjects": ["About {thing}"], "sentences": ["One {thing}.", "Two."]}
    with pytest.raises(CorpusError, match=r"\{thing\}.*not a slot"):
        parse_corpus([frame, {"topics": [topic]}])
    corpus = parse_corpus([frame, {"topics": [{**topic, "slots": {"thing": ["the plan"]}}]}])
    assert corpus.topics[0].slots == (("thing", ("the plan",)),)
    with pytest.raises(CorpusError, match="not one of its sentences"):
        parse_corpus(
            [frame, {"topics": [{**topic, "slots": {"thing": ["x"]}, "answers": {"Three?": ["Yes."]}}]}]
        )


_names = st.one_of(
    st.none(),
    st.text(st.sampled_from("abcXYZ09 .,'\"é-"), min_size=1, max_size=30),
    st.from_regex(r"[A-Za-z0-9]{1,12}( [A-Za-z0-9]{1,12}){0,3}", fullmatch=True),
)
_addresses = st.one_of(
    st.from_regex(r"[a-z0-9][a-z0-9._+-]{0,20}@[a-z0-9-]{1,12}(\.[a-z]{2,6}){1,2}", fullmatch=True),
    st.text(st.sampled_from('ab.@-_+ é"'), min_size=3, max_size=20).filter(lambda a: "@" in a),
)
_subjects = st.one_of(
    st.text(st.characters(min_codepoint=32, max_codepoint=126), min_size=1, max_size=90),
    st.text(min_size=1, max_size=40),
)
_bodies = st.one_of(
    st.text(st.characters(min_codepoint=9, max_codepoint=126), max_size=300),
    st.text(max_size=100),
)


@settings(max_examples=400, deadline=None)
@given(_names, _addresses, _names, _addresses, _subjects, _bodies)
def test_the_hand_written_message_is_the_email_packages_text_whenever_it_is_written(
    sender_name: str | None,
    sender: str,
    recipient_name: str | None,
    recipient: str,
    subject: str,
    body: str,
) -> None:
    """The send path writes plain messages by hand (16 times cheaper): byte for byte what the `email`
    package writes for them, or not at all (then the `email` package writes it)."""
    args = ((sender_name, sender), (recipient_name, recipient), subject, body, NOW, "<a1b2@one.example>")
    plain = _plain_text(*args)
    if plain is not None:
        assert plain == _email(*args).as_string()


def test_an_ordinary_days_mail_is_written_by_hand_and_reads_the_same() -> None:
    """The corpus's own messages take the hand-written path (else it saves nothing)."""
    for n in range(200):
        key = f"7:2026-03-02:{n}"
        sender, recipient = ("Ann Lee", "ann.lee@one.example"), ("Bob", "bob@two.example")
        _, text = build_message(key, sender[1], sender[0], recipient[1], NOW)
        parsed = email.message_from_string(text, policy=email.policy.default)
        args = (sender, recipient, str(parsed["Subject"]), parsed.get_content(), NOW, parsed["Message-ID"])
        assert _plain_text(*args) == text
