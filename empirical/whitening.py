"""Whitened patches for model extraction: T' trained on PCA-whitened pixels, mapped back to pixels.

Neighbouring pixels of natural images are strongly correlated, so the first layer's loss is badly
conditioned in pixel coordinates. Extraction trains T' on whitened patch rows
(:func:`whitened_patches`: ``(x - mean) @ transform``, eigenvalues floored) and moves its first
layer between the two coordinates exactly (:func:`to_white`, :func:`from_white`), so the function
T' computes does not change. The whitening is estimated from at most :data:`WHITEN_IMAGES` images;
the rows are whitened all at once when they fit the memory budget, else on read
(:class:`WhiteRows`).
"""
from __future__ import annotations

from typing import NamedTuple

import numpy as np

from .backend import Array, Namespace
from .encoder import EncoderConfig, patchify
from .encodings import as_index
from .matched import MatchedImages
from .mlp import Params

WHITEN_ROWS = 16384  # about this many patch rows (every k-th) estimate the whitening covariance
WHITEN_COPIES = 8  # whitening all rows at once holds about this many float32 copies of them (float64 steps)
WHITEN_IMAGES = 4096  # at most this many images (every k-th) estimate the whitening


class Whitening(NamedTuple):
    """``(x - mean) @ transform`` has about identity covariance over patch rows ``x``."""

    mean: Array  # (C*p*p,) float64
    transform: Array  # (C*p*p, C*p*p) float64


class WhitenedPatches(NamedTuple):
    rows: Array | WhiteRows  # (n, P, C*p*p) float32, whitened (all at once, or computed on read)
    mean: Array  # the Whitening's mean and transform
    transform: Array


class WhiteRows:
    """Whitened patch rows of ``images``, computed on read: ``rows[idx]`` is xp float32 (len(idx), P, C*p*p).

    The same values as :func:`whiten` of all the rows, without holding them: used when they would
    not fit the memory budget.
    """

    def __init__(self, images: Array | MatchedImages, family: EncoderConfig, mu: Array, z: Array, xp: Namespace):
        self.images, self.patch, self.mu, self.z, self.xp = images, family.patch, mu, z, xp
        self.shape = (len(images), family.n_patches, family.patch_dim)

    def __getitem__(self, idx: object) -> Array:
        xp = self.xp
        batch = self.images[xp.asarray(as_index(idx, self.shape[0]))]
        return whiten(patchify(xp.asarray(batch, dtype=xp.float32), self.patch), self.mu, self.z, xp)


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


def floor_shares(z: Array, xp: Namespace) -> Array:
    """Per whitened direction k, how little the patches vary along it: ``(s_min + f s_max) / (s_k + f s_max)``.

    ``z`` is :func:`patch_whitening`'s transform (columns ``u_k / sqrt(s_k + f s_max)``), so this is
    each column's squared norm over the largest: about 1 along directions at the eigenvalue floor
    (which the images hardly use, so fitted weights there are barely constrained by the data) and
    about ``f`` along the patches' main direction.
    """
    sq = (z * z).sum(axis=0)  # (F,)
    return sq / sq.max()


def to_white(params: Params, mu: Array, z: Array, xp: Namespace) -> Params:
    """Parameters acting on whitened patches, for T' given in pixel coordinates."""
    out = dict(params)
    w0 = params["W0"].astype(xp.float64)
    out["W0"] = (w0 @ xp.linalg.inv(z).T).astype(xp.float32)  # W0 x = W0 Z^-T ((x - mu) Z) + W0 mu
    out["b0"] = (params["b0"] + w0 @ mu).astype(xp.float32)
    return out


def from_white(params: Params, mu: Array, z: Array, xp: Namespace) -> Params:
    """Parameters in pixel coordinates, for T' trained on whitened patches."""
    out = dict(params)
    w0 = params["W0"].astype(xp.float64) @ z.T  # (D, C*p*p)
    out["W0"] = w0.astype(xp.float32)
    out["b0"] = (params["b0"] - w0 @ mu).astype(xp.float32)
    return out


def whiten(rows: Array, mu: Array, z: Array, xp: Namespace) -> Array:
    """``(rows - mu) @ z`` in float64, returned as float32 of the rows' shape (n, P, C*p*p)."""
    flat = (rows.reshape(-1, rows.shape[2]).astype(xp.float64) - mu) @ z
    return flat.astype(xp.float32).reshape(rows.shape)


def whitened_patches(images: Array | MatchedImages, family: EncoderConfig, eps: float, xp: Namespace,
                      memory_budget: int | None = None) -> WhitenedPatches:
    """``(rows, mean, transform)``: the images' patch rows whitened by :func:`patch_whitening`.

    The whitening is estimated from every image, or from every k-th when there are more than
    :data:`WHITEN_IMAGES`, whatever the budget. The rows are computed at once when
    :data:`WHITEN_COPIES` copies of them fit ``memory_budget`` (bytes; None: always); otherwise
    ``rows`` is a :class:`WhiteRows` that whitens the images a step reads (the same values).
    """
    n = len(images)
    every = np.arange(0, n, -(-n // WHITEN_IMAGES))  # all images when there are at most WHITEN_IMAGES
    sample = patchify(xp.asarray(images[xp.asarray(every)], dtype=xp.float32), family.patch)  # (m, P, C*p*p)
    mu, z = patch_whitening(sample, eps, xp)
    if memory_budget is None or WHITEN_COPIES * n * family.n_patches * family.patch_dim * 4 <= memory_budget:
        rows = sample if len(every) == n else patchify(xp.asarray(images[xp.asarray(np.arange(n))],
                                                                  dtype=xp.float32), family.patch)
        return WhitenedPatches(whiten(rows, mu, z, xp), mu, z)
    return WhitenedPatches(WhiteRows(images, family, mu, z, xp), mu, z)
