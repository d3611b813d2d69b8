"""Exact binomial tails and the Hoeffding / exp enclosures of theory.bounds."""

import math
from fractions import Fraction

from hypothesis import given
from hypothesis import strategies as st
from scipy.stats import binom

from theory.bounds import (
    binomial_pmf_exact,
    exp_neg_bounds,
    hoeffding_bound,
    hoeffding_exponent,
    majority_error_exact,
    majority_error_float,
    majority_tail_exact,
)

probabilities = st.fractions(min_value=0, max_value=1, max_denominator=50)
small_eps = st.fractions(min_value=0, max_value=Fraction(49, 100), max_denominator=100)


@given(st.integers(0, 40), probabilities)
def test_pmf_is_a_distribution_and_matches_scipy(trials, p):
    pmf = binomial_pmf_exact(trials, p)
    assert sum(pmf) == 1
    for j, value in enumerate(pmf):
        assert math.isclose(float(value), binom.pmf(j, trials, float(p)), rel_tol=1e-9, abs_tol=1e-300)


@given(st.integers(1, 60), small_eps)
def test_tie_breaking_error_below_tail_below_hoeffding(votes, eps):
    error = majority_error_exact(votes, eps)
    tail = majority_tail_exact(votes, eps)
    lower = exp_neg_bounds(hoeffding_exponent(votes, eps))[0]
    assert error <= tail <= lower
    assert math.isclose(float(error), majority_error_float(votes, float(eps)), rel_tol=1e-9, abs_tol=1e-15)


@given(st.fractions(min_value=0, max_value=80, max_denominator=1000))
def test_exp_enclosure_contains_float_exp(r):
    lo, hi = exp_neg_bounds(r)
    value = math.exp(-float(r))
    assert lo <= hi
    assert float(lo) <= value * (1 + 1e-12) and value <= float(hi) * (1 + 1e-12)
    assert float(hi - lo) <= 1e-12 * float(hi)


def test_single_vote_error_is_eps_and_hoeffding_formula():
    assert majority_error_exact(1, Fraction(1, 3)) == Fraction(1, 3)
    # Two votes: wrong if both wrong, half the time if they split.
    eps = Fraction(1, 4)
    assert majority_error_exact(2, eps) == eps**2 + eps * (1 - eps)
    assert math.isclose(hoeffding_bound(10, 0.3), math.exp(-2 * 10 * 0.2**2))
