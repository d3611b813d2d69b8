"""Matched pairs held back from model extraction: when to stop a fit, and the attacker's own estimate.

The attack has no fresh images of Alice's, but it can keep some of its own matched pairs out of
both fits (:func:`holdout_split`: the same share of every BatchNorm batch). Their error
(:func:`held_out_error`) decides which parameters a fit keeps and when it stops; T''s
nearest-neighbour shares on them (:func:`held_out_scores`) are the attacker's estimate of its
Challenge 2 score, made without Alice's key.

Alice encoded every image with BatchNorm statistics of its whole batch, so a held-back pair is
measured the same way: T''s statistics come from the images of its batch, fitted ones included
(at most :data:`STATS_IMAGES` of them), never from the few held-back images alone.
"""
from __future__ import annotations

from typing import TYPE_CHECKING, NamedTuple

import numpy as np

from .backend import Array, Namespace, to_numpy
from .batch_sample import whole_batches
from .encoder import EncoderConfig, patchify
from .nearest import nearest_shares
from .tprime import batch_stats, batch_stats_of, forward

if TYPE_CHECKING:
    from .extraction import ExtractConfig
    from .mlp import Params

HOLD_STREAM = 0xE9  # tag mixed into the seed: the held-back pairs are an independent draw
MIN_HELD_OUT = 32  # fewer held-back images than this: no hold-out (every pair is fitted)
EVAL_BATCHES = 2  # the held-out error is measured on the held-back pairs of at most this many batches
STATS_IMAGES = 128  # images of a batch (held-back ones first) whose T' statistics the measurement uses


class Split(NamedTuple):
    fit: np.ndarray  # (n_fit,) host indices of the pairs a fit trains on
    held: np.ndarray  # (n_held,) host indices of the pairs held back (may be empty)


class HeldOut(NamedTuple):
    """How a fit's held-out error is measured: per evaluated batch, whose error and whose statistics."""

    batches: tuple[tuple[np.ndarray, np.ndarray], ...]  # (held indices, statistics indices), host, per batch
    scale: float  # sum of squared deviations of those held-back targets from their mean


def holdout_split(groups: np.ndarray, cfg: ExtractConfig) -> Split:
    """Hold back ``cfg.holdout`` of the pairs, the same share of each BatchNorm batch, from ``cfg.seed``.

    Fewer than :data:`MIN_HELD_OUT` held back (a small game): nothing is, and every pair is fitted.
    """
    n = len(groups)
    everything = Split(np.arange(n), np.arange(0))
    if cfg.holdout <= 0 or cfg.holdout * n < MIN_HELD_OUT:
        return everything
    rng = np.random.default_rng([cfg.seed, HOLD_STREAM])
    held = []
    for g in np.unique(groups):
        members = np.flatnonzero(groups == g)
        k = round(cfg.holdout * len(members))
        if 0 < k < len(members):
            held.append(rng.choice(members, k, replace=False))
    if not held:
        return everything
    held = np.sort(np.concatenate(held))
    return Split(np.setdiff1d(np.arange(n), held), held)


def held_out_plan(targets: Array, groups: np.ndarray, split: Split, xp: Namespace) -> HeldOut | None:
    """What :func:`held_out_error` measures: the held-back pairs of the :data:`EVAL_BATCHES` batches
    holding most of them, each with its batch's statistics images; ``None`` when nothing is held back."""
    if len(split.held) == 0:
        return None
    ids, counts = np.unique(groups[split.held], return_counts=True)
    chosen = np.sort(ids[np.argsort(-counts, kind="stable")[:EVAL_BATCHES]])
    batches, scale = [], 0.0
    for g in chosen:
        held = split.held[groups[split.held] == g]
        fitted = split.fit[groups[split.fit] == g]
        stats = np.concatenate([held, fitted[:max(0, STATS_IMAGES - len(held))]])
        batches.append((held, stats))
        t = targets[xp.asarray(held)]
        scale += float(((t - t.mean(axis=(0, 1))) ** 2).sum())
    return HeldOut(tuple(batches), scale)


