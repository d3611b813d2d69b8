"""Model extraction (paper §2.3.1): fit T' of the public architecture to matched pairs.

With the matching and both permutations known, every matched original comes with the rows its
encoding should have, in patch-position order. T' has NeuraCrypt's architecture (the network,
with its hand-written gradients, is :mod:`empirical.tprime`) and is fitted by Adam on a robust
loss (Huber with a small threshold, i.e. L1 away from zero) so the few wrongly matched pairs
cannot pull it far. Each step uses images from one of Alice's BatchNorm batches (known from the
file numbering), so T' sees the same batch statistics as T did.

The patch pixels are strongly correlated (neighbouring pixels of natural images), so the first
layer's loss is badly conditioned in pixel coordinates and Adam, a per-coordinate method, moves
slowly along the low-variance pixel directions that still matter for the output. T' is therefore
trained on whitened patches (PCA whitening, with a floor on the eigenvalues) and its first layer
is mapped back to pixels afterwards; the function T' computes is unchanged by this.

:func:`refine_encoder` continues a fit on a cleaner matching (the one T' itself finds) with a
plain squared loss, which is what the nearest-neighbour use of T' measures.

Extraction adapts to the game. Steps are given for NeuraCrypt-7's default size and scaled up for
families whose steps cost less (:func:`step_scale`: NeuraCrypt-2's cost about a third), so
every family gets about the same work. A share of the matched images (:attr:`ExtractConfig.holdout`)
is held back from both fits: every :data:`EVAL_EVERY` steps their error is measured, the
parameters with the lowest held-out error are kept, and a fit stops once that error has not
improved for :data:`PATIENCE` checks. The held-back pairs also give the attacker its own
estimate of T''s Challenge 2 score (:func:`held_out_scores`), with no help from Alice.
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import NamedTuple

import numpy as np

from .backend import Array, Namespace, to_numpy
from .encoder import EncoderConfig, patchify, random_key
from .mlp import Adam, Params
from .progress import Progress
from .tprime import (
    BatchNormStats,
    backward,
    batch_stats,
    encode_each,
    forward,
    key_from_params,
    mean_batch_stats,
    params_from_key,
)

# The network's functions are importable from here too, where the attack's callers have found them.
__all__ = ["BatchNormStats", "EncoderFit", "ExtractConfig", "HeldOut", "LossAndGradient", "Split", "Whitening",
           "backward", "batch_stats", "encode_each", "fit_encoder", "fit_steps", "forward", "held_out_error",
           "held_out_scores", "holdout_split", "huber_loss", "key_from_params", "mean_batch_stats",
           "nearest_shares", "params_from_key", "patch_whitening", "refine_encoder", "refit_mixer", "squared_loss",
           "step_cost", "step_scale"]

FIT_STREAM, REFINE_STREAM, HOLD_STREAM = 0xE7, 0xE8, 0xE9  # tags mixed into the seed: independent draws
CENTRE_IMAGES = 64  # images whose patches set each first-layer bias (to minus the median response) at the start
REVIVE_EVERY = 10  # steps between checks for first-layer units that are off for every patch
REVIVE_IMAGES = 16  # images whose patches centre a re-drawn unit
WARMUP_STEPS = 20  # the learning rate rises linearly over this many steps, then decays as a half cosine
EVAL_EVERY = 25  # steps between measurements of the held-out error
PATIENCE = 4  # a fit stops after this many measurements without a lower held-out error
MIN_HELD_OUT = 32  # fewer held-back images than this: no hold-out (every pair is fitted)
MAX_STEP_SCALE = 4.0  # the most that step_scale multiplies the configured steps by
BN_ELEMENTWISE = 40  # per-row, per-unit operations of a block's BatchNorm and ReLU, forward and backward
WHITEN_ROWS = 16384  # about this many patch rows (every k-th) estimate the whitening covariance
MIXER_RIDGE = 1e-4  # refit_mixer's ridge per data row: the penalty added to the Gram matrix is ridge * rows * I


@dataclass(frozen=True)
class ExtractConfig:
    steps: int = 250  # Adam steps of fit_encoder (robust loss)
    images_per_step: int = 64  # images per step of fit_encoder, all from one of Alice's BatchNorm batches
    lr: float = 2e-3  # fit_encoder's peak Adam learning rate (per step), before warm-up and cosine decay
    huber: float = 0.05  # threshold of the robust loss, in units of the targets' standard deviation
    whiten: float = 1e-3  # eigenvalue floor of fit_encoder's patch whitening, relative to the largest (0: off)
    refine_whiten: float = 1e-3  # the same for refine_encoder
    refine_steps: int = 450  # Adam steps of refine_encoder (squared loss; 0: no refit of the whole network)
    refine_lr: float = 4e-3  # refine_encoder's peak Adam learning rate (per step)
    refine_images_per_step: int = 64  # images per step of refine_encoder, from one BatchNorm batch
    holdout: float = 0.1  # share of the matched images held back from both fits (stopping, self-estimate)
    adapt_steps: bool = True  # scale steps and refine_steps by step_scale(family)
    seed: int = 0  # seeds T''s initialisation, the held-back images and the batches drawn in both fits


class LossAndGradient(NamedTuple):
    loss: float  # the mean loss over every output value
    grad: Array  # d loss / d y, the shape of y


class Whitening(NamedTuple):
    """``(x - mean) @ transform`` has about identity covariance over patch rows ``x``."""

    mean: Array  # (C*p*p,) float64
    transform: Array  # (C*p*p, C*p*p) float64


class WhitenedPatches(NamedTuple):
    rows: Array  # (n, P, C*p*p) float32, whitened
    mean: Array  # the Whitening's mean and transform
    transform: Array


class EncoderFit(NamedTuple):
    params: Params  # T''s parameters, acting on pixels
    losses: list[float]  # the loss at each step
    held_out: tuple[tuple[int, float], ...] = ()  # (steps done, held-out relative squared error) at each check
    best_step: int = 0  # the steps done when the kept parameters were reached (0: no hold-out)


class HeldOut(NamedTuple):
    """Matched pairs kept out of a fit, to measure it on."""

    rows: Array  # (h, P, C*p*p) patch rows, prepared (whitened) as the fit's own
    targets: Array  # (h, P, D)
    groups: np.ndarray  # (h,) host, each pair's BatchNorm batch


class Split(NamedTuple):
    fit: np.ndarray  # (n_fit,) host indices of the pairs a fit trains on
    held: np.ndarray  # (n_held,) host indices of the pairs held back (may be empty)


LossFn = Callable[[Array, Array], LossAndGradient]


def huber_loss(y: Array, target: Array, delta: float, xp: Namespace) -> LossAndGradient:
    """Mean Huber loss and its gradient with respect to ``y``."""
    r = y - target
    a = xp.abs(r)
    quad = a <= delta
    loss = xp.where(quad, 0.5 * r * r / delta, a - 0.5 * delta).mean()
    grad = xp.where(quad, r / delta, xp.sign(r)) / r.size
    return LossAndGradient(float(loss), grad)


def squared_loss(y: Array, target: Array, xp: Namespace) -> LossAndGradient:
    """Mean squared error and its gradient with respect to ``y``."""
    r = y - target
    return LossAndGradient(float((r * r).mean()), 2 * r / r.size)


def step_cost(family: EncoderConfig) -> float:
    """Arithmetic of one image's forward and backward pass through T', about (for step_scale)."""
    d = family.hidden
    per_row = 2 * family.patch_dim * d  # the patch layer: forward and weight gradient
    if family.depth >= 0:
        per_row += family.depth * (3 * d * d + BN_ELEMENTWISE * d) + 3 * d * d  # blocks, then the mixer
    return float(family.n_patches * per_row)


def step_scale(family: EncoderConfig) -> float:
    """How much more steps ``family`` gets than NeuraCrypt-7 at its default size, for the same work.

    The ratio of :func:`step_cost` s, at least 1 (a costlier family keeps the configured steps) and
    at most :data:`MAX_STEP_SCALE`. The linear family is solved by least squares, so it gets 1.
    """
    if family.depth == -1:
        return 1.0
    reference = EncoderConfig(channels=1, image_size=128, patch=16, hidden=256, depth=4)
    return float(min(MAX_STEP_SCALE, max(1.0, step_cost(reference) / step_cost(family))))


def fit_steps(cfg: ExtractConfig, family: EncoderConfig) -> tuple[int, int]:
    """``(steps, refine_steps)`` for ``family``: the configured ones, scaled when ``cfg.adapt_steps``."""
    scale = step_scale(family) if cfg.adapt_steps else 1.0
    return round(cfg.steps * scale), round(cfg.refine_steps * scale)


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


def held_out_error(params: Params, held: HeldOut, family: EncoderConfig, xp: Namespace) -> float:
    """Squared error of T' on held-back pairs over the targets' variance (BatchNorm on each batch's pairs)."""
    err = 0.0
    for g in np.unique(held.groups):
        idx = xp.asarray(np.flatnonzero(held.groups == g))
        r = forward(params, held.rows[idx], family, xp).y - held.targets[idx]
        err += float((r * r).sum())
    return err / (held.targets.size * float(held.targets.var()))


def held_out_scores(params: Params, images: Array, targets: Array, groups: np.ndarray, held: np.ndarray,
                    family: EncoderConfig, xp: Namespace) -> dict:
    """The attacker's own Challenge 2 estimate on pairs no fit has seen: both nearest-neighbour shares.

    ``images`` (n, C, H, W) the matched originals, ``targets`` (n, P, D) the encodings matched to
    them, ``groups`` (n,) host their BatchNorm batches, ``held`` the host indices of the held-back
    pairs. Each held-back image is encoded by T' with the BatchNorm statistics of its whole batch
    (as Alice's encoder saw it); outputs and targets are summarised by their patch means.
    """
    out = []
    for g in np.unique(groups[held]):
        rows = patchify(xp.asarray(images[xp.asarray(np.flatnonzero(groups == g))], dtype=xp.float32), family.patch)
        stats = batch_stats(params, rows, family, xp)
        mine = held[groups[held] == g]
        y = forward(params, patchify(xp.asarray(images[xp.asarray(mine)], dtype=xp.float32), family.patch), family, xp,
                    bn_stats=stats).y
        out.append((mine, to_numpy(y.mean(axis=1)), to_numpy(targets[xp.asarray(mine)].mean(axis=1))))
    order = np.concatenate([m for m, _, _ in out])
    est, truth = np.concatenate([e for _, e, _ in out]), np.concatenate([t for _, _, t in out])
    keep = np.argsort(order)
    return {**nearest_shares(truth[keep], est[keep]), "n": len(order)}


def nearest_shares(truth: np.ndarray, est: np.ndarray) -> dict:
    """Challenge 2's nearest-neighbour shares between (n, D) summaries ``truth[i]`` and ``est[i]``.

    ``est_to_nearest_truth``: est[i] is closest to truth[i] among all truth rows (T'(x) to the
    nearest T(x')); ``truth_to_nearest_est``: truth[i] is closest to est[i] among all est rows (the
    public challenge's script: T(x) to the nearest submitted vector).
    """
    a, b = np.asarray(truth, np.float64), np.asarray(est, np.float64)
    d2 = (b * b).sum(1)[:, None] - 2 * b @ a.T + (a * a).sum(1)[None, :]  # (n, n): est i vs truth j
    idx = np.arange(len(a))
    return {"est_to_nearest_truth": float(np.mean(d2.argmin(axis=1) == idx)),
            "truth_to_nearest_est": float(np.mean(d2.argmin(axis=0) == idx))}


def _revive_dead_units(params: Params, opt: Adam, z0: Array, rows: Array, rng: np.random.Generator,
                       xp: Namespace) -> int:
    """Re-draw first-layer units that are off for every patch of the step, centred on the data.

    A unit whose ReLU is off everywhere gets no gradient and never comes back; without BatchNorm
    after it (neuracrypt-2) Adam's early steps can switch many off. Returns how many were re-drawn.
    """
    dead = to_numpy((z0 > 0).sum(axis=0) == 0)
    n_dead = int(dead.sum())
    if n_dead == 0:
        return 0
    fan_in = params["W0"].shape[1]
    bound = 1.0 / np.sqrt(fan_in)  # PyTorch's default initialisation, as the family's keys use
    w = xp.asarray(rng.uniform(-bound, bound, (n_dead, fan_in)).astype(np.float32))
    pick = rng.choice(rows.shape[0], min(REVIVE_IMAGES, rows.shape[0]), replace=False)
    sample = rows[xp.asarray(pick)].reshape(-1, fan_in)
    units = xp.asarray(np.flatnonzero(dead))
    params["W0"][units] = w
    params["b0"][units] = -xp.median(sample @ w.T, axis=0)
    for state in (opt.m, opt.v):
        state["W0"][units] = 0
        state["b0"][units] = 0
    return n_dead


def patch_whitening(rows: Array, eps: float, xp: Namespace) -> Whitening:
    """``(mean, transform)`` such that ``(x - mean) @ transform`` has (about) identity covariance.

    Eigenvalues below ``eps`` times the largest are floored there, so directions the patches hardly
    use (pixel noise) are not blown up. ``eps = 0`` gives the identity (no whitening).
    """
    flat = rows.reshape(-1, rows.shape[-1])
    mu = flat.mean(axis=0).astype(xp.float64)
    if eps <= 0:
        return Whitening(mu * 0, xp.eye(flat.shape[1], dtype=xp.float64))
    sub = flat[:: max(1, flat.shape[0] // WHITEN_ROWS)].astype(xp.float64) - mu
    s, u = xp.linalg.eigh(sub.T @ sub / sub.shape[0])
    s = xp.maximum(s, 0)
    return Whitening(mu, u / xp.sqrt(s + eps * float(s.max())))


def _to_white(params: Params, mu: Array, z: Array, xp: Namespace) -> Params:
    """Parameters acting on whitened patches, for T' given in pixel coordinates."""
    out = dict(params)
    w0 = params["W0"].astype(xp.float64)
    out["W0"] = (w0 @ xp.linalg.inv(z).T).astype(xp.float32)  # W0 x = W0 Z^-T ((x - mu) Z) + W0 mu
    out["b0"] = (params["b0"] + w0 @ mu).astype(xp.float32)
    return out


def _from_white(params: Params, mu: Array, z: Array, xp: Namespace) -> Params:
    """Parameters in pixel coordinates, for T' trained on whitened patches."""
    out = dict(params)
    w0 = params["W0"].astype(xp.float64) @ z.T  # (D, C*p*p)
    out["W0"] = w0.astype(xp.float32)
    out["b0"] = (params["b0"] - w0 @ mu).astype(xp.float32)
    return out


def _whitened_patches(images: Array, family: EncoderConfig, eps: float, xp: Namespace) -> WhitenedPatches:
    """``(rows, mean, transform)``: the images' patch rows whitened by :func:`patch_whitening`."""
    rows = patchify(xp.asarray(images, dtype=xp.float32), family.patch)
    mu, z = patch_whitening(rows, eps, xp)
    flat = (rows.reshape(-1, rows.shape[2]).astype(xp.float64) - mu) @ z
    return WhitenedPatches(flat.astype(xp.float32).reshape(rows.shape), mu, z)


class TrainLog(NamedTuple):
    losses: list[float]  # the training loss at each step run
    held_out: list[tuple[int, float]]  # (steps done, held-out error) at each check
    best_step: int  # steps done when the returned parameters were reached (the last step without a hold-out)


def _train(params: Params, rows: Array, targets: Array, groups: np.ndarray, family: EncoderConfig, steps: int,
           lr: float, images_per_step: int, loss_fn: LossFn, rng: np.random.Generator, xp: Namespace,
           revive: bool, progress: Progress | None, held: HeldOut | None = None) -> TrainLog:
    """Adam steps on ``params`` (in place), each on images of one BatchNorm batch.

    The learning rate warms up over :data:`WARMUP_STEPS` and decays as a half cosine over ``steps``.
    With ``held``, the held-out error is measured every :data:`EVAL_EVERY` steps and at the end;
    ``params`` end as the measured parameters with the lowest, and training stops after
    :data:`PATIENCE` measurements without a new lowest (the progress bar is advanced to its end).
    """
    members = [np.flatnonzero(groups == g) for g in np.unique(groups)]
    opt = Adam(params, xp, lr=lr, average_decay=0.0)  # the weight average is not used here
    losses: list[float] = []
    curve: list[tuple[int, float]] = []
    best_err, best, best_step, since = np.inf, None, steps, 0
    for step in range(steps):
        idx = members[rng.integers(len(members))]
        if len(idx) > images_per_step:
            idx = rng.choice(idx, images_per_step, replace=False)
        idx = xp.asarray(idx)
        y, cache = forward(params, rows[idx], family, xp)
        loss, dy = loss_fn(y, targets[idx])
        f = min(1.0, (step + 1) / WARMUP_STEPS) * 0.5 * (1 + np.cos(np.pi * step / steps))
        opt.step(params, backward(params, cache, dy, family, xp), lr=lr * f)
        if revive and step % REVIVE_EVERY == 0:
            _revive_dead_units(params, opt, cache.z0, rows, rng, xp)
        losses.append(loss)
        if progress is not None:
            progress(1)
        if held is not None and ((step + 1) % EVAL_EVERY == 0 or step + 1 == steps):
            err = held_out_error(params, held, family, xp)
            curve.append((step + 1, err))
            if err < best_err:
                best_err, best, best_step, since = err, {k: v.copy() for k, v in params.items()}, step + 1, 0
            else:
                since += 1
            if since >= PATIENCE:
                if progress is not None:
                    progress(steps - step - 1)
                break
    if best is not None:
        params.update(best)
    return TrainLog(losses, curve, best_step)


def _held(prepared: Array, targets: Array, groups: np.ndarray, split: Split, xp: Namespace) -> HeldOut | None:
    if len(split.held) == 0:
        return None
    h = xp.asarray(split.held)
    return HeldOut(prepared[h], targets[h], groups[split.held])


def fit_encoder(images: Array, targets: Array, groups: np.ndarray, family: EncoderConfig, cfg: ExtractConfig,
                xp: Namespace, progress: Progress | None = None) -> EncoderFit:
    """Fit T' to ``targets`` (n, P, D): the rows of the encoding matched to each image, in position order.

    ``groups`` (n,) host is each pair's BatchNorm batch. The pairs :func:`holdout_split` holds back
    are not fitted (they decide when to stop). Returns an :class:`EncoderFit`.
    """
    rng = np.random.default_rng([cfg.seed, FIT_STREAM])
    params = params_from_key(random_key(family, rng.integers(2**63)), xp)
    split = holdout_split(groups, cfg)
    steps, _ = fit_steps(cfg, family)
    images = xp.asarray(images)  # no copy when they are on the device already
    rows, mu, z = _whitened_patches(images, family, cfg.whiten, xp)  # (n, P, C*p*p)
    fit = xp.asarray(split.fit)
    # Centre each first-layer unit on the data: a random bias can leave units that are off for
    # every patch, and a dead unit never recovers (neuracrypt-2 lost all of them this way).
    pick = rng.choice(split.fit, min(CENTRE_IMAGES, len(split.fit)), replace=False)
    sample = rows[xp.asarray(pick)].reshape(-1, rows.shape[2])
    params["b0"] = -xp.median(sample @ params["W0"].T, axis=0).astype(xp.float32)
    targets = xp.asarray(targets, dtype=xp.float32)
    delta = cfg.huber * float(targets.std())
    log = _train(params, rows[fit], targets[fit], groups[split.fit], family, steps, cfg.lr, cfg.images_per_step,
                 lambda y, t: huber_loss(y, t, delta, xp), rng, xp, True, progress,
                 held=_held(rows, targets, groups, split, xp))
    params = refit_mixer(_from_white(params, mu, z, xp), images[fit], targets[fit], groups[split.fit], family, xp)
    return EncoderFit(params, log.losses, tuple(log.held_out), log.best_step if log.held_out else 0)


def refine_encoder(params: Params, images: Array, targets: Array, groups: np.ndarray, family: EncoderConfig,
                   cfg: ExtractConfig, xp: Namespace, progress: Progress | None = None) -> EncoderFit:
    """Continue fitting T' (warm start from ``params``) with a squared loss; an :class:`EncoderFit`.

    Meant for pairs that are all (or nearly all) right, such as the matching T' itself gives:
    without outliers to resist, the squared loss fits the mean, which is what a distance between
    encodings compares. The pairs :func:`holdout_split` holds back (the same as
    :func:`fit_encoder`'s) are not fitted. The last layer is refitted by least squares at the end,
    as in :func:`fit_encoder`.
    """
    split = holdout_split(groups, cfg)
    fit = xp.asarray(split.fit)
    images, targets = xp.asarray(images), xp.asarray(targets, dtype=xp.float32)
    _, steps = fit_steps(cfg, family)
    if family.depth == -1 or steps <= 0:  # the linear family is already solved exactly
        return EncoderFit(refit_mixer(params, images[fit], targets[fit], groups[split.fit], family, xp), [])
    rng = np.random.default_rng([cfg.seed, REFINE_STREAM])
    rows, mu, z = _whitened_patches(images, family, cfg.refine_whiten, xp)
    work = {k: v.copy() for k, v in _to_white(params, mu, z, xp).items()}
    log = _train(work, rows[fit], targets[fit], groups[split.fit], family, steps, cfg.refine_lr,
                 cfg.refine_images_per_step, lambda y, t: squared_loss(y, t, xp), rng, xp, False, progress,
                 held=_held(rows, targets, groups, split, xp))
    params = refit_mixer(_from_white(work, mu, z, xp), images[fit], targets[fit], groups[split.fit], family, xp)
    return EncoderFit(params, log.losses, tuple(log.held_out), log.best_step if log.held_out else 0)


def refit_mixer(params: Params, images: Array, targets: Array, groups: np.ndarray, family: EncoderConfig,
                xp: Namespace, ridge: float = MIXER_RIDGE) -> Params:
    """Refit the last Linear layer of T' by ridge least squares on all matched pairs.

    Given the layers below, the output is linear in the mixer's weights, so its best value is a
    regression of the targets on T''s penultimate features (BatchNorm with each of Alice's
    batches' own statistics). For the linear family the whole encoder is that one layer, and the
    regression recovers it outright.
    """
    d = family.hidden
    n_in = family.patch_dim if family.depth == -1 else d
    images = xp.asarray(images)  # no copy when they are on the device already
    gram = xp.zeros((n_in + 1, n_in + 1), dtype=xp.float64)
    cross = xp.zeros((n_in + 1, d), dtype=xp.float64)
    count = 0
    for g in np.unique(groups):
        idx = xp.asarray(np.flatnonzero(groups == g))
        rows = patchify(xp.asarray(images[idx], dtype=xp.float32), family.patch)
        cache = forward(params, rows, family, xp).cache
        # The last linear layer's input: the mixer's features, or the raw patches for the linear family.
        feats = (cache.x if family.depth == -1 else cache.g).astype(xp.float64)
        feats = xp.concatenate([feats, xp.ones((feats.shape[0], 1), dtype=xp.float64)], axis=1)
        y = targets[idx].reshape(feats.shape[0], -1).astype(xp.float64)
        gram += feats.T @ feats
        cross += feats.T @ y
        count += feats.shape[0]
    sol = xp.linalg.solve(gram + ridge * count * xp.eye(gram.shape[0]), cross)  # (features+1, D)
    out = dict(params)
    w, b = ("W0", "b0") if family.depth == -1 else ("Wm", "bm")
    out[w] = sol[:-1].T.astype(xp.float32).copy()
    out[b] = sol[-1].astype(xp.float32).copy()
    return out
