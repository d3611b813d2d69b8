"""Passes over the encodings: one function mapped over blocks of whole encodings, in order.

Alignment and p-sim's row features read every encoding once per pass, and what a block yields
depends on that block alone (and on small shared arguments, such as the alignment's reference).
Each such pass is written once, as ``fn(block, *args) -> result`` for an ``xp`` block
(b, P, D), and :func:`map_blocks` runs it:

* ``scheduler=None``: in this process, a loop over :meth:`Rows.blocks` (blocks stay on the
  device when the encodings are there);
* ``scheduler="sync"``: on Dask, in this process: the encodings become a ``dask.array`` of
  (block, P, D) NumPy chunks, read from their files (or a host array) only when a task needs
  them, and ``fn`` runs as one delayed task per chunk, by Dask's synchronous scheduler;
* a ``dask.distributed.Client``: the same graph, computed by that cluster's workers, which read
  the game's files themselves (a path every worker can reach) and send back ``fn``'s results.
  Encodings held in memory are never shipped to a cluster: their passes run in this process.

``fn`` must be a module-level function (Dask sends it to the workers) that moves its block to
``xp`` itself (``xp.asarray`` is free for a block already there). On Dask, array arguments go to
the tasks and array results come back as host arrays (:func:`_host`); in this process they stay
where they are. The results come back as a list in block order, so a reduction over them is the
same whatever ran them.
"""
from __future__ import annotations

from collections.abc import Callable
from types import ModuleType
from typing import Any

import numpy as np

from .backend import to_numpy
from .encodings import EncodingFiles, Rows
from .progress import Progress

Scheduler = Any  # None, "sync", or a dask.distributed.Client
CONNECT_TIMEOUT = "30s"  # how long --scheduler ADDRESS waits for the scheduler to answer


class HostChunks:
    """:class:`Rows` as a host array-like for ``dask.array.from_array``: NumPy slicing, NumPy results."""

    def __init__(self, rows: Rows):
        self.rows = rows
        self.shape, self.dtype, self.ndim = rows.shape, np.dtype(np.float32), 3

    def __getitem__(self, key: tuple) -> np.ndarray:
        key = key if isinstance(key, tuple) else (key,)
        block = to_numpy(self.rows[key[0]])  # whole encodings first, then the other axes' slices
        return block[(slice(None), *key[1:])] if len(key) > 1 else block


def dask_encodings(rows: Rows, block: int):
    """The encodings as a ``dask.array`` (N, P, D) float32 of (block, P, D) host chunks, read lazily."""
    import dask.array as da

    return da.from_array(HostChunks(rows), chunks=(block, *rows.shape[1:]), name=False, asarray=False,
                         meta=np.empty((0, 0, 0), np.float32))


def _host(value: Any) -> Any:
    """``value`` with its arrays (alone or in a tuple) on the host; anything else as it is."""
    if isinstance(value, tuple):
        return tuple(_host(v) for v in value)
    is_array = not isinstance(value, ModuleType) and hasattr(value, "shape") and hasattr(value, "dtype")
    return to_numpy(value) if is_array else value


def _on_host(fn: Callable, block: np.ndarray, *args: Any) -> Any:
    """One Dask task: ``fn`` on a host chunk, its results brought back to the host."""
    return _host(fn(block, *args))


def map_blocks(fn: Callable, rows: Rows, block: int, args: tuple = (), scheduler: Scheduler = None,
               progress: Progress | None = None) -> list:
    """``[fn(block, *args) for each block of `block` encodings, in order]``, run where ``scheduler`` says."""
    # Encodings held in memory are not shipped to a cluster: only a game's files are read there.
    if scheduler is None or (scheduler != "sync" and not isinstance(rows.source, EncodingFiles)):
        out = []
        for _, b in rows.blocks(block):
            out.append(fn(b, *args))
            if progress is not None:
                progress(b.shape[0])
        return out
    import dask

    args = _host(tuple(args))
    tasks = [dask.delayed(_on_host, pure=False)(fn, chunk, *args)
             for chunk in dask_encodings(rows, block).to_delayed().ravel()]
    if scheduler == "sync":
        out = list(dask.compute(*tasks, scheduler="sync"))
    else:
        out = scheduler.gather(scheduler.compute(tasks))
    if progress is not None:
        progress(len(rows))
    return out


def connect(address: str) -> Scheduler:
    """``"sync"`` as it is; otherwise a ``dask.distributed.Client`` connected to the scheduler at ``address``."""
    if address == "sync":
        return "sync"
    from distributed import Client

    return Client(address, timeout=CONNECT_TIMEOUT)
