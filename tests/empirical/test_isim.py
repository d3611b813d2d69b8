"""Image similarity i-sim, its sliced pre-score, and the first matching (paper §2.1.2-§2.1.3)."""
import itertools

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from empirical.assignment import assignment_value
from empirical.isim import (
    ISIM_BLOCK,
    balance,
    first_matching,
    isim_candidates,
    isim_pair,
    sliced_prescore,
    top_candidates,
)


def unit(a):
    return a / np.linalg.norm(a, axis=-1, keepdims=True)


def emb(rng, n, p, e):
    return unit(rng.standard_normal((n, p, e))).astype(np.float32)


def brute_isim(a, b) -> float:
    """Best one-to-one pairing of the rows of a (P, E) with the rows of b (P, E), over all P! orders."""
    sim = a.astype(np.float64) @ b.astype(np.float64).T
    p = len(a)
    return max(float(sim[np.arange(p), list(perm)].sum()) for perm in itertools.permutations(range(p)))


@settings(max_examples=20, deadline=None)
@given(seed=st.integers(0, 2**31 - 1), n_o=st.integers(1, 6), n=st.integers(1, 6), p=st.integers(1, 6),
       e=st.integers(1, 4))
def test_sliced_prescore_is_the_per_axis_assignment_value(seed, n_o, n, p, e):
    """Per axis, sorting both sides gives the best pairing (rearrangement inequality)."""
    rng = np.random.default_rng(seed)
    a, b = rng.standard_normal((n_o, p, e)).astype(np.float32), rng.standard_normal((n, p, e)).astype(np.float32)
    exact = np.zeros((n_o, n))
    for i in range(n_o):
        for k in range(n):
            exact[i, k] = sum(assignment_value(np.outer(a[i, :, x], b[k, :, x]).astype(np.float64))
                              for x in range(e))
    got = sliced_prescore(a, b, np, chunk=4)
    assert got.shape == (n_o, n)
    # the package centres each encoding's column; compare on the uncentred quantity's centring
    np.testing.assert_allclose(got, exact - exact.mean(axis=0, keepdims=True), atol=1e-4 * (1 + np.abs(exact).max()))


def test_sliced_prescore_e1_equals_exact_isim_and_bounds_it_otherwise():
    rng = np.random.default_rng(0)
    a, b = emb(rng, 5, 6, 1), emb(rng, 4, 6, 1)
    centred = sliced_prescore(a, b, np)
    exact = np.array([[isim_pair(a[i], b[k], np) for k in range(4)] for i in range(5)])
    np.testing.assert_allclose(centred, exact - exact.mean(0), atol=1e-5)
    # with E > 1, summing each axis's own optimum can only exceed the joint optimum
    a, b = emb(rng, 5, 6, 3), emb(rng, 4, 6, 3)
    pre = sliced_prescore(a, b, np)
    exact = np.array([[isim_pair(a[i], b[k], np) for k in range(4)] for i in range(5)])
    sa, sb = np.sort(a, axis=1).reshape(5, -1), np.sort(b, axis=1).reshape(4, -1)
    uncentred = sa @ sb.T  # recomputed here, not taken from the package
    np.testing.assert_allclose(pre, uncentred - uncentred.mean(0), atol=1e-5)
    assert (uncentred >= exact - 1e-5).all()


@settings(max_examples=25, deadline=None)
@given(seed=st.integers(0, 2**31 - 1), p=st.integers(1, 5), e=st.integers(1, 4))
def test_isim_pair_equals_brute_force(seed, p, e):
    rng = np.random.default_rng(seed)
    a, b = emb(rng, 1, p, e)[0], emb(rng, 1, p, e)[0]
    assert isim_pair(a, b, np) == pytest.approx(brute_isim(a, b), abs=1e-5)
    # invariant to the order of the encoding's rows, as the shuffle requires
    assert isim_pair(a, b[rng.permutation(p)], np) == pytest.approx(isim_pair(a, b, np), abs=1e-5)


def test_isim_candidates_equal_isim_pair():
    rng = np.random.default_rng(1)
    a, b = emb(rng, 6, 5, 3), emb(rng, 8, 5, 3)
    cand = np.array([rng.permutation(8)[:3] for _ in range(6)])
    calls = []
    vals = isim_candidates(a, b, cand, np, progress=calls.append)
    assert vals.shape == (6, 3) and sum(calls) == 6
    for i in range(6):
        for j in range(3):
            assert vals[i, j] == pytest.approx(brute_isim(a[i], b[cand[i, j]]), abs=1e-5)


