"""Theorem 1's extracting predictor: two labelled examples, an ideal encoder and a learner."""

import numpy as np
from hypothesis import assume, given, settings
from hypothesis import strategies as st
from scipy.stats import binomtest

from theory.bounds import hoeffding_bound
from theory.ideal import IdealEncoder
from theory.learners import NoisyLearner, ThresholdClass, ThresholdERM
from theory.predictor import (
    PredictorConfig,
    class_errors,
    exact_error,
    fit_extracting_predictor,
    per_vote_errors_from_table,
    per_vote_errors_ideal,
    predict,
)


class _Spy(IdealEncoder):
    """The ideal encoder, recording every point it is asked to encode."""

    def __init__(self, labels, log):
        super().__init__(labels)
        self.log = log

    def encode_fresh(self, xs, rng):
        self.log.extend(int(x) for x in np.asarray(xs).ravel())
        return super().encode_fresh(xs, rng)


def test_training_touches_only_the_two_labelled_examples():
    labels = ThresholdClass(30).concept(11)
    log = []
    fit_extracting_predictor(
        _Spy(labels, log), ThresholdERM(30), 3, 25, PredictorConfig(), np.random.default_rng(0)
    )
    assert log and set(log) == {3, 25}


@given(st.lists(st.integers(0, 1), min_size=2, max_size=6).map(tuple), st.integers(0, 2**6 - 1))
def test_closed_form_vote_errors_match_key_enumeration(labels, h_bits):
    if len(set(labels)) < 2:
        return
    h = (h_bits >> np.arange(len(labels))) & 1
    table = IdealEncoder(labels).code_table
    assert per_vote_errors_from_table(table, h, labels) == per_vote_errors_ideal(h, labels)


@settings(derandomize=True, max_examples=12, deadline=None)
@given(st.integers(12, 48), st.data())
def test_predictor_error_within_the_bounds_statistical_margin(size, data):
    t = data.draw(st.integers(5, size - 5))  # classes of >= 5 points keep round(eps |class|) < |class| / 2
    x0 = data.draw(st.integers(0, t - 1))
    x1 = data.draw(st.integers(t, size - 1))
    eps = data.draw(st.sampled_from([0.0, 0.1, 0.2, 0.3, 0.4]))
    votes = data.draw(st.sampled_from([1, 3, 7, 15, 31]))
    rng = np.random.default_rng(data.draw(st.integers(0, 2**31)))
    labels = ThresholdClass(size).concept(t)
    encoder = IdealEncoder(labels)
    learner = NoisyLearner(ThresholdERM(size), eps)
    fitted = fit_extracting_predictor(
        encoder, learner, x0, x1, PredictorConfig(positive_fraction=float(labels.mean())), rng
    )
    per_vote = per_vote_errors_ideal(fitted.classifier, labels)
    realised = max(float(e) for e in class_errors(per_vote, labels, [1] * size))
    assume(realised < 0.5)  # Theorem 1's precondition on the learner
    # Test points from an arbitrary D': here, uniform on the band around the threshold.
    band = np.arange(max(0, t - 3), min(size, t + 3))
    xs = rng.choice(band, size=800)
    wrong = int(np.sum(predict(encoder, fitted.classifier, xs, votes, rng) != labels[xs]))
    ci = binomtest(wrong, len(xs)).proportion_ci(0.999, method="exact")
    weights = np.zeros(size)
    weights[band] = 1 / len(band)
    assert ci.low <= hoeffding_bound(votes, realised)
    assert ci.low <= exact_error(per_vote, weights, votes) <= ci.high
