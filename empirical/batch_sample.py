"""Whole BatchNorm batches drawn for the passes of model extraction that need not see every pair.

Some passes of model extraction read matched pairs only to estimate something small: the mixer's
least squares (a (D+1) x (D+1) Gram matrix), T''s BatchNorm statistics averaged over Alice's
batches, the held-back pairs' nearest-neighbour shares. Each of them encodes its images with T',
and at the public challenge's geometry (256 px, so P = 256 rows per image, hidden 1,024) one T'
pass over 14,643 images costs about half an hour on two cores. These passes therefore read at most
:data:`SAMPLE_ROWS` patch rows: whole BatchNorm batches (T''s statistics are a batch's, as Alice's
were), drawn in a fixed order from the seed. Games whose pairs hold no more rows than that (every
game of the default size, up to 4,096 images of 128 px) are read whole, so nothing changes there.
"""
from __future__ import annotations

import numpy as np

SAMPLE_ROWS = 2**18  # patch rows (images x P) a sampled pass reads at most: 4,096 images of 128 px, 1,024 of 256
SAMPLE_STREAM = 0xBA7C  # tag mixed into the seed: the drawn batches are independent of other draws


def whole_batches(groups: np.ndarray, n_patches: int, members: np.ndarray | None = None, *, seed: int = 0,
                  max_rows: int | None = None) -> np.ndarray:
    """The ``members`` (host indices of pairs; default all) in a draw of whole batches holding at most
    ``max_rows`` rows.

    ``groups`` (n,) host is every pair's BatchNorm batch. When all of ``members`` hold at most
    ``max_rows`` patch rows they are returned as given; else batches are taken in an order drawn
    from ``seed`` while their members fit (always at least one batch), and their members are
    returned sorted. ``max_rows`` defaults to :data:`SAMPLE_ROWS`.
    """
    max_rows = SAMPLE_ROWS if max_rows is None else max_rows
    members = np.arange(len(groups)) if members is None else np.asarray(members, dtype=np.int64)
    if len(members) * n_patches <= max_rows:
        return members
    rng = np.random.default_rng([seed, SAMPLE_STREAM])
    keep: list[np.ndarray] = []
    rows = 0
    for g in rng.permutation(np.unique(groups[members])):
        mine = members[groups[members] == g]
        if keep and rows + len(mine) * n_patches > max_rows:
            continue  # a smaller batch further on may still fit
        keep.append(mine)
        rows += len(mine) * n_patches
    return np.sort(np.concatenate(keep))
