"""Appendix A: a scheme that publishes every input in the clear yet passes Challenge 2.

Statement implemented
---------------------
``X = {0,1}^n``; the key is a uniformly random function ``f: {0,1}^n -> {0,1}^m``
and ``T(x) = x || f(x)``.  Challenge 2 as scored here: Alice releases ``T(S)``;
on a held-out target set ``A`` (disjoint from ``S``) Bob's guess ``T'`` scores,
for each ``x`` in ``A``, when ``T(x)`` is the Hamming-nearest neighbour of
``T'(x)`` among ``{T(x') : x' in A}`` (ties broken uniformly at random).  The
score is the matched fraction of ``A``; chance is ``1/|A|``, and ``|A| = 2`` is
the pairwise test ``d(T'(x), T(x)) < d(T'(x), T(x'))`` that the paper's proof
bounds.

Claim.  Write ``T' = (g1, g2)``.  Since ``f`` on ``A`` is independent of
everything Bob saw, ``B_{x'} = d(g2(x), f(x'))`` are i.i.d. ``Binomial(m, 1/2)``
over ``x'`` in ``A``, and ``d(T'(x), T(x')) = a_{x'} + B_{x'}`` with
``a_{x'} = d(g1(x), x')`` in ``[0, n]``.  A match needs
``a_x + B_x <= a_{x'} + B_{x'}`` for all ``x'``, so every ``T'`` scores at most ::

    bound(n, m, |A|) = P[B_0 <= n + min_{1 <= j < |A|} B_j]

(for ``|A| = 2``, exactly ``P[Binomial(2m, 1/2) <= m + n]``, since
``B_0 - B_1 + m ~ Binomial(2m, 1/2)``: the two f-parts' distances differ by an
amount of standard deviation ``sqrt(m/2)``, each distance alone having
``sqrt(m)/2``).  Normal approximation (``sigma = sqrt(m)/2``, ``t = n / sigma``)::

    bound ~ int phi(z) (1 - Phi(z - t))^(|A|-1) dz,

within ``|A| C / sqrt(m)`` by Berry-Esseen (``C`` in :mod:`theory.bounds`;
each of the ``|A|`` binomials is swapped for a normal in turn, and a monotone
``[0,1]``-valued function moves by at most the Kolmogorov distance).  Since the
integral is ``1/|A|`` at ``t = 0`` with slope at most ``(|A|-1)/(2 sqrt(pi))``,
every ``T'`` scores at most
``1/|A| + (|A|-1) n / sqrt(pi m) + |A| C / sqrt(m)``: chance, once
``m >> n^2``.  Yet reading the first ``n`` bits of ``T(x)`` recovers ``x``.

Scores are computed three ways: Monte Carlo over fresh keys ``f``, exactly from
the binomial laws (given the point sets and ``g1``; in rationals for small
cases, else in floating point with Gauss-Legendre quadrature that is exact for
the polynomial involved), and by the normal approximation.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from fractions import Fraction
from types import MappingProxyType

import numpy as np
from scipy.stats import binom, norm

from .bounds import BERRY_ESSEEN_C


@dataclass(frozen=True)
class CounterexampleConfig:
    """Sizes of one Challenge 2 instance.

    Attributes
    ----------
    n : int
        Input bits.
    m : int
        Output bits of the random function.
    released : int
        ``|S|``, points whose encodings Bob sees.
    targets : int
        ``|A|``, held-out points scored.
    """

    n: int
    m: int
    released: int
    targets: int


def to_bits(points: np.ndarray, width: int) -> np.ndarray:
    """Integers to little-endian bit rows: ``(len(points), width)`` uint8."""
    return ((np.asarray(points)[:, None] >> np.arange(width)) & 1).astype(np.uint8)


def sample_points(cfg: CounterexampleConfig, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Disjoint released set ``S`` and target set ``A`` in ``{0, ..., 2^n - 1}``."""
    chosen = rng.choice(2**cfg.n, size=cfg.released + cfg.targets, replace=False)
    return chosen[: cfg.released], chosen[cfg.released :]


def encode(points: np.ndarray, values: np.ndarray, n: int) -> np.ndarray:
    """``T(x) = x || f(x)`` as bit rows, given ``f``'s values on ``points``."""
    return np.concatenate([to_bits(points, n), values], axis=1)


def reconstruct(encodings: np.ndarray, n: int) -> np.ndarray:
    """The reconstruction attack: read ``x`` off the first ``n`` bits."""
    return (encodings[:, :n].astype(np.int64) << np.arange(n)).sum(axis=1)


def _leak_constant(queries, released, released_enc, n, m, rng):
    return np.concatenate([to_bits(queries, n), np.zeros((len(queries), m), np.uint8)], axis=1)


def _leak_random(queries, released, released_enc, n, m, rng):
    return np.concatenate(
        [to_bits(queries, n), rng.integers(0, 2, (len(queries), m), dtype=np.uint8)], axis=1
    )


