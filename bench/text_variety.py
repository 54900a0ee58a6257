"""Text variety of a simulated day's mail: could a mailbox provider cluster the warmup emails by text?

Generates `emails` emails with distinct keys ("mailbox:day:slot") from a fleet of senders and
recipients, exactly as the send activity does (`activities.message.message_text`, no MIME), and
measures:

- subjects: how many distinct ones, and the most common one's share of the day (target <= 0.2%);
  compared case-folded with punctuation and spacing removed, so "Quick question?" and "quick
  question" count as one subject.
- bodies: the share of emails with an exact duplicate body, and with a near-duplicate one: a body
  whose word 3-shingle set has Jaccard similarity >= 0.8 with another body of the same day. Names
  are masked first (the greeting's and the signature's first names would otherwise make copies of
  one text look different). Near-duplicate pairs are found among all the day's pairs, not a sample:
  MinHash (48 hash functions) with LSH banding (12 bands of 4) proposes candidate pairs, the
  signatures' agreement estimates their Jaccard, and those estimated at 0.6 or more get the exact
  Jaccard, which decides. The banding finds a pair at Jaccard 0.8 with probability 0.998
  (1 - (1 - 0.8^4)^12), so the share is a tight lower bound.
- replies: for a sample of the emails, the reply (and the reply to that reply) composed by
  `activities.message.build_reply`: its Subject is "Re: " + the original's (never "Re: Re:"),
  In-Reply-To/References thread it to the original, the original is quoted below, and the share whose
  text answers the original's topic (the composer recognised it) rather than a generic line.

The near-duplicate share grows with the day's volume (more pairs): at 1,000,000 emails a day expect
up to ten times the share of 100,000.
"""

from __future__ import annotations

import email
import email.policy
import hashlib
import random
import re
import struct
import time
from collections import Counter, defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from email.message import EmailMessage

from activities import message

TARGET_TOP_SUBJECT_SHARE = 0.002  # 0.2%: at 1M emails a day, at most 2,000 with one subject
TARGET_NEAR_DUPLICATE_SHARE = 0.01  # "rare": at most 1 email in 100 has a near-duplicate body
# Below this many emails a subject seen a handful of times is already 0.2%: the share says nothing.
MIN_JUDGED_EMAILS = 20_000
NEAR = 0.8  # Jaccard similarity of word 3-shingles that counts as a near-duplicate body
_HASHES, _BANDS = 48, 12
_ESTIMATE = 0.6  # candidates whose signatures agree less than this are not near duplicates
_ROWS = _HASHES // _BANDS
_UNPACK = struct.Struct(f"<{_HASHES}I").unpack
_FIRST = (
    "alice bob carla david emma farid grace hugo ines jonas kate liam maria nils olivia pablo "
    "quinn rosa sam tara umar vera will xena yusuf zoe anna ben chloe dan"
).split()
_LAST = "martin smith garcia muller rossi novak tanaka silva kowalski berg dubois jensen".split()

TextSource = Callable[[str, str, str, bytes], tuple[str, str]]  # key, sender, recipient, salt


def _default_source(key: str, sender: str, recipient: str, salt: bytes) -> tuple[str, str]:
    return message.message_text(key, sender, None, recipient, salt=salt)


@dataclass
class TextVariety:
    emails: int
    distinct_subjects: int
    top_subject: str
    top_subject_count: int
    exact_duplicate_bodies: int  # emails whose (name-masked) body another email also has
    near_duplicate_bodies: int  # emails with at least one other body at Jaccard >= NEAR
    candidate_pairs: int  # pairs the LSH proposed and the exact Jaccard checked
    max_jaccard: float  # the most similar pair among the candidates estimated at _ESTIMATE or more
    replies: int
    reply_subject_ok: int
    reply_threading_ok: int
    reply_quoted_ok: int
    reply_on_topic: int
    seconds: float
    method: str = "word 3-shingles, names masked; MinHash 48 / LSH 12x4, exact Jaccard on candidates"
    length_words: dict[str, int] = field(default_factory=dict)  # min/median/max body length

    @property
    def top_subject_share(self) -> float:
        return self.top_subject_count / self.emails if self.emails else 0.0

    @property
    def near_duplicate_share(self) -> float:
        return self.near_duplicate_bodies / self.emails if self.emails else 0.0

    @property
    def exact_duplicate_share(self) -> float:
        return self.exact_duplicate_bodies / self.emails if self.emails else 0.0

    @property
    def replies_ok(self) -> bool:
        return self.reply_subject_ok == self.reply_threading_ok == self.reply_quoted_ok == self.replies


