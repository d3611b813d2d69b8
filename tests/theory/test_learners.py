"""The learners behind Theorem 1's L."""

import numpy as np
from hypothesis import given
from hypothesis import strategies as st

from theory.learners import (
    ConjunctionClass,
    ConjunctionElimination,
    NoisyLearner,
    ThresholdClass,
    ThresholdERM,
)


@given(st.integers(2, 50), st.data())
def test_threshold_erm_is_consistent_on_realisable_samples(size, data):
    t = data.draw(st.integers(1, size - 1))
    labels = ThresholdClass(size).concept(t)
    points = np.array(data.draw(st.lists(st.integers(0, size - 1), min_size=1, max_size=30)))
    h = ThresholdERM(size).fit(points, labels[points])
    assert np.array_equal(h[points], labels[points])
    assert set(np.unique(h)) <= {0, 1} and np.all(np.diff(h) >= 0)


@given(st.integers(1, 6), st.data())
def test_elimination_is_consistent_and_never_wrong_on_negatives(bits, data):
    cls = ConjunctionClass(bits)
    literals = data.draw(
        st.lists(
            st.tuples(st.integers(0, bits - 1), st.integers(0, 1)),
            max_size=bits,
            unique_by=lambda lit: lit[0],
        )
    )
    labels = cls.concept(literals)
    points = np.array(data.draw(st.lists(st.integers(0, cls.size - 1), min_size=1, max_size=40)))
    h = ConjunctionElimination(bits).fit(points, labels[points])
    assert np.array_equal(h[points], labels[points])
    assert np.all(h[labels == 0] == 0)  # the hypothesis keeps every literal of c, so it is a sub-concept


@given(st.integers(4, 60), st.floats(0, 0.49), st.integers(0, 2**31))
def test_noisy_learner_flips_the_set_fraction_of_each_predicted_class(size, eps, seed):
    labels = ThresholdClass(size).concept(size // 2)
    points = np.arange(size)
    base = ThresholdERM(size).fit(points, labels)
    noisy = NoisyLearner(ThresholdERM(size), eps).fit(points, labels, np.random.default_rng(seed))
    for y in (0, 1):
        region = base == y
        assert np.sum(noisy[region] != y) == round(eps * region.sum())
