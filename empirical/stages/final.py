"""Stage ``final``: the final matching with the extracted encoder (paper §2.3.2), and its rule.

Every original is encoded with T' and matched to the encoding nearest to it. T' should separate
images far better than p-sim; whether it does is judged on the run's own evidence, never on
Alice's secrets: the median matching margin (how much better each matched pair scores than the
next best) of T''s matching against that of boosting's p-sim matching. The larger margin wins, so
a poor fit of T' cannot make the result worse than boosting's. When extraction gave up (its
probe found T' worthless), T' is not tried at all and boosting's matching is kept.
"""
from __future__ import annotations

import sys
from collections.abc import Iterator
from typing import NamedTuple

import numpy as np

from .. import assignment, batch_sample, boosting, candidate_graph, encodings, matched, passes, sketch, tprime
from ..assignment import match_encodings, match_margins
from ..boosting import median_margin
from ..candidate_graph import graph_margins, join, match_on_graph, stream_candidates, use_graph
from ..encodings import Rows
from ..matched import MatchedImages
from ..mlp import Params
from ..passes import map_blocks
from ..sketch import projection, sketch_rows, sketched
from ..tprime import encode_each, mean_batch_stats
from .base import Array, Context, Stage, StageResult, no_arrays, register

TARGET_COPIES = 2  # a block of encodings is held twice (read, then gathered into position order)


class EncoderMatching(NamedTuple):
    matching: np.ndarray  # (N,) host: encoding k -> original matching[k]
    margin: float  # the median matching margin (assignment.match_margins)
    solve: str = "dense"  # how the assignment was solved: "dense", "graph" or "dense after the graph"


def targets(ctx: Context) -> Rows:
    """(N, P, D): each encoding's rows in its original's position order, gathered on read."""
    if ctx.targets is None:
        ctx.targets = ctx.rows.take(ctx.pi)  # position j of every encoding is its slot pi[j]
    return ctx.targets


def _neg_sq_distance(pred: Array, enc: Array) -> Array:
    """-|a - b|^2 up to a per-column constant (which does not change the matching): (n, F), (c, F) -> (n, c)."""
    return 2 * (pred @ enc.T) - (pred * pred).sum(axis=1)[:, None]


def _stack(parts: list, xp) -> Array:
    """The blocks one after another along the first axis, each dropped once copied (never all held twice)."""
    parts = list(parts)[::-1]  # popped from the end: first block first
    out = xp.empty((sum(len(a) for a in parts), *parts[0].shape[1:]), dtype=parts[0].dtype)
    s = 0
    while parts:
        a = xp.asarray(parts.pop())
        out[s:s + len(a)] = a
        s += len(a)
    return out


