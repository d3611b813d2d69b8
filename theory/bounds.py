"""Exact binomial tails and the inequalities the theory leans on.

Two steps of the paper rest on the facts computed here:

* Appendix B, proof of Theorem 1: the majority of ``k`` independent votes, each
  wrong with probability at most ``eps < 1/2``, is wrong with probability at
  most ``exp(-2 k (1/2 - eps)^2)`` (Hoeffding).  The event bounded is
  ``S <= k/2`` for ``S ~ Binomial(k, 1 - eps)`` correct votes, so a tie counts
  as an error; a predictor that breaks ties by a fair coin errs with
  probability ``P[S < k/2] + P[S = k/2] / 2``, which is smaller still.
* Appendix A: Hamming distances to independent uniformly random strings are
  ``Binomial(m, 1/2)``; their normal approximation is controlled by the
  Berry-Esseen theorem ``sup_t |P[B <= t] - Phi((t - m/2) / (sqrt(m)/2))|
  <= C / sqrt(m)`` (for fair coins ``rho / sigma^3 = 1``) with
  ``C = 0.4748`` (Shevtsova, 2011, i.i.d. summands).

Everything that is compared as a claim is computed exactly, with
:class:`fractions.Fraction`; ``exp(-r)`` for rational ``r`` is enclosed between
two rationals (alternating Taylor partial sums raised to an integer power), so
an inequality against it is decided without floating point.
"""

from __future__ import annotations

import math
from fractions import Fraction

#: Berry-Esseen constant for sums of i.i.d. variables (Shevtsova, 2011).
BERRY_ESSEEN_C = Fraction(4748, 10000)


def binomial_pmf_exact(trials: int, p: Fraction) -> list[Fraction]:
    """Exact probability mass function of ``Binomial(trials, p)``.

    Parameters
    ----------
    trials : int
        Number of trials, ``>= 0``.
    p : Fraction
        Success probability in ``[0, 1]``.

    Returns
    -------
    list of Fraction
        ``pmf[j] = C(trials, j) p^j (1 - p)^(trials - j)`` for ``j = 0..trials``.
    """
    p = Fraction(p)
    num, den = p.numerator, p.denominator
    # Integer arithmetic on a common denominator den**trials keeps this fast.
    total = den**trials
    return [
        Fraction(math.comb(trials, j) * num**j * (den - num) ** (trials - j), total)
        for j in range(trials + 1)
    ]


def majority_tail_exact(votes: int, eps: Fraction) -> Fraction:
    """``P[S <= votes/2]`` for ``S ~ Binomial(votes, 1 - eps)``: the Hoeffding event.

    Parameters
    ----------
    votes : int
        Number of votes ``k >= 1``.
    eps : Fraction
        Probability that one vote is wrong.

    Returns
    -------
    Fraction
        Probability that at most half the votes are right (ties count as errors).
    """
    pmf = binomial_pmf_exact(votes, 1 - Fraction(eps))
    return sum((pmf[j] for j in range(votes + 1) if 2 * j <= votes), Fraction(0))


def majority_error_exact(votes: int, eps: Fraction) -> Fraction:
    """Error of a majority vote that breaks ties with a fair coin.

    Parameters
    ----------
    votes : int
        Number of votes ``k >= 1``.
    eps : Fraction
        Probability that one vote is wrong; votes are independent.

    Returns
    -------
    Fraction
        ``P[S < k/2] + P[S = k/2] / 2`` for ``S ~ Binomial(k, 1 - eps)``.
    """
    pmf = binomial_pmf_exact(votes, 1 - Fraction(eps))
    below = sum((pmf[j] for j in range(votes + 1) if 2 * j < votes), Fraction(0))
    tie = pmf[votes // 2] if votes % 2 == 0 else Fraction(0)
    return below + tie / 2


def majority_error_float(votes: int, eps: float) -> float:
    """Floating-point :func:`majority_error_exact` for large grids.

    Parameters
    ----------
    votes : int
        Number of votes ``k >= 1``.
    eps : float
        Probability that one vote is wrong.

    Returns
    -------
    float
        Error probability of the tie-breaking majority vote.
    """
    from scipy.stats import binom

    correct = 1.0 - eps
    half = votes / 2.0
    below = binom.cdf(math.ceil(half) - 1, votes, correct)
    tie = binom.pmf(votes // 2, votes, correct) if votes % 2 == 0 else 0.0
    return float(below + tie / 2.0)


def hoeffding_exponent(votes: int, eps: Fraction) -> Fraction:
    """Exact exponent ``r = 2 k (1/2 - eps)^2`` of the Hoeffding bound ``exp(-r)``."""
    gap = Fraction(1, 2) - Fraction(eps)
    return 2 * votes * gap * gap


def hoeffding_bound(votes: int, eps: float) -> float:
    """Hoeffding's bound ``exp(-2 k (1/2 - eps)^2)`` on the majority-vote error."""
    return math.exp(-2.0 * votes * (0.5 - eps) ** 2)


def _alternating_partial_sum(t: Fraction, last: int) -> Fraction:
    term = Fraction(1)
    total = Fraction(1)
    for i in range(1, last + 1):
        term = term * (-t) / i
        total += term
    return total


def exp_neg_bounds(r: Fraction, terms: int = 8) -> tuple[Fraction, Fraction]:
    """Rational ``lo <= exp(-r) <= hi`` for rational ``r >= 0``.

    Writes ``exp(-r) = exp(-t)^s`` with ``t = r/s <= 1/2``; for such ``t`` the
    Taylor series of ``exp(-t)`` alternates with decreasing terms, so its
    partial sums ending on a negative term lie below ``exp(-t)`` and those
    ending on a positive term lie above.  Both partial sums are positive.

    Parameters
    ----------
    r : Fraction
        Non-negative exponent.
    terms : int, optional
        The lower partial sum stops at degree ``2 terms + 1``.

    Returns
    -------
    tuple of Fraction
        ``(lo, hi)``.
    """
    r = Fraction(r)
    if r < 0:
        raise ValueError("r must be non-negative")
    if r == 0:
        return Fraction(1), Fraction(1)
    s = max(1, math.ceil(2 * r))
    t = r / s
    lo = _alternating_partial_sum(t, 2 * terms + 1)
    hi = _alternating_partial_sum(t, 2 * terms)
    return lo**s, hi**s


def normal_cdf(x: float) -> float:
    """Standard normal distribution function ``Phi(x)``."""
    return 0.5 * math.erfc(-x / math.sqrt(2.0))
