"""Definition 1's games: oracles, exact and Monte Carlo advantages, optimal guessing rules."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from theory.games import (
    ForbiddenQuery,
    Oracle,
    TabulatedEncoding,
    exact_advantage,
    monte_carlo_advantage,
    optimal_advantage,
    play,
    query_sets,
    rule_advantages_bruteforce,
    same_label_pairs,
    view_counts,
)
from theory.leaky import GF2LinearEncoder, WeightRuleAdversary, weight_concept


@st.composite
def finite_games(draw, max_keys=6, max_points=5, max_codes=3):
    """A random code table, a label-equal pair and a query set."""
    n = draw(st.integers(2, max_points))
    keys = draw(st.integers(1, max_keys))
    table = np.array(
        draw(
            st.lists(
                st.lists(st.integers(0, max_codes - 1), min_size=n, max_size=n), min_size=keys, max_size=keys
            )
        )
    )
    x0, x1 = draw(st.lists(st.integers(0, n - 1), min_size=2, max_size=2, unique=True).map(sorted))
    rest = [x for x in range(n) if x not in (x0, x1)]
    query = tuple(draw(st.lists(st.sampled_from(rest), unique=True, max_size=len(rest)))) if rest else ()
    return table, x0, x1, query


@given(finite_games())
def test_all_guessing_rules_span_exactly_minus_tv_to_tv(game):
    table, x0, x1, query = game
    c0, c1 = view_counts(table, x0, x1, query)
    assert c0.sum() == c1.sum() == len(table)
    tv = optimal_advantage(table, x0, x1, query)
    hi, lo, _ = rule_advantages_bruteforce(table, x0, x1, query, max_views=14)
    assert hi == tv and lo == -tv


@given(finite_games(), st.integers(0, 4))
def test_one_more_query_never_lowers_the_best_advantage(game, extra):
    table, x0, x1, query = game
    free = [x for x in range(table.shape[1]) if x not in (x0, x1, *query)]
    if not free:
        return
    more = (*query, free[extra % len(free)])
    assert optimal_advantage(table, x0, x1, more) >= optimal_advantage(table, x0, x1, query)


@given(finite_games(max_keys=5, max_points=4))
def test_deterministic_adversary_exact_advantage_bounded_by_tv(game):
    table, x0, x1, query = game
    enc = TabulatedEncoding(table)

    class Parity:
        def choose(self):
            return x0, x1

        def guess(self, challenge, oracle):
            return (challenge + sum(oracle(q) for q in query)) % 2

    adv = exact_advantage(enc, Parity(), lambda x: 0, "cia")
    assert abs(adv) <= optimal_advantage(table, x0, x1, query)


class _Fixed:
    def __init__(self, x0, x1):
        self.pair = (x0, x1)

    def choose(self):
        return self.pair

    def guess(self, challenge, oracle):
        return 0


def test_oracles_refuse_what_definition1_forbids():
    enc = TabulatedEncoding([[0, 1, 2]])
    cia = Oracle(enc, 0, (0, 1))
    assert cia(2) == 2
    with pytest.raises(ForbiddenQuery):
        cia(np.int64(1))
    with pytest.raises(ForbiddenQuery):
        Oracle(enc, 0, None)(2)


def test_play_rejects_pairs_with_different_labels():
    enc = TabulatedEncoding([[0, 1, 2]])
    with pytest.raises(ValueError):
        play(enc, _Fixed(0, 1), lambda x: x, "nia", np.random.default_rng(0))


def test_enumerations_cover_every_pair_and_query_set():
    assert list(same_label_pairs((0, 1, 0, 0))) == [(0, 2), (0, 3), (2, 3)]
    assert len(list(query_sets(5, 1, 3))) == 2**3


@settings(derandomize=True, max_examples=10, deadline=None)
@given(st.integers(0, 2**31))
def test_monte_carlo_interval_covers_exact_advantage(seed):
    concept = weight_concept(3)
    enc, adversary = GF2LinearEncoder(3), WeightRuleAdversary(1)
    exact = exact_advantage(enc, adversary, concept, "nia")
    est = monte_carlo_advantage(
        enc, adversary, concept, "nia", 1500, np.random.default_rng(seed), confidence=0.999
    )
    assert est.contains(float(exact))
