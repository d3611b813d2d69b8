"""Local permutations (paper §2.2.1): put every encoding's rows in one common order.

The positional embedding is added before the last ReLU and Linear, so rows that came from the
same patch position share a large common component across all images. Each encoding's rows are
assigned to the rows of a reference: first one encoding, then the mean of the aligned encodings.
The score is the correlation of per-row-centred vectors: it ignores each row's overall level and
scale, which vary with the image, and keeps the direction, which the position dominates.
The result is right up to one common permutation of the reference slots (the global
permutation, recovered later).
"""
from __future__ import annotations

import numpy as np

from .assignment import batched_assignments
from .backend import Array, Namespace
from .progress import Progress

UNIT_EPS = 1e-12  # added to a row's norm so a constant row does not divide by zero


def _centred_unit(a: Array, xp: Namespace) -> Array:
    a = a - a.mean(axis=-1, keepdims=True)
    return a / (xp.sqrt((a * a).sum(axis=-1, keepdims=True)) + UNIT_EPS)


def align_rows(encodings: Array, xp: Namespace, iterations: int = 2, chunk: int = 512,
               progress: Progress | None = None) -> np.ndarray:
    """Recover each encoding's row order relative to a common reference.

    Parameters
    ----------
    encodings : xp array (N, P, D)
    iterations : passes; the first aligns to encoding 0, later ones to the mean aligned encoding

    Returns
    -------
    order : host int array (N, P); ``encodings[b, order[b, q]]`` is encoding b's row for slot q
    """
    n = encodings.shape[0]
    ref = _centred_unit(encodings[0], xp)  # (P, D)
    order = None
    for _ in range(iterations):
        order = np.empty((n, encodings.shape[1]), dtype=np.int64)
        total = xp.zeros_like(ref)
        for s in range(0, n, chunk):
            e = _centred_unit(encodings[s:s + chunk], xp)  # (c, P, D)
            score = xp.einsum("qd,crd->cqr", ref, e)  # (c, slot, row)
            order[s:s + chunk] = batched_assignments(score)
            total += xp.take_along_axis(e, xp.asarray(order[s:s + chunk])[:, :, None], axis=1).sum(axis=0)
            if progress is not None:
                progress(min(chunk, n - s))
        ref = _centred_unit(total / n, xp)
    return order


def apply_order(encodings: Array, order: np.ndarray, xp: Namespace) -> Array:
    """Rows of each encoding in reference order: (N, P, D)."""
    return xp.take_along_axis(encodings, xp.asarray(order)[:, :, None], axis=1)
