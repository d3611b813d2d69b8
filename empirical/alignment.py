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
from .encodings import Rows, as_rows
from .passes import Scheduler, map_blocks
from .progress import Progress

UNIT_EPS = 1e-12  # added to a row's norm so a constant row does not divide by zero


def _centred_unit(a: Array, xp: Namespace) -> Array:
    a = a - a.mean(axis=-1, keepdims=True)
    return a / (xp.sqrt((a * a).sum(axis=-1, keepdims=True)) + UNIT_EPS)


def align_block(block: Array, ref: Array, xp: Namespace) -> tuple[np.ndarray, Array]:
    """One block of the alignment pass: ``(order, aligned sum)``.

    ``block`` (c, P, D) encodings, ``ref`` (P, D) the centred unit reference. ``order`` (c, P) host:
    each encoding's row for every reference slot; the sum (P, D) of the block's centred unit rows in
    that order feeds the next reference.
    """
    e = _centred_unit(xp.asarray(block), xp)  # (c, P, D)
    c, P, D = e.shape
    # One matrix product for the whole block (BLAS on every core), then viewed as (c, slot, row).
    score = (e.reshape(c * P, D) @ xp.asarray(ref).T).reshape(c, P, P).transpose(0, 2, 1)  # (c, slot, row)
    order = batched_assignments(score)  # (c, P)
    total = e[xp.arange(c)[:, None], xp.asarray(order)].sum(axis=0)  # (c, P, D) gathered by whole rows -> (P, D)
    return order, total


def align_rows(encodings: Array | Rows, xp: Namespace, iterations: int = 2, chunk: int = 512,
               progress: Progress | None = None, scheduler: Scheduler = None) -> np.ndarray:
    """Recover each encoding's row order relative to a common reference.

    Parameters
    ----------
    encodings : xp array (N, P, D), or :class:`~empirical.encodings.Rows`
    iterations : passes; the first aligns to encoding 0, later ones to the mean aligned encoding
    chunk : encodings per block of a pass
    scheduler : where each pass runs (:func:`empirical.passes.map_blocks`)

    Returns
    -------
    order : host int array (N, P); ``encodings[b, order[b, q]]`` is encoding b's row for slot q
    """
    rows = as_rows(encodings, xp)
    n = rows.shape[0]
    ref = _centred_unit(rows[0], xp)  # (P, D)
    order = None
    for _ in range(iterations):
        parts = map_blocks(align_block, rows, chunk, (ref, xp), scheduler, progress)
        order = np.concatenate([o for o, _ in parts])  # (N, P)
        total = xp.zeros_like(ref)
        for _, t in parts:  # in block order, as a loop over the blocks would add them
            total += xp.asarray(t)
        ref = _centred_unit(total / n, xp)
    return order


def apply_order(encodings: Array, order: np.ndarray, xp: Namespace) -> Array:
    """Rows of each encoding in reference order: (N, P, D)."""
    return xp.take_along_axis(encodings, xp.asarray(order)[:, :, None], axis=1)
