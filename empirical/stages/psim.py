"""Stage ``psim``: train p-sim on the attacker's own encoders (paper §2.1.1), then embed.

p-sim is trained on random keys of the public family that the attacker draws himself, never on
Alice's key. Once trained, it embeds every original patch and every aligned encoded row; the
embeddings are all the later matching stages use.
"""
from __future__ import annotations

import sys
from dataclasses import replace

import numpy as np

from .. import encodings, mlp, moments, passes
from .. import psim as psim_method
from ..backend import to_numpy
from ..encodings import block_size
from ..progress import progress_bar
from ..psim import PsimModel, evaluate_psim, patch_features, row_features, train_psim, training_pairs
from .base import Array, Context, Namespace, Stage, StageResult, register

IMAGE_COPIES = 6  # float32 copies of a block of patches while their moments are taken
EMBED_ROW_BYTES = 4096  # bytes one row's features occupy inside p-sim's MLP (width x float32 x copies, generous)
HELD_OUT_ENCODERS = 2  # fresh attacker encoders each for p-sim's validation and test pairs
LOSS_TAIL = 50  # the reported final loss is the mean over this many last steps


def _patch_features(ctx: Context, k: int) -> Array:
    """(N_o, P, K) standardised moment features of every original patch, computed once per run in blocks of
    images (a block's patches are copied a few times while their moments are taken)."""
    if ("patch_features", k) not in ctx.cache:
        fam = ctx.game.config
        per_image = block_size(ctx.memory_budget, fam.n_patches * fam.patch_dim * 4, IMAGE_COPIES, cap=None)
        ctx.cache[("patch_features", k)] = patch_features(ctx.originals, fam, k, ctx.xp, block=per_image)
    return ctx.cache[("patch_features", k)]


def compute(ctx: Context) -> tuple[PsimModel, StageResult]:
    pc, fam, xp, seed = ctx.cfg.psim, ctx.game.config, ctx.xp, ctx.cfg.seed
    pf = _patch_features(ctx, pc.moments)
    pairs = training_pairs(ctx.originals, fam, pc, seed, xp, patch_feats=pf)
    small = replace(pc, n_encoders=HELD_OUT_ENCODERS)
    val = training_pairs(ctx.originals, fam, small, seed + 1, xp, patch_feats=pf)
    test = training_pairs(ctx.originals, fam, small, seed + 2, xp, patch_feats=pf)
    with progress_bar(pc.steps, "p-sim training", ctx.quiet) as bar:
        model, losses = train_psim(pairs, pc, seed, xp, progress=bar)
    ev = evaluate_psim(model, val, test, seed, xp)
    info = {"balanced_accuracy": ev.balanced_accuracy, "auc": ev.auc, "roc_fpr": ev.roc_fpr, "roc_tpr": ev.roc_tpr,
            "loss_first": losses[0], "loss_last": float(np.mean(losses[-LOSS_TAIL:]))}
    return model, StageResult("psim", info=info)


def _embed(embed, feats: Array, step: int, xp: Namespace) -> Array:
    """``embed`` of features (n, P, K) -> (n, P, E), ``step`` images' rows at a time."""
    n, P, k = feats.shape
    out = [embed(feats[s:s + step].reshape(-1, k), xp).reshape(min(step, n - s), P, -1) for s in range(0, n, step)]
    return out[0] if len(out) == 1 else xp.concatenate(out)


def attach(ctx: Context, model: PsimModel) -> None:
    xp, fam, k = ctx.xp, ctx.game.config, model.moments
    ctx.model = model
    pf = _patch_features(ctx, k)  # (N_o, P, K)
    # rows per block while they pass the MLP: its widest layer, a few copies
    per_row = block_size(ctx.memory_budget, fam.n_patches * EMBED_ROW_BYTES, 1, cap=None)
    ctx.patch_emb = _embed(model.embed_patches, pf, per_row, xp)  # (N_o, P, E)
    rf = row_features(ctx.rows, k, xp, block=ctx.block(3), scheduler=ctx.scheduler)  # (N, P, K)
    ctx.row_emb = _embed(model.embed_rows, rf, per_row, xp)  # (N, P, E)


def save(model: PsimModel) -> tuple[dict, dict]:
    arrays = {f"o.{k}": to_numpy(v) for k, v in model.orig.items()}
    arrays.update({f"e.{k}": to_numpy(v) for k, v in model.enc.items()})
    return arrays, {"log_t": model.log_t, "moments": model.moments}


def load(arrays: dict, meta: dict, ctx: Context) -> PsimModel:
    xp = ctx.xp
    return PsimModel({k[2:]: xp.asarray(v) for k, v in arrays.items() if k.startswith("o.")},
                     {k[2:]: xp.asarray(v) for k, v in arrays.items() if k.startswith("e.")},
                     meta["log_t"], meta["moments"])


STAGE = register(Stage(
    name="psim", fields=("psim",), sources=(sys.modules[__name__], psim_method, mlp, moments, encodings, passes),
    compute=compute, attach=attach, save=save, load=load,
))
