"""T', the attacker's network of NeuraCrypt's public architecture (paper §2.3.1): its parameters,
forward and backward passes, and BatchNorm statistics for encoding images one at a time.

T' is patch convolution, ``depth`` blocks of (1x1 convolution, BatchNorm, ReLU), positional
embedding, ReLU, Linear; the BatchNorm affine stays at weight 1, bias 0 as in the family, and
``depth = -1`` is the convolution alone. Gradients are written by hand (the tests check them
against finite differences); fitting T' to matched pairs is :mod:`empirical.extraction`.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import NamedTuple

import numpy as np

from .backend import Array, Namespace, to_numpy
from .batch_sample import whole_batches
from .encoder import BN_EPS, EncoderConfig, EncoderKey, patchify
from .matched import as_images
from .mlp import Params

BN_STATS_CHUNK = 64  # images whose activations batch_stats holds at a time
ENCODE_CHUNK = 2**15  # patch rows encode_each runs through T' at a time (512 images of 128 px, 128 of 256)


class BatchNormStats(NamedTuple):
    mean: Array  # (D,) per channel, over every row of the batch
    var: Array  # (D,) biased variance, as BatchNorm's training mode uses


class BlockCache(NamedTuple):
    h_in: Array  # (n*P, D) the block's input
    xhat: Array  # (n*P, D) its normalised pre-activation
    inv: Array  # (D,) 1 / sqrt(var + BN_EPS) of its BatchNorm


@dataclass
class ForwardCache:
    """What :func:`backward` needs from :func:`forward`."""

    x: Array  # (n*P, C*p*p) the input patch rows
    z0: Array  # (n*P, D) the first layer's pre-activation
    shape: tuple[int, int]  # (n, P)
    frozen_bn: bool  # BatchNorm used given statistics (no gradient through them)
    blocks: list[BlockCache] = field(default_factory=list)
    g: Array = None  # (n*P, D) the last Linear layer's input (absent for depth -1)


class Forward(NamedTuple):
    y: Array  # (n, P, D) T''s output
    cache: ForwardCache


def params_from_key(key: EncoderKey, xp: Namespace) -> Params:
    """Trainable parameters of T' as a dict of new ``xp`` float32 arrays (copies of the key's)."""
    cfg = key.config
    p = {"W0": key.conv_w.reshape(len(key.conv_w), -1), "b0": key.conv_b}  # (W0, C*p*p), (W0,)
    for i, (w, b) in enumerate(zip(key.block_w, key.block_b, strict=True)):
        p[f"W{i + 1}"], p[f"b{i + 1}"] = w, b
    if cfg.depth >= 0:
        p["pos"], p["Wm"], p["bm"] = key.pos, key.mix_w, key.mix_b
    return {k: xp.array(v, dtype=xp.float32) for k, v in p.items()}


def key_from_params(params: Params, cfg: EncoderConfig) -> EncoderKey:
    """An :class:`EncoderKey` (host arrays) holding the fitted parameters (as wide as they are)."""
    h = {k: to_numpy(v).astype(np.float32) for k, v in params.items()}
    blocks = [h[f"W{i + 1}"] for i in range(max(cfg.depth, 0))]  # (W_i, W_{i-1}) each
    return EncoderKey(
        cfg, h["W0"].reshape(len(h["W0"]), cfg.channels, cfg.patch, cfg.patch), h["b0"],
        tuple(blocks), tuple(h[f"b{i + 1}"] for i in range(len(blocks))),
        tuple(np.ones(len(w), np.float32) for w in blocks), tuple(np.zeros(len(w), np.float32) for w in blocks),
        h.get("pos"), h.get("Wm"), h.get("bm"),
    )


def join(members: list[Params], cfg: EncoderConfig, xp: Namespace) -> Params:
    """One T' whose output is the mean of ``members``' outputs (T's of ``cfg``'s architecture, any widths).

    Every layer but the last acts unit by unit after its linear map (ReLU, and BatchNorm over each
    unit's own statistics), so the members side by side are one network as wide as their widths
    summed: each linear map block-diagonal, the positional embeddings side by side, and the last
    layer their mixers side by side, each divided by the count, with the mean bias. The linear
    family (depth -1) has no inner layer; its mean is the mean of the weights.
    """
    k = len(members)
    if k == 1:
        return dict(members[0])
    if cfg.depth == -1:
        return {name: sum(m[name] for m in members) / k for name in ("W0", "b0")}

    def block_diag(ws: list[Array]) -> Array:
        out = xp.zeros((sum(w.shape[0] for w in ws), sum(w.shape[1] for w in ws)), dtype=xp.float32)
        r = c = 0
        for w in ws:  # (out_k, in_k) each, on the diagonal
            out[r:r + w.shape[0], c:c + w.shape[1]] = w
            r, c = r + w.shape[0], c + w.shape[1]
        return out

    cat = lambda name, axis=0: xp.concatenate([m[name] for m in members], axis=axis)  # noqa: E731
    out = {"W0": cat("W0"), "b0": cat("b0")}  # (sum W0_k, C*p*p): every member reads the same patch
    for i in range(1, cfg.depth + 1):
        out[f"W{i}"], out[f"b{i}"] = block_diag([m[f"W{i}"] for m in members]), cat(f"b{i}")
    out["pos"] = cat("pos", axis=1)  # (P, sum W_last_k)
    out["Wm"] = cat("Wm", axis=1) / k  # (D, sum W_last_k): the mean of the members' last layers
    out["bm"] = sum(m["bm"] for m in members) / k
    return out


def forward(params: Params, rows: Array, cfg: EncoderConfig, xp: Namespace,
            bn_stats: list[BatchNormStats] | None = None) -> Forward:
    """T' on patch rows (n, P, C*p*p) -> ``(y, cache)``, y (n, P, D).

    BatchNorm uses the batch's own statistics unless ``bn_stats`` (a (mean, var) per block) is
    given, which encodes each image on its own with those statistics.
    """
    n, P, _ = rows.shape
    x = rows.reshape(n * P, -1)
    z0 = x @ params["W0"].T
    z0 += params["b0"]  # (n*P, W0); in place, as every update below: the same values, fewer passes over memory
    cache = ForwardCache(x, z0, (n, P), bn_stats is not None)
    if cfg.depth == -1:
        return Forward(z0.reshape(n, P, -1), cache)
    h = xp.maximum(z0, 0)
    for i in range(cfg.depth):
        u = h @ params[f"W{i + 1}"].T
        u += params[f"b{i + 1}"]  # (n*P, W_i)
        if bn_stats is None:
            mean = u.mean(axis=0)
            u -= mean
            var = (u ** 2).mean(axis=0)
        else:
            mean, var = bn_stats[i]
            u -= mean
        inv = 1.0 / xp.sqrt(var + BN_EPS)
        u *= inv  # u is now x-hat, the normalised pre-activation
        cache.blocks.append(BlockCache(h, u, inv))
        h = xp.maximum(u, 0)
    g = h.reshape(n, P, -1)  # (n, P, W_last); h is no block's input, so free to overwrite
    g += params["pos"]
    g = xp.maximum(g, 0, out=g).reshape(n * P, -1)
    y = g @ params["Wm"].T
    y += params["bm"]
    cache.g = g
    return Forward(y.reshape(n, P, -1), cache)


def backward(params: Params, cache: ForwardCache, dy: Array, cfg: EncoderConfig, xp: Namespace) -> Params:
    """Gradients of the loss for every parameter, given d loss / d output (n, P, D)."""
    n, P = cache.shape
    dy = dy.reshape(n * P, -1)
    grads = {}
    if cfg.depth == -1:
        dz0 = dy
    else:
        g = cache.g
        grads["Wm"] = dy.T @ g
        grads["bm"] = dy.sum(axis=0)
        dh = dy @ params["Wm"]  # (n*P, W_last); every dh below is a new array, updated in place
        dh *= g > 0
        grads["pos"] = dh.reshape(n, P, -1).sum(axis=0)
        for i in reversed(range(cfg.depth)):
            h_in, xhat, inv = cache.blocks[i]
            du = dh
            du *= xhat > 0  # d loss / d x-hat
            if not cache.frozen_bn:  # batch statistics: the mean and variance depend on every row
                centre, slope = du.mean(axis=0), (du * xhat).mean(axis=0)
                du -= centre
                du -= xhat * slope
            du *= inv  # d loss / d u
            grads[f"W{i + 1}"] = du.T @ h_in
            grads[f"b{i + 1}"] = du.sum(axis=0)
            dh = du @ params[f"W{i + 1}"]
        dz0 = dh
        dz0 *= cache.z0 > 0
    grads["W0"] = dz0.T @ cache.x
    grads["b0"] = dz0.sum(axis=0)
    return grads


def batch_stats(params: Params, rows: Array, cfg: EncoderConfig, xp: Namespace,
                chunk: int = BN_STATS_CHUNK) -> list[BatchNormStats]:
    """Per-block BatchNorm (mean, var) of T' on a batch of patch rows (n, P, C*p*p).

    Computed block by block over chunks of images, so no more than a chunk's activations are held.
    """
    n, P, _ = rows.shape
    h = [xp.maximum(rows[s:s + chunk].reshape(-1, rows.shape[2]) @ params["W0"].T + params["b0"], 0)
         for s in range(0, n, chunk)]
    out = []
    for i in range(cfg.depth):
        u = [a @ params[f"W{i + 1}"].T for a in h]  # (chunk*P, W_i) each, updated in place below
        for a in u:
            a += params[f"b{i + 1}"]
        mean = sum(a.sum(axis=0) for a in u) / (n * P)
        for a in u:
            a -= mean
        var = sum((a ** 2).sum(axis=0) for a in u) / (n * P)
        out.append(BatchNormStats(mean, var))
        inv = 1.0 / xp.sqrt(var + BN_EPS)
        for a in u:
            a *= inv
            xp.maximum(a, 0, out=a)
        h = u
    return out


def encode_each(params: Params, images: Array, family: EncoderConfig, bn_stats: list[BatchNormStats] | None,
                xp: Namespace, chunk: int = ENCODE_CHUNK) -> Array:
    """T'(x) for every image on its own, BatchNorm frozen at ``bn_stats``: (n, P, D)."""
    out = []
    chunk = max(1, chunk // family.n_patches)  # images per chunk: at most `chunk` patch rows through T' at once
    for s in range(0, len(images), chunk):
        rows = patchify(xp.asarray(images[s:s + chunk], dtype=xp.float32), family.patch)
        out.append(forward(params, rows, family, xp, bn_stats=bn_stats).y)
    return xp.concatenate(out, axis=0)


def batch_stats_of(params: Params, images: Array, groups: np.ndarray, g: int, family: EncoderConfig,
                   xp: Namespace) -> list[BatchNormStats]:
    """T''s BatchNorm statistics of Alice's batch ``g``: over the images (n, C, H, W) ``groups`` (n,) puts in it."""
    rows = patchify(xp.asarray(images[xp.asarray(np.flatnonzero(groups == g))], dtype=xp.float32), family.patch)
    return batch_stats(params, rows, family, xp)


def mean_batch_stats(params: Params, images: Array, groups: np.ndarray, family: EncoderConfig,
                     xp: Namespace) -> list[BatchNormStats] | None:
    """BatchNorm statistics of T' averaged over Alice's batches (for encoding images one by one).

    ``images`` (n, C, H, W); ``groups`` (n,) host, each image's BatchNorm batch. The average is over
    the batches of :func:`~empirical.batch_sample.whole_batches` (all of them unless they hold more than
    :data:`~empirical.batch_sample.SAMPLE_ROWS` patch rows).
    """
    if family.depth <= 0:
        return None
    images = as_images(images, xp)  # no copy when they are on the device already
    acc = None
    ids = np.unique(groups[whole_batches(groups, family.n_patches)])
    for g in ids:
        st = batch_stats_of(params, images, groups, g, family, xp)
        acc = st if acc is None else [(m0 + m, v0 + v) for (m0, v0), (m, v) in zip(acc, st, strict=True)]
    return [BatchNormStats(m / len(ids), v / len(ids)) for m, v in acc]
