"""Boosting solved densely against on the candidate graph, on one game, side by side.

Boosting re-matches every encoding three times per round (two cross-fitted halves of the
positions, then all of them). Below ``empirical.candidate_graph.GRAPH_MIN_N`` encodings each re-matching
is SciPy's dense assignment of an (N_o, N) score matrix; from it on, each encoding keeps its
``GRAPH_K`` best originals, scored a block of originals at a time, and the assignment is solved on
that sparse graph (``empirical.candidate_graph``). This script takes a game on disk and the work dir
of an attack run on it (``python -m empirical.attack --game G --work-dir W --stop-after first``;
the alignment, p-sim and first matching are resumed from W, or computed there once), then runs
``boosting.boost`` from the same first matching twice, once with every solve dense and once with
every solve on the graph, and reports for each: seconds, the peak of memory NumPy allocated during
the stage (``tracemalloc``, which sees NumPy's buffers; the process's resident peak would hide
the second run behind the first), rounds, the solves made each way, the median margin, and the
share of encodings matched right (Alice's answer key, read here and never by the attack). Then the
ratios and the share of encodings on which the two matchings agree.

Usage::

    python -m empirical.attack --game G --answer-key A --work-dir W --stop-after first --fresh 0 \\
        --submission /dev/null
    python benchmarks/boost_solvers.py --game G --answer-key A --work-dir W \\
        --json benchmarks/results/cpu_boost_solvers_n16000.json
"""
from __future__ import annotations

import argparse
import sys
import time
import tracemalloc
from collections import Counter
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_common import gib, machine, now_utc, sources, write_json
from resume_first import add_arguments, game_record, resume

from empirical import candidate_graph
from empirical.boosting import boost, median_margin

SOLVERS = {"dense": 10**12, "graph": 0}  # graph_min_n: every solve dense, every solve on the graph


def build_parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_arguments(ap, answer_key="Alice's answer key (used only to score the matchings)")
    ap.add_argument("--json", help="write the results here")
    return ap


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    t0 = time.perf_counter()
    game, cfg, run, truth = resume(args)
    earlier = {s.name: {"seconds": s.seconds, "resumed": bool(s.info.get("resumed"))} for s in run.stages}
    first = run.matching
    print(f"N = {len(first):,}: stages up to the first matching in {time.perf_counter() - t0:.0f} s "
          f"({earlier}); first matching {np.mean(first == truth):.2%} right", flush=True)
    out = {}
    for name, graph_min_n in SOLVERS.items():
        solves: Counter = Counter()
        tracemalloc.start()
        t1 = time.perf_counter()
        res = boost(run.patch_emb, run.row_emb, first, np, cfg.boost_rounds, cfg.seed,
                    graph_min_n=graph_min_n, solves=solves)
        seconds = time.perf_counter() - t1
        margin = median_margin(run.patch_emb, run.row_emb, res.pi, res.matching, np)
        margin_seconds = time.perf_counter() - t1 - seconds
        _, peak = tracemalloc.get_traced_memory()
        tracemalloc.stop()
        out[name] = {"seconds": seconds, "margin_seconds": margin_seconds, "peak_numpy_bytes": peak,
                     "peak_numpy_gib": gib(peak), "rounds": res.rounds, "solves": dict(solves),
                     "median_margin": margin, "share_matched": float(np.mean(res.matching == truth)),
                     "matching": res.matching, "pi": res.pi}
        print(f"{name:5s}: {seconds:7.1f} s (+ margins {margin_seconds:.1f} s), NumPy peak {gib(peak):.2f} GiB, "
              f"{res.rounds} rounds, solves {dict(solves)}, median margin {margin:.3f}, "
              f"{out[name]['share_matched']:.3%} matched", flush=True)
    d, g = out["dense"], out["graph"]
    cmp = {"seconds_ratio_dense_over_graph": d["seconds"] / g["seconds"],
           "peak_ratio_dense_over_graph": d["peak_numpy_bytes"] / max(g["peak_numpy_bytes"], 1),
           "matchings_agree": float(np.mean(d["matching"] == g["matching"])),
           "same_pi": bool(np.array_equal(d["pi"], g["pi"]))}
    print(f"dense / graph: x{cmp['seconds_ratio_dense_over_graph']:.1f} time, "
          f"x{cmp['peak_ratio_dense_over_graph']:.1f} peak; matchings agree on {cmp['matchings_agree']:.3%} "
          f"of encodings, same pi: {cmp['same_pi']}", flush=True)
    if args.json:
        for r in out.values():
            r.pop("matching"), r.pop("pi")
        write_json(args.json, {
            "benchmark": "boost_solvers", "date": now_utc(), "machine": machine(),
            "game": game_record(args, game),
            "settings": {"graph_k": candidate_graph.GRAPH_K, "graph_min_n_default": candidate_graph.GRAPH_MIN_N,
                         "memory_budget_gib": args.memory_budget, "seed": args.seed},
            "earlier_stages": earlier, "first_share_matched": float(np.mean(first == truth)),
            "solvers": out, "compare": cmp, "source_fingerprint": sources(__file__, "resume_first.py")})
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
