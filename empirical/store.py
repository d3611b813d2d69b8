"""Finished attack stages on disk, so an interrupted or extended run resumes where it stopped.

Layout: ``work_dir/<game digest>/<stage>-<key>.npz``; while a long stage runs, its resumable parts
are kept in ``<stage>-<key>.parts/`` (:meth:`Store.scratch`), removed once the stage is saved. The
game digest hashes every original and every encoding whole (:func:`empirical.game.content_digest`);
a stage's key hashes the settings it and every earlier stage read, and every one of their versions
(a hash of their source). A stage is reused only when all of these match, so changing, say, the
extraction steps re-runs extraction but resumes everything before it, and no change of the game or
the method can bring back a stale result. A stage file that cannot be read is recomputed, with a
one-line warning.
"""
from __future__ import annotations

import hashlib
import json
import shutil
import sys
from collections.abc import Callable
from pathlib import Path

from .backend import to_numpy
from .fileio import RECORD_ERRORS, read_record, write_record
from .game import Game, content_digest
from .stages import REGISTRY, STAGES


def stage_keys(cfg_json: dict) -> dict[str, str]:
    """A short hash per stage of the settings and method versions its result depends on."""
    keys, fields, versions = {}, [], {}
    for name in STAGES:
        stage = REGISTRY[name]
        fields += stage.fields
        versions[name] = stage.version
        blob = {**{f: cfg_json[f] for f in fields}, "versions": versions}
        keys[name] = hashlib.sha256(json.dumps(blob, sort_keys=True).encode()).hexdigest()[:10]
    return keys


def _warn(msg: str) -> None:
    print(f"warning: {msg}", file=sys.stderr)


class Store:
    """Saved stages of one game under one configuration; a no-op without a work dir."""

    def __init__(self, work_dir, game: Game, cfg_json: dict, warn: Callable[[str], None] = _warn):
        self.dir = Path(work_dir) / content_digest(game)[:16] if work_dir else None
        self.keys = stage_keys(cfg_json)
        self.warn = warn
        if self.dir is not None:
            self.dir.mkdir(parents=True, exist_ok=True)

    def path(self, name: str) -> Path:
        return self.dir / f"{name}-{self.keys[name]}.npz"

    def scratch(self, name: str) -> Path | None:
        """The folder where stage ``name`` keeps its resumable parts while it runs
        (:mod:`empirical.checkpoint`), named by its key like its result; None without a work dir."""
        return None if self.dir is None else self.dir / f"{name}-{self.keys[name]}.parts"

    def clear_scratch(self, name: str) -> None:
        """Remove stage ``name``'s resumable parts (once its result is saved). Parts saved under other keys
        (other settings or code) are left: they resume when those settings run again."""
        if self.dir is not None:
            shutil.rmtree(self.scratch(name), ignore_errors=True)

    def load(self, name: str) -> tuple[dict, dict] | None:
        """``(arrays, meta)`` of a finished stage, or None (not saved, or unreadable: recomputed)."""
        if self.dir is None or not self.path(name).exists():
            return None
        try:
            arrays, meta = read_record(self.path(name))
            if "seconds" not in meta or "info" not in meta:
                raise ValueError("no stage record inside")
        except RECORD_ERRORS as e:
            self.warn(f"{self.path(name)} is damaged ({type(e).__name__}: {e}); recomputing stage {name!r}")
            return None
        return arrays, meta

    def save(self, name: str, arrays: dict, meta: dict) -> None:
        if self.dir is None:
            return
        write_record(self.path(name), {k: to_numpy(v) for k, v in arrays.items()}, meta)
