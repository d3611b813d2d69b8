"""Oracle: does T''s own error on an original's pixel-space twins correct its error on that original?

The re-scoring (:mod:`empirical.rescore`) scores a close call's candidates by the squared distance
between T'(x), with the encoding's batch's BatchNorm statistics, and the encoding. On nearly flat
crops T' errs by about as much as their encodings differ, and some pairs swap. T''s error is a
smooth function of the image, so an original's twins (the originals nearest in patch means and
standard deviations), matched with confidence elsewhere in the game, err nearly as it does:
predicting the encoding as ``T'_g(x) - mean over twins t of (T'_{g_t}(t) - E(t))``, where ``E(t)``
is the encoding the matching gives twin t and ``g_t`` its batch, cancels the shared part.

This script takes a finished attack's work dir and, with Alice's answer key (never given to the
attack), compares for a sample of the re-scoring's close calls (the encodings whose matched
original has the nearest twin) and for every swapped pair of the matching:

* ``batch``: the re-scoring's present distance;
* ``twins_K``: the distance after subtracting the mean residual of each candidate's K nearest
  twins, excluding every candidate of the encoding being scored (whose encodings are in doubt);
* ``same_K``: the same, with the twins drawn only from originals matched into the scored
  encoding's own BatchNorm batch, so that their residuals are T''s error at that batch's
  statistics (T''s error moves with the statistics a batch brings);
* ``patch_K``: twins patch by patch instead of image by image: for each position, the K patches at
  that position, among the originals matched into the scored encoding's batch (the candidates
  excluded), nearest in pixels to the candidate's patch there; their rows' residuals, averaged,
  correct that row. A nearly flat image's 64 rows share one error (T' errs alike on alike
  patches), so its rows do not average T''s error away as a textured image's do; textured images
  of the same batch hold many patches alike to each of its own, matched with confidence.

For each it counts the close calls whose true original is not their nearest candidate (the truth
known only here) and the swapped pairs it puts right.

Usage::

    python benchmarks/twin_residual_oracle.py --game G --answer-key A.json --work-dir W \\
        --json benchmarks/results/cpu_twin_residual_oracle.json
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from batch_stats_oracle import read_finished_attack
from bench_common import machine, now_utc, sources, write_json

from empirical.encoder import patchify
from empirical.fileio import read_gray
from empirical.game import ORIG_DIR
from empirical.matched import MatchedImages
from empirical.rescore import TWINS, close_calls, nearest_twins, patch_corrections, patch_summary
from empirical.tprime import batch_stats_of, encode_each

SAMPLE_STREAM = 0x7A  # which close calls are sampled


def build_parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--game", required=True, help="the game folder the attack ran on")
    ap.add_argument("--answer-key", required=True)
    ap.add_argument("--work-dir", required=True, help="the attack's --work-dir (its newest saved stages are read)")
    ap.add_argument("--stage", default="final", help="the saved stage whose matching is examined (final or rescore)")
    ap.add_argument("--all-originals", action="store_true", help="the attack ran with --all-originals")
    ap.add_argument("--sample", type=int, default=150, help="close calls scored (besides the swapped pairs)")
    ap.add_argument("--twins", type=int, nargs="+", default=[1, 3, 10], help="values of K to compare")
    ap.add_argument("--patch-twins", type=int, nargs="*", default=[], help="values of K for patch_K (none: not run)")
    ap.add_argument("--patch-sure", action="store_true",
                    help="patch_K draws its twins only from originals outside every close call's candidates")
    ap.add_argument("--json", help="write the results here")
    return ap


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    t0 = time.perf_counter()
    game = Path(args.game)
    run = read_finished_attack(game, Path(args.answer_key), Path(args.work_dir), args.stage,
                               all_originals=args.all_originals)
    cfg, truth, params, groups, matching = run.cfg, run.truth, run.params, run.groups, run.matching
    n = len(truth)
    print(f"reading {len(run.ids)} originals ...", flush=True)
    originals = np.stack([read_gray(game / ORIG_DIR / s)[None] for s in run.ids])  # (N_o, 1, H, W)
    print(f"read in {time.perf_counter() - t0:.0f} s", flush=True)
    summary = patch_summary(originals, cfg.patch, np)
    holder = np.full(len(originals), -1, np.int64)
    holder[matching] = np.arange(n)  # original -> the encoding the matching gives it
    matched = MatchedImages(originals, matching, np)
    stats: dict[int, list] = {}

    def stats_of(g: int):
        if g not in stats:
            stats[g] = batch_stats_of(params, matched, groups, g, cfg, np)
        return stats[g]

    residual: dict[int, np.ndarray] = {}

    def residual_of(t: int) -> np.ndarray:
        """T''s error on original t against the encoding the matching gives it, with that batch's statistics."""
        if t not in residual:
            k = int(holder[t])
            residual[t] = encode_each(params, originals[t:t + 1], cfg, stats_of(int(groups[k])), np)[0] - run.target(k)
        return residual[t]

    kmax = max(args.twins)
    batch_rows: dict[int, tuple] = {}

    def batch_rows_of(g: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Batch g's matched originals (n,), their patches (n, P, C*p*p) and T''s row residuals (n, P, D)."""
        if g not in batch_rows:
            who = in_batch[g]
            res = np.stack([residual_of(int(t)) for t in who])
            batch_rows[g] = (who, patchify(originals[who], cfg.patch).astype(np.float32), res)
        return batch_rows[g]

    wrong = np.flatnonzero(matching != truth)
    calls = close_calls(summary, matching, len(originals), np)
    rng = np.random.default_rng(SAMPLE_STREAM)
    sample = np.union1d(rng.choice(calls, min(args.sample, len(calls)), replace=False), np.intersect1d(wrong, calls))
    pool = np.union1d(matching[calls], np.setdiff1d(np.arange(len(originals)), matching))
    _, near = nearest_twins(summary, matching[sample], pool, TWINS, np)
    cands = np.concatenate([matching[sample][:, None], near], axis=1)  # (S, 1 + TWINS)
    uniq = np.unique(cands)
    _, twin_of = nearest_twins(summary, uniq, np.flatnonzero(holder >= 0), kmax + 2 * (TWINS + 1), np)
    twin_row = {int(x): i for i, x in enumerate(uniq)}
    _, near_all = nearest_twins(summary, matching[calls], pool, TWINS, np)
    doubtful = np.union1d(matching[calls], near_all.ravel())  # every close call's candidates
    names = ["batch", *[f"twins_{k}" for k in args.twins], *[f"same_{k}" for k in args.twins],
             *[f"patch_{k}" for k in args.patch_twins]]
    in_batch = {int(g): np.flatnonzero((holder >= 0) & (groups[np.maximum(holder, 0)] == g))
                for g in np.unique(groups)}  # originals matched into each batch
    records = []
    for i, k in enumerate(sample):
        e, g = run.target(int(k)), int(groups[k])
        own = set(int(c) for c in cands[i])
        costs = {m: [] for m in names}
        for c in cands[i]:
            pred = encode_each(params, originals[c:c + 1], cfg, stats_of(g), np)[0]
            costs["batch"].append(float(((pred - e) ** 2).sum()))
            twins = [int(t) for t in twin_of[twin_row[int(c)]] if int(t) not in own]
            if args.patch_twins:
                who, patches, res = batch_rows_of(g)
                keep = ~np.isin(who, doubtful if args.patch_sure else list(own))
                mine = patchify(originals[c:c + 1], cfg.patch).astype(np.float32)  # (1, P, C*p*p)
                for kk in args.patch_twins:
                    corr = patch_corrections(mine, patches[keep], res[keep], kk, np)[0]  # (P, D), as the attack's
                    costs[f"patch_{kk}"].append(float(((pred - corr - e) ** 2).sum()))
            _, same = nearest_twins(summary, np.asarray([int(c)]), in_batch[g], kmax + len(own), np)
            same = [int(t) for t in same[0] if int(t) not in own]
            for kk in args.twins:
                corr = np.mean([residual_of(t) for t in twins[:kk]], axis=0)
                costs[f"twins_{kk}"].append(float(((pred - corr - e) ** 2).sum()))
                corr = np.mean([residual_of(t) for t in same[:kk]], axis=0)
                costs[f"same_{kk}"].append(float(((pred - corr - e) ** 2).sum()))
        in_cands = truth[k] in own
        rec = {"encoding": int(k), "truth": int(truth[k]), "true_among_candidates": bool(in_cands),
               "matched_right": bool(matching[k] == truth[k])}
        for m in names:
            cst = np.asarray(costs[m])
            best = int(cands[i][np.argmin(cst)])
            rec[m] = {"best_is_true": best == int(truth[k]), "best": best}
            if in_cands:
                j = int(np.flatnonzero(cands[i] == truth[k])[0])
                others = np.delete(cst, j)
                rec[m]["margin"] = float((others.min() - cst[j]) / cst[j]) if len(others) else None
        records.append(rec)
        if (i + 1) % 25 == 0:
            print(f"{i + 1}/{len(sample)} scored, {time.perf_counter() - t0:.0f} s", flush=True)
    summary_out = {}
    for m in names:
        scored = [r for r in records if r["true_among_candidates"]]
        margins = np.asarray([r[m]["margin"] for r in scored if r[m]["margin"] is not None])
        summary_out[m] = {"truth_not_nearest": sum(not r[m]["best_is_true"] for r in scored),
                          "of": len(scored), "wrong_encodings_put_right": sum(
                              r[m]["best_is_true"] for r in scored if not r["matched_right"]),
                          "margin_median": float(np.median(margins)), "margin_p05": float(np.quantile(margins, 0.05))}
    n_wrong_sampled = sum(not r["matched_right"] for r in records)
    print(f"{len(records)} close calls scored ({n_wrong_sampled} wrongly matched):")
    for m, s in summary_out.items():
        print(f"  {m:>9}: truth not nearest {s['truth_not_nearest']}/{s['of']}, wrong ones put right "
              f"{s['wrong_encodings_put_right']}/{n_wrong_sampled}, margin median {s['margin_median']:.4f} "
              f"p5 {s['margin_p05']:.4f}")
    if args.json:
        write_json(args.json, {
            "benchmark": "twin_residual_oracle", "date": now_utc(), "machine": machine(),
            "source_fingerprint": sources(__file__, "empirical"), "seconds": time.perf_counter() - t0,
            "game": str(game), "stage": args.stage, "stage_files": {k: str(v) for k, v in run.files.items()},
            "n": n, "wrong": [int(k) for k in wrong], "close_calls": len(calls), "sampled": len(records),
            "twins": args.twins, "summary": summary_out, "records": records,
        })
    return 0


if __name__ == "__main__":
    sys.exit(main())
