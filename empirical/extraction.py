"""Model extraction (paper §2.3.1): fit T' of the public architecture to matched pairs.

With the matching and both permutations known, every matched original comes with the rows its
encoding should have, in patch-position order. T' has NeuraCrypt's architecture (patch
convolution, 1x1 convolution + BatchNorm + ReLU blocks, positional embedding, ReLU, Linear; the
BatchNorm affine stays at weight 1, bias 0 as in the family) and is fitted by Adam on a robust
loss (Huber with a small threshold, i.e. L1 away from zero) so the few wrongly matched pairs
cannot pull it far. Each step uses images from one of Alice's BatchNorm batches (known from the
file numbering), so T' sees the same batch statistics as T did. Gradients are written by hand.

The patch pixels are strongly correlated (neighbouring pixels of natural images), so the first
layer's loss is badly conditioned in pixel coordinates and Adam, a per-coordinate method, moves
slowly along the low-variance pixel directions that still matter for the output. T' is therefore
trained on whitened patches (PCA whitening, with a floor on the eigenvalues) and its first layer
is mapped back to pixels afterwards; the function T' computes is unchanged by this.

:func:`refine_encoder` continues a fit on a cleaner matching (the one T' itself finds) with a
plain squared loss, which is what the nearest-neighbour use of T' measures.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .backend import to_numpy
from .encoder import BN_EPS, EncoderConfig, EncoderKey, patchify, random_key
from .mlp import Adam


@dataclass(frozen=True)
class ExtractConfig:
    steps: int = 250  # robust-loss steps of fit_encoder
    images_per_step: int = 64  # images of one BatchNorm batch used in a step
    lr: float = 2e-3
    huber: float = 0.05  # threshold of the robust loss, in units of the targets' std
    whiten: float = 1e-3  # eigenvalue floor of fit_encoder's patch whitening, relative to the largest (0: off)
    refine_whiten: float = 1e-3  # the same for refine_encoder
    refine_steps: int = 450  # squared-loss steps of refine_encoder
    refine_lr: float = 4e-3
    refine_images_per_step: int = 64
    seed: int = 0


def params_from_key(key: EncoderKey, xp) -> dict:
    """Trainable parameters of T' as a dict of ``xp`` arrays."""
    cfg = key.config
    p = {"W0": key.conv_w.reshape(cfg.hidden, -1), "b0": key.conv_b}
    for i, (w, b) in enumerate(zip(key.block_w, key.block_b, strict=True)):
        p[f"W{i + 1}"], p[f"b{i + 1}"] = w, b
    if cfg.depth >= 0:
        p["pos"], p["Wm"], p["bm"] = key.pos, key.mix_w, key.mix_b
    return {k: xp.array(v, dtype=xp.float32) for k, v in p.items()}


def key_from_params(params: dict, cfg: EncoderConfig) -> EncoderKey:
    """An :class:`EncoderKey` (host arrays) holding the fitted parameters."""
    from .backend import to_numpy

    h = {k: to_numpy(v).astype(np.float32) for k, v in params.items()}
    n = max(cfg.depth, 0)
    d = cfg.hidden
    return EncoderKey(
        cfg, h["W0"].reshape(d, cfg.channels, cfg.patch, cfg.patch), h["b0"],
        tuple(h[f"W{i + 1}"] for i in range(n)), tuple(h[f"b{i + 1}"] for i in range(n)),
        tuple(np.ones(d, np.float32) for _ in range(n)), tuple(np.zeros(d, np.float32) for _ in range(n)),
        h.get("pos"), h.get("Wm"), h.get("bm"),
    )


def forward(params: dict, rows, cfg: EncoderConfig, xp, bn_stats=None):
    """T' on patch rows (n, P, C*p*p) -> (n, P, D), keeping what the backward pass needs.

    BatchNorm uses the batch's own statistics unless ``bn_stats`` (a list of (mean, var) per
    block) is given, which encodes each image on its own with those statistics.
    """
    n, P, _ = rows.shape
    x = rows.reshape(n * P, -1)
    z0 = x @ params["W0"].T + params["b0"]
    cache = {"x": x, "z0": z0, "blocks": [], "shape": (n, P), "frozen_bn": bn_stats is not None}
    if cfg.depth == -1:
        return z0.reshape(n, P, -1), cache
    h = xp.maximum(z0, 0)
    for i in range(cfg.depth):
        u = h @ params[f"W{i + 1}"].T + params[f"b{i + 1}"]
        if bn_stats is None:
            mean = u.mean(axis=0)
            var = ((u - mean) ** 2).mean(axis=0)
        else:
            mean, var = bn_stats[i]
        inv = 1.0 / xp.sqrt(var + BN_EPS)
        xhat = (u - mean) * inv
        cache["blocks"].append((h, xhat, inv, mean, var))
        h = xp.maximum(xhat, 0)
    a = h.reshape(n, P, -1) + params["pos"]
    g = xp.maximum(a, 0).reshape(n * P, -1)
    y = g @ params["Wm"].T + params["bm"]
    cache["h_last"], cache["g"] = h, g
    return y.reshape(n, P, -1), cache


