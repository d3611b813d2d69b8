"""Encodings a block at a time: a game's files read on demand, and row orders applied on read.

A game's encodings are N arrays of (P, D) float32; at the public challenge's size (N = 14,643,
P = 256, D = 2,048) they take 30.7 GB, more than many machines hold. Nothing in the attack needs
them all at once: alignment, p-sim's row features and the final distances are passes over blocks
of whole encodings, and model extraction reads one BatchNorm batch per step. Two types carry
that:

* :class:`EncodingFiles`: the files ``GAME/private_encoded_dataset/<k>.npy``, every header
  checked when opened, read a block at a time (``files[idx]`` is a host (len(idx), P, D) array);
  a block holding NaN or inf is refused with one line naming the file.
* :class:`Rows`: encodings with each one's rows put in a chosen order (the local permutations,
  then the global one), gathered on read: ``rows[idx]`` is an ``xp`` array (len(idx), P, D).
  Its source is an in-memory array (host or ``xp``) or an :class:`EncodingFiles`; the result is
  the same either way, only the memory differs.

Block sizes come from a memory budget in bytes (:func:`block_size`); the budget changes how much
is held at once, never a result.
"""
from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np

from .backend import Array, Namespace, to_numpy
from .errors import UserError
from .fileio import check_numeric_dtype, read_npy_header, regular_file
from .memory import available_memory

ENCODING_DTYPE = np.dtype("<f4")
BUDGET_SHARE = 0.5  # default memory budget: this share of the memory available when the run starts
BLOCK_CAP = 512  # encodings per block at most, however large the budget (the passes' own chunk)


def default_budget() -> int:
    """Bytes a run may hold in blocks by default: half the available memory (8 GiB if it cannot be told)."""
    avail = available_memory()
    return int(BUDGET_SHARE * avail) if avail is not None else 8 * 1024**3


