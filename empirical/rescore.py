"""Close calls of the final matching, scored again with each BatchNorm batch's own statistics.

Alice encoded every image in a batch, with BatchNorm statistics of that batch; the final matching
(:mod:`empirical.stages.final`) encodes each original on its own with statistics averaged over
her batches, since an original's batch is what is being matched. For most images that changes a
distance by well under 1%; for images that are nearly flat, whose encodings differ from one
another by about as little, it decides the match: at the challenge's size two such originals of
similar brightness from different batches can each end nearer the other's encoding.

Once the matching is nearly complete, each batch's statistics are known: they are those of the
originals matched to its encodings. The close calls are re-scored with them:

1. *Twins.* Originals that T' can confuse are close in pixel space; each original is summarised by
   the mean and standard deviation of its patches (:func:`patch_summary`), and the encodings whose
   matched original has the nearest twin (a fixed share of them, at least :data:`MIN_RESCORED`)
   are the close calls.
2. *Candidates.* Each close call's candidates are its matched original and that original's
   :data:`TWINS` nearest originals among the close calls' originals and the unmatched ones.
3. *Scores.* Every candidate is encoded by T' with the BatchNorm statistics of the encoding's own
   batch (:func:`~empirical.tprime.batch_stats_of` the originals matched to that batch), and
   scored by its squared distance to the encoding.
4. *Patch twins.* Before that distance, each row of the candidate's T'(x) is corrected by T''s own
   error on alike patches (:func:`patch_corrections`): at the same position, the
   :data:`PATCH_TWINS` patches nearest in pixels among the originals matched into the same batch
   that no close call may take (so matched with confidence), and the mean of their rows' residuals
   (encoding minus T'). T' errs alike on alike patches, and a nearly flat image's rows are all
   alike, so its rows share one error that the sum over them does not average away as a textured
   image's does; a textured image of the same batch holds patches alike to each of them, encoded
   with the same statistics.
5. *Assignment.* The close calls are matched again to those originals by the best assignment on
   the sparse candidate graph (SciPy's ``min_weight_full_bipartite_matching``); the present
   matching is one of its full matchings, so one always exists. Other encodings keep their match.
6. *Passes.* A pass that changes a match is followed by another, up to :data:`PASSES`: a changed
   match brings its new original's twins in as candidates and moves the batches' statistics and
   the confident set nearer the truth. A candidate's score depends only on its encoding, the
   originals matched into the encoding's batch and which of those are sure, so a later pass
   scores again only the batches where one of these changed (and pairs not scored before): at
   the challenge's size a pass encodes some 30,000 images through T' (the candidates and the
   batches' twins), and a later pass moves a few batches.

No step reads Alice's key or answer key: the statistics come from the attack's own matching.
"""
from __future__ import annotations

import math
from collections.abc import Callable
from contextlib import AbstractContextManager
from functools import partial
from typing import NamedTuple

import numpy as np
from scipy.sparse import csr_matrix
from scipy.sparse.csgraph import min_weight_full_bipartite_matching

from .backend import Array, Namespace, to_numpy
from .encoder import EncoderConfig, patchify
from .encodings import Rows
from .matched import MatchedImages
from .mlp import Params
from .progress import Progress, progress_bar
from .tprime import ENCODE_CHUNK, batch_stats_of, encode_each

RESCORED_SHARE = 0.1  # share of the encodings whose matches are scored again (those with the nearest twins) ...
MIN_RESCORED = 256  # ... and at least this many (every encoding of a smaller game)
TWINS = 10  # nearest other originals that are candidates of a close call, beside its own match (3 missed the
# right original of 2 of the 4 wrong encodings left at N = 16,000: ranks 1, 4, 1, 4; benchmarks/rescore_oracle.py)
SUMMARY_CHUNK = 2048  # originals per block of the twin search
PATCH_TWINS = 5  # alike patches whose residuals correct a candidate's row (of 44 wrong flat twins, 5 put 27
# right one by one, 1, 20 and 50 put 22, 23 and 21, the plain distance 15: cpu_twin_residual_oracle_flat_pairs.json)
PASSES = 4  # at most this many passes; one that changes no match ends them (the flat-twin game of that oracle:
# 44 wrong, then 22, 12, 12 after passes 1-3)


