"""Choice of array module (NumPy or CuPy), made once at the entry point and passed down as ``xp``."""
from __future__ import annotations

import types
from typing import Any

import numpy as np

BACKENDS = ("auto", "numpy", "cupy")

Array = Any  # an array of the run's namespace ``xp``: numpy.ndarray, cupy.ndarray, or a stand-in's
Namespace = types.ModuleType  # the array namespace itself: ``numpy``, ``cupy`` or a stand-in module


class BackendError(RuntimeError):
    """The requested array backend cannot be used on this machine."""


def _cupy_with_gpu() -> Namespace | None:
    try:
        import cupy
    except Exception:  # ImportError, or a CUDA library that fails to load
        return None
    try:
        if cupy.cuda.runtime.getDeviceCount() < 1:
            return None
    except Exception:
        return None
    return cupy


def get_backend(name: str = "auto") -> Namespace:
    """Return the array module for ``name``.

    Parameters
    ----------
    name : {"auto", "numpy", "cupy"}
        ``auto`` takes CuPy when it imports and sees a GPU, else NumPy.

    Raises
    ------
    BackendError
        ``cupy`` was asked for but is not installed or sees no GPU.
    """
    if name not in BACKENDS:
        raise BackendError(f"unknown backend {name!r}; choose one of {', '.join(BACKENDS)}")
    if name == "numpy":
        return np
    cp = _cupy_with_gpu()
    if cp is not None:
        return cp
    if name == "cupy":
        raise BackendError(
            "backend 'cupy' needs CuPy and a CUDA GPU: install the extra with "
            "`python -m pip install -e \".[gpu]\"` on a machine with a GPU"
        )
    return np


def to_numpy(a: Array) -> np.ndarray:
    """Copy an array of either backend to host memory: the one way from the device to the host.

    A NumPy array is returned as it is; a device array is copied by its ``get()``; anything else
    (a list, a scalar) goes through ``np.asarray``.
    """
    if isinstance(a, np.ndarray):
        return a
    get = getattr(a, "get", None)
    return get() if get is not None else np.asarray(a)


def array_module(a: Array) -> Namespace:
    """The module (NumPy or CuPy) that owns array ``a``."""
    if isinstance(a, np.ndarray) or np.isscalar(a):
        return np
    import cupy

    return cupy.get_array_module(a)


def backend_name(xp: Namespace) -> str:
    """``"cupy"`` for a device namespace (CuPy, or a stand-in whose name starts with ``cupy``), else ``"numpy"``."""
    return "cupy" if xp.__name__.startswith("cupy") else "numpy"
