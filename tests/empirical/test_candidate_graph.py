"""Matchings on a sparse candidate graph, checked against the dense scores they stand in for."""
from collections import Counter

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from empirical import candidate_graph
from empirical.assignment import match_encodings, match_margins
from empirical.boosting import boost, known_perm_blocks, known_perm_scores, median_margin, rematch
from empirical.candidate_graph import Candidates, graph_margins, join, match_on_graph, stream_candidates, stream_margins

from .test_boosting import synthetic
from .test_strict_namespace import sxp


def blocks_of(score, b):
    """(start, block) pieces of a dense (N_o, N) score, ``b`` originals each."""
    return ((s, score[s:s + b]) for s in range(0, score.shape[0], b))


def scores(seed, n_orig, n):
    return np.random.default_rng(seed).standard_normal((n_orig, n)).astype(np.float32)


@settings(max_examples=30, deadline=None)
@given(seed=st.integers(0, 2**31 - 1), n_orig=st.integers(1, 40), extra=st.integers(0, 10),
       k=st.integers(1, 60), b=st.integers(1, 50))
def test_candidates_are_each_encodings_and_each_originals_k_best(seed, n_orig, extra, k, b):
    n = max(1, n_orig - extra)
    s = scores(seed, n_orig, n)
    cand = stream_candidates(blocks_of(s, b), k, np)
    assert cand.enc_best.shape == cand.enc_score.shape == (n, min(k, n_orig))
    for e in range(n):
        assert set(cand.enc_best[e].tolist()) == set(np.argsort(-s[:, e])[:k].tolist())
        np.testing.assert_array_equal(cand.enc_score[e], s[cand.enc_best[e], e])
    assert cand.orig_best.shape == cand.orig_score.shape == (n_orig, min(k, n))
    for o in range(n_orig):
        assert set(cand.orig_best[o].tolist()) == set(np.argsort(-s[o])[:k].tolist())
        np.testing.assert_array_equal(cand.orig_score[o], s[o, cand.orig_best[o]])
    np.testing.assert_allclose(cand.std, s.std(axis=0), rtol=1e-4, atol=1e-6)


@settings(max_examples=30, deadline=None)
@given(seed=st.integers(0, 2**31 - 1), n=st.integers(1, 30), extra=st.integers(0, 8), b=st.integers(1, 40))
def test_a_complete_graph_gives_the_dense_optimum(seed, n, extra, b):
    s = scores(seed, n + extra, n)  # decoys: more originals than encodings
    dense = match_encodings(s)
    got = match_on_graph(stream_candidates(blocks_of(s, b), n + extra, np), n + extra)
    assert len(set(got.tolist())) == n
    cols = np.arange(n)
    assert s[got, cols].sum() == pytest.approx(s[dense, cols].sum(), rel=1e-6)


def test_a_graph_with_the_dense_optimum_among_its_edges_finds_it():
    """Each encoding's true original scores well above the rest: 40 candidates hold the optimum."""
    rng = np.random.default_rng(1)
    n = 300
    truth = rng.permutation(n)
    s = rng.standard_normal((n, n)).astype(np.float32)
    s[truth, np.arange(n)] += 4.0
    dense = match_encodings(s)
    assert 0.9 < np.mean(dense == truth) < 1 and np.mean(s.argmax(axis=0) == truth) < 0.9
    cand = stream_candidates(blocks_of(s, 64), 40, np)
    assert (cand.enc_best == dense[:, None]).any(axis=1).all()
    got = match_on_graph(cand, n)
    np.testing.assert_array_equal(got, dense)


