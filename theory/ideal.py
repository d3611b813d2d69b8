"""The ideal encoder of [YEO+21b] and Definition 2 (paper §3).

Statements implemented
----------------------
* Ideal encoder: for a concept ``c`` on a finite domain ``X``, the key is a
  uniformly random label-preserving permutation ``pi`` of ``X``
  (``c(pi(x)) = c(x)``) and ``Enc(x, pi) = pi(x)``.  Claim (§3): it is 0-CIA
  private, i.e. every adversary of Definition 1, with any queries, has
  advantage exactly 0 (advantage as defined in :mod:`theory.games`).
* Definition 2 (weakly-ideal encoder for concept ``c`` and distribution ``D``):
  (1) for all ``x, x'`` with ``c(x) = c(x')``, ``Enc(x, K)`` and ``Enc(x', K)``
  have the same law over the key (equivalently, 0-NIA);
  (2) for all keys ``K, K'`` and labels ``y``, ``Enc(D|y, K)`` and
  ``Enc(D|y, K')`` have the same law.
  For a permutation encoder condition (2) says that ``pi`` pushes ``D|y`` to
  the same law for every key; the ideal encoder meets it exactly when ``D|y``
  is uniform on the class ``c^{-1}(y)`` (the reading under which §3 calls it
  weakly ideal).  :func:`definition2_condition2` takes ``D`` explicitly, so the
  failure for a non-uniform ``D`` is computed, not assumed.

Two further permutation encoders give the contrasts the checks need:
:class:`CyclicShiftEncoder` (weakly ideal, yet CIA-broken: a few answers reveal
the shift) and :class:`RandomPermutationEncoder` (ignores labels: 0-CIA private
but not label-preserving, so it fails Definition 2 (2)).
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from fractions import Fraction
from functools import cached_property

import numpy as np
import sympy

from .games import FiniteKeyedEncoding, all_labelings, optimal_advantage, query_sets, same_label_pairs


def _classes(labels: Sequence[int]) -> tuple[np.ndarray, np.ndarray]:
    labels = np.asarray(labels)
    return np.flatnonzero(labels == 0), np.flatnonzero(labels == 1)


class _PermutationEncoder(FiniteKeyedEncoding):
    """Encoders whose keys are permutations ``pi`` of ``X`` and ``Enc(x, pi) = pi(x)``."""

    def __init__(self, labels: Sequence[int]):
        self.labels = tuple(int(v) for v in labels)
        self.domain_size = len(self.labels)

    def encode(self, x, key, rng=None):
        return int(key[x])

    @property
    def code_table(self) -> np.ndarray:
        # The codes are the permuted points themselves, so the key list is the table.
        return self._permutations

    def keys(self):
        return self._permutations


class IdealEncoder(_PermutationEncoder):
    """Uniformly random label-preserving permutation of ``{0, ..., N-1}``.

    Parameters
    ----------
    labels : sequence of int
        The concept ``c`` as a 0/1 label per point.
    """

    def sample_key(self, rng: np.random.Generator) -> np.ndarray:
        key = np.arange(self.domain_size)
        for cls in _classes(self.labels):
            key[cls] = rng.permutation(cls)
        return key

    def encode_fresh(self, xs, rng):
        # Under a uniform label-preserving pi, pi(x) alone is uniform on x's
        # class; drawing it directly avoids building N-point permutations.
        labels = np.asarray(self.labels)
        zero, one = _classes(self.labels)
        xs = np.asarray(xs)
        out = np.empty(len(xs), dtype=np.int64)
        for cls, y in ((zero, 0), (one, 1)):
            mask = labels[xs] == y
            out[mask] = cls[rng.integers(len(cls), size=int(mask.sum()))]
        return out

    def marginal_probabilities(self, x: int) -> np.ndarray:
        """Law of ``pi(x)`` as a probability vector (uniform on ``x``'s class)."""
        labels = np.asarray(self.labels)
        same = labels == labels[x]
        return same / same.sum()

    @cached_property
    def _permutations(self) -> np.ndarray:
        zero, one = _classes(self.labels)
        rows = []
        for p0 in itertools.permutations(zero):
            for p1 in itertools.permutations(one):
                key = np.empty(self.domain_size, dtype=np.int64)
                key[zero], key[one] = p0, p1
                rows.append(key)
        return np.asarray(rows, dtype=np.int64)  # (n0! n1!, N)


class CyclicShiftEncoder(_PermutationEncoder):
    """Label-preserving cyclic shift of each class by a uniform offset.

    Each point's encoding is uniform on its class, so Definition 2 holds for a
    class-uniform ``D``; but the answer on one other point of the class fixes
    the offset, which breaks CIA privacy once a class has three points.
    """

    def sample_key(self, rng):
        keys = self._permutations
        return keys[int(rng.integers(len(keys)))]

    @cached_property
    def _permutations(self) -> np.ndarray:
        zero, one = _classes(self.labels)
        rows = []
        for s0 in range(max(len(zero), 1)):
            for s1 in range(max(len(one), 1)):
                key = np.empty(self.domain_size, dtype=np.int64)
                key[zero] = np.roll(zero, s0)
                key[one] = np.roll(one, s1)
                rows.append(key)
        return np.asarray(rows, dtype=np.int64)


class RandomPermutationEncoder(_PermutationEncoder):
    """Uniformly random permutation of the whole domain, ignoring labels."""

    def sample_key(self, rng):
        return rng.permutation(self.domain_size)

    @cached_property
    def _permutations(self) -> np.ndarray:
        return np.asarray(list(itertools.permutations(range(self.domain_size))), dtype=np.int64)


EncoderFactory = Callable[[Sequence[int]], FiniteKeyedEncoding]


def label_preservation(table: np.ndarray, labels: Sequence[int]) -> Fraction:
    """Fraction of (key, point) pairs whose encoding is a point of the same label.

    Codes outside the domain count as violations.
    """
    labels = np.asarray(labels)
    inside = table < len(labels)
    same = inside & (labels[np.minimum(table, len(labels) - 1)] == labels[None, :])
    return Fraction(int(same.sum()), table.size)


def _total_variation(counts_a: np.ndarray, counts_b: np.ndarray, total: int) -> Fraction:
    width = max(len(counts_a), len(counts_b))
    a = np.pad(counts_a, (0, width - len(counts_a)))
    b = np.pad(counts_b, (0, width - len(counts_b)))
    return Fraction(int(np.abs(a - b).sum()), 2 * total)


def definition2_condition1(table: np.ndarray, labels: Sequence[int]) -> Fraction:
    """Largest TV distance between the laws of ``Enc(x, K)`` and ``Enc(x', K)``, ``c(x) = c(x')``.

    Condition (1) of Definition 2 holds exactly when this is 0.
    """
    n_codes = int(table.max()) + 1
    worst = Fraction(0)
    for x, x_other in same_label_pairs(labels):
        law_x = np.bincount(table[:, x], minlength=n_codes)
        law_other = np.bincount(table[:, x_other], minlength=n_codes)
        worst = max(worst, _total_variation(law_x, law_other, len(table)))
    return worst


def definition2_condition2(table: np.ndarray, labels: Sequence[int], weights: Sequence[Fraction]) -> Fraction:
    """Largest TV distance between ``Enc(D|y, K)`` and ``Enc(D|y, K')`` over keys and labels.

    Parameters
    ----------
    table : numpy.ndarray
        ``(n_keys, N)`` code table.
    labels : sequence of int
        The concept.
    weights : sequence of Fraction
        The distribution ``D`` on the domain (need not be normalised).

    Returns
    -------
    Fraction
        0 exactly when condition (2) of Definition 2 holds for ``D``.
    """
    labels = np.asarray(labels)
    weights = [Fraction(w) for w in weights]
    n_codes = int(table.max()) + 1
    worst = Fraction(0)
    for y in (0, 1):
        members = np.flatnonzero(labels == y)
        mass = sum((weights[x] for x in members), Fraction(0))
        if mass == 0:
            continue
        # Common denominator so each key's pushforward is an integer vector.
        den = int(np.lcm.reduce([weights[x].denominator for x in members]))
        ints = np.array([int(weights[x] * den) for x in members], dtype=np.int64)
        pushed = np.zeros((len(table), n_codes), dtype=np.int64)  # (n_keys, n_codes)
        np.add.at(pushed, (np.arange(len(table))[:, None], table[:, members]), ints[None, :])
        spread = np.abs(pushed - pushed[:1]).sum(axis=1).max()
        worst = max(worst, Fraction(int(spread), 2) / (mass * den))
    return worst


@dataclass(frozen=True)
class ExhaustiveCIA:
    """Outcome of the exhaustive CIA check.

    Attributes
    ----------
    domain_sizes : tuple of int
        Domain sizes covered.
    concepts : int
        Concepts (labelings) checked.
    games : int
        (concept, x0, x1, query set) combinations checked.
    max_advantage : sympy.Rational
        Largest optimal advantage found.
    worst : tuple or None
        ``(labels, x0, x1, query)`` attaining ``max_advantage`` when positive.
    """

    domain_sizes: tuple[int, ...]
    concepts: int
    games: int
    max_advantage: sympy.Rational
    worst: tuple | None


def exhaustive_cia(factory: EncoderFactory, sizes: Sequence[int]) -> ExhaustiveCIA:
    """Optimal CIA advantage for every concept, pair and query set on small domains.

    For each domain size, each labeling ``c``, each pair ``x0 < x1`` with equal
    labels, and each ``Q`` subset of ``X \\ {x0, x1}``, compute the best advantage
    of any guessing rule (the TV distance of the two view laws).
    """
    concepts = games = 0
    best = sympy.Rational(0)
    worst = None
    for size in sizes:
        for labels in all_labelings(size):
            concepts += 1
            table = factory(labels).code_table
            for x0, x1 in same_label_pairs(labels):
                for query in query_sets(size, x0, x1):
                    games += 1
                    adv = optimal_advantage(table, x0, x1, query)
                    if adv > best:
                        best, worst = adv, (labels, x0, x1, query)
    return ExhaustiveCIA(tuple(sizes), concepts, games, best, worst)


@dataclass(frozen=True)
class FullQueryAdversary:
    """CIA adversary that asks for every point but ``x0, x1``.

    The two encodings it never sees are the candidates for the challenge; it
    guesses ``b = 1`` when the challenge is the larger of them.  Against the
    ideal encoder nothing in the view tells the two apart, so its advantage is
    0 on any domain; a Monte Carlo run on a domain far too large to enumerate
    shows the estimate's interval covering 0.

    Attributes
    ----------
    x0, x1 : int
        Challenge pair.
    domain_size : int
        ``N``.
    """

    x0: int
    x1: int
    domain_size: int

    def choose(self):
        return self.x0, self.x1

    def guess(self, challenge, oracle):
        seen = {int(oracle(x)) for x in range(self.domain_size) if x not in (self.x0, self.x1)}
        unseen = sorted(set(range(self.domain_size)) - seen)
        return int(int(challenge) == max(unseen)) if unseen else 0