class Rescored(NamedTuple):
    matching: np.ndarray  # (N,) host: encoding k -> original matching[k]
    info: dict  # what was scored again and what changed


def patch_summary(originals: Array, patch: int, xp: Namespace, chunk: int = SUMMARY_CHUNK) -> Array:
    """Each original's patch means and patch standard deviations side by side: (N_o, C, H, W) -> (N_o, 2P)."""
    out = []
    for s in range(0, originals.shape[0], chunk):
        rows = patchify(xp.asarray(originals[s:s + chunk], dtype=xp.float32), patch)  # (c, P, C*p*p)
        out.append(xp.concatenate([rows.mean(axis=2), rows.std(axis=2)], axis=1))  # (c, 2P)
    return xp.concatenate(out, axis=0)


def nearest_twins(summary: Array, queries: np.ndarray, pool: np.ndarray, k: int, xp: Namespace,
                  chunk: int = SUMMARY_CHUNK) -> tuple[np.ndarray, np.ndarray]:
    """The ``k`` originals of ``pool`` nearest (squared Euclidean) to each original of ``queries``, itself excluded.

    ``summary`` (N_o, F) xp; ``queries`` (q,) and ``pool`` (c,) host indices. Returns host
    ``(distances (q, k), originals (q, k))``, nearest first (fewer columns when the pool is small).
    """
    k = min(k, len(pool) - 1)
    if k <= 0:
        return np.zeros((len(queries), 0)), np.zeros((len(queries), 0), dtype=np.int64)
    ref = summary[xp.asarray(pool)]  # (c, F)
    ref_sq = (ref * ref).sum(axis=1)
    dist = np.empty((len(queries), k))
    who = np.empty((len(queries), k), dtype=np.int64)
    for s in range(0, len(queries), chunk):
        q = queries[s:s + chunk]
        a = summary[xp.asarray(q)]  # (b, F)
        d = (a * a).sum(axis=1)[:, None] + ref_sq[None, :] - 2 * (a @ ref.T)  # (b, c)
        d = to_numpy(d).astype(np.float64)
        d[q[:, None] == pool[None, :]] = np.inf  # an original is not its own twin
        part = np.argpartition(d, k - 1, axis=1)[:, :k]
        dd = np.take_along_axis(d, part, axis=1)
        order = np.argsort(dd, axis=1, kind="stable")
        dist[s:s + chunk] = np.maximum(np.take_along_axis(dd, order, axis=1), 0)
        who[s:s + chunk] = pool[np.take_along_axis(part, order, axis=1)]
    return dist, who


def close_calls(summary: Array, matching: np.ndarray, n_orig: int, xp: Namespace,
                share: float = RESCORED_SHARE, least: int = MIN_RESCORED) -> np.ndarray:
    """Host indices of the encodings to score again: those whose matched original has the nearest twin."""
    n = len(matching)
    count = min(n, max(least, math.ceil(share * n)))
    if count == n:
        return np.arange(n)
    nearest, _ = nearest_twins(summary, matching, np.arange(n_orig), 1, xp)
    return np.sort(np.argsort(nearest[:, 0], kind="stable")[:count])


def _batch_residuals(params: Params, matched: MatchedImages, targets: Rows, encodings: np.ndarray,
                     family: EncoderConfig, stats, xp: Namespace) -> tuple[Array, Array] | None:
    """Patches (n, P, C*p*p) of the originals matched to ``encodings`` and T''s residuals on their rows (n, P, D)."""
    if len(encodings) == 0:
        return None
    x = matched[encodings]  # (n, C, H, W)
    residual = targets[encodings] - encode_each(params, x, family, stats, xp)  # (n, P, D) encoding minus T'
    return patchify(xp.asarray(x, dtype=xp.float32), family.patch), residual


