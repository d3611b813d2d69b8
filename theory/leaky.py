"""Leaky keyed encodings: keyed linear and affine maps over GF(2)^n (paper §3).

These are the contrast to the ideal encoder: small enough to enumerate every
key, so their advantages are exact (Definition 1, advantage
``Pr[b'=1|b=1] - Pr[b'=1|b=0]`` as in :mod:`theory.games`).

* Linear: ``Enc(x, A) = A x`` with ``A`` uniform in ``GL(n, 2)``.  It fixes 0, so
  the NIA adversary with ``x0 = 0`` wins with advantage 1, and the rule
  "guess 1 iff the challenge has weight >= 2" on ``x1 = e_1`` has advantage
  ``#{z != 0 : |z| >= 2} / (2^n - 1)`` (4/7 for ``n = 3``).
* Affine: ``Enc(x, (A, t)) = A x + t``.  Every ``Enc(x, K)`` is uniform, so it is
  0-NIA private for every concept; yet affine maps preserve odd sums, so the
  CIA adversary that writes ``x0 = q1 + q2 + q3`` with three allowed queries
  wins with advantage 1.  CIA privacy is strictly stronger than NIA privacy.

Points of ``{0,1}^n`` are the integers ``0..2^n-1`` read as bit vectors; a
matrix is the tuple of its column bit masks.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from functools import cached_property

from .games import FiniteKeyedEncoding


def gf2_span_size(columns: tuple[int, ...]) -> int:
    """Number of distinct vectors spanned by ``columns`` over GF(2)."""
    span = {0}
    for col in columns:
        span |= {v ^ col for v in span}
    return len(span)


def gf2_apply(columns: tuple[int, ...], x: int) -> int:
    """``A x`` over GF(2), ``A`` given by its columns."""
    out = 0
    for i, col in enumerate(columns):
        if (x >> i) & 1:
            out ^= col
    return out


def general_linear_group(n: int) -> list[tuple[int, ...]]:
    """Every invertible ``n x n`` matrix over GF(2), as column tuples."""
    vectors = range(1, 2**n)
    return [cols for cols in itertools.product(vectors, repeat=n) if gf2_span_size(cols) == 2**n]


class GF2LinearEncoder(FiniteKeyedEncoding):
    """``Enc(x, A) = A x`` with ``A`` uniform in ``GL(n, 2)``.

    Parameters
    ----------
    bits : int
        ``n``; the domain is ``{0, ..., 2^n - 1}``.
    """

    def __init__(self, bits: int):
        self.bits = bits
        self.domain_size = 2**bits

    @cached_property
    def _keys(self):
        return general_linear_group(self.bits)

    def keys(self):
        return self._keys

    def encode(self, x, key, rng=None):
        return gf2_apply(key, int(x))


class GF2AffineEncoder(GF2LinearEncoder):
    """``Enc(x, (A, t)) = A x + t`` with ``A`` uniform in ``GL(n, 2)`` and ``t`` uniform."""

    @cached_property
    def _keys(self):
        return [(cols, t) for cols in general_linear_group(self.bits) for t in range(2**self.bits)]

    def encode(self, x, key, rng=None):
        cols, shift = key
        return gf2_apply(cols, int(x)) ^ shift


def weight_concept(bits: int):
    """The concept ``c(x) = 1`` iff ``x`` has Hamming weight at least ``ceil(n/2)``."""
    return lambda x: int(bin(int(x)).count("1") >= (bits + 1) // 2)


@dataclass(frozen=True)
class ZeroTestAdversary:
    """NIA adversary against the linear encoder: ``x0 = 0`` is the only fixed point.

    Attributes
    ----------
    x1 : int
        Non-zero partner of 0, chosen with the same label as 0.
    """

    x1: int

    def choose(self):
        return 0, self.x1

    def guess(self, challenge, oracle):
        return int(challenge != 0)


@dataclass(frozen=True)
class WeightRuleAdversary:
    """NIA adversary with a deliberately partial rule: guess 1 iff ``|challenge| >= 2``."""

    x1: int

    def choose(self):
        return 0, self.x1

    def guess(self, challenge, oracle):
        return int(bin(int(challenge)).count("1") >= 2)


@dataclass(frozen=True)
class AffineRelationAdversary:
    """CIA adversary against affine maps: ``Enc(q1 + q2 + q3) = Enc(q1) + Enc(q2) + Enc(q3)``.

    Attributes
    ----------
    x0, x1 : int
        Challenge pair.
    queries : tuple of int
        Three points, none equal to ``x0`` or ``x1``, whose XOR is ``x0``.
    """

    x0: int
    x1: int
    queries: tuple[int, int, int]

    def __post_init__(self):
        q1, q2, q3 = self.queries
        if q1 ^ q2 ^ q3 != self.x0 or set(self.queries) & {self.x0, self.x1}:
            raise ValueError("queries must avoid x0, x1 and XOR to x0")

    def choose(self):
        return self.x0, self.x1

    def guess(self, challenge, oracle):
        predicted = 0
        for q in self.queries:
            predicted ^= oracle(q)
        return int(challenge != predicted)