def test_a_graph_with_no_full_matching_says_so():
    s = np.zeros((4, 3), np.float32)
    s[0] = 1.0  # every encoding's one candidate is original 0, and original 0 is every original's best-liked
    s[1:, 0] = 0.5  # ... encoding 0 the one candidate of originals 1-3
    assert match_on_graph(stream_candidates(blocks_of(s, 2), 1, np), 4) is None
    hub = Candidates(np.zeros((3, 1), np.int64), np.ones((3, 1)), np.zeros((3, 1), np.int64), np.ones((3, 1)),
                     np.ones(3))  # every list names encoding 0 or original 0: encodings 1 and 2 share one original
    assert match_on_graph(hub, 3) is None
    spread = hub._replace(orig_best=np.array([[0], [1], [2]]))  # originals 1 and 2 prefer encodings 1 and 2
    np.testing.assert_array_equal(match_on_graph(spread, 3), [0, 1, 2])


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_the_originals_side_completes_a_graph_with_hubs(seed):
    """Four originals score high against everything: with each encoding's 4 best originals alone the
    graph has no full matching; with each original's 4 best encodings added it has one."""
    rng = np.random.default_rng(seed)
    n = 40
    s = rng.standard_normal((n, n)).astype(np.float32)
    s[[3, 7, 11, 19]] += 10.0
    cand = stream_candidates(blocks_of(s, 16), 4, np)
    assert set(cand.enc_best.ravel().tolist()) == {3, 7, 11, 19}
    only_enc = cand._replace(orig_best=cand.orig_best[:, :0], orig_score=cand.orig_score[:, :0])
    assert match_on_graph(only_enc, n) is None
    got = match_on_graph(cand, n)
    assert got is not None and len(set(got.tolist())) == n
    edges = set(zip(np.repeat(np.arange(n), 4).tolist(), cand.enc_best.ravel().tolist(), strict=True)) | \
        set(zip(cand.orig_best.ravel().tolist(), np.repeat(np.arange(n), 4).tolist(), strict=True))
    assert all((e, int(o)) in edges for e, o in enumerate(got))


@settings(max_examples=30, deadline=None)
@given(seed=st.integers(0, 2**31 - 1), n=st.integers(1, 30), extra=st.integers(0, 8), b=st.integers(1, 40))
def test_streamed_margins_are_the_dense_margins(seed, n, extra, b):
    s = scores(seed, n + extra, n)
    m = np.random.default_rng(seed + 1).permutation(n + extra)[:n]
    want = match_margins(s.copy(), m, np)
    got = stream_margins(blocks_of(s, b), m, np)
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-4)


@settings(max_examples=30, deadline=None)
@given(seed=st.integers(0, 2**31 - 1), n=st.integers(2, 30), extra=st.integers(0, 8), b=st.integers(1, 40),
       k=st.integers(2, 10), cut=st.integers(1, 29))
def test_margins_of_a_graph_matching_are_the_dense_margins(seed, n, extra, b, k, cut):
    s = scores(seed, n + extra, n)
    cut = min(cut, n - 1)  # the candidates made for two ranges of encodings, then joined
    cand = join([stream_candidates(blocks_of(s[:, :cut], b), k, np),
                 stream_candidates(blocks_of(s[:, cut:], b), k, np)], k)
    whole = stream_candidates(blocks_of(s, b), k, np)
    for a, w in zip(cand, whole, strict=True):  # the same pairs; the std summed around other shifts
        np.testing.assert_allclose(np.sort(a, axis=-1), np.sort(w, axis=-1), rtol=1e-6, atol=1e-6)
    m = match_on_graph(cand, n + extra)
    if m is None:  # too few candidates for a full matching: a matching of favourites where they do not clash
        return
    np.testing.assert_allclose(graph_margins(cand, m), match_margins(s.copy(), m, np), rtol=1e-4, atol=1e-4)