def patch_corrections(patches: Array, twin_patches: Array, twin_residuals: Array, k: int, xp: Namespace) -> Array:
    """Each row's mean residual over its ``k`` nearest twin patches at the same position: (c, P, D).

    ``patches`` (c, P, F) the candidates' patches; ``twin_patches`` (n, P, F) and ``twin_residuals``
    (n, P, D) the twins' patches and T''s residuals on their rows. Nearness is the squared
    distance in pixels, position by position.
    """
    n = twin_patches.shape[0]
    k = min(k, n)
    twin_sq = (twin_patches * twin_patches).sum(axis=2)  # (n, P)
    # |a - t|^2 less |a|^2, which is the same for every twin of a row: (c, n, P)
    cross = (patches.transpose(1, 0, 2) @ twin_patches.transpose(1, 2, 0)).transpose(1, 2, 0)  # (P, c, n) -> (c, n, P)
    d = twin_sq[None] - 2 * cross  # a batched product per position: BLAS, where einsum would loop (x3.5)
    near = xp.argpartition(d, k - 1, axis=1)[:, :k] if k < n else xp.broadcast_to(
        xp.arange(n)[None, :, None], d.shape)  # (c, k, P) the k nearest twins of each row, in no order
    pos = xp.arange(twin_patches.shape[1])[None, :]  # (1, P)
    total = twin_residuals[near[:, 0], pos]  # (c, P, D): one twin's rows at a time, never all k at once
    for i in range(1, k):
        total = total + twin_residuals[near[:, i], pos]
    return total / k


Bars = Callable[[int, str], AbstractContextManager[Progress]]  # (total, description) -> a bar's advance(k)
_NO_BAR = partial(progress_bar, quiet=True)


class _BatchMemo(NamedTuple):
    """What a pass scored against one batch, kept for the next pass while the batch is unchanged."""
    state: tuple[bytes, bytes]  # the originals matched to the batch's encodings, and which are sure
    costs: dict  # (encoding, candidate original) -> its squared distance


def rescore_close_calls(params: Params, originals: Array, targets: Rows, matching: np.ndarray,
                        groups: np.ndarray, family: EncoderConfig, xp: Namespace, *,
                        share: float = RESCORED_SHARE, least: int = MIN_RESCORED, twins: int = TWINS,
                        patch_twins: int = PATCH_TWINS, passes: int = PASSES, bar: Bars | None = None) -> Rescored:
    """Match the close calls again, scored with their batches' own statistics (see the module notes).

    ``originals`` (N_o, C, H, W) xp; ``targets`` (N, P, D) each encoding's rows in position order;
    ``matching`` (N,) host, the matching to refine; ``groups`` (N,) host, each encoding's batch.
    ``patch_twins`` 0 scores the candidates without the patch twins' correction. A pass that
    changes a match is followed by another, up to ``passes``, scoring again only what changed
    (module notes, step 6). ``bar(total, desc)``, when given, opens a progress bar for each
    pass (:func:`empirical.progress.progress_bar` with its ``quiet`` bound), advanced per close call.
    """
    start = np.asarray(matching, dtype=np.int64)
    summary = patch_summary(originals, family.patch, xp)
    matching, info, changed, scored, memo = start, {}, [], [], {}
    for i in range(passes):
        out, one = _rescore_pass(params, originals, summary, targets, matching, groups, family, xp,
                                 share, least, twins, patch_twins, memo, bar, f"re-scoring, pass {i + 1}")
        scored.append(one.pop("scored_pairs", None))
        info = info or one  # what the first pass scored
        changed.append(int((out != matching).sum()))
        matching = out
        if not changed[-1]:
            break
    info = {**info, "passes": len(changed), "changed_per_pass": changed, "scored_pairs_per_pass": scored,
            "changed": int((matching != start).sum())}
    return Rescored(matching, info)


