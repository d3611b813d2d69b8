"""Dense against sparse assignment at large N: seconds, memory and agreement, side by side.

Every matching of the attack is a best one-to-one assignment of N encodings to N_o originals
over a dense (N_o, N) score matrix (``empirical.assignment.match_encodings``: SciPy's
``linear_sum_assignment``). At the public challenge's N = 14,643 that matrix is 0.86 GB in
float32 (1.7 GB as the float64 SciPy solves), and the solve takes tens of seconds. A sparse
alternative keeps, for each encoding, only its ``k`` best-scoring originals (a pass over blocks
of originals, never the whole matrix) and solves the assignment on that candidate graph with
``scipy.sparse.csgraph.min_weight_full_bipartite_matching`` (LAPJVsp).

The scores are synthetic with a planted truth, in three regimes that span the attack's
matchings: each encoding's true original scores ``snr`` above unit Gaussian noise (``--snr``;
with N = 14,643 competitors, 2 leaves most encodings' favourite wrong, as a first matching does,
and 8 leaves nearly all right, as boosting's last rounds do). For each N, regime and k the script
reports the dense and sparse seconds, whether the candidate graph admits a full matching, the
share of encodings where the sparse solution agrees with the dense optimum, and each one's share
of planted pairs; and the ratio of seconds. The dense solve is skipped above ``--dense-max``.

Usage::

    python benchmarks/sparse_matching.py --json benchmarks/results/cpu_sparse_matching.json
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_common import gib, machine, now_utc, peak_rss_bytes, sources, write_json

BLOCK = 1024  # originals scored at a time


def build_parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n-list", type=int, nargs="+", default=[2000, 5000, 14643])
    ap.add_argument("--snr", type=float, nargs="+", default=[2.0, 4.0, 8.0])
    ap.add_argument("--k-list", type=int, nargs="+", default=[5, 20, 50])
    ap.add_argument("--dense-max", type=int, default=14643, help="largest N solved densely")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--json", help="write the results here")
    return ap


def score_block(rows: np.ndarray, truth: np.ndarray, snr: float, seed: int) -> np.ndarray:
    """Scores of originals ``rows`` against every encoding: (len(rows), N) float32, noise drawn per block."""
    rng = np.random.default_rng([seed, int(rows[0])])
    s = rng.standard_normal((len(rows), len(truth)), dtype=np.float32)
    hit = np.isin(truth, rows)
    s[truth[hit] - rows[0], np.flatnonzero(hit)] += snr
    return s


def dense_scores(n: int, truth: np.ndarray, snr: float, seed: int) -> np.ndarray:
    return np.concatenate([score_block(np.arange(s, min(s + BLOCK, n)), truth, snr, seed)
                           for s in range(0, n, BLOCK)])


def top_k_graph(n: int, truth: np.ndarray, snr: float, seed: int, k: int):
    """For each encoding its ``k`` best originals, merged block by block: a sparse (N, N_o) biadjacency."""
    from scipy.sparse import csr_array

    n_enc = len(truth)
    best_v = np.full((n_enc, k), -np.inf, np.float32)  # (N, k) running best scores per encoding
    best_i = np.zeros((n_enc, k), np.int64)
    for s in range(0, n, BLOCK):
        rows = np.arange(s, min(s + BLOCK, n))
        blk = score_block(rows, truth, snr, seed).T  # (N, b)
        v = np.concatenate([best_v, blk], axis=1)  # (N, k + b)
        i = np.concatenate([best_i, np.broadcast_to(rows, blk.shape)], axis=1)
        keep = np.argpartition(-v, k - 1, axis=1)[:, :k]
        best_v, best_i = np.take_along_axis(v, keep, 1), np.take_along_axis(i, keep, 1)
    w = best_v.astype(np.float64)
    w = w - w.min() + 1.0  # strictly positive: a zero weight would read as a missing edge
    indptr = np.arange(0, n_enc * k + 1, k)
    return csr_array((w.ravel(), best_i.ravel(), indptr), shape=(n_enc, n))


def sparse_match(graph) -> np.ndarray | None:
    """Encoding -> original over the candidate graph, or None when it admits no full matching."""
    from scipy.sparse.csgraph import min_weight_full_bipartite_matching

    try:
        r, c = min_weight_full_bipartite_matching(graph, maximize=True)
    except ValueError:
        return None
    out = np.empty(graph.shape[0], np.int64)
    out[r] = c
    return out


def main() -> int:
    args = build_parser().parse_args()
    from empirical.assignment import match_encodings

    runs = []
    for n in args.n_list:
        for snr in args.snr:
            truth = np.random.default_rng([args.seed, n]).permutation(n)  # encoding k <- original truth[k]
            row = {"n": n, "snr": snr}
            m_dense = None
            if n <= args.dense_max:
                t0 = time.perf_counter()
                score = dense_scores(n, truth, snr, args.seed)
                t1 = time.perf_counter()
                m_dense = match_encodings(score)
                row["dense"] = {"score_seconds": t1 - t0, "solve_seconds": time.perf_counter() - t1,
                                "share_planted": float(np.mean(m_dense == truth)),
                                "argmax_share_planted": float(np.mean(score.argmax(axis=0) == truth)),
                                "matrix_gib": gib(score.nbytes)}
                del score
            row["sparse"] = []
            for k in args.k_list:
                t0 = time.perf_counter()
                graph = top_k_graph(n, truth, snr, args.seed, k)
                t1 = time.perf_counter()
                m = sparse_match(graph)
                sp = {"k": k, "graph_seconds": t1 - t0, "solve_seconds": time.perf_counter() - t1,
                      "full_matching": m is not None,
                      "graph_gib": gib(graph.data.nbytes + graph.indices.nbytes + graph.indptr.nbytes),
                      "true_among_candidates": float(np.mean((graph.indices.reshape(n, k) == truth[:, None]).any(1)))}
                if m is not None:
                    sp["share_planted"] = float(np.mean(m == truth))
                    if m_dense is not None:
                        sp["agrees_with_dense"] = float(np.mean(m == m_dense))
                        sp["solve_speedup_over_dense"] = row["dense"]["solve_seconds"] / max(sp["solve_seconds"], 1e-9)
                row["sparse"].append(sp)
                print(f"N {n:6d} snr {snr:4.1f} k {k:3d}: sparse solve {sp['solve_seconds']:7.2f} s"
                      + (f" (dense {row['dense']['solve_seconds']:7.2f} s, x{sp.get('solve_speedup_over_dense', 0):.0f}"
                         f", agrees {sp.get('agrees_with_dense', 0):.1%})" if m_dense is not None else "")
                      + ("" if m is not None else ": no full matching on this graph"), flush=True)
            runs.append(row)
    if args.json:
        write_json(args.json, {"benchmark": "sparse_matching", "date": now_utc(), "machine": machine(),
                               "settings": {k: v for k, v in vars(args).items() if k != "json"},
                               "peak_rss_gib_whole_script": gib(peak_rss_bytes()), "runs": runs,
                               "source_fingerprint": sources(__file__)})
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
