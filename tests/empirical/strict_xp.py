"""A CPU stand-in for CuPy's host/device boundary: device arrays that refuse implicit conversion.

What it models. A :class:`DeviceArray` holds a NumPy array that plays the part of GPU memory.
As with ``cupy.ndarray``:

- explicit transfers work: ``dev.get()`` and ``xp.asnumpy(dev)`` copy to the host,
  ``xp.asarray(host)`` / ``xp.array(host)`` copy to the device (a copy, so the device array never
  aliases host memory);
- implicit ones raise ``TypeError``: ``np.asarray(dev)``, ``np.array(dev)``, ``dev.__array__()``,
  any NumPy function or ufunc given a device array (``np.median(dev)``, ``np.argsort(dev)``,
  ``np.exp(dev)``, SciPy's ``linear_sum_assignment(dev)``), NumPy arrays or lists of numbers as
  operands of device arithmetic (``dev + host``, ``host * dev``), as arguments of the namespace's
  functions (``xp.maximum(dev, host)``) or as values assigned into a device array;
- reductions give 0-d device arrays, and ``float``, ``int`` and ``bool`` of a 0-d array are
  allowed (CuPy synchronises and copies the one value); of any other shape they raise.

Where it is stricter than CuPy, so that every transfer in the code under test is visible:

- CuPy dispatches NumPy functions given a CuPy array to its own implementation (NEP 18) and
  returns a device array; here they raise, so each call names the namespace it runs on;
- CuPy copies NumPy arrays and lists used as indices (``dev[host_idx]``) to the device
  silently; here they raise, so index arrays go through ``xp.asarray`` first;
- ``float``/``int``/``bool`` of a size-1 array that is not 0-d raise (CuPy allows them).

It does not model asynchrony, memory, or numerical differences: the arithmetic is NumPy's, so a
run on this namespace must give exactly the NumPy run's result. Python scalars, NumPy scalars,
shapes and dtypes pass freely, as they do into CuPy.
"""
from __future__ import annotations

import operator
import types

import numpy as np

NAME = "cupy_strict"  # empirical.backend.backend_name treats a ``cupy*`` namespace as the device path


def _refuse(what: str):
    raise TypeError(f"{what}: implicit conversion between a device array and NumPy is not allowed; "
                    "use .get() / to_numpy() to copy to the host and xp.asarray() to copy to the device")


def _unwrap(x):
    """A device array's storage, for the namespace's own functions; host arrays are refused."""
    if isinstance(x, DeviceArray):
        return x._a
    if isinstance(x, np.ndarray):
        _refuse(f"a NumPy array {x.shape} passed to a device function")
    if isinstance(x, list):  # array data (a sequence of arrays, as for concatenate, is fine)
        if not all(isinstance(v, DeviceArray) for v in x):
            _refuse("a Python list of host values passed to a device function")
        return [v._a for v in x]
    if isinstance(x, tuple):  # shapes, axes, or a sequence of arrays
        return tuple(_unwrap(v) for v in x)
    return x


def _wrap(x):
    """Results of NumPy on device storage, as device arrays (scalars become 0-d arrays)."""
    if isinstance(x, np.ndarray):
        return DeviceArray(x)
    if isinstance(x, np.generic):
        return DeviceArray(np.asarray(x))
    if isinstance(x, tuple):
        return tuple(_wrap(v) for v in x)
    return x


def _operand(x):
    """The other operand of an arithmetic operator, or NotImplemented."""
    if isinstance(x, DeviceArray):
        return x._a
    if isinstance(x, np.ndarray):
        _refuse(f"a NumPy array {x.shape} as an operand of a device array")
    if isinstance(x, (bool, int, float, complex, np.generic)):
        return x
    return NotImplemented


def _index(key):
    if isinstance(key, tuple):
        return tuple(_index(k) for k in key)
    if isinstance(key, DeviceArray):
        return key._a
    if isinstance(key, (np.ndarray, list)):
        _refuse("a host array or list used as an index of a device array")
    return key  # int, NumPy integer, slice, None, Ellipsis


def _binary(op, reflected=False):
    def method(self, other):
        o = _operand(other)
        if o is NotImplemented:
            return NotImplemented
        return _wrap(op(o, self._a) if reflected else op(self._a, o))
    return method


def _inplace(op):
    def method(self, other):
        o = _operand(other)
        if o is NotImplemented:
            return NotImplemented
        op(self._a, o)
        return self
    return method


def _forward(name):
    def method(self, *args, **kwargs):
        return _wrap(getattr(self._a, name)(*_unwrap(args), **{k: _unwrap(v) for k, v in kwargs.items()}))
    method.__name__ = name
    return method


