"""The whole attack (paper §2): the registered stages run in order on what Bob has.

Bob has a :class:`~empirical.game.Game`: the public family, every original, and the encodings in
file order. No stage receives Alice's key, permutations or answer key; the evaluation against
those happens afterwards (:mod:`empirical.evaluate`).

Stage order. The paper matches images first (§2.1) and recovers the local permutations after
(§2.2.1). The local permutations need no matching at all, so they come first here: with every
encoding in a common row order, p-sim's row features can be standardised per slot, which removes
the positional embedding's offset and makes p-sim markedly sharper. Then:

1. ``align``    local permutations (§2.2.1)                         :mod:`empirical.stages.align`
2. ``psim``     train p-sim on the attacker's own encoders (§2.1.1)  :mod:`empirical.stages.psim`
3. ``first``    i-sim on candidates, first matching (§2.1.2-§2.1.3)  :mod:`empirical.stages.first`
4. ``boost``    global permutation and re-matching (§2.2.2-§2.2.3)   :mod:`empirical.stages.boost`
5. ``extract``  fit T' to the matched pairs, refit on its own (§2.3.1) :mod:`empirical.stages.extract`
6. ``final``    encode every original with T', match (§2.3.2)       :mod:`empirical.stages.final`
7. ``rescore``  the close calls again, with each batch's statistics  :mod:`empirical.stages.rescore`

With ``work_dir`` set, each finished stage is saved there and a later run with the same game and
configuration resumes after the last finished stage (:mod:`empirical.store`).
"""
from __future__ import annotations

import os
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field

import numpy as np

from .backend import Array, Namespace
from .encoder import EncoderKey
from .encodings import Rows, default_budget
from .extraction import ExtractConfig
from .game import Game
from .passes import Scheduler
from .psim import PsimConfig
from .stages import REGISTRY, STAGES, Context, StageResult
from .store import Store
from .tprime import key_from_params


@dataclass(frozen=True)
class AttackConfig:
    """Every setting of the attack; the defaults are those of the measured default run."""

    seed: int = 0  # seeds p-sim's own encoders and initialisation, boosting's splits, extraction
    align_iterations: int = 2  # passes of the local-permutation alignment (reference refined once)
    psim: PsimConfig = field(default_factory=PsimConfig)  # p-sim's training (empirical.psim)
    candidates: int = 15  # encodings per original that get an exact i-sim
    boost_rounds: int = 12  # at most this many cross-fitted boosting rounds (stops when stable)
    graph_search: str = "auto"  # second boosting start from the correlation graph: auto, always or never
    extract: ExtractConfig = field(default_factory=ExtractConfig)  # model extraction (empirical.extraction)

    def to_json(self) -> dict:
        return asdict(self)


@dataclass
class AttackResult:
    stages: list[StageResult]
    order: np.ndarray  # (N, P) local permutations: encoding b's row for slot q is order[b, q]
    pi: np.ndarray | None  # (P,) original position j -> slot pi[j]
    matching: np.ndarray  # final (N,) encoding -> original index
    encoder: EncoderKey | None = None  # the extracted T' (None when the run stopped before extraction)
    patch_emb: Array = None  # (N_o, P, E) p-sim embeddings of the original patches (xp array)
    row_emb: Array = None  # (N, P, E) p-sim embeddings of the aligned encoded rows (xp array)

    def submission(self, game: Game) -> dict[str, str]:
        """``{id: "<k>.npy"}`` for every encoding file."""
        return {game.ids[int(a)]: f for f, a in zip(game.files, self.matching, strict=True)}


def _run_stage(name: str, ctx: Context, store: Store) -> StageResult:
    """Load stage ``name`` from the store or compute it; attach its value to ``ctx``."""
    stage = REGISTRY[name]
    cached = store.load(name)
    if cached is not None:
        arrays, meta = cached
        value = stage.load(arrays, meta, ctx)
        res = StageResult(name, meta["seconds"], arrays.get("matching"), {**meta["info"], "resumed": True},
                          {k[4:]: v for k, v in arrays.items() if k.startswith("res.")})
        store.clear_scratch(name)  # parts left by a run stopped between saving the stage and clearing them
    else:
        t0 = time.perf_counter()
        ctx.scratch = store.scratch(name)
        try:
            value, res = stage.compute(ctx)
        finally:
            ctx.scratch = None
        res.seconds = time.perf_counter() - t0
        arrays, meta = stage.save(value)
        arrays.update({f"res.{k}": v for k, v in res.arrays.items()})
        if res.matching is not None:
            arrays["matching"] = res.matching
        store.save(name, arrays, {"seconds": res.seconds, "info": res.info, **meta})
        store.clear_scratch(name)
    stage.attach(ctx, value)
    ctx.reports[name] = res.info
    return res


def run_attack(game: Game, cfg: AttackConfig, xp: Namespace, *, quiet: bool = False,
               work_dir: str | os.PathLike | None = None,
               on_stage: Callable[[StageResult], None] | None = None, stop_after: str | None = None,
               memory_budget: int | None = None, scheduler: Scheduler = None) -> AttackResult:
    """Run every stage on ``game``; ``on_stage(StageResult)`` is called as each one finishes.

    ``memory_budget`` (bytes; default :func:`~empirical.encodings.default_budget`) bounds the blocks
    of encodings the stages hold at once; ``scheduler`` says where the passes over every encoding
    run (:func:`empirical.passes.map_blocks`: this process, Dask in this process, or a Dask
    cluster's Client). Neither changes a result.

    ``stop_after`` (``"first"`` or ``"boost"``) ends the run after that stage; the result then
    holds the matching found so far, and ``encoder`` (and, before boosting, ``pi``) stay None.
    """
    if stop_after not in (None, "first", "boost"):
        raise ValueError(f"stop_after must be None, 'first' or 'boost', not {stop_after!r}")
    store = Store(work_dir, game, cfg.to_json())
    enc = game.encodings  # in memory: moved to xp whole; on disk (EncodingFiles): read a block at a time
    source = xp.asarray(enc) if isinstance(enc, np.ndarray) else enc
    budget = default_budget() if memory_budget is None else int(memory_budget)
    ctx = Context(game, cfg, xp, quiet, originals=xp.asarray(game.originals), encodings=Rows(source, xp),
                  memory_budget=budget, scheduler=scheduler)
    results = []
    for name in STAGES:
        results.append(_run_stage(name, ctx, store))
        if on_stage is not None:
            on_stage(results[-1])
        if name == stop_after:
            matching = ctx.first if name == "first" else ctx.boosted
            return AttackResult(results, ctx.order, ctx.pi, matching, None, ctx.patch_emb, ctx.row_emb)
    return AttackResult(results, ctx.order, ctx.pi, ctx.final, key_from_params(ctx.params, game.config),
                        ctx.patch_emb, ctx.row_emb)
