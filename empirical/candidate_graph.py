"""Matchings at large N without a dense N x N matrix: the best candidates of both sides, then a sparse solve.

A matching stage scores every (original, encoding) pair and takes the best one-to-one assignment.
At the public challenge's N = 14,643 the dense score is 0.86 GB of float32 and SciPy's dense solver
(:func:`empirical.assignment.match_encodings`) copies it to float64 and takes 20 to 90 s per solve;
at N = 200,000 the matrix alone would be 160 GB. Here the scores arrive in blocks of originals
(``(start, (b, N) scores)``, never the whole matrix) and only the candidate pairs are kept: each
encoding's ``k`` best originals and each original's ``k`` best encodings. The assignment is then
solved on that sparse graph with SciPy's ``min_weight_full_bipartite_matching`` (a sparse
shortest-augmenting-path method), in seconds at that N.

Both sides are needed. p-sim's scores have hubs: originals that score high against many
encodings fill their lists, so with each encoding's 50 best originals alone the graph of a
16,000-image game admitted no matching of every encoding in any of boosting's six solves; adding
each original's best encodings gives every original edges too (``benchmarks/boost_solvers.py``).

The graph's solution is the best matching among candidate pairs, which is the dense optimum
whenever the dense optimum uses only candidate pairs; it need not be otherwise, and the graph may
still admit no full matching (then :func:`match_on_graph` says so and the caller solves densely).
The matching margins of :func:`empirical.assignment.match_margins` come from the same blocks,
exactly and without the matrix: from the candidates for a matching made on the graph
(:func:`graph_margins`), or from a second pass (:func:`stream_margins`).

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
GRAPH_K = 200  # candidates kept per encoding and per original


def use_graph(n_enc: int, graph_min_n: int | None = None) -> bool:
    """Whether a matching of ``n_enc`` encodings runs on the candidate graph (``graph_min_n`` default
    :data:`GRAPH_MIN_N`, read when called)."""
    return n_enc >= (GRAPH_MIN_N if graph_min_n is None else graph_min_n)


class Candidates(NamedTuple):
    """The candidate pairs of a score matrix (N_o, N), all host arrays; no list is in order."""

    enc_best: np.ndarray  # (N, k) int64: each encoding's k highest-scoring originals
    enc_score: np.ndarray  # (N, k) float64: their scores
    orig_best: np.ndarray  # (N_o, k') int64: each original's k' highest-scoring encodings
    orig_score: np.ndarray  # (N_o, k') float64: their scores
    std: np.ndarray  # (N,) float64: the standard deviation of each encoding's scores over every original


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


def _top(v: Array, i: Array, k: int, xp: Namespace) -> tuple[Array, Array]:
    """The ``k`` largest of each row of ``v`` (n, m), with the same entries of ``i``; all of them if m <= k."""
    if v.shape[1] <= k:
        return v, i
    keep = xp.argpartition(-v, k - 1, axis=1)[:, :k]  # (n, k)
    return xp.take_along_axis(v, keep, axis=1), xp.take_along_axis(i, keep, axis=1)


def stream_candidates(blocks: ScoreBlocks, k: int, xp: Namespace) -> Candidates:
    """Each encoding's and each original's ``k`` best partners over score blocks of originals.

    Holds at most one block and the ``k`` running best per encoding at a time.
    """
    best_v = best_i = None  # (N, <=k) each encoding's running best scores and their originals
    orig_i, orig_v = [], []
    moments = _Moments(xp)
    for start, blk in blocks:
        n_enc, b = blk.shape[1], blk.shape[0]
        moments.add(blk.astype(xp.float64))
        v, i = _top(blk, xp.broadcast_to(xp.arange(n_enc), blk.shape), k, xp)  # (b, k) this block's originals'
        orig_v.append(to_numpy(v).astype(np.float64))
        orig_i.append(to_numpy(i).astype(np.int64))
        v = blk.T if best_v is None else xp.concatenate([best_v, blk.T], axis=1)  # (N, kept + b)
        i = xp.broadcast_to(xp.arange(start, start + b), (n_enc, b))
        i = i if best_i is None else xp.concatenate([best_i, i], axis=1)
        best_v, best_i = _top(v, i, k, xp)
    return Candidates(to_numpy(best_i).astype(np.int64), to_numpy(best_v).astype(np.float64),
                      np.concatenate(orig_i), np.concatenate(orig_v), to_numpy(moments.std()))


def join(parts: list[Candidates], k: int) -> Candidates:
    """Candidates of consecutive ranges of encodings (each against every original), one after another.

    Each original keeps its ``k`` best encodings over all the ranges.
    """
    offsets = np.cumsum([0] + [len(p.enc_best) for p in parts[:-1]])
    ob = np.concatenate([p.orig_best + o for p, o in zip(parts, offsets, strict=True)], axis=1)
    ov = np.concatenate([p.orig_score for p in parts], axis=1)
    ov, ob = _top(ov, ob, k, np)
    return Candidates(np.concatenate([p.enc_best for p in parts]), np.concatenate([p.enc_score for p in parts]),
                      ob, ov, np.concatenate([p.std for p in parts]))


def _edges(cand: Candidates) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Every candidate pair once: ``(encoding, original, score)``, sorted by encoding then original."""
    n_enc, k = cand.enc_best.shape
    n_orig, k2 = cand.orig_best.shape
    enc = np.concatenate([np.repeat(np.arange(n_enc), k), cand.orig_best.ravel()])
    orig = np.concatenate([cand.enc_best.ravel(), np.repeat(np.arange(n_orig), k2)])
    score = np.concatenate([cand.enc_score.ravel(), cand.orig_score.ravel()])
    _, first = np.unique(enc * n_orig + orig, return_index=True)  # a pair on both sides is the same score
    return enc[first], orig[first], score[first]


