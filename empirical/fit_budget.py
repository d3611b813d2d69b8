"""How many Adam steps model extraction gets: the same work whatever the family costs, and enough
passes over the pairs whatever their number.

Extraction's step counts (:class:`empirical.extraction.ExtractConfig`) are given for NeuraCrypt-7
at its default size. A family whose steps cost less (NeuraCrypt-2's cost about a third) gets more
of them, so every family gets about the same arithmetic; a costlier one keeps the configured steps.

A step reads at most :data:`STEP_ROWS` patch rows, so images with many patches mean few images per
step: at 256 px the squared-loss refit reads 16 images a step, and its 450 steps saw about half the
pairs of a 14,643-image game once, its held-out error still falling at the last step (the
challenge-geometry run). So the refit also gets at least :data:`MIN_REFINE_PASSES` passes over
the pairs it fits (at most :data:`MAX_STEP_SCALE` times its configured steps); at the default size
(900 fitted pairs, 64 a step) the configured steps are about 32 passes and nothing changes.
"""
from __future__ import annotations

import math
from typing import TYPE_CHECKING

from .encoder import EncoderConfig

if TYPE_CHECKING:
    from .extraction import ExtractConfig

MAX_STEP_SCALE = 4.0  # the most that step_scale (or the refit's passes) multiplies the configured steps by
STEP_ROWS = 4096  # patch rows a training step reads at most: fewer images per step where images have more patches
MIN_REFINE_PASSES = 2.0  # the squared-loss refit reads each fitted pair at least this many times on average
BN_ELEMENTWISE = 40  # per-row, per-unit operations of a block's BatchNorm and ReLU, forward and backward
REFERENCE = EncoderConfig(channels=1, image_size=128, patch=16, hidden=256, depth=4)  # NeuraCrypt-7, default size


def step_cost(family: EncoderConfig) -> float:
    """Arithmetic of one image's forward and backward pass through T', about (for step_scale)."""
    d = family.hidden
    per_row = 2 * family.patch_dim * d  # the patch layer: forward and weight gradient
    if family.depth >= 0:
        per_row += family.depth * (3 * d * d + BN_ELEMENTWISE * d) + 3 * d * d  # blocks, then the mixer
    return float(family.n_patches * per_row)


def step_scale(family: EncoderConfig) -> float:
    """How much more steps ``family`` gets than :data:`REFERENCE`, for the same work.

    The ratio of :func:`step_cost` s, at least 1 (a costlier family keeps the configured steps) and
    at most :data:`MAX_STEP_SCALE`. The linear family is solved by least squares, so it gets 1.
    """
    if family.depth == -1:
        return 1.0
    return float(min(MAX_STEP_SCALE, max(1.0, step_cost(REFERENCE) / step_cost(family))))


def images_per_step(requested: int, family: EncoderConfig) -> int:
    """Images a training step reads: ``requested``, fewer where that is more than :data:`STEP_ROWS` patch rows."""
    return max(1, min(requested, STEP_ROWS // family.n_patches))


def fit_steps(cfg: ExtractConfig, family: EncoderConfig, n_fit: int | None = None) -> tuple[int, int]:
    """``(steps, refine_steps)`` for ``family``: the configured ones, scaled when ``cfg.adapt_steps``.

    With ``n_fit`` (the pairs the refit fits) and ``cfg.adapt_steps``, the refit's steps are raised
    to :data:`MIN_REFINE_PASSES` passes over them, at most :data:`MAX_STEP_SCALE` times the
    configured ``refine_steps``; a refit of no steps stays at none.
    """
    scale = step_scale(family) if cfg.adapt_steps else 1.0
    steps, refine = round(cfg.steps * scale), round(cfg.refine_steps * scale)
    if cfg.adapt_steps and n_fit is not None and refine > 0 and family.depth >= 0:
        passes = math.ceil(MIN_REFINE_PASSES * n_fit / images_per_step(cfg.refine_images_per_step, family))
        refine = max(refine, min(passes, round(MAX_STEP_SCALE * cfg.refine_steps)))
    return steps, refine
