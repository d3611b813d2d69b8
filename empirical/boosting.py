"""From a weak matching to a strong one (paper §2.2.2-§2.2.3).

Once every encoding's rows are in the common reference order, one global permutation ``pi``
maps an original's patch position j to reference slot ``pi[j]`` for every image. Given a
matching, ``pi`` is the best assignment of positions to slots under the p-sim scores summed
over the matched pairs: right pairs all vote for the true slot, wrong pairs spread their votes.
With ``pi`` known, the image similarity needs no assignment any more: it is the sum of p-sim
over corresponding patches, one dense product over all pairs. Re-matching with it and
re-estimating ``pi`` is iterated until the matching stops changing; the re-estimation is
cross-fitted over two halves of the positions so that a wrong ``pi`` cannot vote for itself.

From :data:`~empirical.candidate_graph.GRAPH_MIN_N` encodings on, each re-matching keeps only
each encoding's :data:`~empirical.candidate_graph.GRAPH_K` best originals and each original's
``GRAPH_K`` best encodings, scored a block of originals at a time, and solves the assignment on
that sparse candidate graph (:mod:`empirical.candidate_graph`); below it, on the dense score
matrix, exactly.
``benchmarks/boost_solvers.py`` measures both at N = 16,000.
"""
from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterator
from typing import NamedTuple

import numpy as np

from . import candidate_graph
from .assignment import best_assignment, match_encodings
from .backend import Array, Namespace
from .candidate_graph import match_on_graph, stream_candidates, stream_margins, use_graph

BOOST_STREAM = 0xB005  # tag mixed into the seed: the position splits draw independently of other stages
SCORE_BLOCK = 1024  # originals scored at a time when the scores are streamed


class BoostResult(NamedTuple):
    matching: np.ndarray  # (N,) host: encoding k -> original matching[k], stable or after max_rounds
    pi: np.ndarray  # (P,) host: original position j -> aligned slot pi[j]
    rounds: int  # cross-fitted rounds run


def estimate_global_perm(patch_emb: Array, row_emb: Array, matching: np.ndarray, xp: Namespace) -> np.ndarray:
    """``pi`` (P,): position j of an original corresponds to aligned slot ``pi[j]``.

    ``patch_emb`` (N_o, P, E), ``row_emb`` (N, P, E) aligned, ``matching`` (N,) encoding -> original.
    """
    votes = xp.einsum("kje,kqe->jq", patch_emb[xp.asarray(matching)], row_emb)  # (P, P)
    return best_assignment(votes)


def known_perm_blocks(patch_emb: Array, row_emb: Array, pi: np.ndarray, xp: Namespace,
                      chunk: int = SCORE_BLOCK) -> Iterator[tuple[int, Array]]:
    """:func:`known_perm_scores` a block of originals at a time: ``(start, (b, N) scores)``."""
    b = row_emb[:, xp.asarray(pi), :].reshape(row_emb.shape[0], -1)  # (N, P*E), slots in position order
    a = patch_emb.reshape(patch_emb.shape[0], -1)  # (N_o, P*E)
    for s in range(0, a.shape[0], chunk):
        yield s, a[s:s + chunk] @ b.T


def known_perm_scores(patch_emb: Array, row_emb: Array, pi: np.ndarray, xp: Namespace, chunk: int = 4096) -> Array:
    """Image similarity with ``pi`` known: sum over positions of p-sim, for all pairs (N_o, N)."""
    out = xp.empty((patch_emb.shape[0], row_emb.shape[0]), dtype=xp.float32)
    for s, blk in known_perm_blocks(patch_emb, row_emb, pi, xp, chunk):
        out[s:s + len(blk)] = blk
    return out


