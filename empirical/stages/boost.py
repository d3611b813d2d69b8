"""Stage ``boost``: the global permutation and re-matching, iterated (paper §2.2.2-§2.2.3).

The global permutation (which slot holds which patch position) is the best assignment of
positions to slots under p-sim summed over the matched pairs; with it, re-matching is one dense
product. Rounds are cross-fitted over two halves of the positions so that a wrong permutation
cannot vote for itself, and repeat until the matching is stable.
"""
from __future__ import annotations

import sys

import numpy as np

from .. import assignment, boosting
from ..assignment import match_encodings
from ..boosting import boost, known_perm_scores
from .base import Context, Stage, StageResult, register


def compute(ctx: Context) -> tuple[tuple[np.ndarray, np.ndarray], StageResult]:
    history = []
    if not ctx.game.config.shuffle:  # public: positions are not permuted, pi is the identity
        pi = np.arange(ctx.game.config.n_patches)
        m = match_encodings(known_perm_scores(ctx.patch_emb, ctx.row_emb, pi, ctx.xp))
        history.append(m)
        rounds = 1
    else:
        m, pi, rounds = boost(ctx.patch_emb, ctx.row_emb, ctx.first, ctx.xp, ctx.cfg.boost_rounds, ctx.cfg.seed,
                              on_round=lambda i, mm, p: history.append(mm))
    return (m, pi), StageResult("boost", matching=m, info={"rounds": rounds}, arrays={"history": np.array(history)})


def attach(ctx: Context, value: tuple[np.ndarray, np.ndarray]) -> None:
    ctx.boosted, ctx.pi = value


STAGE = register(Stage(
    name="boost", fields=("boost_rounds",), sources=(sys.modules[__name__], boosting, assignment),
    compute=compute, attach=attach,
    save=lambda value: ({"pi": value[1]}, {}),
    load=lambda arrays, meta, ctx: (arrays["matching"], arrays["pi"]),
))
