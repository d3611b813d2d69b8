"""Stage ``rescore``: the final matching's close calls, scored again with each batch's statistics.

The final matching encodes every original with BatchNorm statistics averaged over Alice's
batches; this stage takes the encodings whose matched original has a near twin, scores their
candidates with the statistics of their own batch (known from the matching itself), and matches
them again (:mod:`empirical.rescore`). It runs only where the final matching is T''s: when
extraction gave up, or p-sim's matching was kept, T' is not trusted and the matching stands.
"""
from __future__ import annotations

import sys

import numpy as np

from .. import matched, rescore, tprime
from ..progress import progress_bar
from ..rescore import rescore_close_calls
from . import final
from .base import Context, Stage, StageResult, no_arrays, register


def compute(ctx: Context) -> tuple[np.ndarray, StageResult]:
    used = ctx.reports.get("final", {}).get("used", "")
    if ctx.extract_gave_up or not used.startswith("extracted"):
        why = f"not run: the final matching is not T''s ({used or 'unknown'})"
        return ctx.final, StageResult("rescore", matching=ctx.final, info={"skipped": why})
    out = rescore_close_calls(ctx.params, ctx.originals, final.targets(ctx), ctx.final, ctx.game.bn_groups,
                              ctx.game.config, ctx.xp,
                              bar=lambda total, desc: progress_bar(total, desc, ctx.quiet))
    return out.matching, StageResult("rescore", matching=out.matching, info=out.info)


def attach(ctx: Context, matching: np.ndarray) -> None:
    ctx.final = matching  # the final matching, refined


STAGE = register(Stage(
    name="rescore", fields=(), sources=(sys.modules[__name__], rescore, tprime, matched, final),
    compute=compute, attach=attach, save=no_arrays,
    load=lambda arrays, meta, ctx: arrays["matching"],
))
