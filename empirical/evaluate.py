"""Alice's side after the attack: how much of the game each stage got right.

Only this module reads Alice's answer key and permutations, and only after the attack has
returned. It also scores an extracted encoder T' the way the public challenge scores
Challenge 2: on fresh images, is T(x) the nearest neighbour of T'(x), by the mean squared error
between patch means (rows averaged, which the shuffle cannot change), among all T(x')? And the
other way round, as the public challenge's script asks: is T'(x) the nearest to T(x) among all
T'(x')?
"""
from __future__ import annotations

from collections import Counter
from types import ModuleType

import numpy as np

from .backend import to_numpy
from .encoder import EncoderConfig, EncoderKey, encode
from .game import Game, GameError, Secrets
from .nearest import nearest_shares


def true_matching(game: Game, secrets: Secrets) -> np.ndarray:
    """(N,) the index into ``game.ids`` of the original behind each encoding file.

    An answer key that does not fit the game (an id it lacks, a file it lacks) is refused with one
    line; :func:`empirical.game.check_secrets` refuses it before an attack starts.
    """
    index = {i: a for a, i in enumerate(game.ids)}
    by_file = {}
    for i, f in secrets.answer.items():
        if i not in index:
            raise GameError(f"the answer key names id {i!r}, which is not among the game's originals")
        by_file[f] = index[i]
    missing = [f for f in game.files if f not in by_file]
    if missing:
        raise GameError(f"the answer key names no original for {missing[0]!r} ({len(missing)} file(s) in all)")
    return np.array([by_file[f] for f in game.files])


def share_matched(matching: np.ndarray, truth: np.ndarray) -> float:
    return float(np.mean(np.asarray(matching) == truth))


def local_perm_share(order: np.ndarray, perms: np.ndarray) -> tuple[float, np.ndarray]:
    """Share of encodings whose recovered row order is right up to one common permutation.

    Returns ``(share, common)``, ``common[q]`` the true patch position most often found at slot q.
    """
    pos = np.take_along_axis(perms, order, axis=1)  # (N, P): true position at each slot
    common = np.array([Counter(pos[:, q]).most_common(1)[0][0] for q in range(pos.shape[1])])
    return float(np.mean((pos == common).all(axis=1))), common


def global_perm_share(pi: np.ndarray, common: np.ndarray) -> float:
    """Share of positions j whose slot ``pi[j]`` holds position j in the common order."""
    return float(np.mean(common[pi] == np.arange(len(pi))))


def challenge2_bytes(config: EncoderConfig, n: int) -> int:
    """Memory :func:`challenge2_score` needs for ``n`` images: the images, two keys, both encoders'
    encodings (each encoded and shuffled) and the (n, n) distance matrix with its temporaries."""
    return (config.image_bytes(n) + 2 * config.key_bytes() + 4 * config.encoding_bytes(n)
            + 3 * 8 * n * n + 4 * 8 * n * config.hidden)


def challenge2_score(true_key: EncoderKey, est_key: EncoderKey, images: np.ndarray, xp: ModuleType = np,
                     seed: int = 0) -> dict:
    """Nearest-neighbour scores of T' on ``images`` (none of which were in the game), both directions.

    Both encoders encode the images in the same BatchNorm batches; each image's output is
    summarised by the mean of its rows. ``share``: T'(x) is closer to T(x) than to any other
    T(x'); ``share_public``: T(x) is closer to T'(x) than to any other T'(x') (how the public
    challenge's script scores a submission). ``relative_error``: mean absolute error of the patch
    means over their mean absolute value.
    """
    t, _ = encode(images, true_key, xp, seed=seed)
    e, _ = encode(images, est_key, xp, seed=seed + 1)
    a = to_numpy(t.mean(axis=1)).astype(np.float64)  # (n, D)
    b = to_numpy(e.mean(axis=1)).astype(np.float64)
    s = nearest_shares(a, b)
    return {"share": s["est_to_nearest_truth"], "share_public": s["truth_to_nearest_est"], "n": len(a),
            "relative_error": float(np.mean(np.abs(a - b)) / np.mean(np.abs(a)))}