def held_out_error(params: Params, rows: Array, targets: Array, plan: HeldOut, family: EncoderConfig,
                   xp: Namespace) -> float:
    """Squared error of T' on the plan's held-back pairs over their targets' spread (0: exact; 1: no better
    than each batch's mean). ``rows`` (n, P, F) are the patch rows the fit trains on, ``targets`` (n, P, D);
    BatchNorm takes each batch's statistics from the plan's statistics images, as Alice's encoder did."""
    err = 0.0
    for held, stats_idx in plan.batches:
        stats = batch_stats(params, rows[xp.asarray(stats_idx)], family, xp) if family.depth > 0 else None
        idx = xp.asarray(held)
        r = forward(params, rows[idx], family, xp, bn_stats=stats).y - targets[idx]
        err += float((r * r).sum())
    return err / max(plan.scale, 1e-30)


def _held_out_outputs(params: Params, images: Array, targets: Array, groups: np.ndarray, held: np.ndarray,
                      family: EncoderConfig, xp: Namespace, summary) -> tuple[np.ndarray, np.ndarray]:
    """``(truth, est)`` host, in ``held``'s order: ``summary`` of each held-back pair's target and T' output.

    Each held-back image is encoded by T' with the BatchNorm statistics of its whole batch (as
    Alice's encoder saw it); ``summary`` maps (n, P, D) to (n, d). Only the held-back pairs of the
    batches :func:`~empirical.batch_sample.whole_batches` draws are used (all of them unless the
    game's images hold more than :data:`~empirical.batch_sample.SAMPLE_ROWS` patch rows).
    """
    out = []
    held = np.intersect1d(held, whole_batches(groups, family.n_patches))
    for g in np.unique(groups[held]):
        stats = batch_stats_of(params, images, groups, g, family, xp)
        mine = held[groups[held] == g]
        y = forward(params, patchify(xp.asarray(images[xp.asarray(mine)], dtype=xp.float32), family.patch), family, xp,
                    bn_stats=stats).y  # (n_g, P, D)
        out.append((mine, to_numpy(summary(y)), to_numpy(summary(targets[xp.asarray(mine)]))))
    order = np.concatenate([m for m, _, _ in out])
    est, truth = np.concatenate([e for _, e, _ in out]), np.concatenate([t for _, _, t in out])
    keep = np.argsort(order)
    return truth[keep], est[keep]


def held_out_scores(params: Params, images: Array, targets: Array, groups: np.ndarray, held: np.ndarray,
                    family: EncoderConfig, xp: Namespace) -> dict:
    """The attacker's own Challenge 2 estimate on pairs no fit has seen: both nearest-neighbour shares.

    ``images`` (n, C, H, W) the matched originals, ``targets`` (n, P, D) the encodings matched to
    them, ``groups`` (n,) host their BatchNorm batches, ``held`` the host indices of the held-back
    pairs. Outputs and targets are summarised by their patch means, as Challenge 2 does.
    """
    truth, est = _held_out_outputs(params, images, targets, groups, held, family, xp, lambda a: a.mean(axis=1))
    return {**nearest_shares(truth, est), "n": len(truth)}


def held_out_matching(params: Params, images: Array, targets: Array, groups: np.ndarray, held: np.ndarray,
                      family: EncoderConfig, xp: Namespace) -> dict:
    """How often T' picks each held-back pair's own encoding among the held-back encodings (arguments as
    :func:`held_out_scores`): ``rows`` comparing every row, ``patch_means`` comparing patch means, and
    ``n``, the held-back pairs; each share is the ``est_to_nearest_truth`` of :func:`nearest_shares`."""
    truth, est = _held_out_outputs(params, images, targets, groups, held, family, xp, lambda a: a)  # (n, P, D)
    n = len(truth)
    rows = nearest_shares(truth.reshape(n, -1), est.reshape(n, -1))["est_to_nearest_truth"]
    means = nearest_shares(truth.mean(axis=1), est.mean(axis=1))["est_to_nearest_truth"]
    return {"rows": rows, "patch_means": means, "n": n}