def _rescore_pass(params: Params, originals: Array, summary: Array, targets: Rows, matching: np.ndarray,
                  groups: np.ndarray, family: EncoderConfig, xp: Namespace, share: float, least: int, twins: int,
                  patch_twins: int, memo: dict, bar: Bars | None = None, desc: str = "") -> tuple[np.ndarray, dict]:
    """One pass of :func:`rescore_close_calls`: the refined matching and what was scored.

    ``memo`` maps a batch to its :class:`_BatchMemo`, filled and reused across passes.
    """
    n_orig = originals.shape[0]
    calls = close_calls(summary, matching, n_orig, xp, share, least)  # (S,) encodings
    unmatched = np.setdiff1d(np.arange(n_orig), matching)
    pool = np.union1d(matching[calls], unmatched)  # originals the close calls may take
    _, near = nearest_twins(summary, matching[calls], pool, twins, xp)
    cands = np.concatenate([matching[calls][:, None], near], axis=1)  # (S, 1 + twins), own match first
    batches = np.unique(groups[calls])
    doubtful = np.union1d(cands.ravel(), unmatched)  # originals some close call may take
    sure = ~np.isin(matching, doubtful)  # (N,) encodings matched with confidence
    cost = np.empty(cands.shape)
    n_twin_images = n_scored = 0
    with (bar or _NO_BAR)(len(calls), desc) as advance:
        for g in batches:
            in_g = groups == g
            n_twin_images += int((sure & in_g).sum()) if patch_twins else 0
            state = (matching[in_g].tobytes(), sure[in_g].tobytes())
            if g not in memo or memo[g].state != state:
                memo[g] = _BatchMemo(state, {})
            rows_g = np.flatnonzero(groups[calls] == g)  # close calls of batch g (positions in `calls`)
            pairs = [(int(calls[r]), int(o)) for r in rows_g for o in cands[r]]  # (encoding, candidate)
            todo = [pair for pair in pairs if pair not in memo[g].costs]  # each row's candidates are distinct
            if todo:
                memo[g].costs.update(_score_pairs(params, originals, targets, matching, groups, g, sure & in_g,
                                                  todo, family, xp, patch_twins))
                n_scored += len(todo)
            cost[rows_g] = np.array([memo[g].costs[pair] for pair in pairs]).reshape(len(rows_g), -1)
            advance(len(rows_g))
    col = np.searchsorted(pool, cands)  # (S, 1 + twins) columns of the candidate graph
    # Every row takes exactly one edge, so shifting a row's costs does not change the best matching;
    # shifted to start at 1, no cost is a stored zero (which the sparse solver would drop).
    cost = cost - cost.min(axis=1, keepdims=True) + 1.0
    graph = csr_matrix((cost.ravel(), (np.repeat(np.arange(len(calls)), cands.shape[1]), col.ravel())),
                       shape=(len(calls), len(pool)))
    row, got = min_weight_full_bipartite_matching(graph)
    out = matching.copy()
    out[calls[row]] = pool[got]
    return out, {"rescored": len(calls), "candidates_per_encoding": int(cands.shape[1]), "batches": len(batches),
                 "patch_twins": patch_twins, "twin_images": n_twin_images, "scored_pairs": n_scored}


def _score_pairs(params: Params, originals: Array, targets: Rows, matching: np.ndarray, groups: np.ndarray,
                 g: int, sure_g: np.ndarray, pairs: list[tuple[int, int]], family: EncoderConfig, xp: Namespace,
                 patch_twins: int) -> dict:
    """Squared distance of each (encoding, candidate original) of batch ``g`` to T'(candidate), at g's statistics.

    ``sure_g`` (N,) host: the encodings of batch ``g`` matched with confidence, whose residuals
    correct the candidates' rows (none when ``patch_twins`` is 0).
    """
    matched = MatchedImages(originals, matching, xp)  # encoding k's original, so each batch's are its own
    stats = batch_stats_of(params, matched, groups, g, family, xp)  # from the originals matched to batch g
    twins_g = _batch_residuals(params, matched, targets, np.flatnonzero(sure_g), family, stats,
                               xp) if patch_twins else None
    per = max(1, ENCODE_CHUNK // family.n_patches)  # pairs whose candidate T' encodes at a time
    enc_of, orig_of = (np.array(column, dtype=np.int64) for column in zip(*pairs, strict=True))
    out = {}
    for s in range(0, len(pairs), per):
        k, o = enc_of[s:s + per], orig_of[s:s + per]
        x = originals[xp.asarray(o)]  # (c, C, H, W)
        pred = encode_each(params, x, family, stats, xp)  # (c, P, D)
        if twins_g is not None:
            pred = pred + patch_corrections(patchify(xp.asarray(x, dtype=xp.float32), family.patch), *twins_g,
                                            patch_twins, xp)
        dist = to_numpy(((pred - targets[k]) ** 2).sum(axis=(1, 2))).astype(np.float64)  # (c,)
        out.update(zip(zip(k.tolist(), o.tolist(), strict=True), dist.tolist(), strict=True))
    return out
