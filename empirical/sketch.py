"""A random projection of every encoding row, for T''s distances when the encodings are large.

The final matching compares T'(x) with every encoding by squared distance over all P x D values.
At the public challenge's geometry (N = 14,643, P = 256, hidden 1,024) that is about 10^14
multiply-adds, and the encodings (15 GB) must be read once per block of encoded originals. A
Johnson-Lindenstrauss sketch keeps both small: every row of both sides goes through the same
random Gaussian matrix R (D, d) with entries of variance 1 / d, so E[R R^T] = I and

    sum over positions of |(a_p - b_p) R|^2  estimates  sum over positions of |a_p - b_p|^2

without bias, with a relative spread of about sqrt(2 / (P d)) (about 1% for P d = 2^14). Only
matchings of games whose encodings hold more than :data:`EXACT_FLOATS` values use it: every game
of the default size, and the default scaling sweep up to 16,000 images, is compared exactly.
"""
from __future__ import annotations

import numpy as np

from .backend import Array, Namespace

EXACT_FLOATS = 2**28  # encodings holding at most this many values in all (1 GiB of float32) are compared exactly
SKETCH_FLOATS = 2**14  # values per encoding the sketch keeps: d = SKETCH_FLOATS / P per row
SKETCH_STREAM = 0x5C7  # tag mixed into the seed: the projection is an independent draw


def sketched(n: int, n_patches: int, dim: int) -> bool:
    """Whether T''s distances to ``n`` encodings of (``n_patches``, ``dim``) are taken on a sketch."""
    return n * n_patches * dim > EXACT_FLOATS and n_patches * dim > SKETCH_FLOATS


def projection(dim: int, n_patches: int, seed: int, xp: Namespace) -> Array:
    """R (dim, d), d = max(1, SKETCH_FLOATS // n_patches), entries N(0, 1/d), drawn from ``seed``."""
    d = max(1, SKETCH_FLOATS // n_patches)
    rng = np.random.default_rng([seed, SKETCH_STREAM])
    return xp.asarray((rng.standard_normal((dim, d)) / np.sqrt(d)).astype(np.float32))


def sketch_rows(block: Array, r: Array, xp: Namespace) -> Array:
    """A block of encodings (b, P, D) -> its sketch (b, P * d): every row times ``r`` (a pass of
    :func:`empirical.passes.map_blocks`)."""
    block = xp.asarray(block, dtype=xp.float32)
    return (block @ xp.asarray(r)).reshape(block.shape[0], -1)
