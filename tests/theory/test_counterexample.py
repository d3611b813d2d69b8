"""Appendix A: T(x) = x || f(x) reveals x yet scores near chance."""

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from theory import counterexample as cx


@st.composite
def clear_distances(draw, max_targets=4, max_n=3):
    n = draw(st.integers(1, max_n))
    size = draw(st.integers(2, max_targets))
    a = np.array(
        draw(
            st.lists(st.lists(st.integers(0, n), min_size=size, max_size=size), min_size=size, max_size=size)
        )
    )
    return n, a


@given(clear_distances(), st.integers(1, 10))
def test_float_exact_score_equals_rational_and_never_beats_the_bound(case, m):
    n, a = case
    rational = cx.exact_score_rational(a, m)
    assert abs(float(rational) - cx.exact_score(a, m)) < 1e-12
    assert rational <= cx.bound_exact(n, m, len(a))


@given(st.integers(0, 10), st.integers(1, 40))
def test_two_target_bound_is_a_binomial_2m_tail(n, m):
    assert cx.bound_exact(n, m, 2) == cx.pairwise_closed_form(n, m)
    assert abs(float(cx.bound_exact(n, m, 2)) - cx.bound_float(n, m, 2)) < 1e-12


@given(st.integers(1, 8), st.sampled_from([16, 64, 256, 1024]), st.integers(2, 12))
def test_normal_approximation_within_berry_esseen(n, m, targets):
    gap = abs(float(cx.bound_exact(n, m, targets)) - cx.bound_normal(n, m, targets))
    assert gap <= cx.berry_esseen_margin(m, targets)
    assert float(cx.bound_exact(n, m, targets)) <= cx.chance_ceiling(n, m, targets)


@given(st.integers(1, 10), st.integers(0, 2**31))
def test_reconstruction_reads_every_input(n, seed):
    rng = np.random.default_rng(seed)
    points = rng.choice(2**n, size=min(2**n, 20), replace=False)
    encodings = cx.encode(points, rng.integers(0, 2, (len(points), 7), dtype=np.uint8), n)
    assert np.array_equal(cx.reconstruct(encodings, n), points)


def test_guesses_that_leak_x_all_have_the_same_exact_score():
    cfg = cx.CounterexampleConfig(n=4, m=32, released=4, targets=6)
    released, targets = cx.sample_points(cfg, np.random.default_rng(1))
    scores = {
        s: cx.exact_score(cx.clear_part_distances(cfg, released, targets, s), cfg.m)
        for s in cx.STRATEGIES
        if s.startswith("leak")
    }
    assert max(scores.values()) - min(scores.values()) < 1e-15


@settings(derandomize=True, max_examples=6, deadline=None)
@given(
    st.sampled_from(sorted(cx.STRATEGIES)),
    st.sampled_from([(3, 8, 3), (4, 32, 5), (5, 64, 8)]),
    st.integers(0, 2**31),
)
def test_monte_carlo_score_agrees_with_exact(strategy, sizes, seed):
    n, m, targets = sizes
    cfg = cx.CounterexampleConfig(n=n, m=m, released=3, targets=targets)
    rng = np.random.default_rng(seed)
    released, target_pts = cx.sample_points(cfg, rng)
    exact = cx.exact_score(cx.clear_part_distances(cfg, released, target_pts, strategy), m)
    scores = cx.monte_carlo_scores(cfg, released, target_pts, strategy, 1500, rng)
    # Five standard errors; blind guesses score exactly 1/|A| in every trial.
    assert abs(scores.mean() - exact) <= 5 * scores.std(ddof=1) / np.sqrt(len(scores)) + 1e-9
