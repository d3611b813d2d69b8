"""Oracle for the re-scoring's candidates: is the right original among those the stage scores?

The ``rescore`` stage (``empirical.rescore``) scores each close call against its matched original
and that original's ``TWINS`` nearest twins in pixel space (patch means and standard deviations).
It can only put an encoding right when its right original is among those candidates. This script
takes a finished attack's work dir (its saved ``align``, ``boost``, ``extract`` and ``rescore``
stages) and, with Alice's answer key (never given to the attack), reports for every encoding the
attack still got wrong:

* whether it was a close call, and the rank of its right original among the matched original's
  nearest twins in the stage's pool (0 = the nearest; the stage scores ranks below ``TWINS``);
* the rank of its right original and of its matched one among all originals by T''s distance with
  statistics averaged over the batches (the final matching's own score: 0 = the nearest), so a
  candidate rule of "each close call's k nearest originals by T'" can be judged;
* with the statistics of the encoding's own batch (taken from the originals the matching gives that
  batch, as the stage does), whether the right original is nearer than the matched one.

Then, per candidate rule (pixel twins 3 and 10; T''s k nearest originals, 3 and 10), how many wrong
encodings have their right original among the candidates. No change to the attack is made here.

Usage::

    python benchmarks/rescore_oracle.py --game G --answer-key A.json --work-dir W \\
        --json benchmarks/results/cpu_rescore_oracle_n16000.json
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

from empirical.batch_sample import whole_batches
from empirical.encoder import patchify
from empirical.fileio import read_gray
from empirical.game import ORIG_DIR
from empirical.rescore import MIN_RESCORED, RESCORED_SHARE, TWINS, close_calls, nearest_twins, patch_summary
from empirical.tprime import batch_stats, encode_each, mean_batch_stats

RULES = {"twins_3": ("twins", TWINS), "twins_10": ("twins", 10), "tprime_3": ("tprime", 3), "tprime_10": ("tprime", 10)}
DEEP = 50  # twin ranks are looked up this deep (deeper: reported as DEEP)


def build_parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--game", required=True, help="the game folder the attack ran on")
    ap.add_argument("--answer-key", required=True)
    ap.add_argument("--work-dir", required=True, help="the attack's --work-dir (its newest saved stages are read)")
    ap.add_argument("--json", help="write the results here")
    return ap


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    t0 = time.perf_counter()
    game = Path(args.game)
    run = read_finished_attack(game, Path(args.answer_key), Path(args.work_dir), "rescore")
    cfg, ids, truth, params, matching, groups = run.cfg, run.ids, run.truth, run.params, run.matching, run.groups
    n, n_orig = len(truth), len(ids)
    wrong = np.flatnonzero(matching != truth)
    print(f"{len(wrong)} wrong of {n}; reading {n_orig} originals", flush=True)
    originals = np.stack([read_gray(game / ORIG_DIR / s)[None] for s in ids])  # (N_o, 1, H, W)

    # The stage's own close calls and pool, as empirical.rescore computes them.
    summary = patch_summary(originals, cfg.patch, np)
    calls = close_calls(summary, matching, n_orig, np, RESCORED_SHARE, MIN_RESCORED)
    pool = np.union1d(matching[calls], np.setdiff1d(np.arange(n_orig), matching))
    _, twins = nearest_twins(summary, matching[wrong], pool, DEEP, np)  # (w, DEEP)
    # T' with statistics averaged over the batches, every original encoded once: (N_o, P*D) patch-ordered.
    sample = whole_batches(groups, cfg.n_patches)
    avg = mean_batch_stats(params, originals[matching[sample]], groups[sample], cfg, np)
    pred = encode_each(params, originals, cfg, avg, np).reshape(n_orig, -1)
    pred_sq = (pred.astype(np.float64) ** 2).sum(axis=1)
    rows = []
    for j, k in enumerate(wrong):
        k, m, t = int(k), int(matching[k]), int(truth[k])
        e = run.target(k).reshape(-1).astype(np.float64)
        d = pred_sq - 2 * (pred @ e) + float(e @ e)  # squared distance of every original's T'(x) to encoding k
        tw = list(twins[j])
        g = int(groups[k])
        st = batch_stats(params, patchify(originals[matching[groups == g]], cfg.patch), cfg, np)
        own = encode_each(params, originals[[t, m]], cfg, st, np).reshape(2, -1)
        d_own = ((own - e) ** 2).sum(axis=1)
        rec = {"encoding": k, "matched": m, "truth": t, "batch": g, "close_call": bool(np.isin(k, calls)),
               "truth_in_pool": bool(np.isin(t, pool)),
               "twin_rank_of_truth": tw.index(t) if t in tw else DEEP,
               "tprime_rank_of_truth": int((d < d[t]).sum()), "tprime_rank_of_matched": int((d < d[m]).sum()),
               "own_batch_prefers_truth": bool(d_own[0] < d_own[1]),
               "own_batch_gain": float((d_own[1] - d_own[0]) / d_own[0]),
               "pixel_std": [float(originals[t].std()), float(originals[m].std())]}
        rec["covered"] = {name: (rec["close_call"] and rec["truth_in_pool"] and rec["twin_rank_of_truth"] < k_)
                          if kind == "twins" else (rec["close_call"] and rec["tprime_rank_of_truth"] < k_ + 1)
                          for name, (kind, k_) in RULES.items()}  # T''s k nearest besides the matched one
        rows.append(rec)
        print({x: rec[x] for x in ("encoding", "close_call", "twin_rank_of_truth", "tprime_rank_of_truth",
                                   "tprime_rank_of_matched", "own_batch_prefers_truth")}, flush=True)
    covered = {name: sum(r["covered"][name] for r in rows) for name in RULES}
    print(f"wrong encodings whose right original a rule makes a candidate (of {len(rows)}): {covered}; "
          f"own batch's statistics prefer the right original for {sum(r['own_batch_prefers_truth'] for r in rows)}")
    if args.json:
        write_json(args.json, {
            "benchmark": "rescore_oracle", "date": now_utc(), "machine": machine(),
            "source_fingerprint": sources(__file__, "batch_stats_oracle.py"),
            "seconds": time.perf_counter() - t0, "game": {"n": n, "n_originals": n_orig, "family": cfg.to_json()},
            "stage_files": {k: v.name for k, v in run.files.items()}, "close_calls": len(calls),
            "rules": {k: list(v) for k, v in RULES.items()}, "wrong": rows, "covered": covered})
    return 0


if __name__ == "__main__":
    sys.exit(main())