def test_margins_refuse_a_pair_off_the_graph():
    s = np.eye(6, dtype=np.float32)
    s[5, :5] = [-1.0, -0.2, -0.3, -0.4, -0.5]  # encoding 0 and original 5 are on neither's list
    cand = stream_candidates(blocks_of(s, 4), 2, np)
    np.testing.assert_allclose(graph_margins(cand, np.arange(6)), match_margins(s.copy(), np.arange(6), np),
                               rtol=1e-6)
    assert not (cand.enc_best[0] == 5).any() and not (cand.orig_best[5] == 0).any()
    with pytest.raises(ValueError, match="must be a candidate pair"):
        graph_margins(cand, np.array([5, 1, 2, 3, 4, 0]))
    with pytest.raises(ValueError, match="at least 2 candidates"):
        graph_margins(stream_candidates(blocks_of(s, 4), 1, np), np.arange(6))


def test_streamed_margins_of_a_constant_score_and_of_one_original():
    np.testing.assert_array_equal(stream_margins(blocks_of(np.ones((5, 3), np.float32), 2), np.arange(3), np), 0.0)
    assert np.all(np.isposinf(stream_margins(blocks_of(np.ones((1, 1), np.float32), 1), np.array([0]), np)))


def test_rematch_goes_to_the_graph_from_its_threshold_and_falls_back(monkeypatch):
    patch, rows, _truth, _pi, _ = synthetic(3)
    pi = np.random.default_rng(0).permutation(patch.shape[1])  # a wrong pi: many favourites clash
    score = known_perm_scores(patch, rows, pi, np)
    assert len(set(score.argmax(axis=0).tolist())) < 0.8 * len(rows)
    dense = match_encodings(score)
    solves = Counter()
    np.testing.assert_array_equal(rematch(patch, rows, pi, np, graph_min_n=len(rows) + 1, solves=solves), dense)
    np.testing.assert_array_equal(rematch(patch, rows, pi, np, graph_min_n=len(rows), solves=solves), dense)
    assert solves == {"dense": 1, "graph": 1}
    monkeypatch.setattr(candidate_graph, "GRAPH_K", 1)  # one each: the clashing favourites leave no full matching
    np.testing.assert_array_equal(rematch(patch, rows, pi, np, graph_min_n=0, solves=solves), dense)
    assert solves["dense after the graph"] == 1


@pytest.mark.parametrize("seed", [0, 1])
def test_boosting_on_the_graph_ends_where_dense_boosting_does(seed):
    patch, rows, _truth, pi, start = synthetic(seed)
    dense = boost(patch, rows, start, np, max_rounds=12, seed=0, graph_min_n=10**9)
    solves = Counter()
    graph = boost(patch, rows, start, np, max_rounds=12, seed=0, graph_min_n=0, solves=solves)
    assert solves["graph"] >= 3 and solves["dense"] == 0
    np.testing.assert_array_equal(graph.matching, dense.matching)
    np.testing.assert_array_equal(graph.pi, pi)
    assert median_margin(patch, rows, graph.pi, graph.matching, np) == pytest.approx(
        float(np.median(match_margins(known_perm_scores(patch, rows, graph.pi, np), graph.matching, np))), rel=1e-4)


def test_the_streamed_functions_on_the_strict_namespace_match_numpy():
    patch, rows, _truth, pi, start = synthetic(2)
    blocks = lambda xp, p, r: known_perm_blocks(p, r, pi, xp, chunk=37)  # noqa: E731
    host = stream_candidates(blocks(np, patch, rows), 7, np)
    dev = stream_candidates(blocks(sxp, sxp.asarray(patch), sxp.asarray(rows)), 7, sxp)
    for d, h in zip(dev, host, strict=True):
        np.testing.assert_array_equal(d, h)
    np.testing.assert_array_equal(stream_margins(blocks(sxp, sxp.asarray(patch), sxp.asarray(rows)), start, sxp),
                                  stream_margins(blocks(np, patch, rows), start, np))
    np.testing.assert_array_equal(rematch(sxp.asarray(patch), sxp.asarray(rows), pi, sxp, graph_min_n=0),
                                  rematch(patch, rows, pi, np, graph_min_n=0))
