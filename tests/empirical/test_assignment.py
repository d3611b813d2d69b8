"""Exact assignments: against networkx's minimum-weight full matching and brute force."""
import itertools

import networkx as nx
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from networkx.algorithms.bipartite import minimum_weight_full_matching

import empirical.assignment as asg
from empirical.assignment import assignment_value, batched_assignments, best_assignment, match_encodings


def networkx_value(score: np.ndarray) -> float:
    """Maximum total score of an assignment of every row to a distinct column, via networkx."""
    r, c = score.shape
    g = nx.Graph()
    g.add_nodes_from((("r", i) for i in range(r)), bipartite=0)
    g.add_nodes_from((("c", j) for j in range(c)), bipartite=1)
    for i in range(r):
        for j in range(c):
            g.add_edge(("r", i), ("c", j), weight=-float(score[i, j]))  # minimise the negated score
    m = minimum_weight_full_matching(g, top_nodes=[("r", i) for i in range(r)])
    cols = [m[("r", i)][1] for i in range(r)]
    assert len(set(cols)) == r
    return float(score[np.arange(r), cols].sum())


def brute_value(score: np.ndarray) -> float:
    r, c = score.shape
    return max(float(score[np.arange(r), list(p)].sum()) for p in itertools.permutations(range(c), r))


@st.composite
def score_matrices(draw, square=False, max_side=5):
    r = draw(st.integers(1, max_side))
    c = r if square else draw(st.integers(r, max_side))
    seed = draw(st.integers(0, 2**31 - 1))
    rng = np.random.default_rng(seed)
    if draw(st.booleans()):  # small integers: many ties
        return rng.integers(-2, 3, (r, c)).astype(np.float64)
    return rng.standard_normal((r, c))


def assert_valid(col, r, c):
    col = np.asarray(col)
    assert col.shape == (r,) and np.issubdtype(col.dtype, np.integer)
    assert len(set(col.tolist())) == r and col.min() >= 0 and col.max() < c


@settings(max_examples=30, deadline=None)
@given(s=score_matrices())
def test_best_assignment_is_optimal(s):
    col = best_assignment(s)
    assert_valid(col, *s.shape)
    got = float(s[np.arange(len(col)), col].sum())
    want = networkx_value(s)
    assert got == pytest.approx(want, abs=1e-9)
    assert assignment_value(s) == pytest.approx(want, abs=1e-9)
    assert brute_value(s) == pytest.approx(want, abs=1e-9)  # the oracle itself, checked by brute force


@settings(max_examples=20, deadline=None)
@given(s=score_matrices(max_side=8))
def test_best_assignment_matches_networkx_on_larger_instances(s):
    col = best_assignment(s)
    assert_valid(col, *s.shape)
    assert float(s[np.arange(len(col)), col].sum()) == pytest.approx(networkx_value(s), abs=1e-9)


def test_more_rows_than_columns_is_refused():
    with pytest.raises(ValueError, match="no more rows than columns"):
        best_assignment(np.zeros((3, 2)))


def test_a_clash_is_resolved_optimally():
    # both rows prefer column 0; the best total gives it to row 1
    s = np.array([[5.0, 4.0, 0.0], [6.0, 1.0, 0.0]])
    np.testing.assert_array_equal(best_assignment(s), [1, 0])
    assert assignment_value(s) == 10.0


def refuse_solver(*args, **kwargs):
    raise AssertionError("the solver ran although the row favourites were distinct")


@settings(max_examples=25, deadline=None)
@given(seed=st.integers(0, 2**31 - 1), r=st.integers(1, 7), extra=st.integers(0, 3), ties=st.booleans())
def test_row_argmax_permutation_shortcut_is_optimal(seed, r, extra, ties):
    """When every row's favourite is a distinct column, that is the answer, and no solver runs."""
    rng = np.random.default_rng(seed)
    c = r + extra
    s = rng.integers(-3, 4, (r, c)).astype(np.float64) if ties else rng.standard_normal((r, c))
    sigma = rng.permutation(c)[:r]
    s[np.arange(r), sigma] = s.max(axis=1) + (1.0 if ties else rng.uniform(0.01, 1.0, r))
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(asg, "linear_sum_assignment", refuse_solver)
        col = best_assignment(s)
    np.testing.assert_array_equal(col, sigma)
    assert float(s[np.arange(r), col].sum()) == pytest.approx(networkx_value(s), abs=1e-9)


