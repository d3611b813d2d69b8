"""Nearest-neighbour shares between paired summaries: how Challenge 2 counts a hit.

Used on both sides of the game: by Alice's scoring of an extracted encoder
(:func:`empirical.evaluate.challenge2_score`) and by the attacker's own estimate from the pairs it
held back (:func:`empirical.holdout.held_out_scores`). It reads nothing but the two arrays.
"""
from __future__ import annotations

import numpy as np


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