def _leak_nearest_fit(queries, released, released_enc, n, m, rng):
    # g(x) = f(s) for the released s nearest to x: the natural fit to T(S).
    dist = hamming(to_bits(queries, n), released_enc[:, :n])  # (|A|, |S|)
    return np.concatenate([to_bits(queries, n), released_enc[dist.argmin(axis=1), n:]], axis=1)


def _leak_majority_fit(queries, released, released_enc, n, m, rng):
    # The constant closest on average to the released f-parts.
    majority = (2 * released_enc[:, n:].sum(axis=0) > len(released_enc)).astype(np.uint8)
    return np.concatenate([to_bits(queries, n), np.tile(majority, (len(queries), 1))], axis=1)


def _blind_constant(queries, released, released_enc, n, m, rng):
    return np.zeros((len(queries), n + m), np.uint8)


#: Bob's guesses ``T'``, each evaluated on the query points from the public release only.
STRATEGIES = MappingProxyType(
    {
        "leak_constant": _leak_constant,
        "leak_random": _leak_random,
        "leak_nearest_fit": _leak_nearest_fit,
        "leak_majority_fit": _leak_majority_fit,
        "blind_constant": _blind_constant,
    }
)


def hamming(u: np.ndarray, v: np.ndarray) -> np.ndarray:
    """All-pairs Hamming distances between bit rows: ``(len(u), len(v))``."""
    su = 2.0 * u - 1.0
    sv = 2.0 * v - 1.0
    return np.rint((u.shape[1] - su @ sv.T) / 2.0).astype(np.int64)


def nearest_neighbour_score(guesses: np.ndarray, targets_enc: np.ndarray, rng: np.random.Generator) -> float:
    """Fraction of rows ``i`` whose nearest target encoding (random tie-break) is ``i``."""
    dist = hamming(guesses, targets_enc).astype(float)
    # Integer distances: noise below 1/2 breaks ties uniformly and nothing else.
    winner = np.argmin(dist + 0.5 * rng.random(dist.shape), axis=1)
    return float(np.mean(winner == np.arange(len(dist))))


def monte_carlo_scores(
    cfg: CounterexampleConfig,
    released: np.ndarray,
    targets: np.ndarray,
    strategy: str,
    trials: int,
    rng: np.random.Generator,
) -> np.ndarray:
    """Score of ``strategy`` under ``trials`` fresh keys ``f`` on fixed point sets."""
    scores = np.empty(trials)
    for t in range(trials):
        released_enc = encode(released, rng.integers(0, 2, (len(released), cfg.m), dtype=np.uint8), cfg.n)
        targets_enc = encode(targets, rng.integers(0, 2, (len(targets), cfg.m), dtype=np.uint8), cfg.n)
        guesses = STRATEGIES[strategy](targets, released, released_enc, cfg.n, cfg.m, rng)
        scores[t] = nearest_neighbour_score(guesses, targets_enc, rng)
    return scores


def clear_part_distances(cfg: CounterexampleConfig, released: np.ndarray, targets: np.ndarray, strategy: str):
    """``a[i, j] = d(g1(x_i), x_j)``: the part of the distance Bob controls.

    ``g1`` of every strategy here is a function of the query alone, so it is
    read from one evaluation (the ``f``-part is irrelevant to ``a``).
    """
    rng = np.random.default_rng(0)
    fake = encode(released, np.zeros((len(released), cfg.m), np.uint8), cfg.n)
    g1 = STRATEGIES[strategy](targets, released, fake, cfg.n, cfg.m, rng)[:, : cfg.n]
    return hamming(g1, to_bits(targets, cfg.n))


