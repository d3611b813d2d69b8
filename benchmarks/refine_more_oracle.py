"""Oracle: is T' short of steps at the challenge's size? Refit it further and write a work dir to score.

At 256 px a step of model extraction reads 16 images (``STEP_ROWS`` patch rows), so the 450 steps
of the squared-loss refit see about half the pairs of a 14,643-image game once, and the refit kept
its last step (its held-out error still falling). This script warm-starts ``refine_encoder`` from
a finished attack's saved T', on the matching of its ``final`` stage (the attack's own; no secret
is read here), for ``--steps`` more steps, with the same held-back pairs as the attack
(:func:`empirical.holdout.holdout_split` of the attack's seed) and batches drawn from
``--draw-seed``. It prints the held-out error every check, and writes ``--out``, a work dir whose
``extract`` stage holds the refitted T' (its saved report otherwise unchanged) beside links to the
``align``, ``boost`` and ``final`` stages, for ``batch_stats_oracle.py`` and
``twin_residual_oracle.py`` to score with Alice's answer key. The attack resumes from that
``extract`` stage in a work dir that links the stages before it and not ``final``.

Usage::

    python benchmarks/refine_more_oracle.py --game G --work-dir W --steps 400 --out W2 \\
        --json benchmarks/results/cpu_refine_more_oracle.json
"""
from __future__ import annotations

import argparse
import sys
import time
from dataclasses import replace
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from batch_stats_oracle import newest
from bench_common import machine, now_utc, peak_rss_bytes, sources, write_json

from empirical.encodings import EncodingFiles, Rows
from empirical.extraction import ExtractConfig, refine_encoder
from empirical.fileio import read_gray
from empirical.game import ENC_DIR, ORIG_DIR, _list_originals, read_config
from empirical.holdout import holdout_split
from empirical.matched import MatchedImages
from empirical.progress import progress_bar


def build_parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--game", required=True, help="the game folder the attack ran on")
    ap.add_argument("--work-dir", required=True, help="the attack's --work-dir (its newest saved stages are read)")
    ap.add_argument("--steps", type=int, default=400, help="further steps of the squared-loss refit")
    ap.add_argument("--lr", type=float, default=2e-3, help="their peak learning rate")
    ap.add_argument("--draw-seed", type=int, default=1, help="seeds the batches drawn (the hold-out is the attack's)")
    ap.add_argument("--out", required=True, help="work dir to write (the refitted extract stage, links to the rest)")
    ap.add_argument("--json", help="write the results here")
    return ap


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    t0 = time.perf_counter()
    game, work = Path(args.game), Path(args.work_dir)
    cfg = read_config(game)
    files = {s: newest(work, s) for s in ("align", "boost", "extract", "final")}
    order, pi = np.load(files["align"])["order"], np.load(files["boost"])["pi"]
    ex = np.load(files["extract"])
    params = {k[2:]: ex[k] for k in ex.files if k.startswith("p.")}
    matching = np.load(files["final"])["matching"]
    n = len(matching)
    groups = np.arange(n) // cfg.bn_batch
    ids = _list_originals(game / ORIG_DIR, game.resolve())
    print(f"reading {len(ids)} originals ...", flush=True)
    originals = np.stack([read_gray(game / ORIG_DIR / s)[None] for s in ids])  # (N_o, 1, H, W)
    targets = Rows(EncodingFiles(game / ENC_DIR, [f"{k}.npy" for k in range(n)], (cfg.n_patches, cfg.hidden)),
                   np).take(order).take(pi)  # (N, P, D) each encoding's rows in position order
    attack_cfg = ExtractConfig()
    split = holdout_split(groups, attack_cfg)  # the attack's own held-back pairs
    ec = replace(attack_cfg, refine_steps=args.steps, refine_lr=args.lr, seed=args.draw_seed, adapt_steps=False)
    t1 = time.perf_counter()
    with progress_bar(args.steps, "refit", False) as bar:
        fit = refine_encoder(params, MatchedImages(originals, matching, np), targets, groups, cfg, ec, np,
                             progress=bar, split=split, memory_budget=2 << 30)
    seconds = time.perf_counter() - t1
    curve = [(int(s), float(e)) for s, e in fit.held_out]
    print(f"held-out error by step: {curve}; kept step {fit.best_step}; {seconds:.0f} s", flush=True)
    out = Path(args.out) / files["extract"].parent.name
    out.mkdir(parents=True, exist_ok=True)
    for stage, f in files.items():
        if stage != "extract":
            (out / f.name).unlink(missing_ok=True)
            (out / f.name).symlink_to(f.resolve())
    # the saved stage's other entries (its report, its matchings) kept, so that the attack can resume from it
    kept = {k: ex[k] for k in ex.files if not k.startswith("p.")}
    np.savez(out / files["extract"].name, **kept, **{f"p.{k}": np.asarray(v) for k, v in fit.params.items()})
    if args.json:
        write_json(args.json, {
            "benchmark": "refine_more_oracle", "date": now_utc(), "machine": machine(),
            "source_fingerprint": sources(__file__, "empirical"), "seconds": time.perf_counter() - t0,
            "game": str(game), "stage_files": {k: str(v) for k, v in files.items()}, "n": n,
            "steps": args.steps, "lr": args.lr, "draw_seed": args.draw_seed, "refit_seconds": seconds,
            "held_out_error_by_step": curve, "kept_step": fit.best_step, "loss_first": fit.losses[0],
            "loss_last": float(np.mean(fit.losses[-20:])), "peak_rss_gib": peak_rss_bytes() / 2**30,
            "out": str(out),
        })
    return 0


if __name__ == "__main__":
    sys.exit(main())
