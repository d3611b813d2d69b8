"""Oracle: do a game's pairs favour Alice's first-layer units once the layers above fit them?

``bn_rule_oracle.py`` held Alice's patch convolution and first block fixed (``--start alice:1
--freeze``) and found that T' then reaches 99% on new pictures; started on her units but refitted,
T' walked away from them. That refit started with random layers above hers, whose first steps send
noise down to her units, so it does not say whether the game's pairs prefer other units. This oracle
asks it fairly, in two phases on one game's true pairs:

1. her patch convolution and first block (with ``--perturb E`` noise, as in ``bn_rule_oracle``) held
   fixed while the rest of T' is refitted as extraction refits it (``--start random``, the control: a
   random start's first layers held instead);
2. everything refitted from where phase 1 ended, at ``--lr-scale`` times the refit's learning rate.

After each phase: how nearly T''s first layers hold her units (``bn_rule_oracle.unit_match``), its
error on the held-back pairs (what the attacker sees) and its Challenge 2 score on the game's images
and on new pictures (what it is for). If phase 2 moves T''s units towards hers (the largest
correlations rise) while lowering the held-back error, the pairs pin her units and a fit can keep
them once it is near; if the units drift away and the held-back error still falls, the pairs prefer
other units, and no fit to them alone can be expected to find hers. Alice's key is read: an oracle.

Usage::

    python benchmarks/unit_hold_oracle.py --preset neuracrypt-7 --kind split --n 600 --seed 2 \\
        --perturb 0.1 --json benchmarks/results/cpu_unit_hold_oracle_nc7_n600_seed2_perturb0.1.json
"""
from __future__ import annotations

import argparse
import dataclasses
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_common import machine, now_utc, sources, write_json
from bn_rule_oracle import alice_layers, check_frozen, freeze, means_under, rules, start_params, unit_match
from tprime_failures_oracle import diagnose
from tprime_knobs import add_game_args
from tprime_oracle import true_pairs
from wide_student_oracle import patch_means

EXTRACT = {"widths": (256, 256, 1024, 1024, 1024), "decay": 0.0}  # bn_rule_oracle's shapes: her width to block 1


def report(phase: str, alice: dict, est, images, groups, fam, sets: dict, truth: dict, seconds: float) -> dict:
    """unit_match, held-back error and Challenge 2 scores of one phase's T'."""
    from empirical.tprime import mean_batch_stats

    params = {k: np.asarray(v) for k, v in est.params.items()}
    units = unit_match(alice, params, images[groups == 0], fam)
    game = [(np.asarray(m), np.asarray(v)) for m, v in mean_batch_stats(params, images, groups, fam, np)]
    scores = {}
    for name, x in sets.items():
        r = diagnose(truth[name], means_under(params, x, fam, game, rules()["own"]), x)
        scores[name] = {"share": r["share"], "error_median": r["error_median"]}
        print(f"{phase}: {name} {r['share'][0]:.1%} / {r['share'][1]:.1%}, error {r['error_median']:.3f}", flush=True)
    held = [list(h) for h in est.held_out]
    best = min(held, key=lambda h: h[1]) if held else None
    print(f"{phase}: held-back error at its best {best}, last {held[-1] if held else None}; "
          f"{seconds:.0f} s", flush=True)
    return {"phase": phase, "seconds": seconds, "unit_match": units, "held_out": held,
            "held_out_best": best, "best_step": est.best_step, "last_loss": est.losses[-1] if est.losses else None,
            "scores": scores}


def main(argv=None) -> int:
    import empirical.fit_loop as fit_loop
    from empirical.extraction import ExtractConfig, refine_encoder
    from empirical.tprime import params_from_key

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_game_args(ap)
    ap.add_argument("--start", default="alice", choices=("alice", "random"), help="phase 1 holds Alice's first "
                    "layers (default) or a random start's (the control)")
    ap.add_argument("--perturb", type=float, default=0.0, help="noise on her units' weights, relative to each row's "
                    "norm (bn_rule_oracle.start_params; default 0: her exact units)")
    ap.add_argument("--lr-scale", type=float, default=0.25, help="phase 2's learning rate over the refit's "
                    "(default 0.25: a fit already near, as a recovery followed by a refit would be)")
    ap.add_argument("--extract-seed", type=int, help="T''s seed (default: the game's)")
    ap.add_argument("--json")
    args = ap.parse_args(argv)
    if args.perturb < 0 or args.lr_scale <= 0:
        ap.error("--perturb must be >= 0 and --lr-scale > 0")
    if args.start == "random" and args.perturb:
        ap.error("--perturb needs --start alice")
    t0 = time.perf_counter()
    fam, images, key, targets, groups, sets = true_pairs(args)
    if fam.depth < 1:
        ap.error(f"{args.preset} has no BatchNorm blocks: nothing to measure")
    alice = params_from_key(key, np)
    truth = {name: patch_means(alice, x, fam) for name, x in sets.items()}
    seed = args.seed if args.extract_seed is None else args.extract_seed
    cfg = ExtractConfig(seed=seed, **EXTRACT)
    held = alice_layers("alice:1")
    first = start_params(f"{args.start}:1", alice, fam, cfg, args.perturb)
    start = {k: np.array(v) for k, v in first.items()}
    plain = fit_loop.backward
    freeze(held)
    t1 = time.perf_counter()
    est1 = refine_encoder(first, images, targets, groups, fam, cfg, np)
    fit_loop.backward = plain  # phase 2 moves every layer
    check_frozen(start, est1.params, held)
    phases = [report("phase 1 (held)", alice, est1, images, groups, fam, sets, truth, time.perf_counter() - t1)]
    cfg2 = dataclasses.replace(cfg, refine_lr=cfg.refine_lr * args.lr_scale)
    t1 = time.perf_counter()
    est2 = refine_encoder({k: np.array(v) for k, v in est1.params.items()}, images, targets, groups, fam, cfg2, np)
    phases.append(report("phase 2 (free)", alice, est2, images, groups, fam, sets, truth, time.perf_counter() - t1))
    if args.json:
        write_json(args.json, {"benchmark": "unit_hold_oracle", "date": now_utc(), "machine": machine(),
                               "source_fingerprint": sources(__file__, "bn_rule_oracle.py", "tprime_failures_oracle.py",
                                                             "tprime_oracle.py", "tprime_knobs.py",
                                                             "wide_student_oracle.py", "games.py", "tprime_fresh.py"),
                               "settings": {k: v for k, v in vars(args).items() if k != "json"},
                               "extract": {**EXTRACT, "seed": seed, "refine_lr_phase2": cfg2.refine_lr},
                               "seconds": time.perf_counter() - t0, "phases": phases})
    return 0


if __name__ == "__main__":
    sys.exit(main())
