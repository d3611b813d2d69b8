"""How many Sinkhorn iterations does the first matching's pre-screen need? An oracle on one game.

The first matching balances its (N_o, N) pre-score with Sinkhorn's iteration before each original
picks its candidate encodings (``empirical.isim.balance``, 50 iterations). At N = 16,000 that is
115 of the stage's 160 s (``first_stage_split.py``). This script takes a game and the work dir of an
attack run on it (the alignment and p-sim resumed), computes the pre-score once, and balances it
with each number of iterations in ``--iters``; for each it reports the seconds, how far the rows'
sums are from their target (each iteration ends with the columns normalised, so the rows carry
what is left: the largest absolute log of a row's sum over its target), the share of encodings
that are among their true original's candidates (Alice's answer key, read only here), and the
share of candidates shared with ``--reference`` iterations (the attack's 50).

Then a sparse alternative that would need no (N_o, N) matrix: the same log-domain iteration run
only on the candidate pairs of both sides (each original's and each encoding's ``--sparse-k``
best by the pre-score), ``--reference`` iterations, each original's candidates then picked among
its pairs; the same figures. No change to the attack is made.

Usage::

    python benchmarks/balance_oracle.py --game G --answer-key A --work-dir W \\
        --json benchmarks/results/cpu_balance_oracle_n16000.json
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_common import machine, now_utc, sources, write_json
from resume_first import add_arguments, game_record, resume

from empirical.isim import balance, sliced_prescore, top_candidates


def build_parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_arguments(ap, answer_key="Alice's answer key (the oracle's truth)")
    ap.add_argument("--iters", type=int, nargs="+", default=[0, 5, 10, 20, 50, 100],
                    help="Sinkhorn iterations to try")
    ap.add_argument("--reference", type=int, default=50, help="the iterations whose candidates the others are "
                    "compared with (the attack's; added to --iters if missing)")
    ap.add_argument("--sparse-k", type=int, nargs="+", default=[50, 200],
                    help="pairs per original and per encoding kept for the sparse iteration")
    ap.add_argument("--json", help="write the results here")
    return ap


def row_error(L: np.ndarray, chunk: int = 1024) -> float:
    """The largest |log of a row's sum over its target N / N_o| of exp(L): 0 when every row is balanced."""
    target = np.log(L.shape[1] / L.shape[0])
    worst = 0.0
    for s in range(0, L.shape[0], chunk):
        blk = L[s:s + chunk].astype(np.float64)
        m = blk.max(axis=1)
        worst = max(worst, float(np.abs(m + np.log(np.exp(blk - m[:, None]).sum(axis=1)) - target).max()))
    return worst


def _segment_logsumexp(v: np.ndarray, starts: np.ndarray) -> np.ndarray:
    """log(sum(exp(v))) over consecutive segments of ``v`` beginning at ``starts``."""
    m = np.maximum.reduceat(v, starts)
    counts = np.diff(np.append(starts, len(v)))
    return m + np.log(np.add.reduceat(np.exp(v - np.repeat(m, counts)), starts))


