"""``python -m theory.experiments``: the three theory experiments, written as JSON.

* ``theory_cia.json`` (§3, Definitions 1-2): :mod:`theory.run_cia`;
* ``theory_predictor.json`` (Theorem 1, Appendix B): :mod:`theory.run_predictor`;
* ``theory_counterexample.json`` (Appendix A): :mod:`theory.run_counterexample`.

Each file holds its configuration, seed, machine, date, the load average beside its seconds, and
the fingerprint of the ``theory`` sources that made it (checked by ``python -m paper --check``).
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime
import json
import sys
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from empirical.machine import fingerprint_record, load_average, load_record, machine_info

from .run_cia import CiaExperimentConfig, run_cia
from .run_counterexample import CounterexampleExperimentConfig, run_counterexample
from .run_predictor import PredictorExperimentConfig, run_predictor


def quick_configs() -> tuple[CiaExperimentConfig, PredictorExperimentConfig, CounterexampleExperimentConfig]:
    """Small versions of the three configurations, for a smoke run."""
    return (
        CiaExperimentConfig(
            max_domain=5, gf2_bits=(3,), mc_trials=500, mc_domain=20, calibration_samples=1000
        ),
        PredictorExperimentConfig(
            eps_values=(0.1, 0.3, 0.45), votes=(1, 5, 25, 101), repeats=1, test_points=400
        ),
        CounterexampleExperimentConfig(m_over_n=(1, 16, 256, 2048), targets=(2, 16), trials=20),
    )


EXPERIMENTS = ("cia", "predictor", "counterexample")
SOURCES = ("theory",)  # the code a theory result depends on: its fingerprint covers only these


def write_result(out: Path, name: str, config, seed: list[int], results: dict, seconds: float,
                 load_start: list[float] | None = None) -> Path:
    """Write one experiment's JSON with its config, seed, machine, date and source fingerprint.

    ``seed`` is the entropy of the experiment's ``numpy.random.default_rng``:
    ``[--seed, index of the experiment in EXPERIMENTS]``. ``load_start`` is the load average when
    the experiment started; the record keeps it beside the load at the end.
    """
    out.mkdir(parents=True, exist_ok=True)
    path = out / f"theory_{name}.json"
    payload = {
        "experiment": name,
        "config": dataclasses.asdict(config),
        "seed": seed[0],
        "rng_entropy": seed,
        "machine": machine_info(),
        "source_fingerprint": fingerprint_record(SOURCES),
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "seconds": seconds,
        "load": load_record(load_average() if load_start is None else load_start),
        "results": results,
    }
    path.write_text(json.dumps(payload, indent=1, default=_jsonable) + "\n")
    return path


def _jsonable(value):
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    raise TypeError(f"cannot serialise {type(value).__name__}")


def main(argv: Sequence[str] | None = None) -> int:
    """Run the chosen experiments and write ``theory_<name>.json`` under ``--out``."""
    parser = argparse.ArgumentParser(prog="python -m theory.experiments", description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small grids (seconds) instead of the full run")
    parser.add_argument(
        "--out", type=Path, default=Path("paper/data"), help="output folder (default %(default)s)"
    )
    parser.add_argument(
        "--seed", type=int, default=20210816, help="seed of every random step (default %(default)s)"
    )
    parser.add_argument(
        "--only", choices=EXPERIMENTS, nargs="+", default=list(EXPERIMENTS), help="experiments to run"
    )
    args = parser.parse_args(argv)
    full = (CiaExperimentConfig(), PredictorExperimentConfig(), CounterexampleExperimentConfig())
    configs = dict(zip(EXPERIMENTS, quick_configs() if args.quick else full, strict=True))
    runners = {"cia": run_cia, "predictor": run_predictor, "counterexample": run_counterexample}
    for offset, name in enumerate(EXPERIMENTS):
        if name not in args.only:
            continue
        # One stream per experiment, so each file reproduces on its own.
        rng = np.random.default_rng([args.seed, offset])
        load0, start = load_average(), time.perf_counter()
        results = runners[name](configs[name], rng)
        seconds = time.perf_counter() - start
        path = write_result(args.out, name, configs[name], [args.seed, offset], results, seconds, load0)
        print(f"{name}: {seconds:.1f} s -> {path}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