def match_on_graph(cand: Candidates, n_orig: int) -> np.ndarray | None:
    """Best one-to-one matching of encodings to originals among candidate pairs: ``m`` (N,), or None.

    None when the candidate graph admits no matching that gives every encoding an original.
    """
    from scipy.sparse import csr_array
    from scipy.sparse.csgraph import min_weight_full_bipartite_matching

    n_enc = len(cand.enc_best)
    enc, orig, score = _edges(cand)
    # Every full matching uses exactly N edges, so a common shift of the weights changes no optimum;
    # it keeps them all positive (a zero would read as a missing edge).
    graph = csr_array((score - score.min() + 1.0, (enc, orig)), shape=(n_enc, n_orig))
    try:
        rows, cols = min_weight_full_bipartite_matching(graph, maximize=True)
    except ValueError:  # no full matching on this graph
        return None
    out = np.empty(n_enc, dtype=np.int64)
    out[rows] = cols
    return out


def graph_margins(cand: Candidates, matching: np.ndarray) -> np.ndarray:
    """:func:`empirical.assignment.match_margins` of a ``matching`` (N,) whose pairs are all candidates: host (N,).

    An encoding's best other original is among its own candidates, since every original outside
    them scores no higher than those inside (so each encoding needs two of them, unless there is
    one original in all); the matched pair's score is on either side's list.
    """
    if cand.enc_best.shape[1] < 2 and len(cand.orig_best) > 1:
        raise ValueError("the margins need at least 2 candidates per encoding")
    mine = cand.enc_best == matching[:, None]  # (N, k)
    on_enc = mine.any(axis=1)
    chosen = np.where(mine, cand.enc_score, -np.inf).max(axis=1)
    rest = np.flatnonzero(~on_enc)
    if len(rest):
        hit = cand.orig_best[matching[rest]] == rest[:, None]  # (r, k') is encoding e on its original's list?
        if not hit.any(axis=1).all():
            raise ValueError("every matched pair must be a candidate pair")
        chosen[rest] = np.where(hit, cand.orig_score[matching[rest]], -np.inf).max(axis=1)
    other = np.where(mine, -np.inf, cand.enc_score).max(axis=1)
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
