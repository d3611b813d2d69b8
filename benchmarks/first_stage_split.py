"""Where the first matching's time and memory go at large N, and what a candidate graph would do there.

Since boosting and the final matching run on a sparse candidate graph from 8,192 encodings
(``empirical.candidate_graph``), the first matching is the largest stage of the N = 16,000 sweep
game and holds the run's peak memory: its pre-score is a dense (N_o, N) matrix that Sinkhorn's
balancing needs whole, and its assignment over the i-sim candidates is solved on a dense
(N, N_o) float64 cost in which every non-candidate pair has one floor value. This script takes a
game and the work dir of an attack run on it (the alignment and p-sim are resumed), runs the
first matching's steps one by one as ``empirical.stages.first`` does, and reports each step's
seconds and the memory NumPy allocated in it (``tracemalloc``). Then it solves the same
assignment on a sparse graph instead of the dense cost: each original's i-sim candidates at
their values, plus each encoding's ``--extra`` best originals by the balanced pre-score at the
floor value (so that every encoding has edges), and reports whether that graph has a full
matching, its seconds, its agreement with the dense solve and both shares right (Alice's answer
key, read only here). No change to the attack is made.

Usage::

    python benchmarks/first_stage_split.py --game G --answer-key A --work-dir W \\
        --json benchmarks/results/cpu_first_stage_split_n16000.json
"""
from __future__ import annotations

import argparse
import sys
import time
import tracemalloc
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_common import gib, machine, now_utc, sources, write_json
from resume_first import add_arguments, game_record, resume

from empirical.isim import balance, first_matching, isim_candidates, sliced_prescore, top_candidates


def build_parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_arguments(ap, answer_key="Alice's answer key (used only to score the matchings)")
    ap.add_argument("--extra", type=int, nargs="+", default=[5, 15, 50],
                    help="each encoding's best originals by the balanced pre-score added at the floor value")
    ap.add_argument("--json", help="write the results here")
    return ap


class Step:
    """Seconds and NumPy's peak allocation of one step."""

    def __init__(self, name: str, log: dict):
        self.name, self.log = name, log

    def __enter__(self):
        tracemalloc.start()
        self.t0 = time.perf_counter()
        return self

    def __exit__(self, *exc):
        seconds = time.perf_counter() - self.t0
        _, peak = tracemalloc.get_traced_memory()
        tracemalloc.stop()
        self.log[self.name] = {"seconds": seconds, "peak_numpy_gib": gib(peak)}
        print(f"{self.name:28s} {seconds:8.1f} s, NumPy peak {gib(peak):6.2f} GiB", flush=True)
        return False


def graph_matching(vals: np.ndarray, cand: np.ndarray, extra: np.ndarray, floor: float, n_enc: int):
    """The first matching on a sparse graph: candidate pairs at their i-sim, ``extra`` (N, e) pairs at ``floor``."""
    from scipy.sparse import csr_array
    from scipy.sparse.csgraph import min_weight_full_bipartite_matching

    n_orig, k = cand.shape
    enc = np.concatenate([cand.ravel(), np.repeat(np.arange(n_enc), extra.shape[1])])
    orig = np.concatenate([np.repeat(np.arange(n_orig), k), extra.ravel()])
    w = np.concatenate([vals.ravel(), np.full(extra.size, floor)])
    order = np.lexsort((-w, orig, enc))  # a pair on both lists keeps its i-sim (the larger weight)
    enc, orig, w = enc[order], orig[order], w[order]
    first = np.ones(len(enc), bool)
    first[1:] = (enc[1:] != enc[:-1]) | (orig[1:] != orig[:-1])
    enc, orig, w = enc[first], orig[first], w[first]
    g = csr_array((w - w.min() + 1.0, (enc, orig)), shape=(n_enc, n_orig))
    try:
        r, c = min_weight_full_bipartite_matching(g, maximize=True)
    except ValueError:
        return None, g.nnz
    out = np.empty(n_enc, np.int64)
    out[r] = c
    return out, g.nnz


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    # The stages up to p-sim are resumed; the first matching is computed below, step by step.
    game, cfg, run, truth = resume(args)
    pe, re_ = run.patch_emb, run.row_emb
    n_enc = re_.shape[0]
    steps: dict = {}
    with Step("sliced pre-score", steps):
        pre = sliced_prescore(pe, re_, np)
    with Step("balance (Sinkhorn, in place)", steps):
        pre = balance(pre, np, overwrite=True)
    with Step("top candidates", steps):
        cand = top_candidates(pre, cfg.candidates, np)
    extra_max = max(args.extra)
    with Step("each encoding's best (oracle)", steps):  # not a step of the attack: the sparse graph's extra edges
        best_orig = np.argpartition(-pre, extra_max - 1, axis=0)[:extra_max].T  # (N, e)
        rank = np.take_along_axis(pre, best_orig.T, axis=0).T  # (N, e) their balanced weights
        best_orig = np.take_along_axis(best_orig, np.argsort(-rank, axis=1), axis=1)  # best first
    del pre
    with Step("exact i-sim on candidates", steps):
        vals = isim_candidates(pe, re_, cand, np)
    with Step("first matching (dense cost)", steps):
        dense = first_matching(vals, cand, n_enc)
    floor = vals.min() - 1e3 * (np.ptp(vals) + 1.0)  # first_matching's value for a non-candidate pair
    rec = {"steps": steps, "dense_share_right": float(np.mean(dense == truth)),
           "true_among_candidates": float(np.mean((cand[truth] == np.arange(n_enc)[:, None]).any(axis=1))),
           "graphs": []}
    print(f"dense first matching {rec['dense_share_right']:.2%} right", flush=True)
    for e in args.extra:
        t0 = time.perf_counter()
        m, nnz = graph_matching(vals, cand, best_orig[:, :e], floor, n_enc)
        g = {"extra": e, "edges": int(nnz), "seconds": time.perf_counter() - t0, "full_matching": m is not None}
        if m is not None:
            g.update(agrees_with_dense=float(np.mean(m == dense)), share_right=float(np.mean(m == truth)))
        rec["graphs"].append(g)
        print(f"graph, {e:3d} extra per encoding: {nnz:,} edges, {g['seconds']:.1f} s"
              + (f", agrees {g['agrees_with_dense']:.2%}, {g['share_right']:.2%} right" if m is not None
                 else ": no full matching"), flush=True)
    if args.json:
        write_json(args.json, {"benchmark": "first_stage_split", "date": now_utc(), "machine": machine(),
                               "game": game_record(args, game),
                               "settings": {"candidates": cfg.candidates, "extra": args.extra,
                                            "memory_budget_gib": args.memory_budget, "seed": args.seed},
                               **rec, "source_fingerprint": sources(__file__, "resume_first.py")})
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