def exact_score(a: np.ndarray, m: int) -> float:
    """Exact expected score given the clear-part distances ``a`` (floating point).

    For row ``i``, ``D_j = a[i, j] + B_j`` with ``B_j`` i.i.d. ``Binomial(m, 1/2)``;
    conditioning on ``D_i = d`` the win probability is
    ``int_0^1 prod_{j != i} (P[D_j > d] + P[D_j = d] z) dz`` (random tie-break),
    a polynomial in ``z`` integrated exactly by Gauss-Legendre.
    """
    size = len(a)
    pmf = binom.pmf(np.arange(m + 1), m, 0.5)
    keep = np.flatnonzero(pmf > 1e-18 * pmf.max())  # tails below 1e-18 of the mode
    lo, hi = int(keep[0]), int(keep[-1])
    nodes, weights = np.polynomial.legendre.leggauss(size // 2 + 1)
    z = (nodes + 1) / 2
    w = weights / 2
    total = 0.0
    for i in range(size):
        others = np.delete(a[i], i)
        values, counts = np.unique(others, return_counts=True)
        d = a[i, i] + np.arange(lo, hi + 1)  # (Dn,)
        shift = d[None, :] - values[:, None]  # (V, Dn): value of B_j that ties
        eq = np.where((shift >= 0) & (shift <= m), pmf[np.clip(shift, 0, m)], 0.0)
        gt = binom.sf(shift, m, 0.5)  # P[B_j > shift]
        base = gt[:, :, None] + eq[:, :, None] * z[None, None, :]  # (V, Dn, Z)
        integrand = np.prod(base ** counts[:, None, None], axis=0)  # (Dn, Z)
        total += float(pmf[lo : hi + 1] @ (integrand @ w))
    return total / size


def exact_score_rational(a: np.ndarray, m: int) -> Fraction:
    """:func:`exact_score` in exact rationals (small ``m`` and ``|A|``)."""
    size = len(a)
    pmf = [Fraction(math.comb(m, b), 2**m) for b in range(m + 1)]
    greater = [sum(pmf[b + 1 :], Fraction(0)) for b in range(m + 1)]

    def p_eq(s):
        return pmf[s] if 0 <= s <= m else Fraction(0)

    def p_gt(s):
        return Fraction(1) if s < 0 else (greater[s] if s <= m else Fraction(0))

    total = Fraction(0)
    for i in range(size):
        for b in range(m + 1):
            d = int(a[i, i]) + b
            poly = [Fraction(1)]
            for j in range(size):
                if j == i:
                    continue
                s = d - int(a[i, j])
                u, e = p_gt(s), p_eq(s)
                poly = [
                    (poly[t] * u if t < len(poly) else 0) + (poly[t - 1] * e if t > 0 else 0)
                    for t in range(len(poly) + 1)
                ]
            total += pmf[b] * sum((c / (t + 1) for t, c in enumerate(poly)), Fraction(0))
    return total / size


def _normal_grid(step: float = 0.01, width: float = 12.0) -> tuple[np.ndarray, np.ndarray]:
    # The trapezoid rule is spectrally accurate for smooth integrands that
    # decay like phi(z); +-12 leaves out mass below 1e-32.
    z = np.arange(-width, width + step / 2, step)
    return z, np.full(len(z), step)


def normal_score(a: np.ndarray, m: int) -> float:
    """Normal approximation of :func:`exact_score` (no ties in the limit)."""
    sigma = math.sqrt(m) / 2
    z, w = _normal_grid()
    density = norm.pdf(z) * w
    size = len(a)
    total = 0.0
    for i in range(size):
        offsets = (a[i, i] - np.delete(a[i], i)) / sigma  # (|A|-1,)
        survive = norm.sf(z[:, None] + offsets[None, :]).prod(axis=1)  # (Z,)
        total += float(density @ survive)
    return total / size


def _binomial_row(m: int) -> list[int]:
    row = [1] * (m + 1)
    for b in range(m):
        row[b + 1] = row[b] * (m - b) // (b + 1)
    return row


def bound_exact(n: int, m: int, targets: int) -> Fraction:
    """``P[B_0 <= n + min_j B_j]`` over ``targets`` i.i.d. ``Binomial(m, 1/2)``, exactly."""
    counts = _binomial_row(m)
    at_least = [0] * (m + 2)  # at_least[s] = #{B >= s}
    for s in range(m, -1, -1):
        at_least[s] = at_least[s + 1] + counts[s]
    tail = [at_least[max(b - n, 0)] for b in range(m + 1)]  # tail[b] = #{B >= b - n}
    return Fraction(sum(c * tail[b] ** (targets - 1) for b, c in enumerate(counts)), 2 ** (m * targets))


def bound_float(n: int, m: int, targets: int) -> float:
    """Floating-point :func:`bound_exact` for large ``m``."""
    b = np.arange(m + 1)
    return float(binom.pmf(b, m, 0.5) @ binom.sf(b - n - 1, m, 0.5) ** (targets - 1))


def pairwise_closed_form(n: int, m: int) -> Fraction:
    """``P[Binomial(2m, 1/2) <= m + n]``: the ``|A| = 2`` bound (``B_0 - B_1 + m ~ Bin(2m, 1/2)``)."""
    return Fraction(sum(math.comb(2 * m, j) for j in range(min(m + n, 2 * m) + 1)), 2 ** (2 * m))


def bound_normal(n: int, m: int, targets: int) -> float:
    """``int phi(z) (1 - Phi(z - n/sigma))^(targets-1) dz`` with ``sigma = sqrt(m)/2``."""
    z, w = _normal_grid()
    t = n / (math.sqrt(m) / 2)
    return float((norm.pdf(z) * w) @ norm.sf(z - t) ** (targets - 1))


def berry_esseen_margin(m: int, targets: int) -> float:
    """``|A| C / sqrt(m)``: the normal approximation's worst-case error."""
    return targets * float(BERRY_ESSEEN_C) / math.sqrt(m)


def chance_ceiling(n: int, m: int, targets: int) -> float:
    """``1/|A| + (|A|-1) n / sqrt(pi m) + |A| C / sqrt(m)``: an upper bound on every score."""
    return 1 / targets + (targets - 1) * n / math.sqrt(math.pi * m) + berry_esseen_margin(m, targets)