def sparse_balance(pre: np.ndarray, k: int, iters: int, n_cand: int, tau: float = 0.05) -> np.ndarray:
    """Each original's ``n_cand`` candidates after Sinkhorn's iteration on both sides' ``k`` best pairs only."""
    n_orig, n_enc = pre.shape
    by_row = np.argpartition(-pre, k - 1, axis=1)[:, :k]  # (N_o, k) encodings
    by_col = np.argpartition(-pre, k - 1, axis=0)[:k].T  # (N, k) originals
    o = np.concatenate([np.repeat(np.arange(n_orig), k), by_col.ravel()])
    e = np.concatenate([by_row.ravel(), np.repeat(np.arange(n_enc), k)])
    _, first = np.unique(o * n_enc + e, return_index=True)  # sorted by original, then encoding
    o, e = o[first], e[first]
    t = tau * float(pre.std()) + 1e-30
    L = (pre[o, e].astype(np.float64) - float(pre.max())) / t
    row_starts = np.flatnonzero(np.r_[True, o[1:] != o[:-1]])
    by_enc = np.argsort(e, kind="stable")
    e_sorted = e[by_enc]
    col_starts = np.flatnonzero(np.r_[True, e_sorted[1:] != e_sorted[:-1]])
    row_mass = np.log(n_enc / n_orig)
    for _ in range(iters):
        counts = np.diff(np.append(row_starts, len(L)))
        L -= np.repeat(_segment_logsumexp(L, row_starts) - row_mass, counts)
        lc = L[by_enc]
        counts = np.diff(np.append(col_starts, len(lc)))
        lc -= np.repeat(_segment_logsumexp(lc, col_starts), counts)
        L[by_enc] = lc
    out = np.empty((n_orig, n_cand), np.int64)
    counts = np.diff(np.append(row_starts, len(L)))
    for r, (s0, c) in enumerate(zip(row_starts, counts, strict=True)):
        seg = L[s0:s0 + c]
        top = np.argsort(-seg)[:n_cand]
        out[r, :len(top)] = e[s0 + top]
        out[r, len(top):] = e[s0 + top[0]]  # fewer pairs than candidates: repeat the best
    return out


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    game, cfg, run, truth = resume(args)
    n_enc = len(truth)
    pre = sliced_prescore(run.patch_emb, run.row_emb, np)
    rows, cands = [], {}
    for it in sorted(set(args.iters) | {args.reference}):
        t0 = time.perf_counter()
        L = balance(pre, np, iters=it)
        seconds = time.perf_counter() - t0
        cand = top_candidates(L, cfg.candidates, np)
        cands[it] = cand
        rows.append({"iters": it, "seconds": seconds, "row_log_sum_error": row_error(L),
                     "true_among_candidates": float(np.mean((cand[truth] == np.arange(n_enc)[:, None]).any(axis=1)))})
        del L
    ref = cands[args.reference]
    for r in rows:
        c = cands[r["iters"]]
        shared = [len(np.intersect1d(a, b)) for a, b in zip(c, ref, strict=True)]
        r["candidates_shared_with_reference"] = float(np.mean(shared)) / ref.shape[1]
        print(f"{r['iters']:3d} iterations: {r['seconds']:6.1f} s, row error {r['row_log_sum_error']:.2e}, "
              f"true among candidates {r['true_among_candidates']:.2%}, candidates shared with "
              f"{args.reference} iterations {r['candidates_shared_with_reference']:.2%}", flush=True)
    sparse = []
    for k in args.sparse_k:
        t0 = time.perf_counter()
        cand = sparse_balance(pre, k, args.reference, cfg.candidates)
        r = {"k": k, "iters": args.reference, "seconds": time.perf_counter() - t0,
             "true_among_candidates": float(np.mean((cand[truth] == np.arange(n_enc)[:, None]).any(axis=1))),
             "candidates_shared_with_reference": float(np.mean(
                 [len(np.intersect1d(a, b)) for a, b in zip(cand, ref, strict=True)])) / ref.shape[1]}
        sparse.append(r)
        print(f"sparse, both sides' {k} best, {args.reference} iterations: {r['seconds']:6.1f} s (selection included), "
              f"true among candidates {r['true_among_candidates']:.2%}, candidates shared with the dense "
              f"{r['candidates_shared_with_reference']:.2%}", flush=True)
    if args.json:
        write_json(args.json, {"benchmark": "balance_oracle", "date": now_utc(), "machine": machine(),
                               "game": game_record(args, game),
                               "settings": {"candidates": cfg.candidates, "iters": args.iters,
                                            "reference": args.reference, "seed": args.seed},
                               "rows": rows, "sparse": sparse,
                               "source_fingerprint": sources(__file__, "resume_first.py")})
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
