import numpy as np
import pytest

from empirical.fileio import quantize16


def _reference(x):
    """The rounding in one go: float64 throughout, float32 at the end."""
    return (np.clip(np.rint(np.asarray(x, np.float64) * 65535.0), 0, 65535) / 65535.0).astype(np.float32)


@pytest.mark.parametrize("chunk", [1, 7, 64, 2**22])
def test_quantize16_in_chunks_is_the_rounding_in_one_go(chunk):
    rng = np.random.default_rng(0)
    x = rng.uniform(-0.2, 1.2, (5, 1, 9, 11)).astype(np.float32)  # some values off [0, 1]
    x[0, 0, 0, :3] = [0.5 / 65535, 1.5 / 65535, np.nan]  # ties of the rounding and a NaN
    got = quantize16(x, chunk=chunk)
    assert got.dtype == np.float32 and got.shape == x.shape
    np.testing.assert_array_equal(got, _reference(x))


def test_quantize16_takes_float64_strided_and_scalar_input():
    x = np.random.default_rng(1).random((6, 8))  # float64
    np.testing.assert_array_equal(quantize16(x[:, ::3], chunk=5), _reference(x[:, ::3]))
    np.testing.assert_array_equal(quantize16(0.25), _reference(0.25))


def test_quantize16_is_on_the_16_bit_grid():
    q = quantize16(np.random.default_rng(2).random(1000).astype(np.float32), chunk=100)
    k = q.astype(np.float64) * 65535.0
    np.testing.assert_allclose(k, np.rint(k), atol=1e-3)
