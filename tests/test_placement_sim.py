"""The benchmark's placement model and the reactive-vs-fixed ramp comparison (issue #15 item 6): the model
keeps its promises (bounded, volume past what a mailbox carries never helps), and on the same fleet the
reactive ramp, which is the workflow's own `DaySchedule` and `apply_placement`, sends less into spam."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from bench.placement_sim import CEILING, FLOOR, carries, compare_ramps, next_reputation

reputations = st.floats(min_value=FLOOR, max_value=CEILING)
volumes = st.integers(min_value=0, max_value=200)


@given(reputations, volumes, volumes)
def test_reputation_stays_in_bounds(r: float, sent: int, before: int) -> None:
    assert FLOOR <= next_reputation(r, sent, before) <= CEILING


@given(reputations, volumes, st.integers(min_value=1, max_value=100), volumes)
def test_more_volume_never_helps_reputation(r: float, sent: int, more: int, before: int) -> None:
    assert next_reputation(r, sent + more, before) <= next_reputation(r, sent, before) or sent == 0


@given(reputations, st.integers(min_value=1, max_value=40))
def test_a_day_within_what_it_carries_and_without_a_jump_improves_it(r: float, sent: int) -> None:
    if sent <= carries(r) and r < CEILING:
        assert next_reputation(r, sent, sent) > r


def test_the_reactive_ramp_sends_less_into_spam_and_ends_better_placed() -> None:
    c = compare_ramps(40, 30)
    fixed, reactive = c.fixed, c.reactive
    assert reactive.junk_share < fixed.junk_share
    assert reactive.final_placement > fixed.final_placement
    assert fixed.reached_ceiling == fixed.mailboxes, "the fixed ramp climbs whatever happens"
    assert reactive.sent < fixed.sent and reactive.sent > 0
    # It reacted, with each of the workflow's decisions (no mailbox has data on its first days).
    assert {"no_data", "climb"} <= set(reactive.reactions)
    assert set(reactive.reactions) & {"hold", "step_down", "pause"}
