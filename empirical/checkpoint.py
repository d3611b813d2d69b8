"""Saving a long stage part-way, so that a killed run resumes inside it rather than from its start.

A finished stage is kept whole by :mod:`empirical.store`. Model extraction at the challenge's size
runs for hours, longer than many machines stay up; :class:`Checkpoint` keeps what such a stage has
done so far in one ``.npz`` file of its scratch folder (:meth:`empirical.store.Store.scratch`, named
by the stage's key, so a changed method or setting never resumes stale work). A save writes
arrays (host copies) and a JSON record through a temporary renamed into place: a file is whole or
absent. A file that cannot be read is ignored with a one-line warning, and that part is computed
again.

What is saved is the caller's choice; :func:`pack` and :func:`unpack` move named groups of arrays
(parameters, optimiser moments) to one flat dict and back, and :func:`rng_state` /
:func:`set_rng_state` carry a NumPy generator's state through JSON, so that a resumed computation
draws the same numbers and ends bit for bit where an uninterrupted one would.
"""
from __future__ import annotations

import json
import sys
import time
import zipfile
from collections.abc import Callable
from pathlib import Path

import numpy as np

from .backend import to_numpy
from .staging import atomic_path

CHECKPOINT_SECONDS = 600.0  # a running part saves itself at most this often (a save at challenge size takes seconds)


def _warn(msg: str) -> None:
    print(f"warning: {msg}", file=sys.stderr)


class Checkpoint:
    """One resumable part of a stage, saved in ``path`` (an ``.npz``).

    :meth:`due` says whether a save is due (every ``every_seconds`` of wall time, or every
    ``every_steps`` steps when given: tests and small runs); :meth:`save` writes; :meth:`load`
    returns the saved ``(arrays, meta)`` or None; :meth:`clear` removes the file.
    """

    def __init__(self, path: str | Path, *, every_seconds: float | None = None, every_steps: int = 0,
                 warn: Callable[[str], None] = _warn) -> None:
        self.path = Path(path)
        self.every_seconds = CHECKPOINT_SECONDS if every_seconds is None else every_seconds
        self.every_steps, self.warn = every_steps, warn
        self._last = time.monotonic()

    def due(self, steps_done: int) -> bool:
        if self.every_steps > 0:
            return steps_done % self.every_steps == 0
        return time.monotonic() - self._last >= self.every_seconds

    def save(self, arrays: dict, meta: dict) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with atomic_path(self.path) as tmp, open(tmp, "wb") as f:
            np.savez(f, _meta=np.array(json.dumps(meta, default=_plain)), **{k: to_numpy(v) for k, v in arrays.items()})
        self._last = time.monotonic()

    def load(self) -> tuple[dict, dict] | None:
        if not self.path.exists():
            return None
        try:
            with np.load(self.path, allow_pickle=False) as z:
                arrays = {k: z[k] for k in z.files if k != "_meta"}
                meta = json.loads(str(z["_meta"]))
            if not isinstance(meta, dict):
                raise ValueError("no record inside")
        except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile) as e:
            self.warn(f"{self.path} is damaged ({type(e).__name__}: {e}); computing that part again")
            return None
        return arrays, meta

    def clear(self) -> None:
        self.path.unlink(missing_ok=True)


def _plain(value):
    """JSON for NumPy scalars (a record may hold them: counts, shares)."""
    if isinstance(value, np.generic):
        return value.item()
    raise TypeError(f"{type(value).__name__} is not JSON serialisable")


def pack(**groups: dict | None) -> dict:
    """One flat dict of arrays from named groups of named arrays: ``{"<group>.<name>": array}``."""
    return {f"{g}.{k}": v for g, d in groups.items() if d is not None for k, v in d.items()}


def unpack(arrays: dict, group: str, xp) -> dict | None:
    """The arrays of ``group`` saved by :func:`pack`, as new ``xp`` arrays (None when the group is absent)."""
    prefix = f"{group}."
    out = {k[len(prefix):]: xp.asarray(v).copy() for k, v in arrays.items() if k.startswith(prefix)}
    return out or None


def rng_state(rng: np.random.Generator) -> dict:
    """A NumPy generator's state, as JSON can hold it (its integers can exceed 64 bits: kept exactly)."""
    return rng.bit_generator.state


def set_rng_state(rng: np.random.Generator, state: dict) -> None:
    rng.bit_generator.state = state
