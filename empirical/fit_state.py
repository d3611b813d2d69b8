"""The state of extraction's training loop (:func:`empirical.fit_loop.train`) as one object.

Besides the parameters, Adam's moments and the generator (kept by their owners), the loop carries
the losses so far, the held-out record, the best parameters and the checks since them (early
stopping), and the BatchNorm statistics it keeps across steps. :class:`LoopState` holds these, and
turns the whole state into arrays and a JSON record for a :class:`~empirical.checkpoint.Checkpoint`
(:meth:`LoopState.snapshot`) and back (:func:`resume_loop`: :func:`check_snapshot`, then
:meth:`LoopState.restored`), so that a loop stopped part-way goes on bit for bit.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from .backend import Namespace
from .checkpoint import Checkpoint, pack, rng_state, set_rng_state, unpack
from .mlp import Adam, Params
from .tprime import BatchNormStats

SCALARS = ("step", "adam_t", "rng", "curve", "best_err", "best_step", "since", "stats_at")  # a snapshot's record


@dataclass
class LoopState:
    """What the loop has done besides the parameters, the optimiser and the generator."""

    best_step: int  # steps done when ``best`` was reached (the planned steps until a check finds one)
    start: int = 0  # the step the loop (re)starts at
    losses: list[float] = field(default_factory=list)  # the training loss at each step run
    curve: list[tuple[int, float]] = field(default_factory=list)  # (steps done, held-out error) at each check
    best: Params | None = None  # a copy of the parameters with the lowest held-out error
    best_err: float = np.inf
    since: int = 0  # checks since ``best``
    stats_at: dict[int, tuple[int, list[BatchNormStats]]] = field(default_factory=dict)  # batch -> (step, statistics)

    def snapshot(self, step: int, params: Params, opt: Adam, rng: np.random.Generator) -> tuple[dict, dict]:
        """``(arrays, meta)``: the whole state before running ``step`` (what :meth:`restored` reads)."""
        stats = {f"stats.{g}.{i}.{name}": v for g, (_, st) in self.stats_at.items() for i, s in enumerate(st)
                 for name, v in (("mean", s.mean), ("var", s.var))}
        arrays = {**pack(params=params, m=opt.m, v=opt.v, best=self.best), **stats,
                  "losses": np.asarray(self.losses, np.float64)}
        meta = {"step": step, "adam_t": opt.t, "rng": rng_state(rng), "curve": [(k, float(e)) for k, e in self.curve],
                "best_err": float(self.best_err), "best_step": self.best_step, "since": self.since,
                "stats_at": {str(g): at for g, (at, _) in self.stats_at.items()}}
        return arrays, meta

    @classmethod
    def restored(cls, saved: tuple[dict, dict], params: Params, opt: Adam, rng: np.random.Generator,
                 xp: Namespace) -> LoopState:
        """Put a :meth:`snapshot` back: ``params``, ``opt`` and ``rng`` in place, the rest as a new state."""
        arrays, meta = saved
        params.update(unpack(arrays, "params", xp))
        opt.m, opt.v, opt.t = unpack(arrays, "m", xp), unpack(arrays, "v", xp), int(meta["adam_t"])
        opt.weight_average = {k: v.copy() for k, v in params.items()}  # average_decay 0: the weights themselves
        set_rng_state(rng, meta["rng"])
        stats_at = {int(g): (int(at), [BatchNormStats(xp.asarray(arrays[f"stats.{g}.{i}.mean"]),
                                                      xp.asarray(arrays[f"stats.{g}.{i}.var"]))
                                       for i in range(sum(k.startswith(f"stats.{g}.") for k in arrays) // 2)])
                    for g, at in meta["stats_at"].items()}
        return cls(int(meta["best_step"]), int(meta["step"]), [float(v) for v in arrays["losses"]],
                   [(int(k), float(e)) for k, e in meta["curve"]], unpack(arrays, "best", xp),
                   float(meta["best_err"]), int(meta["since"]), stats_at)


def check_snapshot(arrays: dict, meta: dict, params: Params) -> None:
    """Raise ``KeyError`` / ``ValueError`` unless ``(arrays, meta)`` is a whole :meth:`LoopState.snapshot`
    of ``params``."""
    missing = [k for k in SCALARS if k not in meta]
    missing += [f"stats.{g}.0.mean" for g in meta.get("stats_at", {}) if f"stats.{g}.0.mean" not in arrays]
    if missing:
        raise KeyError(f"no {', '.join(missing)}")
    for group in ("params", "m", "v") + (("best",) if any(k.startswith("best.") for k in arrays) else ()):
        for k, v in params.items():
            if arrays[f"{group}.{k}"].shape != v.shape:
                raise ValueError(f"{group}.{k} has shape {arrays[f'{group}.{k}'].shape}, not {v.shape}")
    if len(arrays["losses"]) != int(meta["step"]):
        raise ValueError(f"{len(arrays['losses'])} losses for {meta['step']} steps")


def resume_loop(checkpoint: Checkpoint | None, fingerprint: dict, params: Params, opt: Adam, rng: np.random.Generator,
                xp: Namespace, *, best_step: int) -> tuple[LoopState, dict | None]:
    """The loop's starting state and the saved record it was restored from (None: a fresh start).

    With ``checkpoint``, its fingerprint becomes ``fingerprint`` plus the parameters' shapes and the
    backend, and a whole snapshot saved there for that same loop is put back (``params``, ``opt`` and
    ``rng`` in place); anything else starts afresh, ``best_step`` being the planned steps."""
    if checkpoint is not None:
        checkpoint.bind({**fingerprint, "params": {k: list(v.shape) for k, v in params.items()}, "xp": xp.__name__})
        saved = checkpoint.load(check=lambda a, m: check_snapshot(a, m, params))
        if saved is not None:
            return LoopState.restored(saved, params, opt, rng, xp), saved[1]
    return LoopState(best_step=best_step), None
