"""Matchings at large N without a dense N x N matrix: each encoding's best candidates, then a sparse solve.

A matching stage scores every (original, encoding) pair and takes the best one-to-one assignment.
At the public challenge's N = 14,643 the dense score is 0.86 GB of float32 and SciPy's dense solver
(:func:`empirical.assignment.match_encodings`) copies it to float64 and takes 20 to 90 s per solve;
at N = 200,000 the matrix alone would be 160 GB. Here the scores arrive in blocks of originals
(``(start, (b, N) scores)``, never the whole matrix) and only each encoding's ``k`` best originals
are kept; the assignment is then solved on that candidate graph with SciPy's
``min_weight_full_bipartite_matching`` (a sparse shortest-augmenting-path method), in well under a
second at that N.

The graph's solution is the best matching among candidate pairs, which is the dense optimum
whenever the dense optimum uses only candidate pairs; it need not be otherwise, and the graph may
admit no matching of every encoding at all (then :func:`match_on_graph` says so and the caller
solves densely). How often the two agree at the attack's sizes is measured in
``benchmarks/boost_solvers.py``. The matching margins of :func:`empirical.assignment.match_margins`
come from the same blocks, exactly and without the matrix: from the candidates themselves for a
matching made on the graph (:func:`graph_margins`), or from a second pass (:func:`stream_margins`).

Which way a stage solves is chosen by the number of encodings (:func:`use_graph`): below
:data:`GRAPH_MIN_N` the dense solve takes seconds and is exact, so it is kept.
"""
from __future__ import annotations

from collections.abc import Iterable
from typing import NamedTuple

import numpy as np

from .assignment import STD_EPS
from .backend import Array, Namespace, to_numpy

ScoreBlocks = Iterable[tuple[int, Array]]  # (start, (b, N) scores of originals start .. start + b - 1)

GRAPH_MIN_N = 8192  # encodings from which the matchings run on the candidate graph (benchmarks/boost_solvers.py)
GRAPH_K = 50  # candidate originals kept per encoding


def use_graph(n_enc: int, graph_min_n: int | None = None) -> bool:
    """Whether a matching of ``n_enc`` encodings runs on the candidate graph (``graph_min_n`` default
    :data:`GRAPH_MIN_N`, read when called)."""
    return n_enc >= (GRAPH_MIN_N if graph_min_n is None else graph_min_n)


class Candidates(NamedTuple):
    index: np.ndarray  # (N, k) host int64: each encoding's k highest-scoring originals (no order)
    score: np.ndarray  # (N, k) host float64: their scores
    std: np.ndarray  # (N,) host float64: the standard deviation of each encoding's scores over every original


class _Moments:
    """Per-encoding standard deviation of scores arriving a block of originals at a time, in float64
    around the first block's column means (no cancellation from a large common offset)."""

    def __init__(self, xp: Namespace):
        self.xp = xp
        self.shift = self.s1 = self.s2 = None
        self.count = 0

    def add(self, b: Array) -> None:  # b (rows, N) float64
        if self.shift is None:
            self.shift = b.mean(axis=0)
            self.s1, self.s2 = (self.xp.zeros(b.shape[1], dtype=self.xp.float64) for _ in range(2))
        d = b - self.shift
        self.s1 += d.sum(axis=0)
        self.s2 += (d * d).sum(axis=0)
        self.count += b.shape[0]

    def std(self) -> Array:
        mean = self.s1 / self.count
        return self.xp.sqrt(self.xp.maximum(self.s2 / self.count - mean * mean, 0.0))