@pytest.mark.parametrize("workers", [2, 3])
def test_isim_candidates_on_threads_equal_one_thread(workers):
    """More blocks of originals than threads, and a last block that is not full: same values, every one reported."""
    rng = np.random.default_rng(2)
    n_o = 2 * ISIM_BLOCK * workers + 5
    a, b = emb(rng, n_o, 9, 4), emb(rng, n_o, 9, 4)
    cand = np.array([rng.permutation(n_o)[:4] for _ in range(n_o)])
    calls = []
    threaded = isim_candidates(a, b, cand, np, progress=calls.append, workers=workers)
    assert np.array_equal(threaded, isim_candidates(a, b, cand, np, workers=1))
    assert sum(calls) == n_o


def test_top_candidates_are_the_k_best():
    rng = np.random.default_rng(2)
    pre = rng.standard_normal((7, 10)).astype(np.float32)
    cand = top_candidates(pre, 3, np)
    assert cand.shape == (7, 3)
    for i in range(7):
        assert set(cand[i].tolist()) == set(np.argsort(-pre[i])[:3].tolist())
    assert top_candidates(pre, 50, np).shape == (7, 10)  # k is clipped to the number of encodings


def test_true_pair_ranks_high_when_rows_are_noisy_copies():
    """The pre-screen's purpose: a shuffled noisy copy of an original lands among its candidates."""
    rng = np.random.default_rng(3)
    n, p, e = 60, 16, 8
    a = emb(rng, n, p, e)
    perm = np.argsort(rng.random((n, p)), axis=1)
    b = unit(np.take_along_axis(a, perm[:, :, None], axis=1) + 0.3 * rng.standard_normal((n, p, e))).astype(np.float32)
    cand = top_candidates(sliced_prescore(a, b, np), 5, np)
    assert np.mean([k in cand[k] for k in range(n)]) > 0.9


def brute_first_matching(values, cand, n_enc):
    """Best injective map encoding -> original: most candidate pairs first, then the highest value."""
    n_orig = values.shape[0]
    val = {(int(cand[i, j]), i): float(values[i, j]) for i in range(n_orig) for j in range(cand.shape[1])}
    best = None
    for m in itertools.permutations(range(n_orig), n_enc):
        used = [val[(k, a)] for k, a in enumerate(m) if (k, a) in val]
        key = (len(used), round(sum(used), 9))
        best = key if best is None or key > best else best
    return best


@settings(max_examples=25, deadline=None)
@given(seed=st.integers(0, 2**31 - 1), n_enc=st.integers(1, 5), decoys=st.integers(0, 2), k=st.integers(1, 3))
def test_first_matching_uses_the_candidates(seed, n_enc, decoys, k):
    rng = np.random.default_rng(seed)
    n_orig = n_enc + decoys
    k = min(k, n_enc)
    cand = np.array([rng.permutation(n_enc)[:k] for _ in range(n_orig)])
    values = rng.standard_normal((n_orig, k)) * 5
    m = first_matching(values, cand, n_enc)
    assert m.shape == (n_enc,) and len(set(m.tolist())) == n_enc and m.max() < n_orig
    val = {(int(cand[i, j]), i): values[i, j] for i in range(n_orig) for j in range(k)}
    used = [val[(e, a)] for e, a in enumerate(m) if (e, a) in val]
    assert (len(used), round(sum(used), 9)) == pytest.approx(brute_first_matching(values, cand, n_enc))


def test_first_matching_prefers_candidates_and_still_places_everyone():
    # rows: originals; each lists two candidate encodings. Encoding 2 is nobody's candidate.
    values = np.array([[1.0, 0.5], [2.0, 0.1], [0.3, 0.2], [0.4, 0.6]])
    cand = np.array([[1, 3], [0, 1], [3, 1], [1, 3]])
    m = first_matching(values, cand, 4)
    # encoding 0 has one candidate original (1); then 1 <- 0 (1.0) and 3 <- 3 (0.6) beat 0.4 + 0.5
    np.testing.assert_array_equal(m, [1, 0, 2, 3])  # encoding 2 takes the original left over