@settings(max_examples=20, deadline=None)
@given(seed=st.integers(0, 2**31 - 1), b=st.integers(1, 6), p=st.integers(1, 6), ties=st.booleans())
def test_batched_assignments_equal_one_by_one(seed, b, p, ties):
    rng = np.random.default_rng(seed)
    scores = rng.integers(-2, 3, (b, p, p)).astype(np.float32) if ties else rng.standard_normal((b, p, p))
    if b > 1:  # one matrix whose favourites are already distinct, taking the shortcut
        scores[0][np.arange(p), rng.permutation(p)] += 10
    out = batched_assignments(scores)
    assert out.shape == (b, p) and out.dtype == np.int64
    for k in range(b):
        assert_valid(out[k], p, p)
        got = float(scores[k][np.arange(p), out[k]].sum())
        assert got == pytest.approx(assignment_value(scores[k]), abs=1e-5)
        assert got == pytest.approx(networkx_value(scores[k].astype(np.float64)), abs=1e-5)
        if not ties:  # continuous scores: the optimum is unique, so the columns are too
            np.testing.assert_array_equal(out[k], best_assignment(scores[k]))


@settings(max_examples=25, deadline=None)
@given(seed=st.integers(0, 2**31 - 1), n=st.integers(1, 6), decoys=st.integers(0, 3), ties=st.booleans())
def test_match_encodings_is_a_one_to_one_optimum(seed, n, decoys, ties):
    rng = np.random.default_rng(seed)
    n_o = n + decoys
    score = rng.integers(-2, 3, (n_o, n)).astype(np.float64) if ties else rng.standard_normal((n_o, n))
    m = match_encodings(score)
    assert m.shape == (n,)
    assert len(set(m.tolist())) == n and m.min() >= 0 and m.max() < n_o  # distinct originals
    got = float(score[m, np.arange(n)].sum())
    assert got == pytest.approx(networkx_value(score.T), abs=1e-9)


def test_match_encodings_finds_a_planted_matching_among_decoys():
    rng = np.random.default_rng(0)
    n, n_o = 40, 55
    truth = rng.permutation(n_o)[:n]
    score = rng.standard_normal((n_o, n))
    score[truth, np.arange(n)] += 8.0
    np.testing.assert_array_equal(match_encodings(score), truth)


@settings(max_examples=40, deadline=None)
@given(seed=st.integers(0, 2**31 - 1), r=st.integers(1, 12), extra=st.integers(0, 4), ties=st.booleans(),
       layout=st.sampled_from(["c64", "t64", "c32", "t32"]))
def test_best_assignment_is_scipys_maximum_without_its_copies(seed, r, extra, ties, layout):
    """The negated float64 cost handed to the solver gives exactly SciPy's ``maximize=True`` answer, ties
    included, for C-ordered or transposed, float64 or float32 scores."""
    from scipy.optimize import linear_sum_assignment

    rng = np.random.default_rng(seed)
    shape = (r, r + extra) if layout[0] == "c" else (r + extra, r)
    a = rng.integers(0, 3, shape).astype(float) if ties else rng.standard_normal(shape)
    a = a.astype(np.float32 if layout.endswith("32") else np.float64)
    s = a if layout[0] == "c" else a.T  # (r, r + extra) either way
    rows, cols = linear_sum_assignment(s, maximize=True)
    want = np.empty(r, dtype=np.int64)
    want[rows] = cols
    got = best_assignment(s)
    assert float(s[np.arange(r), got].sum()) == float(s[np.arange(r), want].sum())
    if len(np.unique(s.argmax(axis=1))) < r:  # the solver ran: the very same assignment
        np.testing.assert_array_equal(got, want)


def test_min_cost_assignment_works_on_the_array_it_is_given():
    cost = np.array([[1.0, 2.0, 0.5], [0.2, 3.0, 0.1]])
    np.testing.assert_array_equal(asg.min_cost_assignment(cost), [2, 0])
    np.testing.assert_array_equal(cost, [[1.0, 2.0, 0.5], [0.2, 3.0, 0.1]])  # unchanged
    with pytest.raises(ValueError):
        asg.min_cost_assignment(cost.T)