def _score_strips(ctx: Context, params: Params, stats) -> Iterator[Iterator[tuple[int, Array]]]:
    """T''s scores (minus squared distances), a strip of encodings at a time, each strip in blocks of originals.

    Yields, for consecutive ranges of encodings, a generator of ``(start, (b, c) scores)`` of originals
    start .. start + b - 1 against the range's c encodings; each must be used up before the next.
    Distances are over every value of the encodings, read in as few strips as the memory budget
    allows (T' encodes the originals once per strip), unless the encodings are large
    (:func:`empirical.sketch.sketched`): then both sides are sketched (:mod:`empirical.sketch`),
    one strip holds every encoding and T' encodes every original once.
    """
    xp, fam, n_orig, n_enc = ctx.xp, ctx.game.config, ctx.n_orig, ctx.n_enc
    originals, tgt = ctx.originals, targets(ctx)
    step = max(1, tprime.ENCODE_CHUNK // fam.n_patches)  # originals encoded by T' at a time (512 of 128 px)
    if sketched(n_enc, fam.n_patches, fam.hidden):
        r = projection(fam.hidden, fam.n_patches, ctx.cfg.seed, xp)  # (D, d)
        sk = _stack(map_blocks(sketch_rows, tgt, ctx.block(TARGET_COPIES, cap=None), (r, xp), ctx.scheduler),
                    xp)  # (N, P*d)
        yield ((s, _neg_sq_distance(sketch_rows(encode_each(params, originals[s:s + step], fam, stats, xp), r, xp),
                                    sk)) for s in range(0, n_orig, step))
        return
    for _t, block in tgt.blocks(ctx.block(TARGET_COPIES, cap=None)):
        block = block.reshape(block.shape[0], -1)  # (c, P*D)
        yield ((s, _neg_sq_distance(encode_each(params, originals[s:s + step], fam, stats, xp)
                                    .reshape(-1, block.shape[1]), block)) for s in range(0, n_orig, step))


def _dense_matching(ctx: Context, params: Params, stats) -> EncoderMatching:
    score = ctx.xp.empty((ctx.n_orig, ctx.n_enc), dtype=ctx.xp.float32)  # (N_o, N)
    t = 0
    for strip in _score_strips(ctx, params, stats):
        for s, blk in strip:
            score[s:s + blk.shape[0], t:t + blk.shape[1]] = blk
        t += blk.shape[1]
    m = match_encodings(score)
    return EncoderMatching(m, float(np.median(match_margins(score, m, ctx.xp))), "dense")  # margins on the host


def encoder_matching(ctx: Context, params: Params, m_stats: np.ndarray) -> EncoderMatching:
    """Match every original to an encoding by T''s distance: ``(matching, median margin, how solved)``.

    Each original is encoded on its own, with BatchNorm statistics averaged over Alice's batches
    filled with the originals that ``m_stats`` assigns to their encodings. From
    :data:`~empirical.candidate_graph.GRAPH_MIN_N` encodings on, only each encoding's nearest
    originals are kept and the matching is solved on that candidate graph (:mod:`empirical.candidate_graph`),
    with no (N_o, N) matrix; where that graph admits no full matching, T' encodes the originals again
    and the dense matrix is solved.
    """
    stats = mean_batch_stats(params, MatchedImages(ctx.originals, m_stats, ctx.xp), ctx.game.bn_groups,
                             ctx.game.config, ctx.xp)
    if not use_graph(ctx.n_enc):
        return _dense_matching(ctx, params, stats)
    k = candidate_graph.GRAPH_K
    cand = join([stream_candidates(strip, k, ctx.xp) for strip in _score_strips(ctx, params, stats)], k)
    m = match_on_graph(cand, ctx.n_orig)
    if m is None:
        return _dense_matching(ctx, params, stats)._replace(solve="dense after the graph")
    return EncoderMatching(m, float(np.median(graph_margins(cand, m))), "graph")


def boosting_margin(ctx: Context) -> float:
    """Median margin of boosting's p-sim matching (computed once per run)."""
    if "boosting_margin" not in ctx.cache:
        ctx.cache["boosting_margin"] = median_margin(ctx.patch_emb, ctx.row_emb, ctx.pi, ctx.boosted, ctx.xp)
    return ctx.cache["boosting_margin"]


def compute(ctx: Context) -> tuple[np.ndarray, StageResult]:
    if ctx.extract_gave_up:  # T' matched the held-back pairs no better than the probe's bar: nothing to try
        return ctx.boosted, StageResult("final", matching=ctx.boosted,
                                        info={"used": "boosting (extraction gave up, so T' was not tried)"})
    m, t_margin, solve = encoder_matching(ctx, ctx.params, ctx.fit_matching)
    p_margin = boosting_margin(ctx)
    use_t = t_margin >= p_margin
    info = {"median_margin_extracted": t_margin, "median_margin_psim": p_margin, "solve": solve,
            "used": "extracted encoder" if use_t else "boosting (T' margins smaller)"}
    m = m if use_t else ctx.boosted
    return m, StageResult("final", matching=m, info=info)


def attach(ctx: Context, matching: np.ndarray) -> None:
    ctx.final = matching


STAGE = register(Stage(
    name="final", fields=(),
    sources=(sys.modules[__name__], tprime, assignment, boosting, candidate_graph, encodings, matched, passes, sketch,
             batch_sample),
    compute=compute, attach=attach, save=no_arrays,
    load=lambda arrays, meta, ctx: arrays["matching"],
))
