"""What every attack stage is: a registered unit with a name, the settings it reads, and a version.

A stage computes one step of the attack (paper §2) from a :class:`Context` that holds what Bob
has (the game) and what the earlier stages found. It returns its *value* (what later stages
use) and a :class:`StageResult` (what it achieved: a matching where it makes one, and figures for
the report). To be resumable it also says how its value becomes arrays on disk and back.

A stage's version is a hash of the source of the modules that define its method, so changing
the method (even in a helper module, such as :func:`empirical.isim.balance` for the first
matching) makes old saved results of that stage, and of every later stage, stale at once.
"""
from __future__ import annotations

import hashlib
import inspect
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np

from ..backend import Array, Namespace
from ..encodings import BLOCK_CAP, EncodingFiles, Rows, block_size
from ..game import Game
from ..mlp import Params

__all__ = ["REGISTRY", "Array", "Context", "Namespace", "Stage", "StageResult", "no_arrays", "register"]


@dataclass
class StageResult:
    """What one stage achieved, for the report and for resuming."""

    name: str
    seconds: float = 0.0
    matching: np.ndarray | None = None  # (N,) encoding -> original index, where the stage makes one
    info: dict = field(default_factory=dict)  # JSON-friendly figures
    arrays: dict = field(default_factory=dict)  # larger host outputs kept for evaluation and resuming


@dataclass
class Context:
    """Bob's inputs and what the stages found so far; each stage reads some fields and sets others.

    Device arrays (``xp``) are marked; everything else is on the host.
    """

    game: Game
    cfg: Any  # the AttackConfig
    xp: Namespace
    quiet: bool = True
    originals: Array = None  # (N_o, C, H, W) xp
    encodings: Rows = None  # (N, P, D) the encodings in file row order, read a block at a time
    memory_budget: int = 8 * 1024**3  # bytes the stages may hold in blocks of encodings (sets block sizes only)
    scheduler: Any = None  # where passes over the encodings run: None (this process), "sync" or a Dask Client
    order: np.ndarray | None = None  # (N, P) local permutations (align)
    rows: Rows = None  # (N, P, D) the encodings' rows in one common slot order (align)
    model: Any = None  # the trained PsimModel (psim)
    patch_emb: Array = None  # (N_o, P, E) xp p-sim embeddings of the original patches
    row_emb: Array = None  # (N, P, E) xp p-sim embeddings of the aligned rows
    first: np.ndarray | None = None  # (N,) the first matching
    boosted: np.ndarray | None = None  # (N,) boosting's matching
    pi: np.ndarray | None = None  # (P,) original position j -> slot pi[j]
    targets: Rows = None  # (N, P, D) encoding rows in the original's position order (stages.final.targets)
    params: Params | None = None  # T''s parameters (xp arrays)
    fit_matching: np.ndarray | None = None  # (N,) the matching T' was last fitted on
    extract_gave_up: bool = False  # extraction's probe found T' worthless (final keeps boosting's matching)
    final: np.ndarray | None = None  # (N,) the final matching
    scratch: Path | None = None  # the running stage's folder for its resumable parts (None: no work dir; Store.scratch)
    cache: dict = field(default_factory=dict)  # values derived once per run (see stages.final)
    reports: dict = field(default_factory=dict)  # what each finished stage reported (StageResult.info), by name

    @property
    def n_orig(self) -> int:
        return len(self.game.originals)

    @property
    def n_enc(self) -> int:
        return len(self.game.encodings)

    @property
    def encodings_on_disk(self) -> bool:
        """Whether the encodings are read from the game's files (not held in memory)."""
        return isinstance(self.encodings.source, EncodingFiles)

    def block(self, copies: int, cap: int | None = BLOCK_CAP) -> int:
        """Encodings per block when a pass holds ``copies`` arrays of a block's size within the memory budget."""
        return block_size(self.memory_budget, self.encodings.item_bytes, copies, cap)


@dataclass(frozen=True)
class Stage:
    """One registered stage of the attack.

    ``compute(ctx) -> (value, StageResult)`` does the work; ``attach(ctx, value)`` puts the value
    (computed or loaded) into the context; ``save(value) -> (arrays, meta)`` and
    ``load(arrays, meta, ctx) -> value`` move it to and from disk (host arrays and JSON).
    """

    name: str
    fields: tuple[str, ...]  # AttackConfig fields this stage reads (its own, not earlier stages')
    sources: tuple[ModuleType, ...]  # modules that define the method; their source is the version
    compute: Callable[[Context], tuple[Any, StageResult]]
    attach: Callable[[Context, Any], None]
    save: Callable[[Any], tuple[dict, dict]]
    load: Callable[[dict, dict, Context], Any]

    @property
    def version(self) -> str:
        """A hash of the source of every module in ``sources``."""
        h = hashlib.sha256()
        for mod in self.sources:
            h.update(inspect.getsource(mod).encode())
        return h.hexdigest()[:12]


REGISTRY: dict[str, Stage] = {}


def register(stage: Stage) -> Stage:
    """Add ``stage`` to the registry (its place in the run is given by ``stages.STAGES``)."""
    if stage.name in REGISTRY:
        raise ValueError(f"a stage named {stage.name!r} is already registered")
    REGISTRY[stage.name] = stage
    return stage


def no_arrays(_value: Any) -> tuple[dict, dict]:
    """``save`` for a stage whose whole value is its matching (saved with the result)."""
    return {}, {}
