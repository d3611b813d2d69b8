"""Saving a long stage part-way, so that a killed run resumes inside it rather than from its start.

A finished stage is kept whole by :mod:`empirical.store`. Model extraction at the challenge's size
runs for hours, longer than many machines stay up; each resumable part of such a stage is a
:class:`Checkpoint`: one ``.npz`` file in the stage's scratch folder
(:meth:`empirical.store.Store.scratch`, named by the stage's key: the settings and the method's
source, so changed settings or code start that folder afresh). A save writes arrays (host copies)
and a JSON record as the saved stages are written (:func:`empirical.fileio.write_record`: flushed to
disk and renamed into place, so a file is whole or absent); a save that fails (a full disk) is
reported in one line and the computation goes on. Each save also carries the caller's
*fingerprint* (what the part was computed for: its step count, sizes, array backend); a file whose
fingerprint differs, or that cannot be read or lacks what the caller needs (``check``), is ignored
with a one-line warning, and that part is computed again.

What is saved is the caller's choice; :func:`pack` and :func:`unpack` move named groups of arrays
(parameters, optimiser moments) to one flat dict and back, and :func:`rng_state` /
:func:`set_rng_state` carry a NumPy PCG64 generator's state (``default_rng``'s) through JSON, so that
a resumed computation on the same backend draws the same numbers and ends bit for bit where an
uninterrupted one would.
"""
from __future__ import annotations

import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

from .backend import to_numpy
from .fileio import RECORD_ERRORS, as_json, read_record, write_record

CHECKPOINT_SECONDS = 600.0  # a running part saves itself at most this often (a save at challenge size takes seconds)


def _warn(msg: str) -> None:
    print(f"warning: {msg}", file=sys.stderr)


class Checkpoint:
    """One resumable part of a stage, saved in ``path`` (an ``.npz``).

    :meth:`due` says whether a save is due (every ``every_seconds`` of wall time, by default
    :data:`CHECKPOINT_SECONDS`, or every ``every_steps`` steps when given: tests and small runs);
    :meth:`save` writes; :meth:`load` returns the saved ``(arrays, meta)`` or None; :meth:`clear`
    removes the file. ``fingerprint`` (JSON) is saved with every save and must match on load;
    ``loaded`` says whether a load has returned a saved part.
    """

    def __init__(self, path: str | Path, *, fingerprint: dict | None = None, every_seconds: float | None = None,
                 every_steps: int = 0, warn: Callable[[str], None] = _warn) -> None:
        self.path = Path(path)
        self.bind(fingerprint or {})
        self.every_seconds = CHECKPOINT_SECONDS if every_seconds is None else every_seconds
        self.every_steps, self.warn = every_steps, warn
        self.loaded = False
        self._last = time.monotonic()

    def bind(self, fingerprint: dict) -> Checkpoint:
        """Set the fingerprint (what the part is computed for) from the computation itself; returns self."""
        self.fingerprint = as_json(fingerprint)  # compared with what comes back from disk
        return self

    def due(self, steps_done: int) -> bool:
        if self.every_steps > 0:
            return steps_done % self.every_steps == 0
        return time.monotonic() - self._last >= self.every_seconds

    def save(self, arrays: dict, meta: dict) -> bool:
        """Write ``arrays`` and ``meta``; False (with one warning) when the write fails."""
        try:
            write_record(self.path, {k: to_numpy(v) for k, v in arrays.items()},
                         {"fingerprint": self.fingerprint, "meta": meta})
        except OSError as e:
            self.warn(f"could not save {self.path} ({type(e).__name__}: {e}); going on without this save")
            return False
        finally:
            self._last = time.monotonic()
        return True

    def load(self, check: Callable[[dict, dict], object] | None = None) -> tuple[dict, dict] | None:
        """The saved ``(arrays, meta)``, or None: nothing saved, or a file that cannot be read, was saved
        with another fingerprint, or fails ``check(arrays, meta)`` (which raises ``KeyError``,
        ``ValueError`` or ``TypeError`` on what the caller cannot use)."""
        if not self.path.exists():
            return None
        try:
            arrays, record = read_record(self.path)
            if not isinstance(record.get("meta"), dict):
                raise ValueError("no record inside")
            if record.get("fingerprint") != self.fingerprint:
                self.warn(f"{self.path} was saved for another computation ({record.get('fingerprint')} against "
                          f"{self.fingerprint}); computing that part again")
                return None
            meta = record["meta"]
            if check is not None:
                check(arrays, meta)
        except (*RECORD_ERRORS, TypeError) as e:
            self.warn(f"{self.path} is damaged ({type(e).__name__}: {e}); computing that part again")
            return None
        self.loaded = True
        return arrays, meta

    def clear(self) -> None:
        self.path.unlink(missing_ok=True)


def pack(**groups: dict | None) -> dict:
    """One flat dict of arrays from named groups of named arrays: ``{"<group>.<name>": array}``."""
    return {f"{g}.{k}": v for g, d in groups.items() if d is not None for k, v in d.items()}


def unpack(arrays: dict, group: str, xp) -> dict | None:
    """The arrays of ``group`` saved by :func:`pack`, as new ``xp`` arrays (None when the group is absent)."""
    prefix = f"{group}."
    out = {k[len(prefix):]: xp.asarray(v).copy() for k, v in arrays.items() if k.startswith(prefix)}
    return out or None


def rng_state(rng: np.random.Generator) -> dict:
    """A PCG64 generator's state as JSON holds it (its 128-bit integers are kept exactly)."""
    state = rng.bit_generator.state
    if state.get("bit_generator") != "PCG64":
        raise TypeError(f"only PCG64 generators are checkpointed, not {state.get('bit_generator')}")
    return state


def set_rng_state(rng: np.random.Generator, state: dict) -> None:
    rng.bit_generator.state = state
