"""Shared pieces of the checks run by ``python -m theory.proofs``.

A check is a function ``(encoder_factory, config) -> CheckResult`` that computes
one claim of §3 or Appendices A-B from scratch; :mod:`theory.proofs` runs them.
"""

from __future__ import annotations

from dataclasses import dataclass

from .games import all_labelings


@dataclass(frozen=True)
class CheckResult:
    """One check's verdict and the numbers behind it."""

    name: str
    passed: bool
    detail: str


@dataclass(frozen=True)
class ProofConfig:
    """Sizes of the exhaustive and grid checks.

    Attributes
    ----------
    max_domain : int
        Exhaustive CIA / Definition 2 checks cover every domain of 2..max_domain points.
    rule_domain : int
        Domains up to this size enter the all-guessing-rules brute force.
    max_views : int
        Skip brute-force instances with more views than this (``2^views`` rules).
    classifier_domain : int
        Theorem 1's vote lemma is checked for every classifier on domains up to this size.
    predictor_domain : int
        End-to-end exact predictor check on thresholds over this many points.
    votes : tuple of int
        ``k`` values in the predictor check.
    hoeffding_max_k, hoeffding_eps_den : int
        Hoeffding grid: ``k = 1..max_k``, ``eps = j / den`` for ``0 <= j < den/2``.
    appendix_n, appendix_m, appendix_targets : tuple of int
        Appendix A grid of input bits ``n``, output bits ``m`` and target-set sizes ``|A|``.
    seed : int
        Seed of the random steps (the predictor's coins, Appendix A point sets).
    """

    max_domain: int = 7
    rule_domain: int = 4
    max_views: int = 12
    classifier_domain: int = 5
    predictor_domain: int = 8
    votes: tuple[int, ...] = (1, 3, 5, 9, 15, 25, 51)
    hoeffding_max_k: int = 60
    hoeffding_eps_den: int = 40
    appendix_n: tuple[int, ...] = (1, 2, 4, 8)
    appendix_m: tuple[int, ...] = (16, 64, 256, 1024)
    appendix_targets: tuple[int, ...] = (2, 3, 5, 10)
    seed: int = 20210816


def labelings(cfg: ProofConfig, low: int = 1, high: int | None = None, both_classes: bool = False):
    """Every concept on ``low..high`` points (``high`` defaults to ``max_domain``).

    With ``both_classes`` only concepts with at least one point of each label.
    """
    for size in range(low, (high or cfg.max_domain) + 1):
        for labels in all_labelings(size):
            if not both_classes or 0 < sum(labels) < size:
                yield labels
