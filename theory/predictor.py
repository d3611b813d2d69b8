"""Theorem 1's extracting predictor (paper §3; construction from Appendix B).

Statement implemented
---------------------
Let ``Enc`` be weakly ideal (Definition 2) for the concept ``c`` and the
training distribution ``D`` (positive fraction ``p``), and let the learner
``L``, given ``m`` encoded labelled samples from ``D`` under one key, output a
classifier of balanced error at most ``eps < 1/2``.  Given only ``x0, x1`` with
``c(x0) = 0, c(x1) = 1`` and oracle access to ``Enc`` (fresh keys on demand) and
to ``L``, the predictor

1. draws ``b_i ~ Bernoulli(p)``, ``i = 1..m``, encodes ``x_{b_i}`` under fresh
   keys ``K_i`` and trains ``h = L({(Enc(x_{b_i}, K_i), b_i)})``;
2. estimates ``h``'s error on each class from fresh encodings of ``x0`` and
   ``x1`` and repeats step 1 until the estimate is at most a set level;
3. predicts ``c(x)`` by the majority of ``h(Enc(x, K'_j))`` over ``k`` fresh
   keys (ties by a fair coin).

Why it works: by (1) ``Enc(x_y, K)`` has the law of ``Enc(x, K)`` for any ``x``
of class ``y``, and by (2) that law does not depend on the key, so the training
set has exactly the law of ``m`` samples from ``D`` encoded under one key (the
learner's guarantee applies), and each vote on ``x`` is wrong with probability
``eps_{c(x)} <= eps`` independently across votes.  Hence
``P[predict(x) != c(x)] <= exp(-2 k (1/2 - eps)^2)`` for *every* ``x``, so for
any test distribution ``D'``: whoever holds such an encoder learns ``c`` from
two labelled examples.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from fractions import Fraction

import numpy as np

from .bounds import majority_error_exact, majority_error_float
from .games import KeyedEncoding
from .learners import Learner


@dataclass(frozen=True)
class PredictorConfig:
    """Parameters of the extracting predictor.

    Attributes
    ----------
    train_size : int
        ``m``, samples handed to the learner per round.
    positive_fraction : float
        ``p``, the positive fraction of the training distribution ``D``.
    validation_size : int
        Fresh encodings of each of ``x0`` and ``x1`` used to estimate ``h``'s
        per-class error.
    accept_error : float
        Accept ``h`` when both estimated class errors are at most this.
    max_rounds : int
        Give up (and keep the last ``h``) after this many rounds.
    """

    train_size: int = 40
    positive_fraction: float = 0.5
    validation_size: int = 200
    accept_error: float = 0.45
    max_rounds: int = 50


@dataclass(frozen=True)
class FittedPredictor:
    """Outcome of steps 1-2.

    Attributes
    ----------
    classifier : numpy.ndarray
        Prediction table ``h`` over encoded points.
    rounds : int
        Training rounds used.
    estimated_errors : tuple of float
        Validation error on encodings of ``x0`` and of ``x1``.
    accepted : bool
        Whether the acceptance test passed within ``max_rounds``.
    """

    classifier: np.ndarray
    rounds: int
    estimated_errors: tuple[float, float]
    accepted: bool


def _as_array(encodings) -> np.ndarray:
    return np.asarray(encodings, dtype=np.int64)


def fit_extracting_predictor(
    encoder: KeyedEncoding,
    learner: Learner,
    x0: int,
    x1: int,
    config: PredictorConfig,
    rng: np.random.Generator,
) -> FittedPredictor:
    """Steps 1-2: train on encodings of ``x0``/``x1`` under fresh keys until accepted.

    Only ``x0``, ``x1``, the encoder's fresh-key oracle and the learner are used.
    """
    pair = np.array([x0, x1])
    h = None
    errors = (1.0, 1.0)
    for rounds in range(1, config.max_rounds + 1):
        bits = (rng.random(config.train_size) < config.positive_fraction).astype(np.int64)
        encoded = _as_array(encoder.encode_fresh(pair[bits], rng))
        h = np.asarray(learner.fit(encoded, bits, rng))
        errors = tuple(
            float(np.mean(h[_as_array(encoder.encode_fresh([x] * config.validation_size, rng))] != y))
            for y, x in ((0, x0), (1, x1))
        )
        if max(errors) <= config.accept_error:
            return FittedPredictor(h, rounds, errors, True)
    return FittedPredictor(h, config.max_rounds, errors, False)


def predict(
    encoder: KeyedEncoding, classifier: np.ndarray, xs: Sequence[int], votes: int, rng: np.random.Generator
) -> np.ndarray:
    """Step 3: majority of ``classifier`` over ``votes`` fresh encodings of each point."""
    xs = np.asarray(xs)
    encoded = _as_array(encoder.encode_fresh(np.repeat(xs, votes), rng)).reshape(len(xs), votes)
    ones = classifier[encoded].sum(axis=1)
    coin = rng.integers(2, size=len(xs))
    return np.where(2 * ones > votes, 1, np.where(2 * ones < votes, 0, coin))


def per_vote_errors_from_table(
    table: np.ndarray, classifier: np.ndarray, labels: Sequence[int]
) -> list[Fraction]:
    """Exact ``Pr_K[h(Enc(x, K)) != c(x)]`` for every ``x``, enumerating keys.

    Parameters
    ----------
    table : numpy.ndarray
        ``(n_keys, N)`` code table whose codes are domain points.
    classifier : numpy.ndarray
        ``h`` over the domain.
    labels : sequence of int
        The concept.
    """
    wrong = classifier[table] != np.asarray(labels)[None, :]  # (n_keys, N)
    return [Fraction(int(w), len(table)) for w in wrong.sum(axis=0)]


def per_vote_errors_ideal(classifier: np.ndarray, labels: Sequence[int]) -> list[Fraction]:
    """``Pr_pi[h(pi(x)) != c(x)]`` under the ideal encoder: ``h``'s error rate on ``x``'s class.

    ``pi(x)`` is uniform on ``x``'s class (Definition 2 (1), checked exactly by
    :func:`theory.ideal.definition2_condition1`), which gives this closed form
    on domains too large to enumerate.
    """
    labels = np.asarray(labels)
    rates = {y: Fraction(int(np.sum(classifier[labels == y] != y)), int(np.sum(labels == y))) for y in (0, 1)}
    return [rates[int(y)] for y in labels]


def class_errors(per_vote: Sequence[Fraction], labels: Sequence[int], weights: Sequence[Fraction]) -> tuple:
    """Balanced error ``(eps_0, eps_1)``: the per-vote error averaged over ``D|y``."""
    labels = np.asarray(labels)
    out = []
    for y in (0, 1):
        members = np.flatnonzero(labels == y)
        mass = sum((Fraction(weights[x]) for x in members), Fraction(0))
        out.append(sum((Fraction(weights[x]) * per_vote[x] for x in members), Fraction(0)) / mass)
    return tuple(out)


def exact_error(per_vote: Sequence[Fraction], test_weights: Sequence[float], votes: int, exact: bool = False):
    """Error of the vote over ``D'``: ``sum_x D'(x) P[majority of votes on x is wrong]``.

    Parameters
    ----------
    per_vote : sequence of Fraction
        Per-vote error of each point.
    test_weights : sequence
        ``D'`` (normalised).
    votes : int
        ``k``.
    exact : bool, optional
        Use rationals throughout (small domains) instead of floats.
    """
    if exact:
        cache = {e: majority_error_exact(votes, e) for e in set(per_vote)}
        return sum((Fraction(w) * cache[e] for w, e in zip(test_weights, per_vote, strict=True)), Fraction(0))
    cache = {e: majority_error_float(votes, float(e)) for e in set(per_vote)}
    return float(sum(float(w) * cache[e] for w, e in zip(test_weights, per_vote, strict=True)))
