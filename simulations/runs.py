"""One attack run on a game built in memory from the bundled images, scored after it returns.

The attack (:func:`empirical.pipeline.run_attack`) sees only Bob's :class:`~empirical.game.Game`;
Alice's secrets are used afterwards, through :mod:`empirical.evaluate`, to say how much each
stage got right. Runs are memoised per process (:class:`RunCache`), so ``python -m simulations all``
attacks the reference game once and draws Table 1's row, the per-stage shares, p-sim's ROC and
the example images from that same run. Each run keeps the load average at the start and the end
of its attack beside the attack's seconds (:func:`empirical.machine.load_record`).
"""
from __future__ import annotations

import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np

from empirical.extraction import ExtractConfig
from empirical.machine import load_average, load_record
from empirical.pipeline import AttackConfig
from empirical.psim import PsimConfig
from empirical.report import score_stages

from .common import TOTAL_DEPTH, Settings


@dataclass
class Run:
    """A finished attack: the game, Alice's secrets (for scoring only), the result and its scores."""

    preset: str
    n: int
    seed: int
    game: object
    secrets: object
    result: object
    data_seconds: float
    stages: list  # scored stages, see :func:`score_stages`
    load: dict = field(default_factory=dict)  # load averages at the attack's start and end
    summary: dict = field(default_factory=dict)
    truth: np.ndarray | None = None


def attack_config(settings: Settings, seed: int) -> AttackConfig:
    """The attack's configuration at this sweep's size (every field explicit and seeded)."""
    psim = replace(PsimConfig(), steps=settings.psim_steps, n_encoders=settings.psim_encoders,
                   images_per_encoder=settings.psim_images)
    extract = replace(ExtractConfig(), steps=settings.extract_steps, refine_steps=settings.refine_steps, seed=seed)
    return AttackConfig(seed=seed, psim=psim, extract=extract, candidates=settings.candidates)


def _summary(run: Run, settings: Settings) -> dict:
    """Table 1's row of one run."""
    by = {s["stage"]: s for s in run.stages}
    last = by.get("rescore", by["final"])  # the final matching, its close calls re-scored where that ran
    boosts = [s for s in run.stages if s["stage"].startswith("boost")]
    fam = run.game.config
    return {
        "preset": run.preset, "depth": fam.depth, "total_depth": TOTAL_DEPTH.get(run.preset), "shuffle": fam.shuffle,
        "n": run.n, "image_size": fam.image_size, "patch": fam.patch, "patches": fam.n_patches, "hidden": fam.hidden,
        "share_first": by["first"]["share_matched"],
        "share_boost": boosts[-1]["share_matched"] if boosts else None,
        "boost_rounds": len(boosts),
        "boost_start": boosts[-1].get("start") if boosts else None,
        "extract_stopped": by["extract"].get("stopped"),
        "share_final": last["share_matched"],
        "final_used": by["final"].get("used"),
        "matched_final": round(last["share_matched"] * run.n),
        "psim_balanced_accuracy": by["psim"].get("balanced_accuracy"),
        "local_perm_share": by["align"].get("local_perm_share"),
        "global_perm_share": boosts[-1].get("global_perm_share") if boosts else None,
        "attack_seconds": float(sum(s["seconds"] or 0.0 for s in run.stages)),
        "attack_minutes": float(sum(s["seconds"] or 0.0 for s in run.stages)) / 60,
        "data_seconds": run.data_seconds,
        "load": run.load,
        "stage_seconds": {s["stage"].split(" ")[0]: s["seconds"] for s in run.stages if s["seconds"] is not None},
        "resumed": any(s.get("resumed") for s in run.stages),
    }


class RunCache:
    """Attack runs of this process, keyed by (variant, N, seed).

    ``work_dir`` (optional) is handed to :func:`run_attack`, which then keeps finished stages on
    disk and resumes them in a later process; resumed stages keep their first run's seconds and
    are flagged ``"resumed"``.
    """

    def __init__(self, settings: Settings, work_dir: Path | None = None, log: Callable[[str], None] | None = None):
        self.settings = settings
        self.work_dir = work_dir
        self.log = log or (lambda msg: print(msg, file=sys.stderr, flush=True))
        self._runs: dict = {}

    def xp(self):
        """The attack's array module (NumPy, or CuPy with ``--backend cupy``)."""
        from empirical.backend import get_backend

        return get_backend(self.settings.backend)

    def run(self, preset: str, n: int, seed: int) -> Run:
        key = (preset, n, seed)
        if key not in self._runs:
            self._runs[key] = self._attack(preset, n, seed)
        return self._runs[key]

    def _attack(self, preset: str, n: int, seed: int) -> Run:
        from empirical.alice import bundled_game
        from empirical.encoder import preset as family
        from empirical.evaluate import true_matching
        from empirical.pipeline import run_attack

        s = self.settings
        fam = family(preset, image_size=s.image_size, patch=s.patch, hidden=s.hidden)
        t0 = time.perf_counter()
        game, secrets = bundled_game(fam, n, seed=seed)  # the same images for every variant at this N and seed
        t_data = time.perf_counter() - t0
        self.log(f"  {preset}, N = {n}: game ready in {t_data:.1f} s; attacking")

        def on_stage(st):
            self.log(f"    {st.name:8s} {st.seconds:8.1f} s")

        load0 = load_average()
        result = run_attack(game, attack_config(s, seed), self.xp(), quiet=True, work_dir=self.work_dir,
                            on_stage=on_stage)
        run = Run(preset, n, seed, game, secrets, result, t_data, score_stages(result, game, secrets),
                  load=load_record(load0))
        run.truth = true_matching(game, secrets)
        run.summary = _summary(run, s)
        self.log(f"  {preset}, N = {n}: {run.summary['share_final']:.1%} matched, "
                 f"attack {run.summary['attack_seconds']:.1f} s")
        return run

    def challenge2(self, run: Run, seed: int) -> dict | None:
        """T''s Challenge 2 score on fresh bundled images (none of them in the game)."""
        from empirical.data import bundled_images
        from empirical.evaluate import challenge2_score

        s = self.settings
        if s.fresh_images <= 0 or run.result.encoder is None:
            return None
        t0, load0 = time.perf_counter(), load_average()
        imgs = bundled_images(s.fresh_images, s.image_size, seed + 10_000, s.patch)  # none of them in the game
        out = challenge2_score(run.secrets.key, run.result.encoder, imgs, self.xp(), seed=seed)
        out["seconds"] = time.perf_counter() - t0
        out["load"] = load_record(load0)
        return out