def _fleet(mailboxes: int) -> list[tuple[str, bytes]]:
    """(address, salt) per mailbox: mostly first.last addresses, one in eight not name-like."""
    out = []
    for i in range(mailboxes):
        first, last = _FIRST[i % len(_FIRST)], _LAST[(i // len(_FIRST)) % len(_LAST)]
        local = f"info{i}" if i % 8 == 7 else f"{first}.{last}"
        out.append((f"{local}@company{i % 97}.example", hashlib.sha256(f"mailbox {i}".encode()).digest()))
    return out


def subject_norm(subject: str) -> str:
    return re.sub(r"[^a-z0-9]+", " ", subject.casefold()).strip()


def _shingles(body: str, names: Sequence[str]) -> set[bytes]:
    words = re.findall(r"[a-z0-9']+", body.casefold())
    masked = ["#" if w in names else w for w in words]
    return {" ".join(masked[i : i + 3]).encode() for i in range(max(1, len(masked) - 2))}


def _signature(shingles: set[bytes]) -> tuple[int, ...]:
    # One SHAKE-128 output per shingle gives all _HASHES 32-bit hash values at once; the column
    # minima are the MinHash signature (map/zip keep the inner loops in C).
    rows = [_UNPACK(hashlib.shake_128(s).digest(4 * _HASHES)) for s in shingles]
    return tuple(map(min, zip(*rows, strict=True)))


def _band_keys(sig: tuple[int, ...]) -> list[int]:
    return [hash((band, *sig[band * _ROWS : (band + 1) * _ROWS])) for band in range(_BANDS)]


def _jaccard(a: set[bytes], b: set[bytes]) -> float:
    return len(a & b) / len(a | b) if a or b else 1.0


def run_text_variety(
    emails: int = 100_000,
    *,
    mailboxes: int = 2_000,
    replies: int = 1_000,
    source: TextSource | None = None,
    day: str = "2030-03-31",
) -> TextVariety:
    """Measure `emails` emails of one day from `mailboxes` senders (see the module docstring)."""
    began = time.perf_counter()
    text = source or _default_source
    fleet = _fleet(mailboxes)
    rng = random.Random(f"text variety {emails}")
    subjects: Counter[str] = Counter()
    body_digest: Counter[bytes] = Counter()
    digests: list[bytes] = []
    bodies: list[tuple[str, tuple[str, ...]]] = []
    buckets: list[dict[int, list[int]]] = [defaultdict(list) for _ in range(_BANDS)]
    sigs: list[tuple[int, ...]] = []
    keys: list[list[int]] = []
    lengths: list[int] = []
    for n in range(emails):
        s = n % mailboxes
        r = (s + 1 + rng.randrange(mailboxes - 1)) % mailboxes if mailboxes > 1 else s
        (sender, salt), recipient = fleet[s], fleet[r][0]
        subject, body = text(f"{s + 1}:{day}:{n // mailboxes}", sender, recipient, salt)
        subjects[subject_norm(subject)] += 1
        names = tuple(
            name.split()[0].casefold()
            for name in (message.name_from_address(sender), message.name_from_address(recipient))
            if name
        )
        sh = _shingles(body, names)
        digest = hashlib.blake2b(b"\n".join(sorted(sh)), digest_size=12).digest()
        body_digest[digest] += 1
        digests.append(digest)
        bodies.append((body, names))
        lengths.append(len(body.split()))
        sig = _signature(sh)
        sigs.append(sig)
        keys.append(_band_keys(sig))
        for band, key in enumerate(keys[-1]):
            buckets[band][key].append(n)

    near: set[int] = set()
    checked = 0
    best = 0.0
    for band, bucket in enumerate(buckets):
        for members in bucket.values():
            for i, a in enumerate(members):
                for b in members[i + 1 :]:
                    # Each pair once: in the first band where the two collide.
                    if digests[a] == digests[b] or any(keys[a][k] == keys[b][k] for k in range(band)):
                        continue
                    checked += 1
                    agree = sum(x == y for x, y in zip(sigs[a], sigs[b], strict=True)) / _HASHES
                    if agree < _ESTIMATE:
                        continue
                    j = _jaccard(_shingles(*bodies[a]), _shingles(*bodies[b]))
                    best = max(best, j)
                    if j >= NEAR:
                        near.update((a, b))
    exact = [n for n, d in enumerate(digests) if body_digest[d] > 1]
    near.update(exact)
    top, top_count = subjects.most_common(1)[0] if subjects else ("", 0)
    lengths.sort()
    checks = _check_replies(min(replies, emails), fleet, text, day)
    return TextVariety(
        emails=emails,
        distinct_subjects=len(subjects),
        top_subject=top,
        top_subject_count=top_count,
        exact_duplicate_bodies=len(exact),
        near_duplicate_bodies=len(near),
        candidate_pairs=checked,
        max_jaccard=round(best, 3),
        replies=checks[0],
        reply_subject_ok=checks[1],
        reply_threading_ok=checks[2],
        reply_quoted_ok=checks[3],
        reply_on_topic=checks[4],
        seconds=time.perf_counter() - began,
        length_words=(
            {"min": lengths[0], "median": lengths[len(lengths) // 2], "max": lengths[-1]} if lengths else {}
        ),
    )


def _parse(text: str) -> EmailMessage:
    msg = email.message_from_string(text, policy=email.policy.default)
    assert isinstance(msg, EmailMessage)
    return msg


def _check_replies(
    count: int, fleet: list[tuple[str, bytes]], text: TextSource, day: str
) -> tuple[int, int, int, int, int]:
    """(replies, subject ok, threading ok, quote ok, on topic) over `count` originals and their
    replies, and the replies to those replies (so a "Re:" subject is answered too)."""
    if text is not _default_source or count == 0:
        return (0, 0, 0, 0, 0)
    import datetime as dt

    now = dt.datetime(2030, 3, 31, 10, 0, tzinfo=dt.UTC)
    done = subject_ok = thread_ok = quote_ok = on_topic = 0
    mailboxes = len(fleet)
    for n in range(count):
        (sender, salt), (recipient, rsalt) = fleet[n % mailboxes], fleet[(n * 7 + 1) % mailboxes]
        if sender == recipient:
            continue
        _, raw = message.build_message(f"r{n}:{day}:0", sender, None, recipient, now, salt=salt)
        original = _parse(raw)
        for depth, (key, replier_salt) in enumerate(((f"r{n}:{day}:1", rsalt), (f"r{n}:{day}:2", salt))):
            _, reply_text = message.build_reply(
                original, key, now + dt.timedelta(hours=depth + 1), salt=replier_salt
            )
            reply = _parse(reply_text)
            done += 1
            subj = str(original["Subject"])
            base = subj[4:] if depth else subj
            subject_ok += str(reply["Subject"]) == f"Re: {base}"
            refs = str(original.get("References", "")).split()
            thread_ok += str(reply["In-Reply-To"]) == str(original["Message-ID"]) and str(
                reply["References"]
            ).split() == [*refs, str(original["Message-ID"])]
            body = reply.get_content()
            first_line = next(line for line in original.get_content().splitlines() if line.strip()).strip()
            quote_ok += f"> {first_line}" in body
            on_topic += message.recognise(subj, original.get_content()) is not None
            original = reply
    return done, subject_ok, thread_ok, quote_ok, on_topic


def summary(t: TextVariety) -> str:
    return (
        f"{t.emails:,} emails: {t.distinct_subjects:,} subjects (top {t.top_subject_share:.2%}), "
        f"near-duplicate bodies {t.near_duplicate_share:.2%} (exact {t.exact_duplicate_share:.2%}); "
        f"replies {t.reply_subject_ok}/{t.replies} subjects, {t.reply_threading_ok}/{t.replies} threaded, "
        f"{t.reply_on_topic}/{t.replies} on topic ({t.seconds:.0f} s)"
    )


def markdown(t: TextVariety) -> list[str]:
    return [
        "### Text variety: a simulated day's mail",
        "",
        f"{t.emails:,} emails with distinct keys from a fleet of senders, composed as the send activity "
        "does. Subjects compared case-folded without punctuation; bodies with names masked, as word "
        f"3-shingle sets ({t.method}).",
        "",
        "| Distinct subjects | Most common subject | Near-duplicate bodies (Jaccard >= 0.8) "
        "| Exact duplicate bodies | Body length (words) | Replies: subject / threading / quote / on topic |",
        "|---|---|---|---|---|---|",
        f"| {t.distinct_subjects:,} | {t.top_subject_share:.3%} ({t.top_subject_count:,}x, "
        f'"{t.top_subject}") | {t.near_duplicate_share:.3%} ({t.near_duplicate_bodies:,}; '
        f"{t.candidate_pairs:,} candidate pairs checked, most similar {t.max_jaccard:.2f}) "
        f"| {t.exact_duplicate_share:.3%} "
        f"| {t.length_words.get('min')} / {t.length_words.get('median')} / {t.length_words.get('max')} "
        f"| {t.reply_subject_ok} / {t.reply_threading_ok} / {t.reply_quoted_ok} / {t.reply_on_topic} "
        f"of {t.replies} |",
        "",
    ]
