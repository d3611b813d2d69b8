"""Moment features of patches and encoded rows (paper §2.1.1).

p-sim does not look at pixels or encoded values directly: each original patch (its p*p pixels)
and each encoded row (its D values) is summarised by its mean followed by |k-th central
moment|^(1/k) for k = 2 .. K. Roots keep every feature in the units of the values, and the
summary is invariant to how the encoder orders its hidden units.
"""
from __future__ import annotations

from .backend import Array, Namespace

SCALE_EPS = 1e-12  # added to the spread so a constant patch or row does not divide by zero
STD_FLOOR = 1e-6  # added to a feature's standard deviation over the images, for the same reason


def moment_features(v: Array, k_max: int, xp: Namespace) -> Array:
    """Moment summary of the last axis of ``v`` (..., L) -> (..., k_max), float32.

    Feature 0 is the mean; feature k-1 is |E[(v - mean)^k]|^(1/k) for k = 2 .. k_max. Powers are
    accumulated one multiplication at a time, so K features cost K passes, not K^2.
    """
    v = xp.asarray(v, dtype=xp.float32)
    mean = v.mean(axis=-1)
    c = v - mean[..., None]
    # Normalise by the spread first so high powers stay inside float32's range.
    scale = xp.sqrt((c * c).mean(axis=-1)) + SCALE_EPS
    c = c / scale[..., None]
    feats = [mean, scale]
    power = c * c
    for k in range(3, k_max + 1):
        power = power * c
        feats.append(xp.abs(power.mean(axis=-1)) ** (1.0 / k) * scale)
    return xp.stack(feats, axis=-1).astype(xp.float32)


def standardise(feats: Array, xp: Namespace) -> Array:
    """Z-score each feature per position over the images: (N, P, K) -> (N, P, K).

    Every random encoder has its own output scale, and every position its own positional
    offset, so features are comparable only after standardising over the images, separately at
    each patch position (for encodings: at each aligned slot).
    """
    mean = feats.mean(axis=0, keepdims=True)
    std = feats.std(axis=0, keepdims=True) + STD_FLOOR
    return ((feats - mean) / std).astype(xp.float32)