class DeviceArray:
    """An array "on the device": NumPy storage behind CuPy's rules for leaving it."""

    __slots__ = ("_a",)
    __array_ufunc__ = None  # NumPy ufuncs and NumPy-array operators defer to this class, which refuses
    __hash__ = None

    def __init__(self, storage: np.ndarray):
        if not isinstance(storage, np.ndarray):
            raise TypeError("DeviceArray wraps a NumPy array; build one with xp.asarray")
        self._a = storage

    # -- explicit transfer ---------------------------------------------------------------------
    def get(self) -> np.ndarray:
        """A host copy, as ``cupy.ndarray.get``."""
        return self._a.copy()

    # -- implicit transfers: refused ------------------------------------------------------------
    def __array__(self, *args, **kwargs):
        _refuse("np.asarray / np.array of a device array")

    def __array_function__(self, func, types_, args, kwargs):
        _refuse(f"numpy.{func.__name__} called on a device array")

    def _scalar(self, kind: str):
        if self._a.ndim != 0:
            raise TypeError(f"{kind}() of a device array of shape {self._a.shape}: only 0-d arrays convert")
        return self._a[()]

    def __float__(self) -> float:
        return float(self._scalar("float"))

    def __int__(self) -> int:
        return int(self._scalar("int"))

    def __bool__(self) -> bool:
        return bool(self._scalar("bool"))

    # -- attributes ----------------------------------------------------------------------------
    shape = property(lambda self: self._a.shape)
    dtype = property(lambda self: self._a.dtype)
    ndim = property(lambda self: self._a.ndim)
    size = property(lambda self: self._a.size)
    itemsize = property(lambda self: self._a.itemsize)
    nbytes = property(lambda self: self._a.nbytes)
    T = property(lambda self: DeviceArray(self._a.T))

    def __len__(self) -> int:
        return len(self._a)

    def __iter__(self):
        if self._a.ndim == 0:
            raise TypeError("iteration over a 0-d device array")
        return (_wrap(self._a[i]) for i in range(len(self._a)))

    def __repr__(self) -> str:
        return f"DeviceArray({self._a!r})"

    def __getitem__(self, key):
        return _wrap(self._a[_index(key)])

    def __setitem__(self, key, value):
        v = _operand(value)
        if v is NotImplemented:
            raise TypeError(f"cannot assign a {type(value).__name__} into a device array")
        self._a[_index(key)] = v

    def astype(self, dtype, copy: bool = True):
        return DeviceArray(self._a.astype(dtype, copy=copy))

    def sort(self, axis: int = -1) -> None:
        self._a.sort(axis=axis)

    def __neg__(self):
        return DeviceArray(-self._a)

    def __pos__(self):
        return DeviceArray(+self._a)

    def __abs__(self):
        return DeviceArray(abs(self._a))

    def __invert__(self):
        return DeviceArray(~self._a)


def _install_methods() -> None:
    """Array methods and operators CuPy's ndarray has, each run on the storage and wrapped back."""
    for name in ("reshape", "transpose", "copy", "ravel", "flatten", "squeeze", "swapaxes", "sum", "mean", "std",
                 "var", "max", "min", "argmax", "argmin", "any", "all", "prod", "cumsum", "argsort", "clip", "take",
                 "nonzero", "fill", "dot", "round"):
        setattr(DeviceArray, name, _forward(name))
    for name in ("add", "sub", "mul", "truediv", "floordiv", "mod", "pow", "matmul", "and", "or", "xor"):
        op = getattr(operator, f"{name}_" if name in ("and", "or") else name)
        setattr(DeviceArray, f"__{name}__", _binary(op))
        setattr(DeviceArray, f"__r{name}__", _binary(op, reflected=True))
        setattr(DeviceArray, f"__i{name}__", _inplace(getattr(operator, f"i{name}")))
    for name in ("eq", "ne", "lt", "le", "gt", "ge"):
        setattr(DeviceArray, f"__{name}__", _binary(getattr(operator, name)))


_install_methods()

# -- the namespace ------------------------------------------------------------------------------

def asarray(a, dtype=None):
    """To the device: a host array (or scalar, or list) is copied; a device array is kept or cast."""
    if isinstance(a, DeviceArray):
        return a if dtype is None or a.dtype == np.dtype(dtype) else a.astype(dtype)
    return DeviceArray(np.array(a, dtype=dtype, copy=True))


def array(a, dtype=None, copy: bool = True):
    """Like :func:`asarray`, copying a device array too."""
    if isinstance(a, DeviceArray):
        return a.astype(a.dtype if dtype is None else dtype, copy=copy)
    return DeviceArray(np.array(a, dtype=dtype, copy=True))


def asnumpy(a) -> np.ndarray:
    """To the host, as ``cupy.asnumpy``."""
    return a.get() if isinstance(a, DeviceArray) else np.asarray(a)


def _device_function(fn):
    def call(*args, **kwargs):
        return _wrap(fn(*_unwrap(args), **{k: _unwrap(v) for k, v in kwargs.items()}))
    call.__name__ = fn.__name__
    return call


# NumPy functions that CuPy has under the same name and signature (the ones the attack uses, and a
# few neighbours), run on device storage. Creation functions take shapes and scalars only.
FUNCTIONS = (
    "empty", "zeros", "ones", "full", "eye", "arange", "empty_like", "zeros_like", "ones_like", "full_like",
    "sqrt", "exp", "log", "abs", "sign", "maximum", "minimum", "where", "clip", "isfinite",
    "einsum", "matmul", "dot", "take_along_axis", "take", "argsort", "sort", "argpartition", "argmax",
    "concatenate", "stack", "tile", "broadcast_to", "median", "mean", "sum", "unique", "flatnonzero", "array_equal",
)
LINALG = ("eigh", "inv", "solve", "norm")


def namespace() -> types.ModuleType:
    """The stand-in array module, named :data:`NAME`."""
    xp = types.ModuleType(NAME, __doc__)
    for name in FUNCTIONS:
        setattr(xp, name, _device_function(getattr(np, name)))
    xp.linalg = types.ModuleType(f"{NAME}.linalg")
    for name in LINALG:
        setattr(xp.linalg, name, _device_function(getattr(np.linalg, name)))
    xp.asarray, xp.array, xp.asnumpy, xp.ndarray = asarray, array, asnumpy, DeviceArray
    for name in ("float16", "float32", "float64", "int32", "int64", "uint8", "bool_", "dtype", "inf", "pi",
                 "newaxis"):
        setattr(xp, name, getattr(np, name))  # CuPy's dtypes and constants are NumPy's
    return xp


xp = namespace()
