"""The ideal encoder, its contrasts and Definition 2."""

import math
from fractions import Fraction

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from theory.games import monte_carlo_advantage, optimal_advantage
from theory.ideal import (
    CyclicShiftEncoder,
    FullQueryAdversary,
    IdealEncoder,
    RandomPermutationEncoder,
    definition2_condition1,
    definition2_condition2,
    exhaustive_cia,
    label_preservation,
)

label_tuples = st.lists(st.integers(0, 1), min_size=1, max_size=40).map(tuple)


@given(label_tuples, st.integers(0, 2**31))
def test_sampled_keys_are_label_preserving_permutations(labels, seed):
    enc = IdealEncoder(labels)
    key = enc.sample_key(np.random.default_rng(seed))
    assert sorted(key) == list(range(len(labels)))
    assert all(labels[enc.encode(x, key)] == labels[x] for x in range(len(labels)))


@given(label_tuples, st.integers(0, 2**31))
def test_fresh_encodings_keep_the_label(labels, seed):
    enc = IdealEncoder(labels)
    xs = np.arange(len(labels))
    out = enc.encode_fresh(xs, np.random.default_rng(seed))
    assert np.array_equal(np.asarray(labels)[out], np.asarray(labels))


@given(st.lists(st.integers(0, 1), min_size=1, max_size=6).map(tuple))
def test_key_list_is_every_label_preserving_permutation_once(labels):
    table = IdealEncoder(labels).code_table
    ones = sum(labels)
    assert len(table) == math.factorial(ones) * math.factorial(len(labels) - ones)
    assert len({tuple(row) for row in table}) == len(table)
    assert label_preservation(table, labels) == 1


@settings(derandomize=True, max_examples=5, deadline=None)
@given(st.integers(0, 2**31))
def test_shortcut_fresh_encoding_has_the_law_of_a_full_key(seed):
    labels = (0, 1, 1, 0, 1, 1, 0)
    enc = IdealEncoder(labels)
    rng = np.random.default_rng(seed)
    draws = 6000
    fast = np.bincount(enc.encode_fresh([2] * draws, rng), minlength=7)
    full = np.bincount([enc.sample_key(rng)[2] for _ in range(draws)], minlength=7)
    expected = draws * enc.marginal_probabilities(2)
    for counts in (fast, full):
        assert np.all(counts[expected == 0] == 0)
        sd = np.sqrt(expected * (1 - expected / draws))
        assert np.all(np.abs(counts - expected) <= 5 * sd + 1)


def test_exhaustive_cia_zero_for_ideal_one_for_cyclic_shift():
    assert exhaustive_cia(IdealEncoder, range(2, 6)).max_advantage == 0
    assert exhaustive_cia(CyclicShiftEncoder, range(2, 6)).max_advantage == 1
    assert exhaustive_cia(RandomPermutationEncoder, range(2, 5)).max_advantage == 0


class _SlightlyBiased(IdealEncoder):
    """The ideal key list with the identity listed twice."""

    @property
    def code_table(self):
        table = IdealEncoder(self.labels).code_table
        return np.concatenate([table, np.arange(self.domain_size)[None, :]])


def test_a_slight_key_bias_gives_a_small_exact_advantage():
    result = exhaustive_cia(_SlightlyBiased, [4])
    assert 0 < result.max_advantage < 1
    labels = (0, 0, 0, 1)
    table = _SlightlyBiased(labels).code_table
    assert definition2_condition1(table, labels) == Fraction(1, 7)


@given(st.lists(st.integers(0, 1), min_size=2, max_size=6).map(tuple))
def test_definition2_holds_for_class_uniform_D(labels):
    table = IdealEncoder(labels).code_table
    assert definition2_condition1(table, labels) == 0
    assert definition2_condition2(table, labels, [1] * len(labels)) == 0


@given(st.lists(st.integers(0, 1), min_size=2, max_size=6).map(tuple), st.data())
def test_condition2_fails_when_D_is_not_uniform_on_a_class(labels, data):
    sizes = {y: labels.count(y) for y in (0, 1)}
    y = data.draw(st.sampled_from([v for v in (0, 1) if sizes[v] >= 2] or [None]))
    if y is None:
        return
    members = [x for x in range(len(labels)) if labels[x] == y]
    weights = [Fraction(1)] * len(labels)
    weights[data.draw(st.sampled_from(members))] = Fraction(3)
    assert definition2_condition2(IdealEncoder(labels).code_table, labels, weights) > 0


def test_contrasts_meet_exactly_the_conditions_they_should():
    labels = (0, 0, 1, 1, 1)
    cyc = CyclicShiftEncoder(labels).code_table
    assert definition2_condition1(cyc, labels) == 0 and definition2_condition2(cyc, labels, [1] * 5) == 0
    assert optimal_advantage(cyc, 2, 3, (4,)) == 1
    rnd = RandomPermutationEncoder(labels).code_table
    assert label_preservation(rnd, labels) < 1
    assert definition2_condition2(rnd, labels, [1] * 5) > 0


@settings(derandomize=True, max_examples=3, deadline=None)
@given(st.integers(0, 2**31))
def test_full_query_adversary_has_no_advantage_on_a_large_domain(seed):
    rng = np.random.default_rng(seed)
    labels = tuple(int(v) for v in rng.integers(0, 2, 30))
    x0, x1 = [x for x in range(30) if labels[x] == labels[0]][:2]
    est = monte_carlo_advantage(
        IdealEncoder(labels),
        FullQueryAdversary(x0, x1, 30),
        lambda x: labels[x],
        "cia",
        600,
        rng,
        confidence=0.999,
    )
    assert est.contains(0.0)