def rematch(patch_emb: Array, row_emb: Array, pi: np.ndarray, xp: Namespace, *, graph_min_n: int | None = None,
            solves: Counter | None = None) -> np.ndarray:
    """Best matching (N,) under the scores of ``pi``: densely below ``graph_min_n`` encodings, else on the graph.

    On the candidate graph (:func:`~empirical.candidate_graph.use_graph`): each encoding's
    :data:`~empirical.candidate_graph.GRAPH_K` best originals and each original's ``GRAPH_K`` best
    encodings; when that graph admits no full matching, densely after all. ``solves`` counts which
    way each call went (``"dense"``, ``"graph"``, ``"dense after the graph"``).
    """
    how = "dense"
    if use_graph(row_emb.shape[0], graph_min_n):
        cand = stream_candidates(known_perm_blocks(patch_emb, row_emb, pi, xp), candidate_graph.GRAPH_K, xp)
        m = match_on_graph(cand, patch_emb.shape[0])
        how = "dense after the graph" if m is None else "graph"
    if how != "graph":
        m = match_encodings(known_perm_scores(patch_emb, row_emb, pi, xp))
    if solves is not None:
        solves[how] += 1
    return m


def median_margin(patch_emb: Array, row_emb: Array, pi: np.ndarray, matching: np.ndarray, xp: Namespace) -> float:
    """Median margin (:func:`empirical.assignment.match_margins`) of ``matching`` under the scores of ``pi``.

    The attacker's own measure of a matching's confidence: above zero, most encodings are matched to
    the original that scores them highest.
    """
    return float(np.median(stream_margins(known_perm_blocks(patch_emb, row_emb, pi, xp), matching, xp)))


def _crossfit_round(patch_emb: Array, row_emb: Array, pi: np.ndarray, rng: np.random.Generator,
                    xp: Namespace, **solver) -> np.ndarray:
    """One cross-fitted update of ``pi``.

    The positions are split in two halves. A matching computed from one half's positions only
    votes for the other half's slots, and then the other way round. Votes from the same positions
    that chose the matching would favour the current ``pi`` (the matching picked pairs that agree
    with it), which can lock a wrong permutation in place; votes from the other half carry no
    such bias.
    """
    P = len(pi)
    split = rng.permutation(P)
    halves = (split[: P // 2], split[P // 2:])
    for used, voted in (halves, halves[::-1]):
        m = rematch(patch_emb[:, xp.asarray(used)], row_emb, pi[used], xp, **solver)
        votes = xp.einsum("kje,kqe->jq", patch_emb[xp.asarray(m)][:, xp.asarray(voted)], row_emb)  # (|voted|, P)
        free = np.setdiff1d(np.arange(P), pi[used])
        pi = pi.copy()
        pi[voted] = free[best_assignment(votes[:, xp.asarray(free)])]
    return pi


def boost(patch_emb: Array, row_emb: Array, matching: np.ndarray, xp: Namespace, max_rounds: int = 12,
          seed: int = 0, on_round: Callable[[int, np.ndarray, np.ndarray], object] | None = None,
          graph_min_n: int | None = None, solves: Counter | None = None) -> BoostResult:
    """Alternate global permutation and re-matching until the matching is stable.

    The first ``pi`` comes from the given matching; each round then refines it by cross-fitting
    (:func:`_crossfit_round`) and re-matches all images with it. Stops when two consecutive rounds
    give the same matching. ``on_round(i, matching, pi)`` is called after each round. ``graph_min_n``
    and ``solves`` are passed to :func:`rematch`.
    Returns ``(matching, pi, rounds)``.
    """
    rng = np.random.default_rng([seed, BOOST_STREAM])
    pi = estimate_global_perm(patch_emb, row_emb, matching, xp)
    solver = {"graph_min_n": graph_min_n, "solves": solves}
    rounds = 0
    for rounds in range(1, max_rounds + 1):
        pi = _crossfit_round(patch_emb, row_emb, pi, rng, xp, **solver)
        new = rematch(patch_emb, row_emb, pi, xp, **solver)
        stable = np.array_equal(new, matching)
        matching = new
        if on_round is not None:
            on_round(rounds, matching, pi)
        if stable:
            break
    # The last cross-fitted pi was estimated from the previous matching; the final one uses all
    # positions of the stable matching.
    return BoostResult(matching, estimate_global_perm(patch_emb, row_emb, matching, xp), rounds)
