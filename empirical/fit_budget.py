"""How many Adam steps model extraction gets for a family: the same work whatever the family costs.

Extraction's step counts (:class:`empirical.extraction.ExtractConfig`) are given for NeuraCrypt-7
at its default size. A family whose steps cost less (NeuraCrypt-2's cost about a third) gets more
of them, so every family gets about the same arithmetic; a costlier one keeps the configured steps.
"""
from __future__ import annotations

from typing import TYPE_CHECKING

from .encoder import EncoderConfig

if TYPE_CHECKING:
    from .extraction import ExtractConfig

MAX_STEP_SCALE = 4.0  # the most that step_scale multiplies the configured steps by
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


def fit_steps(cfg: ExtractConfig, family: EncoderConfig) -> tuple[int, int]:
    """``(steps, refine_steps)`` for ``family``: the configured ones, scaled when ``cfg.adapt_steps``."""
    scale = step_scale(family) if cfg.adapt_steps else 1.0
    return round(cfg.steps * scale), round(cfg.refine_steps * scale)
