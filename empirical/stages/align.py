"""Stage ``align``: the local permutations (paper §2.2.1), recovered before any matching.

The positional embedding makes rows from the same patch position point the same way in every
encoding, so each encoding's rows can be put into one common slot order without knowing which
original it came from. A family that does not shuffle needs nothing: its rows are in position
order already.
"""
from __future__ import annotations

import sys

import numpy as np

from .. import alignment, encodings, passes
from ..alignment import align_rows
from ..progress import progress_bar
from .base import Context, Stage, StageResult, register

ALIGN_CHUNK = 512  # encodings per block of the alignment pass when the encodings are in memory


def compute(ctx: Context) -> tuple[np.ndarray, StageResult]:
    fam, n_enc = ctx.game.config, ctx.n_enc
    if not fam.shuffle:  # public: the family does not shuffle, rows are in position order
        order = np.tile(np.arange(fam.n_patches), (n_enc, 1))  # (N, P)
        return order, StageResult("align", info={"skipped": "no shuffle"})
    with progress_bar(n_enc * ctx.cfg.align_iterations, "local permutations", ctx.quiet) as bar:
        # In memory, fixed blocks: the reference is a sum over blocks, so its last bits would otherwise
        # depend on the budget. From files, as many as the budget holds: the encodings, their centred
        # copy, the scores and the aligned copy.
        chunk = ctx.block(4) if ctx.encodings_on_disk else ALIGN_CHUNK
        order = align_rows(ctx.encodings, ctx.xp, ctx.cfg.align_iterations, chunk=chunk, progress=bar,
                           scheduler=ctx.scheduler)
    return order, StageResult("align")


def attach(ctx: Context, order: np.ndarray) -> None:
    ctx.order = order
    if ctx.game.config.shuffle:
        ctx.rows = ctx.encodings.take(order)  # (N, P, D) in slot order, gathered on read: nothing is copied now
    else:
        ctx.rows = ctx.encodings  # rows already in position order: no gather on read


STAGE = register(Stage(
    name="align", fields=("seed", "align_iterations"), sources=(sys.modules[__name__], alignment, encodings, passes),
    compute=compute, attach=attach,
    save=lambda order: ({"order": order}, {}),
    load=lambda arrays, meta, ctx: arrays["order"],
))