def backward(params: dict, cache: dict, dy, cfg: EncoderConfig, xp) -> dict:
    """Gradients of the loss for every parameter, given d loss / d output (n, P, D)."""
    n, P = cache["shape"]
    dy = dy.reshape(n * P, -1)
    grads = {}
    if cfg.depth == -1:
        dz0 = dy
    else:
        g = cache["g"]
        grads["Wm"] = dy.T @ g
        grads["bm"] = dy.sum(axis=0)
        da = (dy @ params["Wm"]) * (g > 0)
        grads["pos"] = da.reshape(n, P, -1).sum(axis=0)
        dh = da
        for i in reversed(range(cfg.depth)):
            h_in, xhat, inv, _, _ = cache["blocks"][i]
            dx = dh * (xhat > 0)
            if cache["frozen_bn"]:
                du = inv * dx
            else:  # batch statistics: the mean and variance depend on every row
                du = inv * (dx - dx.mean(axis=0) - xhat * (dx * xhat).mean(axis=0))
            grads[f"W{i + 1}"] = du.T @ h_in
            grads[f"b{i + 1}"] = du.sum(axis=0)
            dh = du @ params[f"W{i + 1}"]
        dz0 = dh * (cache["z0"] > 0)
    grads["W0"] = dz0.T @ cache["x"]
    grads["b0"] = dz0.sum(axis=0)
    return grads


def huber_loss(y, target, delta: float, xp):
    """Mean Huber loss and its gradient with respect to ``y``."""
    r = y - target
    a = xp.abs(r)
    quad = a <= delta
    loss = xp.where(quad, 0.5 * r * r / delta, a - 0.5 * delta).mean()
    grad = xp.where(quad, r / delta, xp.sign(r)) / r.size
    return float(loss), grad


def batch_stats(params: dict, rows, cfg: EncoderConfig, xp, chunk: int = 64) -> list:
    """Per-block BatchNorm (mean, var) of T' on a batch of patch rows (n, P, C*p*p).

    Computed block by block over chunks of images, so no more than a chunk's activations are held.
    """
    n, P, _ = rows.shape
    h = [xp.maximum(rows[s:s + chunk].reshape(-1, rows.shape[2]) @ params["W0"].T + params["b0"], 0)
         for s in range(0, n, chunk)]
    out = []
    for i in range(cfg.depth):
        u = [a @ params[f"W{i + 1}"].T + params[f"b{i + 1}"] for a in h]
        mean = sum(a.sum(axis=0) for a in u) / (n * P)
        var = sum(((a - mean) ** 2).sum(axis=0) for a in u) / (n * P)
        out.append((mean, var))
        inv = 1.0 / xp.sqrt(var + BN_EPS)
        h = [xp.maximum((a - mean) * inv, 0) for a in u]
    return out


def _revive_dead_units(params: dict, opt: Adam, z0, rows, rng: np.random.Generator, xp) -> int:
    """Re-draw first-layer units that are off for every patch of the step, centred on the data.

    A unit whose ReLU is off everywhere gets no gradient and never comes back; without BatchNorm
    after it (neuracrypt-2) Adam's early steps can switch many off. Returns how many were re-drawn.
    """
    dead = to_numpy((z0 > 0).sum(axis=0) == 0)
    n_dead = int(dead.sum())
    if n_dead == 0:
        return 0
    fan_in = params["W0"].shape[1]
    bound = 1.0 / np.sqrt(fan_in)
    w = xp.asarray(rng.uniform(-bound, bound, (n_dead, fan_in)).astype(np.float32))
    sample = rows[xp.asarray(rng.choice(rows.shape[0], min(16, rows.shape[0]), replace=False))].reshape(-1, fan_in)
    units = xp.asarray(np.flatnonzero(dead))
    params["W0"][units] = w
    params["b0"][units] = -xp.median(sample @ w.T, axis=0)
    for state in (opt.m, opt.v):
        state["W0"][units] = 0
        state["b0"][units] = 0
    return n_dead