def block_size(budget: int, item_bytes: int, copies: int = 4, cap: int | None = BLOCK_CAP) -> int:
    """Items per block so that ``copies`` blocks of ``item_bytes`` each stay within ``budget`` (at least 1)."""
    n = max(1, int(budget // max(1, copies * item_bytes)))
    return n if cap is None else min(n, cap)


def as_index(idx: object, n: int) -> np.ndarray:
    """A host int64 index array from an int, a slice, a host array or an ``xp`` array."""
    if isinstance(idx, slice):
        return np.arange(n)[idx]
    if isinstance(idx, (int, np.integer)):
        return np.array([int(idx)])
    return np.asarray(to_numpy(idx), dtype=np.int64).reshape(-1)


class EncodingFiles:
    """A game's encoding files, read on demand: ``files[idx]`` -> host float32 (len(idx), P, D).

    Opening checks every file's header (a regular ``.npy`` of the exact shape and little-endian
    float32, neither truncated nor padded) and remembers where its data starts; reading checks the
    values. ``err`` is the error type raised, with one line naming the file.
    """

    def __init__(self, folder: Path, files: list[str], shape: tuple[int, int], err: type[UserError] = UserError,
                 progress: Callable[[int], object] | None = None):
        # absolute, so that Dask workers started elsewhere read the same files
        self.folder, self.files, self.err = Path(os.path.abspath(folder)), list(files), err
        self.shape = (len(self.files), *shape)
        self.dtype = np.dtype(np.float32)
        self._item = int(np.prod(shape)) * ENCODING_DTYPE.itemsize
        self._offsets = np.empty(len(self.files), np.int64)
        for k, name in enumerate(self.files):
            self._offsets[k] = self._check_header(self.folder / name)
            if progress is not None:
                progress(1)

    def _check_header(self, path: Path) -> int:
        path = regular_file(path, "encoding", self.err)
        try:
            with open(path, "rb") as f:
                got_shape, got_dtype, fortran = read_npy_header(f, str(path), self.err)
                start, size = f.tell(), os.fstat(f.fileno()).st_size
        except OSError as e:
            raise self.err(f"cannot read {path}: {e.strerror or e}") from None
        if got_dtype.hasobject:
            check_numeric_dtype(got_dtype, str(path), err=self.err)  # refused: pickled objects
        if got_shape != self.shape[1:]:
            raise self.err(f"{path} has shape {got_shape}, expected {self.shape[1:]}")
        if got_dtype != ENCODING_DTYPE or fortran:
            raise self.err(f"{path} has dtype {got_dtype}{' (Fortran order)' if fortran else ''}, "
                           f"expected {np.dtype(np.float32)}")
        expected = start + self._item
        if size < expected:
            raise self.err(f"cannot read {path}: the file is truncated ({size} of {expected} bytes)")
        if size > expected:
            raise self.err(f"cannot read {path}: {size - expected} unexpected bytes after the array")
        return start

    @property
    def ndim(self) -> int:
        return 3

    @property
    def nbytes(self) -> int:
        return len(self.files) * self._item

    def __len__(self) -> int:
        return len(self.files)

    def __getitem__(self, idx: object) -> np.ndarray:
        if isinstance(idx, (int, np.integer)):
            return self.read(np.array([int(idx)]))[0]
        return self.read(as_index(idx, len(self)))

    def read(self, idx: np.ndarray) -> np.ndarray:
        """Encodings ``idx`` (host ints) as one host array (len(idx), P, D), each checked finite."""
        out = np.empty((len(idx), *self.shape[1:]), np.float32)
        flat = out.reshape(len(idx), -1)
        for i, k in enumerate(idx):
            path = self.folder / self.files[k]
            try:
                with open(path, "rb") as f:
                    f.seek(int(self._offsets[k]))
                    got = f.readinto(memoryview(flat[i]).cast("B"))
            except OSError as e:
                raise self.err(f"cannot read {path}: {e.strerror or e}") from None
            if got != self._item:
                raise self.err(f"cannot read {path}: the data is truncated ({got} of {self._item} bytes)")
            if not np.isfinite(flat[i]).all():
                raise self.err(f"{path} contains NaN or inf")
        return out

    def blocks(self, size: int) -> Iterator[tuple[int, np.ndarray]]:
        """``(start, host block)`` over all encodings in file order, ``size`` at a time."""
        for s in range(0, len(self), size):
            yield s, self.read(np.arange(s, min(s + size, len(self))))

    def load(self) -> np.ndarray:
        """Every encoding in one host array (N, P, D)."""
        return self.read(np.arange(len(self)))


class Rows:
    """Encodings with each one's rows in a chosen order, gathered on read.

    ``rows[idx]`` is an ``xp`` float32 array (len(idx), P, D) whose row q of encoding b is the
    source's row ``index[b, q]`` (the source's own order when ``index`` is None). ``idx`` is an int
    array (host or ``xp``) or a slice. The source is an ``xp`` array (N, P, D), a host array, or
    an :class:`EncodingFiles`; only ``xp`` arrays stay on the device between reads.
    """

    def __init__(self, source: object, xp: Namespace, index: np.ndarray | None = None):
        self.source, self.xp = source, xp
        self.index = None if index is None else np.asarray(index, dtype=np.int64)  # (N, P) host
        # an xp array (or a host array when xp is NumPy) is indexed in place; anything else is read, then moved
        self.on_device = not isinstance(source, EncodingFiles) and (xp is np or not isinstance(source, np.ndarray))
        self.shape = tuple(source.shape)

    def __len__(self) -> int:
        return self.shape[0]

    @property
    def item_bytes(self) -> int:
        """Bytes of one encoding's rows (float32)."""
        return int(np.prod(self.shape[1:])) * 4

    def take(self, order: np.ndarray) -> Rows:
        """These rows in a new order: new row q of encoding b is old row ``order[b, q]``.

        ``order`` is host (N, P), one order per encoding, or (P,), the same order for all.
        """
        order = np.asarray(order, dtype=np.int64)
        if order.shape[-1] != self.shape[1] or (order.ndim == 2 and len(order) != len(self)):
            raise ValueError(f"an order of shape {order.shape} for rows of shape {self.shape}")
        if order.ndim == 1:
            index = np.broadcast_to(order, (len(self), len(order))) if self.index is None else self.index[:, order]
        else:
            index = order if self.index is None else np.take_along_axis(self.index, order, axis=1)
        return Rows(self.source, self.xp, index)

    def __getitem__(self, idx: object) -> Array:
        if isinstance(idx, (int, np.integer)):
            return self[np.array([int(idx)])][0]
        xp = self.xp
        if isinstance(idx, slice) and self.index is None and self.on_device:
            return xp.asarray(self.source[idx])  # a view of the source: no gather needed
        host_idx = as_index(idx, len(self))
        if self.on_device:
            dev_idx = xp.asarray(host_idx)
            if self.index is None:
                return self.source[dev_idx]
            # (c, 1) encodings x (c, P) rows -> (c, P, D): one gather
            return self.source[dev_idx[:, None], xp.asarray(self.index[host_idx])]
        block = self.source[host_idx]  # host (c, P, D)
        if self.index is not None:
            block = np.take_along_axis(block, self.index[host_idx][:, :, None], axis=1)
        return xp.asarray(block)

    def blocks(self, size: int) -> Iterator[tuple[int, Array]]:
        """``(start, xp block)`` over all encodings in order, ``size`` at a time."""
        for s in range(0, len(self), size):
            yield s, self[slice(s, s + size)]  # in memory with no row order: a view, not a copy


def as_rows(targets: Array | Rows, xp: Namespace) -> Rows:
    """``targets`` as :class:`Rows`: unchanged when they are, else an (N, P, D) array moved to ``xp`` float32."""
    if isinstance(targets, Rows):
        return targets
    return Rows(xp.asarray(targets, dtype=xp.float32), xp)