def stream_candidates(blocks: ScoreBlocks, k: int, xp: Namespace) -> Candidates:
    """Each encoding's ``k`` best originals over score blocks of originals (at most ``k`` + one block held)."""
    best_v = best_i = None  # (N, <=k) running best scores and their originals
    moments = _Moments(xp)
    for start, blk in blocks:
        n_enc, b = blk.shape[1], blk.shape[0]
        moments.add(blk.astype(xp.float64))
        v = blk.T if best_v is None else xp.concatenate([best_v, blk.T], axis=1)  # (N, kept + b)
        i = xp.broadcast_to(xp.arange(start, start + b), (n_enc, b))
        i = i if best_i is None else xp.concatenate([best_i, i], axis=1)
        if v.shape[1] > k:
            keep = xp.argpartition(-v, k - 1, axis=1)[:, :k]  # (N, k)
            v, i = xp.take_along_axis(v, keep, axis=1), xp.take_along_axis(i, keep, axis=1)
        best_v, best_i = v, i
    return Candidates(to_numpy(best_i).astype(np.int64), to_numpy(best_v).astype(np.float64),
                      to_numpy(moments.std()))


def join(parts: list[Candidates]) -> Candidates:
    """Candidates of consecutive ranges of encodings, one after another."""
    return Candidates(*(np.concatenate(a) for a in zip(*parts, strict=True)))


def match_on_graph(cand: Candidates, n_orig: int) -> np.ndarray | None:
    """Best one-to-one matching of encodings to originals among candidate pairs: ``m`` (N,), or None.

    None when the candidate graph admits no matching that gives every encoding an original.
    """
    from scipy.sparse import csr_array
    from scipy.sparse.csgraph import min_weight_full_bipartite_matching

    n_enc, k = cand.index.shape
    # Every full matching uses exactly N edges, so a common shift of the weights changes no optimum;
    # it keeps them all positive (a zero would read as a missing edge).
    w = cand.score - cand.score.min() + 1.0
    graph = csr_array((w.ravel(), cand.index.ravel(), np.arange(0, n_enc * k + 1, k)), shape=(n_enc, n_orig))
    try:
        rows, cols = min_weight_full_bipartite_matching(graph, maximize=True)
    except ValueError:  # no full matching on this graph
        return None
    out = np.empty(n_enc, dtype=np.int64)
    out[rows] = cols
    return out


def graph_margins(cand: Candidates, matching: np.ndarray) -> np.ndarray:
    """:func:`empirical.assignment.match_margins` of a ``matching`` (N,) whose pairs are all candidates: host (N,).

    The best other original of an encoding is then its best other candidate, since every original
    outside the candidates scores no higher than those inside.
    """
    mine = cand.index == matching[:, None]  # (N, k)
    if not mine.any(axis=1).all():
        raise ValueError("every matched original must be among its encoding's candidates")
    chosen = np.where(mine, cand.score, -np.inf).max(axis=1)
    other = np.where(mine, -np.inf, cand.score).max(axis=1)
    return (chosen - other) / (cand.std + STD_EPS)


def stream_margins(blocks: ScoreBlocks, matching: np.ndarray, xp: Namespace) -> np.ndarray:
    """:func:`empirical.assignment.match_margins` of ``matching`` (N,) over score blocks: host (N,).

    The margin is the matched score minus the best other original's, over the encoding's standard
    deviation (plus :data:`~empirical.assignment.STD_EPS`); the mean of the z-score cancels.
    """
    n_enc = len(matching)
    m = xp.asarray(matching)
    cols = xp.arange(n_enc)
    chosen = xp.zeros(n_enc, dtype=xp.float64)
    other = xp.full(n_enc, -xp.inf, dtype=xp.float64)
    moments = _Moments(xp)
    for start, blk in blocks:
        b = blk.astype(xp.float64)  # (b, N)
        moments.add(b)
        here = (m >= start) & (m < start + b.shape[0])  # encodings whose matched original is in this block
        r = xp.where(here, m - start, 0)
        chosen = xp.where(here, b[r, cols], chosen)
        b[r[here], cols[here]] = -xp.inf
        other = xp.maximum(other, b.max(axis=0))
    return to_numpy((chosen - other) / (moments.std() + STD_EPS))
