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
from typing import NamedTuple

import numpy as np

from .. import assignment, batch_sample, boosting, candidate_graph, encodings, matched, passes, sketch, tprime
from ..assignment import match_encodings, match_margins
from ..boosting import median_margin
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


def encoder_matching(ctx: Context, params: Params, m_stats: np.ndarray) -> EncoderMatching:
    """Match every original to an encoding by T''s distance: ``(matching, median margin)``.

    Each original is encoded on its own, with BatchNorm statistics averaged over Alice's batches
    filled with the originals that ``m_stats`` assigns to their encodings. Distances are over every
    value of the encodings, read in as few blocks as the memory budget allows (T' encodes the
    originals once per block), unless the encodings are large (:func:`empirical.sketch.sketched`):
    then both sides are sketched (:mod:`empirical.sketch`) and T' encodes every original once.
    """
    xp, fam, n_orig, n_enc = ctx.xp, ctx.game.config, ctx.n_orig, ctx.n_enc
    originals, tgt = ctx.originals, targets(ctx)
    stats = mean_batch_stats(params, MatchedImages(originals, m_stats, xp), ctx.game.bn_groups, fam, xp)
    score = xp.empty((n_orig, n_enc), dtype=xp.float32)  # (N_o, N)
    per = ctx.block(TARGET_COPIES, cap=None)
    step = max(1, tprime.ENCODE_CHUNK // fam.n_patches)  # originals encoded by T' at a time (512 of 128 px)
    if sketched(n_enc, fam.n_patches, fam.hidden):
        r = projection(fam.hidden, fam.n_patches, ctx.cfg.seed, xp)  # (D, d)
        sk = _stack(map_blocks(sketch_rows, tgt, per, (r, xp), ctx.scheduler), xp)  # (N, P*d)
        for s in range(0, n_orig, step):
            pred = sketch_rows(encode_each(params, originals[s:s + step], fam, stats, xp), r, xp)  # (c, P*d)
            score[s:s + step] = _neg_sq_distance(pred, sk)
        del sk
    else:
        for t, block in tgt.blocks(per):
            block = block.reshape(block.shape[0], -1)  # (c, P*D)
            for s in range(0, n_orig, step):
                pred = encode_each(params, originals[s:s + step], fam, stats, xp).reshape(-1, block.shape[1])
                score[s:s + step, t:t + per] = _neg_sq_distance(pred, block)
    m = match_encodings(score)
    return EncoderMatching(m, float(np.median(match_margins(score, m, xp))))  # margins are on the host


def boosting_margin(ctx: Context) -> float:
    """Median margin of boosting's p-sim matching (computed once per run)."""
    if "boosting_margin" not in ctx.cache:
        ctx.cache["boosting_margin"] = median_margin(ctx.patch_emb, ctx.row_emb, ctx.pi, ctx.boosted, ctx.xp)
    return ctx.cache["boosting_margin"]


def compute(ctx: Context) -> tuple[np.ndarray, StageResult]:
    if ctx.extract_gave_up:  # T' matched the held-back pairs no better than the probe's bar: nothing to try
        return ctx.boosted, StageResult("final", matching=ctx.boosted,
                                        info={"used": "boosting (extraction gave up, so T' was not tried)"})
    m, t_margin = encoder_matching(ctx, ctx.params, ctx.fit_matching)
    p_margin = boosting_margin(ctx)
    use_t = t_margin >= p_margin
    info = {"median_margin_extracted": t_margin, "median_margin_psim": p_margin,
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
