"""Experiment ``theory_predictor.json``: Theorem 1's extracting predictor (Appendix B).

Thresholds on 64 points (ERM) and conjunctions over ``{0,1}^6`` (elimination),
each also behind a noisy wrapper whose balanced error ``eps`` is set; the ideal
encoder for the concept; ``x0, x1`` fixed.  For each fitted predictor, each
test distribution ``D'`` and each number of votes ``k``: Monte Carlo error with
a 99% Clopper-Pearson interval, exact error (from the fitted classifier's exact
per-vote errors), and the Hoeffding bound at the realised ``eps``.  Beside them
the same learner given only the two labelled examples, and the predictor run
with an encoder that ignores labels.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import numpy as np
from scipy.stats import binomtest

from .bounds import hoeffding_bound
from .ideal import IdealEncoder, RandomPermutationEncoder
from .learners import ConjunctionClass, ConjunctionElimination, NoisyLearner, ThresholdClass, ThresholdERM
from .predictor import (
    PredictorConfig,
    class_errors,
    exact_error,
    fit_extracting_predictor,
    per_vote_errors_ideal,
    predict,
)


@dataclass(frozen=True)
class PredictorExperimentConfig:
    """Grid of the predictor experiment."""

    threshold_domain: int = 64
    threshold: int = 24
    conjunction_bits: int = 6
    eps_values: tuple[float, ...] = (0.05, 0.1, 0.2, 0.3, 0.4, 0.45)
    votes: tuple[int, ...] = (1, 3, 5, 9, 15, 25, 51, 101)
    train_size: int = 40
    repeats: int = 3
    test_points: int = 2000


def _skewed(size: int) -> np.ndarray:
    # Harmonic weights: most mass on a few small points, a long thin tail.
    weights = 1 / (1 + np.arange(size))
    return weights / weights.sum()


def _predictor_settings(cfg: PredictorExperimentConfig):
    """Yield ``(name, labels, x0, x1, learner, test distributions)`` for each concept class."""
    n, t = cfg.threshold_domain, cfg.threshold
    labels = ThresholdClass(n).concept(t)
    near = (np.arange(n) >= t - 4) & (np.arange(n) < t + 4)
    tests = {"uniform": np.full(n, 1 / n), "boundary": near / near.sum(), "skewed": _skewed(n)}
    yield "thresholds", labels, 5, n - 4, ThresholdERM(n), tests
    cls = ConjunctionClass(cfg.conjunction_bits)
    labels = cls.concept(((0, 1), (3, 0)))
    points = np.arange(cls.size)
    # Near the boundary: points failing at most one of the two literals.
    failed = ((points & 1) == 0).astype(int) + (((points >> 3) & 1) == 1).astype(int)
    tests = {
        "uniform": np.full(cls.size, 1 / cls.size),
        "boundary": (failed <= 1) / np.sum(failed <= 1),
        "skewed": _skewed(cls.size),
    }
    x0, x1 = int(np.flatnonzero(labels == 0)[0]), int(np.flatnonzero(labels == 1)[-1])
    yield "conjunctions", labels, x0, x1, ConjunctionElimination(cls.bits), tests


def run_predictor(cfg: PredictorExperimentConfig, rng: np.random.Generator) -> dict:
    """Extracting predictor error against ``k`` and ``eps`` (Monte Carlo, exact, Hoeffding)."""
    rows, baselines, contrasts = [], [], []
    for setting, labels, x0, x1, base, tests in _predictor_settings(cfg):
        size = len(labels)
        pcfg = PredictorConfig(
            train_size=cfg.train_size, positive_fraction=float(labels.mean()), accept_error=0.5
        )
        two_example = base.fit(np.array([x0, x1]), np.array([0, 1]))
        baselines.append(
            {
                "setting": setting,
                "x0": x0,
                "x1": x1,
                "predictor_config": dataclasses.asdict(pcfg),
                "two_example_error": {d: float(w @ (two_example != labels)) for d, w in tests.items()},
            }
        )
        encoder = IdealEncoder(labels)
        for eps in (None, *cfg.eps_values):
            learner = base if eps is None else NoisyLearner(base, eps)
            learner_name = type(base).__name__ if eps is None else f"NoisyLearner({type(base).__name__})"
            for rep in range(cfg.repeats):
                fitted = fit_extracting_predictor(encoder, learner, x0, x1, pcfg, rng)
                per_vote = per_vote_errors_ideal(fitted.classifier, labels)
                realised = [float(e) for e in class_errors(per_vote, labels, [1] * size)]
                for test_name, weights in tests.items():
                    for k in cfg.votes:
                        xs = rng.choice(size, size=cfg.test_points, p=weights)
                        wrong = int(np.sum(predict(encoder, fitted.classifier, xs, k, rng) != labels[xs]))
                        ci = binomtest(wrong, cfg.test_points).proportion_ci(0.99, method="exact")
                        rows.append(
                            {
                                "setting": setting,
                                "learner": learner_name,
                                "target_eps": eps,
                                "repeat": rep,
                                "rounds": fitted.rounds,
                                "accepted": fitted.accepted,
                                "realised_eps": realised,
                                "test_distribution": test_name,
                                "votes": k,
                                "mc_error": wrong / cfg.test_points,
                                "mc_error_ci99": [ci.low, ci.high],
                                "exact_error": exact_error(per_vote, weights, k),
                                "hoeffding_bound": (
                                    hoeffding_bound(k, max(realised)) if max(realised) < 0.5 else None
                                ),
                            }
                        )
        # Contrast: an encoder that ignores the labels carries nothing to extract.
        agnostic = RandomPermutationEncoder(labels)
        strict = dataclasses.replace(pcfg, max_rounds=5, accept_error=0.3)
        fitted = fit_extracting_predictor(agnostic, base, x0, x1, strict, rng)
        xs = rng.choice(size, size=cfg.test_points)
        wrong = np.mean(predict(agnostic, fitted.classifier, xs, max(cfg.votes), rng) != labels[xs])
        contrasts.append(
            {
                "setting": setting,
                "encoder": "random_permutation_ignoring_labels",
                "accepted": fitted.accepted,
                "estimated_class_errors": list(fitted.estimated_errors),
                "uniform_mc_error": float(wrong),
                "votes": max(cfg.votes),
            }
        )
    return {
        "rows": rows,
        "two_example_baselines": baselines,
        "label_agnostic_contrast": contrasts,
        "tie_rule": "even k: ties broken by a fair coin",
        "bound": "exp(-2k(1/2-eps)^2), eps = max realised class error",
    }
