"""T' as a network (``empirical.tprime``): the mean of several fits joined into one wider T'."""
import numpy as np
import pytest

from empirical.encoder import encode_batch, patchify, preset, random_key
from empirical.keys import load_key, save_key
from empirical.tprime import batch_stats, forward, join, key_from_params, params_from_key


def family(depth):
    return preset("neuracrypt-7", image_size=16, patch=4, hidden=6, depth=depth)


def member(fam, seed, width):
    """A random T' of ``fam`` whose inner layers are ``width`` wide (the linear family keeps its own)."""
    widths = None if fam.depth == -1 else (width,) * (fam.depth + 1)
    return params_from_key(random_key(fam, seed, widths), np)


@pytest.mark.parametrize("depth", [-1, 0, 2])
def test_joined_members_compute_the_mean_of_their_outputs(depth):
    """Batch statistics or given ones, the joined T' is the members' mean; its statistics are theirs side by side."""
    fam = family(depth)
    members = [member(fam, s, w) for s, w in ((1, 6), (2, 9), (3, 4))]
    rows = patchify(np.random.default_rng(0).random((5, 1, 16, 16)).astype(np.float32), 4)  # (5, 16, 16)
    joined = join(members, fam, np)
    want = np.mean([forward(m, rows, fam, np).y for m in members], axis=0)
    np.testing.assert_allclose(forward(joined, rows, fam, np).y, want, rtol=1e-5, atol=1e-6)
    if depth > 0:
        stats = batch_stats(joined, rows, fam, np)
        own = [batch_stats(m, rows, fam, np) for m in members]
        for i, (mean, var) in enumerate(stats):
            np.testing.assert_allclose(mean, np.concatenate([o[i].mean for o in own]), rtol=1e-5, atol=1e-6)
            np.testing.assert_allclose(var, np.concatenate([o[i].var for o in own]), rtol=1e-5, atol=1e-6)
        other = patchify(np.random.default_rng(1).random((3, 1, 16, 16)).astype(np.float32), 4)
        frozen = np.mean([forward(m, other, fam, np, bn_stats=o).y for m, o in zip(members, own, strict=True)], axis=0)
        np.testing.assert_allclose(forward(joined, other, fam, np, bn_stats=stats).y, frozen, rtol=1e-5, atol=1e-6)


def test_one_member_is_itself_and_the_joined_key_round_trips(tmp_path):
    fam = family(2)
    a, b = member(fam, 4, 6), member(fam, 5, 8)
    alone = join([a], fam, np)
    assert alone.keys() == a.keys() and all(np.array_equal(alone[k], a[k]) for k in a)
    key = key_from_params(join([a, b], fam, np), fam)
    assert key.widths == (14, 14, 14)
    save_key(tmp_path / "t.npz", key)
    back = load_key(tmp_path / "t.npz", fam)
    x = np.random.default_rng(2).random((4, 1, 16, 16)).astype(np.float32)
    want = (forward(a, patchify(x, 4), fam, np).y + forward(b, patchify(x, 4), fam, np).y) / 2
    np.testing.assert_allclose(encode_batch(x, back, np), want, rtol=1e-5, atol=1e-6)
