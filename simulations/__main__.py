"""``python -m simulations [--quick] [--out DIR] EXPERIMENT [EXPERIMENT ...]``, or ``all``.

Each experiment writes ``<out>/<name>.json`` (default ``paper/data/``) holding its configuration,
seed, machine, date, the load average beside its seconds, the fingerprint of the code that made
it, and its results; ``all`` also writes ``run_all.json`` with every experiment's seconds and the
total. ``--quick`` runs each at a smoke-test size and marks its JSON
``"quick": true``. Figures and tables are then drawn by ``python -m paper``.
"""
from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable
from pathlib import Path

from empirical.machine import fingerprint_record, load_average, load_record, machine_info

from . import experiments, external
from .common import DEFAULT_OUT, SOURCES, Settings, now_utc, record, write_json
from .runs import RunCache

# In the order ``all`` runs them: the attack runs first, shared through the cache.
EXPERIMENTS = {
    "table1": experiments.table1,
    "stages": experiments.stages,
    "psim": experiments.psim,
    "examples": experiments.examples,
    "scaling": experiments.scaling,
    "speedup": external.speedup,
    "theory": external.theory,
}


def build_parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog="python -m simulations", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("experiments", nargs="+", choices=[*EXPERIMENTS, "all"], metavar="EXPERIMENT",
                    help=f"one or more of: {', '.join(EXPERIMENTS)}, or all")
    ap.add_argument("--quick", action="store_true", help="smoke-test sizes (minutes in all on 2 cores)")
    ap.add_argument("--tiny", action="store_true", help="test-fixture sizes (seconds; the numbers mean nothing)")
    ap.add_argument("--out", type=Path, default=DEFAULT_OUT, help="output folder (default paper/data)")
    ap.add_argument("--seed", type=int, default=0, help="seed of the images, Alice's key and the attack (default 0)")
    ap.add_argument("--backend", default="numpy", choices=("numpy", "cupy", "auto"),
                    help="array backend of the attack (default numpy)")
    ap.add_argument("--work-dir", type=Path,
                    help="keep finished attack stages here and resume them in a later process")
    return ap


def run(names: list[str], settings: Settings, out: Path, seed: int = 0, work_dir: Path | None = None,
        log: Callable[[str], None] | None = None) -> dict[str, Path]:
    """Run ``names`` in order into ``out``; returns {name: path written}."""
    cache = RunCache(settings, work_dir, log)
    xp = cache.xp()
    written, seconds = {}, {}
    t_all, started_all, load_all = time.perf_counter(), now_utc(), load_average()
    for name in names:
        cache.log(f"[{name}]{' (quick)' if settings.quick else ''}")
        started, t0, load0 = now_utc(), time.perf_counter(), load_average()
        config, results = EXPERIMENTS[name](cache, seed, out)
        seconds[name] = time.perf_counter() - t0
        seed_used = external.THEORY_SEED if name == "theory" else seed
        rec = record(name, settings, seed_used, config, results, seconds[name], started, load0,
                     xp=None if name == "theory" else xp)
        written[name] = write_json(Path(out) / f"{name}.json", rec)
        cache.log(f"[{name}] {seconds[name]:.1f} s -> {written[name]}")
    if set(names) == set(EXPERIMENTS):
        total = time.perf_counter() - t_all
        written["run_all"] = write_json(Path(out) / "run_all.json", {
            "experiment": "all", "quick": settings.quick, "seed": seed,
            "command": "python -m simulations all" + (" --tiny" if settings.tiny else
                                                      " --quick" if settings.quick else ""),
            "config": {"settings": settings.to_json()}, "machine": machine_info(xp),
            "source_fingerprint": fingerprint_record(SOURCES["all"]), "started": started_all,
            "date": now_utc(), "seconds": total, "load": load_record(load_all), "total_minutes": total / 60,
            "experiment_seconds": seconds})
    return written


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    names = list(EXPERIMENTS) if "all" in args.experiments else list(dict.fromkeys(args.experiments))
    settings = Settings.make(args.quick, args.backend, args.tiny)
    run(names, settings, args.out, args.seed, args.work_dir)
    return 0


if __name__ == "__main__":
    sys.exit(main())