def patch_whitening(rows, eps: float, xp) -> tuple:
    """``(mu, Z)`` such that ``(x - mu) @ Z`` has (about) identity covariance over patch rows ``x``.

    Eigenvalues below ``eps`` times the largest are floored there, so directions the patches hardly
    use (pixel noise) are not blown up. ``eps = 0`` gives the identity (no whitening).
    """
    flat = rows.reshape(-1, rows.shape[-1])
    mu = flat.mean(axis=0).astype(xp.float64)
    if eps <= 0:
        return mu * 0, xp.eye(flat.shape[1], dtype=xp.float64)
    sub = flat[:: max(1, flat.shape[0] // 16384)].astype(xp.float64) - mu
    s, u = xp.linalg.eigh(sub.T @ sub / sub.shape[0])
    s = xp.maximum(s, 0)
    return mu, u / xp.sqrt(s + eps * float(s.max()))


def _to_white(params: dict, mu, z, xp) -> dict:
    """Parameters acting on whitened patches, for T' given in pixel coordinates."""
    out = dict(params)
    w0 = params["W0"].astype(xp.float64)
    out["W0"] = (w0 @ xp.linalg.inv(z).T).astype(xp.float32)  # W0 x = W0 Z^-T ((x - mu) Z) + W0 mu
    out["b0"] = (params["b0"] + w0 @ mu).astype(xp.float32)
    return out


def _from_white(params: dict, mu, z, xp) -> dict:
    """Parameters in pixel coordinates, for T' trained on whitened patches."""
    out = dict(params)
    w0 = params["W0"].astype(xp.float64) @ z.T  # (D, C*p*p)
    out["W0"] = w0.astype(xp.float32)
    out["b0"] = (params["b0"] - w0 @ mu).astype(xp.float32)
    return out


def _whitened_patches(images, family: EncoderConfig, eps: float, xp) -> tuple:
    """``(rows, mu, Z)``: the images' patch rows (n, P, C*p*p) whitened by :func:`patch_whitening`."""
    rows = patchify(xp.asarray(images, dtype=xp.float32), family.patch)
    mu, z = patch_whitening(rows, eps, xp)
    flat = (rows.reshape(-1, rows.shape[2]).astype(xp.float64) - mu) @ z
    return flat.astype(xp.float32).reshape(rows.shape), mu, z


def _adam(params: dict, rows, targets, groups: np.ndarray, family: EncoderConfig, steps: int, lr: float,
          images_per_step: int, loss_fn, rng: np.random.Generator, xp, revive: bool, progress) -> list:
    """Adam steps on ``params`` (in place), each on images of one BatchNorm batch; returns the losses."""
    members = [np.flatnonzero(groups == g) for g in np.unique(groups)]
    opt = Adam(params, xp, lr=lr, ema=0.0)
    losses = []
    for step in range(steps):
        idx = members[rng.integers(len(members))]
        if len(idx) > images_per_step:
            idx = rng.choice(idx, images_per_step, replace=False)
        idx = xp.asarray(idx)
        y, cache = forward(params, rows[idx], family, xp)
        loss, dy = loss_fn(y, targets[idx])
        f = min(1.0, (step + 1) / 20) * 0.5 * (1 + np.cos(np.pi * step / steps))  # warm-up, cosine decay
        opt.step(params, backward(params, cache, dy, family, xp), lr=lr * f)
        if revive and step % 10 == 0:
            _revive_dead_units(params, opt, cache["z0"], rows, rng, xp)
        losses.append(loss)
        if progress is not None:
            progress(1)
    return losses


def fit_encoder(images, targets, groups: np.ndarray, family: EncoderConfig, cfg: ExtractConfig, xp,
                progress=None) -> tuple:
    """Fit T' to ``targets`` (n, P, D): the rows of the encoding matched to each image, in position order.

    ``groups`` (n,) is each pair's BatchNorm batch. Returns ``(params, losses)``.
    """
    rng = np.random.default_rng([cfg.seed, 0xE7])
    params = params_from_key(random_key(family, rng.integers(2**63)), xp)
    rows, mu, z = _whitened_patches(images, family, cfg.whiten, xp)  # (n, P, C*p*p)
    # Centre each first-layer unit on the data: a random bias can leave units that are off for
    # every patch, and a dead unit never recovers (neuracrypt-2 lost all of them this way).
    sample = rows[xp.asarray(rng.choice(len(images), min(64, len(images)), replace=False))].reshape(-1, rows.shape[2])
    params["b0"] = -xp.median(sample @ params["W0"].T, axis=0).astype(xp.float32)
    targets = xp.asarray(targets, dtype=xp.float32)
    delta = cfg.huber * float(targets.std())
    losses = _adam(params, rows, targets, groups, family, cfg.steps, cfg.lr, cfg.images_per_step,
                   lambda y, t: huber_loss(y, t, delta, xp), rng, xp, True, progress)
    params = refit_mixer(_from_white(params, mu, z, xp), images, targets, groups, family, xp)
    return params, losses


def squared_loss(y, target, xp):
    """Mean squared error and its gradient with respect to ``y``."""
    r = y - target
    return float((r * r).mean()), 2 * r / r.size


def refine_encoder(params: dict, images, targets, groups: np.ndarray, family: EncoderConfig,
                   cfg: ExtractConfig, xp, progress=None) -> tuple:
    """Continue fitting T' (warm start from ``params``) with a squared loss; ``(params, losses)``.

    Meant for pairs that are all (or nearly all) right, such as the matching T' itself gives:
    without outliers to resist, the squared loss fits the mean, which is what a distance between
    encodings compares. The last layer is refitted by least squares at the end, as in
    :func:`fit_encoder`.
    """
    if family.depth == -1 or cfg.refine_steps <= 0:  # the linear family is already solved exactly
        return refit_mixer(params, images, xp.asarray(targets, dtype=xp.float32), groups, family, xp), []
    rng = np.random.default_rng([cfg.seed, 0xE8])
    rows, mu, z = _whitened_patches(images, family, cfg.refine_whiten, xp)
    work = {k: v.copy() for k, v in _to_white(params, mu, z, xp).items()}
    targets = xp.asarray(targets, dtype=xp.float32)
    losses = _adam(work, rows, targets, groups, family, cfg.refine_steps, cfg.refine_lr, cfg.refine_images_per_step,
                   lambda y, t: squared_loss(y, t, xp), rng, xp, False, progress)
    return refit_mixer(_from_white(work, mu, z, xp), images, targets, groups, family, xp), losses


def encode_each(params: dict, images, family: EncoderConfig, bn_stats, xp, chunk: int = 512):
    """T'(x) for every image on its own, BatchNorm frozen at ``bn_stats``: (n, P, D)."""
    out = []
    for s in range(0, len(images), chunk):
        rows = patchify(xp.asarray(images[s:s + chunk], dtype=xp.float32), family.patch)
        out.append(forward(params, rows, family, xp, bn_stats=bn_stats)[0])
    return xp.concatenate(out, axis=0)


def mean_batch_stats(params: dict, images, groups: np.ndarray, family: EncoderConfig, xp) -> list | None:
    """BatchNorm statistics of T' averaged over Alice's batches (for encoding images one by one)."""
    if family.depth <= 0:
        return None
    acc = None
    ids = np.unique(groups)
    for g in ids:
        rows = patchify(xp.asarray(images[np.flatnonzero(groups == g)], dtype=xp.float32), family.patch)
        st = batch_stats(params, rows, family, xp)
        acc = st if acc is None else [(m0 + m, v0 + v) for (m0, v0), (m, v) in zip(acc, st, strict=True)]
    return [(m / len(ids), v / len(ids)) for m, v in acc]


def refit_mixer(params: dict, images, targets, groups: np.ndarray, family: EncoderConfig, xp,
                ridge: float = 1e-4) -> dict:
    """Refit the last Linear layer of T' by ridge least squares on all matched pairs.

    Given the layers below, the output is linear in the mixer's weights, so its best value is a
    regression of the targets on T''s penultimate features (BatchNorm with each of Alice's
    batches' own statistics). For the linear family the whole encoder is that one layer, and the
    regression recovers it outright.
    """
    d = family.hidden
    n_in = family.patch_dim if family.depth == -1 else d
    gram = xp.zeros((n_in + 1, n_in + 1), dtype=xp.float64)
    cross = xp.zeros((n_in + 1, d), dtype=xp.float64)
    count = 0
    for g in np.unique(groups):
        idx = xp.asarray(np.flatnonzero(groups == g))
        rows = patchify(xp.asarray(images[idx], dtype=xp.float32), family.patch)
        _, cache = forward(params, rows, family, xp)
        # The last linear layer's input: the mixer's features, or the raw patches for the linear family.
        feats = (cache["x"] if family.depth == -1 else cache["g"]).astype(xp.float64)
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
