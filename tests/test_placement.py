"""Inbox placement's pure parts: the receiving provider family of a mail server, and a sender's score."""

from __future__ import annotations

import datetime as dt

import pytest
from hypothesis import given
from hypothesis import strategies as st

from warmup.models import PLACES, Placement
from warmup.placement import LAB, OTHER, PlacementScore, provider_family, scores
from warmup.send_days import SendDay


@pytest.mark.parametrize(
    ("host", "family"),
    [
        ("imap.gmail.com", "google"),
        ("smtp.gmail.com", "google"),
        ("Imap.Gmail.com.", "google"),
        ("aspmx.l.google.com", "google"),
        ("outlook.office365.com", "microsoft"),
        ("smtp.office365.com", "microsoft"),
        ("imap-mail.outlook.com", "microsoft"),
        ("127.0.0.2", LAB),
        ("::1", LAB),
        ("mail.lab.test", LAB),
        ("localhost", LAB),
        ("mail.example.com", OTHER),
        ("notgmail.com", OTHER),  # a suffix match is on a label boundary
        ("gmail.com.evil.example", OTHER),
        ("10.0.0.5", OTHER),
    ],
)
def test_the_family_comes_from_the_receivers_mail_server(host: str, family: str) -> None:
    assert provider_family(host) == family


def test_missing_mail_counts_against_the_inbox_share() -> None:
    p = Placement(inbox=8, junk=1, other=0, missing=1)
    assert p.judged == 10 and p.inbox_share == 0.8 and p.text() == "80% inbox (8 of 10)"
    assert Placement().inbox_share is None and Placement().text() == "no data"


def test_a_day_of_the_dashboard_charts_reads_its_placement_the_same_way() -> None:
    day = SendDay(dt.date(2026, 12, 7), delivered=12, failed=2, inbox=8, junk=1, other=0, missing=1)
    assert day.inbox_share == 0.8 and day.placement.text() == "80% inbox (8 of 10)"
    assert SendDay(dt.date(2026, 12, 7), delivered=3).inbox_share is None  # delivered, not yet looked for


def test_a_score_reads_as_a_sentence_per_family() -> None:
    rows = [
        (1, "imap.gmail.com", "inbox", 9),
        (1, "imap.gmail.com", "junk", 1),
        (1, "outlook.office365.com", "inbox", 7),
        (1, "outlook.office365.com", "junk", 3),
        (2, "127.0.0.2", "missing", 1),
    ]
    got = scores(rows, days=7)
    assert got[1].text() == "80% inbox over 7 days (google 90%, microsoft 70%; 20 judged)"
    assert got[2].text() == "0% inbox over 7 days (lab 0%; 1 judged)"
    assert PlacementScore(7).text().startswith("no placement yet")


rows_strategy = st.lists(
    st.tuples(
        st.integers(1, 4),
        st.sampled_from(["imap.gmail.com", "smtp.office365.com", "127.0.0.2", "mx.example.org"]),
        st.sampled_from(PLACES),
        st.integers(1, 50),
    ),
    max_size=40,
)


@given(rows_strategy)
def test_overall_is_the_sum_of_the_families_and_shares_are_fractions(
    rows: list[tuple[int, str, str, int]],
) -> None:
    for sender, score in scores(rows, 7).items():
        mine = [r for r in rows if r[0] == sender]
        assert score.overall.judged == sum(n for *_, n in mine)
        for place in PLACES:
            assert getattr(score.overall, place) == sum(getattr(p, place) for p in score.by_family.values())
        share = score.inbox_share
        assert share is not None and 0.0 <= share <= 1.0
        assert share == sum(n for *_, pl, n in mine if pl == "inbox") / score.overall.judged