@settings(max_examples=15, deadline=None)
@given(seed=st.integers(0, 2**31 - 1), n=st.integers(2, 40), tau=st.sampled_from([0.05, 0.2, 1.0]))
def test_balance_is_doubly_stochastic(seed, n, tau):
    """exp of the balanced score sums to one along every row and every column."""
    rng = np.random.default_rng(seed)
    score = rng.standard_normal((n, n)).astype(np.float32) * rng.uniform(0.1, 10)
    w = np.exp(balance(score, np, tau=tau, iters=500).astype(np.float64))
    assert np.allclose(w.sum(axis=0), 1, atol=1e-3)
    assert np.allclose(w.sum(axis=1), 1, atol=2e-2)


def test_balance_of_a_rectangular_score_spreads_the_columns_mass_over_the_rows():
    """With decoy originals (more rows than columns) each column sums to one, each row to N / N_o."""
    rng = np.random.default_rng(5)
    score = rng.standard_normal((50, 40)).astype(np.float32)
    w = np.exp(balance(score, np, tau=0.5, iters=300).astype(np.float64))
    assert np.allclose(w.sum(axis=0), 1, atol=1e-3)
    assert np.allclose(w.sum(axis=1), 40 / 50, atol=1e-2)


@pytest.mark.parametrize("shape,chunk", [((37, 29), 8), ((64, 64), 64), ((20, 1500), 512)])
def test_balance_in_chunks_and_in_place_is_the_whole_matrix_iteration_bit_for_bit(shape, chunk):
    """Normalising a few rows or columns at a time, in the score's own memory, changes no value."""
    rng = np.random.default_rng(shape[0])
    score = (rng.standard_normal(shape) * 3).astype(np.float32)
    L = score.copy()  # the iteration on the whole matrix at once, as a reference
    L -= L.max()
    L /= np.float32(0.05 * float(score.std()) + 1e-30)
    for _ in range(50):
        for axis, mass in ((1, float(np.log(shape[1] / shape[0]))), (0, 0.0)):
            m = L.max(axis=axis, keepdims=True)
            L -= m + np.log(np.exp(L - m).sum(axis=axis, keepdims=True)) - mass
    kept = score.copy()
    np.testing.assert_array_equal(balance(score, np, chunk=chunk), L)
    np.testing.assert_array_equal(score, kept)  # without overwrite the score is left alone
    own = balance(score, np, chunk=chunk, overwrite=True)
    assert own is score  # overwrite: the result is the score's memory
    np.testing.assert_array_equal(own, L)


def test_balance_removes_row_and_column_offsets():
    """Scores = true-pair signal + per-row and per-column offsets: the offsets dominate the raw
    top-k, the balanced top-k finds the true pairs."""
    rng = np.random.default_rng(3)
    n, k = 300, 5
    truth = rng.permutation(n)
    score = rng.standard_normal((n, n)) + 8 * rng.standard_normal(n)[None, :] + 8 * rng.standard_normal(n)[:, None]
    score[np.arange(n), truth] += 3.0
    raw = top_candidates(score, k, np)
    bal = top_candidates(balance(score, np, tau=0.05), k, np)
    recall = lambda c: np.mean((c == truth[:, None]).any(axis=1))  # noqa: E731
    assert recall(raw) < 0.2
    assert recall(bal) > 0.8


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_first_matching_is_the_dense_maximum_over_the_floored_scores(seed):
    """The cost built directly with encodings as rows gives the assignment of the dense floored score."""
    from scipy.optimize import linear_sum_assignment

    rng = np.random.default_rng(seed)
    n_o, n, k = 30, 25, 3
    vals = rng.integers(0, 4, (n_o, k)).astype(float)  # ties on purpose
    cand = np.array([rng.permutation(n)[:k] for _ in range(n_o)])
    floor = vals.min() - 1e3 * (np.ptp(vals) + 1.0)
    score = np.full((n_o, n), floor)
    score[np.arange(n_o)[:, None], cand] = vals
    rows, cols = linear_sum_assignment(score.T, maximize=True)
    want = np.empty(n, dtype=np.int64)
    want[rows] = cols
    got = first_matching(vals, cand, n)
    assert score[got, np.arange(n)].sum() == score[want, np.arange(n)].sum()
    if len(np.unique(score.T.argmax(axis=1))) < n:
        np.testing.assert_array_equal(got, want)
