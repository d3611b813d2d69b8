"""Concept classes and learners for Theorem 1's learner ``L`` (paper §3, Appendix B).

Theorem 1 assumes a learner that, from ``m`` encoded labelled samples, outputs
a classifier of balanced error at most ``eps`` (error at most ``eps`` on each
class of the encoded distribution).  The learners here are real ones over
finite domains ``X = {0, ..., N-1}``:

* thresholds ``c_t(x) = [x >= t]``, learned by empirical risk minimisation;
* conjunctions of literals over ``{0,1}^d`` (points are the integers
  ``0..2^d-1`` read as bit vectors), learned by the elimination algorithm;
* a deliberately noisy wrapper that flips a set fraction ``eps`` of each class
  its base learner predicts, so ``eps`` becomes a dial.

A learner maps encoded points (domain points, for the permutation encoders of
:mod:`theory.ideal`) and labels to a prediction table ``h`` over the domain.
Under the ideal encoder the encoded concept is ``c`` itself
(``c(pi(x)) = c(x)``), so a learner for the class learns from encodings.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

import numpy as np


class Learner(Protocol):
    """``L``: labelled encoded samples in, prediction table out."""

    def fit(self, points: np.ndarray, labels: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        """Return ``h`` with ``h[z]`` the predicted label of encoded point ``z``."""


@dataclass(frozen=True)
class ThresholdClass:
    """Thresholds ``c_t(x) = [x >= t]`` on ``{0, ..., size-1}``, ``1 <= t <= size-1``."""

    size: int

    def concept(self, threshold: int) -> np.ndarray:
        return (np.arange(self.size) >= threshold).astype(np.int64)

    def thresholds(self) -> range:
        return range(1, self.size)


@dataclass(frozen=True)
class ConjunctionClass:
    """Conjunctions of literals over ``{0,1}^bits``.

    A literal is ``(i, v)``: bit ``i`` equals ``v``.
    """

    bits: int

    @property
    def size(self) -> int:
        return 2**self.bits

    def concept(self, literals: Sequence[tuple[int, int]]) -> np.ndarray:
        points = np.arange(self.size)
        out = np.ones(self.size, dtype=np.int64)
        for i, v in literals:
            out &= ((points >> i) & 1) == v
        return out


@dataclass(frozen=True)
class ThresholdERM:
    """Empirical risk minimiser over all thresholds ``t in 0..size`` (constants included).

    Among the minimisers the median one is returned, which puts the boundary
    in the middle of the gap between the classes.
    """

    size: int

    def fit(self, points, labels, rng=None) -> np.ndarray:
        points = np.asarray(points)
        labels = np.asarray(labels)
        pos = np.bincount(points[labels == 1], minlength=self.size)
        neg = np.bincount(points[labels == 0], minlength=self.size)
        # Errors of [x >= t]: positives below t plus negatives at or above t.
        errors = np.concatenate([[0], np.cumsum(pos)]) + (neg.sum() - np.concatenate([[0], np.cumsum(neg)]))
        best = np.flatnonzero(errors == errors.min())
        threshold = int(best[len(best) // 2])
        return (np.arange(self.size) >= threshold).astype(np.int64)


@dataclass(frozen=True)
class ConjunctionElimination:
    """The elimination learner: keep every literal that all positive samples satisfy."""

    bits: int

    def fit(self, points, labels, rng=None) -> np.ndarray:
        points = np.asarray(points)
        positives = points[np.asarray(labels) == 1]
        domain = np.arange(2**self.bits)
        h = np.ones(len(domain), dtype=np.int64)
        if len(positives) == 0:
            return np.zeros(len(domain), dtype=np.int64)
        for i in range(self.bits):
            bits = (positives >> i) & 1
            for v in (0, 1):
                if np.all(bits == v):
                    h &= ((domain >> i) & 1) == v
        return h


@dataclass(frozen=True)
class NoisyLearner:
    """Flip a fraction ``eps`` of each predicted class of a base learner.

    ``round(eps * |{z : h(z) = y}|)`` points of each predicted class ``y`` are
    chosen uniformly and flipped; if the base classifier is exact and the
    encoded distribution is uniform on each class, its balanced error is
    ``eps`` up to that rounding.

    Attributes
    ----------
    base : Learner
        The learner whose output is corrupted.
    eps : float
        Fraction flipped, in ``[0, 1/2)``.
    """

    base: Learner
    eps: float

    def fit(self, points, labels, rng: np.random.Generator) -> np.ndarray:
        base = np.asarray(self.base.fit(points, labels, rng))
        h = base.copy()
        for y in (0, 1):
            region = np.flatnonzero(base == y)
            flips = rng.choice(region, size=round(self.eps * len(region)), replace=False)
            h[flips] = 1 - y
        return h
