"""Oracle: does a second refit at a lower learning rate lift the attack's T' on new pictures?

``unit_hold_oracle.py`` refitted T' a second time, every layer free, at a quarter of the refit's
learning rate, after a first refit that held its first layers. With a random start's first layers
held (the control) that second refit brought the NeuraCrypt-7 seed-2 games' new pictures from
97.8% / 99.2% to 99.6% / 99.2% (N = 600) and from 97.4% / 99.0% to 99.4% / 99.0% (N = 1,000), and
lowered the held-back error by a sixth. This asks whether the same second refit (a warm restart of
the refit's learning-rate schedule) does that for T' as extraction fits it: the robust fit, then the
refit, on one game's true pairs (``tprime_oracle.true_pairs``), then ``--rounds`` more refits, each
at ``--lr-scale`` times the previous one's peak learning rate, each keeping its best step on the
held-back pairs. After every round: the held-back error (what the attacker sees), Challenge 2 on the
game's images and on new pictures in both directions, and how nearly T' holds Alice's units (her key
is read only to score: an oracle of the truth, not of the method).

Usage::

    python benchmarks/restart_oracle.py --n 600 --seed 2 --extract widths=1024 \\
        --json benchmarks/results/cpu_restart_oracle_nc7_n600_seed2_wide.json
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
from tprime_knobs import add_game_args, parse_fields
from tprime_oracle import true_pairs
from unit_hold_oracle import report
from wide_student_oracle import patch_means


def main(argv=None) -> int:
    from empirical.extraction import ExtractConfig, fit_encoder, refine_encoder
    from empirical.tprime import params_from_key

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_game_args(ap)
    ap.add_argument("--extract", default="", help="ExtractConfig fields: field=value,... (e.g. widths=1024)")
    ap.add_argument("--rounds", type=int, default=1, help="refits after extraction's own (default 1)")
    ap.add_argument("--lr-scale", type=float, default=0.25, help="each round's peak learning rate over the "
                    "previous one's (default 0.25)")
    ap.add_argument("--json")
    args = ap.parse_args(argv)
    if args.rounds < 1 or args.lr_scale <= 0:
        ap.error("--rounds must be >= 1 and --lr-scale > 0")
    fields = parse_fields(args.extract, f"--extract {args.extract!r}")
    t0 = time.perf_counter()
    fam, images, key, targets, groups, sets = true_pairs(args)
    alice = params_from_key(key, np)
    truth = {name: patch_means(alice, x, fam) for name, x in sets.items()}
    cfg = ExtractConfig(**{"seed": args.seed, **fields})
    t1 = time.perf_counter()
    first = fit_encoder(images, targets, groups, fam, cfg, np)
    est = refine_encoder(first.params, images, targets, groups, fam, cfg, np)
    rounds = [report("extraction (fit, refit)", alice, est, images, groups, fam, sets, truth,
                     time.perf_counter() - t1)]
    for r in range(1, args.rounds + 1):
        cfg = dataclasses.replace(cfg, refine_lr=cfg.refine_lr * args.lr_scale)
        t1 = time.perf_counter()
        est = refine_encoder({k: np.array(v) for k, v in est.params.items()}, images, targets, groups, fam, cfg, np)
        rounds.append(report(f"round {r} (lr {cfg.refine_lr:.2g})", alice, est, images, groups, fam, sets, truth,
                             time.perf_counter() - t1))
    if args.json:
        write_json(args.json, {"benchmark": "restart_oracle", "date": now_utc(), "machine": machine(),
                               "source_fingerprint": sources(__file__, "unit_hold_oracle.py", "bn_rule_oracle.py",
                                                             "tprime_failures_oracle.py", "tprime_oracle.py",
                                                             "tprime_knobs.py", "wide_student_oracle.py", "games.py",
                                                             "tprime_fresh.py"),
                               "settings": {k: v for k, v in vars(args).items() if k != "json"},
                               "seconds": time.perf_counter() - t0, "rounds": rounds})
    return 0


if __name__ == "__main__":
    sys.exit(main())
