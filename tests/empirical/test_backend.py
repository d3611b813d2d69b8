"""Choice of array backend: NumPy always works, CuPy only with a GPU, errors name the fix."""
import sys
import types

import numpy as np
import pytest

from empirical import backend
from empirical.backend import BackendError, array_module, backend_name, get_backend, to_numpy


def _has_gpu_cupy():
    try:
        import cupy

        return cupy.cuda.runtime.getDeviceCount() > 0
    except Exception:
        return False


@pytest.fixture
def no_cupy(monkeypatch):
    """Make ``import cupy`` fail, as on a machine without the gpu extra."""
    monkeypatch.setitem(sys.modules, "cupy", None)


@pytest.fixture
def cupy_without_gpu(monkeypatch):
    """A CuPy that imports but whose CUDA runtime finds no device."""
    def no_device():
        raise RuntimeError("cudaErrorNoDevice: no CUDA-capable device is detected")

    fake = types.ModuleType("cupy")
    fake.cuda = types.SimpleNamespace(runtime=types.SimpleNamespace(getDeviceCount=no_device))
    monkeypatch.setitem(sys.modules, "cupy", fake)


@pytest.fixture
def cupy_with_gpu(monkeypatch):
    """A stand-in CuPy that sees one GPU."""
    fake = types.ModuleType("cupy")
    fake.cuda = types.SimpleNamespace(runtime=types.SimpleNamespace(getDeviceCount=lambda: 1))
    monkeypatch.setitem(sys.modules, "cupy", fake)
    return fake


def test_auto_and_cupy_take_cupy_when_it_sees_a_gpu(cupy_with_gpu):
    assert get_backend("auto") is cupy_with_gpu
    assert get_backend("cupy") is cupy_with_gpu
    assert get_backend("numpy") is np  # asked for by name, NumPy even with a GPU


def test_numpy_is_numpy():
    assert get_backend("numpy") is np


def test_numpy_even_when_cupy_is_missing(no_cupy):
    assert get_backend("numpy") is np


@pytest.mark.parametrize("env", ["no_cupy", "cupy_without_gpu"])
def test_auto_falls_back_to_numpy(env, request):
    request.getfixturevalue(env)
    assert get_backend("auto") is np
    assert get_backend() is np


@pytest.mark.skipif(_has_gpu_cupy(), reason="this machine has CuPy and a GPU")
def test_auto_is_numpy_on_this_machine():
    assert get_backend("auto") is np


@pytest.mark.parametrize("env", ["no_cupy", "cupy_without_gpu"])
def test_cupy_without_gpu_raises_naming_the_extra(env, request):
    request.getfixturevalue(env)
    with pytest.raises(BackendError) as e:
        get_backend("cupy")
    msg = str(e.value)
    assert ".[gpu]" in msg
    assert "\n" not in msg


@pytest.mark.skipif(_has_gpu_cupy(), reason="this machine has CuPy and a GPU")
def test_cupy_on_this_machine_raises():
    with pytest.raises(BackendError, match=r"\.\[gpu\]"):
        get_backend("cupy")


@pytest.mark.parametrize("name", ["torch", "", "NumPy", "gpu"])
def test_unknown_name_raises(name):
    with pytest.raises(BackendError, match="unknown backend"):
        get_backend(name)


def test_backend_error_is_runtime_error():
    # Entry points catch it as a RuntimeError-like failure and print one line.
    assert issubclass(BackendError, RuntimeError)


def test_to_numpy_and_array_module_on_host():
    a = np.arange(6, dtype=np.float32).reshape(2, 3)
    assert to_numpy(a) is a
    np.testing.assert_array_equal(to_numpy([1, 2, 3]), np.array([1, 2, 3]))
    assert array_module(a) is np
    assert array_module(3.0) is np
    assert backend_name(np) == "numpy"
    assert backend_name(types.SimpleNamespace(__name__="cupy")) == "cupy"


def test_to_numpy_uses_get_for_device_arrays():
    class DeviceArray:
        def get(self):
            return np.array([7.0])

    np.testing.assert_array_equal(to_numpy(DeviceArray()), [7.0])


def test_backends_listed():
    assert set(backend.BACKENDS) == {"auto", "numpy", "cupy"}
