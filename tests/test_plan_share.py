"""Property tests: a plan limit is shared fairly and never exceeded."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from warmup.plan_share import allowance, fair_shares

wants = st.dictionaries(st.integers(1, 500), st.integers(0, 60), min_size=1, max_size=40)


@given(limit=st.integers(0, 2000), wanted=wants)
def test_shares_use_the_plan_exactly_when_it_binds_and_never_more(limit: int, wanted: dict[int, int]) -> None:
    shares = fair_shares(limit, wanted)
    assert set(shares) == set(wanted)
    assert all(0 <= shares[m] <= wanted[m] for m in wanted)
    assert sum(shares.values()) == min(limit, sum(wanted.values()))


@given(limit=st.integers(0, 2000), wanted=wants)
def test_shares_are_max_min_fair(limit: int, wanted: dict[int, int]) -> None:
    shares = fair_shares(limit, wanted)
    # Nobody short of what it wants has more than one unit less than anyone else's share.
    short = [m for m in wanted if shares[m] < wanted[m]]
    if short:
        floor = min(shares[m] for m in short)
        assert all(shares[m] <= floor + 1 for m in wanted)


@given(limit=st.integers(0, 500), wanted=wants)
def test_granting_in_any_order_stays_within_the_plan(limit: int, wanted: dict[int, int]) -> None:
    granted: dict[int, int] = {}
    for m in sorted(wanted, reverse=True):
        granted[m] = allowance(limit, wanted, granted, m)
    assert sum(granted.values()) == min(limit, sum(wanted.values()))
