"""Originals in the order of a matching, gathered on read instead of copied.

Model extraction fits T' to pairs (the original matched to encoding k, encoding k). Copying the
originals into matching order costs a second copy of every image (3.8 GB at the public
challenge's size); a :class:`MatchedImages` gathers only the images a step reads:
``images[idx]`` is ``originals[matching[idx]]``, an ``xp`` array.
"""
from __future__ import annotations

import numpy as np

from .backend import Array, Namespace
from .encodings import as_index


class MatchedImages:
    """``images[idx] == originals[matching[idx]]`` (an ``xp`` array), for host or ``xp`` int ``idx`` or a slice."""

    def __init__(self, originals: Array, matching: np.ndarray, xp: Namespace):
        self.originals, self.xp = originals, xp
        self.matching = np.asarray(matching, dtype=np.int64)  # (n,) host: pair k's original
        self.shape = (len(self.matching), *originals.shape[1:])

    def __len__(self) -> int:
        return len(self.matching)

    def __getitem__(self, idx: object) -> Array:
        return self.originals[self.xp.asarray(self.matching[as_index(idx, len(self))])]


def as_images(images: Array | MatchedImages, xp: Namespace) -> Array | MatchedImages:
    """``images`` on ``xp``: a :class:`MatchedImages` as it is, an array moved (no copy when it is there already)."""
    return images if isinstance(images, MatchedImages) else xp.asarray(images)
