"""Exact one-to-one assignments (minimum-cost bipartite matching) used by every matching stage.

All functions maximise a score, except :func:`min_cost_assignment`, which minimises the cost that
SciPy's solver takes as it is (no copy). They are exact: where the row-wise best choices already form a
one-to-one assignment, that assignment is optimal and no solver runs; otherwise SciPy's
``linear_sum_assignment`` (a shortest augmenting path method) solves the problem.
"""
from __future__ import annotations

import numpy as np
from scipy.optimize import linear_sum_assignment

from .backend import Array, Namespace, to_numpy

STD_EPS = 1e-12  # added to a column's standard deviation so a constant column does not divide by zero


def _solved(cost: np.ndarray) -> np.ndarray:
    """SciPy's minimum-cost assignment of ``cost`` (R, C): ``col`` (R,). A C-contiguous float64 ``cost``
    is solved without a copy (at N = 14,643 a copy is 1.7 GB)."""
    rows, cols = linear_sum_assignment(cost)
    out = np.empty(cost.shape[0], dtype=np.int64)
    out[rows] = cols
    return out


def _check_shape(a: np.ndarray) -> None:
    if a.shape[0] > a.shape[1]:
        raise ValueError(f"need no more rows than columns, got {a.shape}")


def _distinct(best: np.ndarray) -> bool:
    """Whether every row's favourite column is its own: then that assignment is optimal as it stands."""
    return len(np.unique(best)) == len(best)


def min_cost_assignment(cost: np.ndarray) -> np.ndarray:
    """Minimum-cost assignment of rows to columns of a host ``cost`` (R, C) with R <= C.

    Returns ``col`` (R,): row i is assigned column ``col[i]``, all distinct. Given a C-contiguous
    float64 array, SciPy's solver works on it without a copy.
    """
    _check_shape(cost)
    best = cost.argmin(axis=1)
    return best if _distinct(best) else _solved(cost)


def best_assignment(score: Array) -> np.ndarray:
    """Maximum-score assignment of rows to columns of ``score`` (R, C) with R <= C.

    Returns ``col`` (R,): row i is assigned column ``col[i]``, all distinct. When the favourites
    clash, the solver is given ``-score`` as one C-contiguous float64 array, made in one allocation
    (what SciPy's ``maximize=True`` solves, without its extra copies of a transposed or float32 score).
    """
    s = to_numpy(score)
    _check_shape(s)
    best = s.argmax(axis=1)
    if _distinct(best):
        return best
    cost = np.empty(s.shape, dtype=np.float64)
    np.negative(s, out=cost, casting="safe")
    return _solved(cost)


def assignment_value(score: Array) -> float:
    """Value of the best assignment of ``score`` (R, C), R <= C."""
    s = to_numpy(score)
    col = best_assignment(s)
    return float(s[np.arange(len(col)), col].sum())


def batched_assignments(scores: Array) -> np.ndarray:
    """Best assignment for each square matrix of ``scores`` (B, P, P) -> (B, P) columns.

    The argmax test runs on the array's own device; only the batches whose favourites collide
    are copied to the host and solved exactly.
    """
    best = scores.argmax(axis=2)  # (B, P)
    srt = best.copy()
    srt.sort(axis=1)
    clash = to_numpy((srt[:, 1:] == srt[:, :-1]).any(axis=1))
    out = to_numpy(best).astype(np.int64)
    for b in np.flatnonzero(clash):
        out[b] = best_assignment(scores[b])
    return out


def match_encodings(score: Array) -> np.ndarray:
    """Match every encoding to a distinct original, maximising the total score.

    ``score`` is (N_o, N) with originals as rows, N_o >= N (decoys allowed). Returns ``m`` (N,):
    encoding k is matched to original ``m[k]``.
    """
    return best_assignment(to_numpy(score).T)


def match_margins(score: Array, matching: np.ndarray, xp: Namespace) -> np.ndarray:
    """For each encoding, how far its matched original stands above the runner-up (N,).

    Scores are z-scored per encoding (column), so margins of different score matrices compare:
    a sharp similarity gives large margins, an uninformative one margins near zero. The margins
    are copied to the host.
    """
    s = score - score.mean(axis=0, keepdims=True)  # one (N_o, N) copy, then worked on in place
    s /= s.std(axis=0, keepdims=True) + STD_EPS
    cols = xp.arange(s.shape[1])
    chosen = s[xp.asarray(matching), cols]
    s[xp.asarray(matching), cols] = -xp.inf
    return to_numpy(chosen - s.max(axis=0))
