"""Stage ``first``: i-sim on pre-screened candidates and the first matching (paper §2.1.2-§2.1.3).

i-sim of an (original, encoding) pair is the value of the best assignment of the original's
patch embeddings to the encoding's row embeddings. It is solved exactly only for a few
candidate encodings per original, picked by a cheap balanced pre-score; the first matching is
the best assignment over those values. Without shuffling, the positions are known and the
matching needs no per-pair assignment.
"""
from __future__ import annotations

import sys

import numpy as np

from .. import assignment, boosting, candidate_graph, isim
from ..boosting import rematch
from ..isim import balance, first_matching, isim_candidates, sliced_prescore, top_candidates
from ..progress import progress_bar
from .base import Context, Stage, StageResult, no_arrays, register


def compute(ctx: Context) -> tuple[np.ndarray, StageResult]:
    xp, P = ctx.xp, ctx.game.config.n_patches
    if not ctx.game.config.shuffle:  # rows already in position order: i-sim needs no assignment
        m = rematch(ctx.patch_emb, ctx.row_emb, np.arange(P), xp)
        return m, StageResult("first", matching=m, info={"method": "positions known (no shuffle)"})
    pre = balance(sliced_prescore(ctx.patch_emb, ctx.row_emb, xp), xp, overwrite=True)  # (N_o, N), in place
    cand = top_candidates(pre, ctx.cfg.candidates, xp)  # (N_o, k) host
    del pre
    with progress_bar(ctx.n_orig, "i-sim (exact, on candidates)", ctx.quiet) as bar:
        vals = isim_candidates(ctx.patch_emb, ctx.row_emb, cand, xp, progress=bar)
    m = first_matching(vals, cand, ctx.n_enc)
    info = {"method": "exact i-sim on pre-screened candidates", "candidates_per_original": int(cand.shape[1]),
            "exact_assignments": int(cand.size), "assignment_size": P}
    return m, StageResult("first", matching=m, info=info, arrays={"candidates": cand})


def attach(ctx: Context, matching: np.ndarray) -> None:
    ctx.first = matching


STAGE = register(Stage(
    name="first", fields=("candidates",), sources=(sys.modules[__name__], isim, assignment, boosting, candidate_graph),
    compute=compute, attach=attach, save=no_arrays,
    load=lambda arrays, meta, ctx: arrays["matching"],
))
