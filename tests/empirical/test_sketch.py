"""The random projection of encoding rows used for T''s distances when the encodings are large."""
import numpy as np

from empirical import sketch
from empirical.sketch import projection, sketch_rows, sketched


def test_only_large_encodings_are_sketched():
    assert not sketched(1000, 64, 256)  # the default game: exact
    assert not sketched(16_000, 64, 256)  # the default scaling sweep's largest: exact
    assert sketched(14_643, 256, 1024)  # the public challenge's geometry
    assert not sketched(10**6, 8, 16)  # rows already smaller than the sketch


def test_the_sketch_estimates_squared_distances_without_bias():
    rng = np.random.default_rng(0)
    n_p, dim = 16, 256
    a, b = (rng.standard_normal((40, n_p, dim)).astype(np.float32) for _ in range(2))
    exact = ((a - b) ** 2).sum(axis=(1, 2))
    r = projection(dim, n_p, seed=3, xp=np)
    assert r.shape == (dim, sketch.SKETCH_FLOATS // n_p)
    est = ((sketch_rows(a, r, np) - sketch_rows(b, r, np)) ** 2).sum(axis=1)
    rel = est / exact - 1
    spread = np.sqrt(2 / sketch.SKETCH_FLOATS)
    assert abs(rel.mean()) < 4 * spread / np.sqrt(len(rel)) + 1e-3
    assert rel.std() < 3 * spread
    assert np.array_equal(r, projection(dim, n_p, seed=3, xp=np))
    assert not np.array_equal(r, projection(dim, n_p, seed=4, xp=np))
