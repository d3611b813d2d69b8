"""Experiments whose work lives in other packages: the speed-up benchmark and the theory.

* ``speedup`` reads ``benchmarks/results/cpu_speedup.json`` when the benchmark has been run
  (``python benchmarks/speedup.py --json benchmarks/results/cpu_speedup.json``); otherwise it runs
  ``benchmarks/speedup.py`` itself, at a small size in ``--quick`` mode, and says so.
* ``theory`` calls :func:`theory.experiments.main`, which writes ``theory_cia.json``,
  ``theory_predictor.json`` and ``theory_counterexample.json``; this module adds a small
  ``theory.json`` saying how (quick or full) and when they were made.
"""
from __future__ import annotations

import json
import subprocess
import sys
import tempfile
from pathlib import Path

from .common import REPO
from .runs import RunCache

BENCH_SCRIPT = REPO / "benchmarks" / "speedup.py"
BENCH_RESULT = REPO / "benchmarks" / "results" / "cpu_speedup.json"
THEORY_SEED = 20210816  # theory.experiments' default seed
THEORY_FILES = ("cia", "predictor", "counterexample")


BENCH_ARGS = {  # benchmarks/speedup.py's size per mode when it has to be run here
    "full": ["--n", "1000"],
    # the challenge's patch size on 128 px images (P = 64) and few candidates: seconds, not minutes
    "quick": ["--n", "200", "--image-size", "128", "--candidates", "5", "--psim-steps", "40", "--sample-pairs", "200"],
    "tiny": ["--n", "40", "--image-size", "32", "--patch", "8", "--hidden", "32", "--candidates", "3",
             "--psim-steps", "5", "--sample-pairs", "20"],
}


def _run_benchmark(mode: str, seed: int, backend: str) -> tuple:
    """Run the benchmark script into a temporary JSON; returns (its JSON, the command)."""
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "speedup.json"
        args = [*BENCH_ARGS[mode], "--full-max-pairs", "0", "--seed", str(seed), "--backend", backend]
        subprocess.run([sys.executable, str(BENCH_SCRIPT), *args, "--json", str(path)], cwd=REPO, check=True,
                       stdout=subprocess.DEVNULL)
        return json.loads(path.read_text()), " ".join(["python", "benchmarks/speedup.py", *args])


def _summary(b: dict) -> dict:
    """The handful of numbers the write-up quotes, named."""
    s, orig = b["settings"], b["original"]
    proj = b["project"][0]
    orig_s = orig.get("extrapolated_seconds", orig.get("total_seconds"))
    return {"n": s["n"], "patches": s["patches_per_image"], "image_size": s["image_size"], "hidden": s["hidden"],
            "k": proj["k"], "project_seconds": proj["total_seconds"], "project_cpu_seconds": proj["total_cpu_seconds"],
            "project_exact_assignments": proj["exact_assignments"],
            "original_seconds": orig_s, "original_hours": orig_s / 3600,
            "original_pairs": orig["all_pairs"], "original_extrapolated": bool(orig.get("extrapolated")),
            "original_sampled_pairs": orig.get("sampled_pairs"),
            "original_ms_per_pair": orig["seconds_per_pair"] * 1e3,
            "speedup": b["speedup"], "speedup_cpu_time": b.get("speedup_cpu_time"),
            "share_matched_project": b.get("share_matched_project"),
            "share_matched_original": b.get("share_matched_original"),
            "psim_steps": s.get("psim_steps"), "cpus": b.get("machine", {}).get("cpus")}


def speedup(cache: RunCache, seed: int, out: Path) -> tuple:
    """The benchmark's comparison of this project's i-sim stage with the per-pair assignment method."""
    s = cache.settings
    mode = "tiny" if s.tiny else "quick" if s.quick else "full"
    if BENCH_RESULT.exists() and not s.tiny:
        bench, source = json.loads(BENCH_RESULT.read_text()), str(BENCH_RESULT.relative_to(REPO))
    elif BENCH_SCRIPT.exists():
        cache.log(f"  running {BENCH_SCRIPT.relative_to(REPO)} ({mode} size)")
        bench, source = _run_benchmark(mode, seed, s.backend)
    else:
        return {}, {"available": False, "reason": f"neither {BENCH_RESULT} nor {BENCH_SCRIPT} exists"}
    bench = {k: v for k, v in bench.items() if k != "printed"}
    kind = "file" if source.endswith(".json") else "command"
    results = {"available": True, "source": source, "source_kind": kind, "summary": _summary(bench), "benchmark": bench}
    return {"source": source}, results


def _shown(path: Path) -> str:
    """``path`` as a command line shows it: relative to the repository when inside it, else ``OUT``."""
    try:
        return Path(path).resolve().relative_to(REPO).as_posix()
    except ValueError:
        return "OUT"


def theory(cache: RunCache, seed: int, out: Path) -> tuple:
    """Regenerate ``theory_*.json`` through :mod:`theory.experiments` (its own seed and configs)."""
    from theory import experiments

    flags = ["--seed", str(THEORY_SEED)] + (["--quick"] if cache.settings.quick else [])
    experiments.main(["--out", str(out), *flags])
    files = {}
    for name in THEORY_FILES:
        d = json.loads((Path(out) / f"theory_{name}.json").read_text())
        files[name] = {"file": f"theory_{name}.json", "date": d["date"], "seconds": d["seconds"],
                       "config": d["config"]}
    return {"command": " ".join(["python -m theory.experiments --out", _shown(out), *flags])}, {"files": files}
