"""Does T' score lower in the public direction because its outputs are shrunk towards their mean?

Challenge 2's public script asks, for each fresh image x, whether T(x) is nearest to T'(x) among
all submitted T'(x'). Where T''s patch means spread less than T's (a least-squares fit predicts
the mean of what it cannot tell apart), the submitted vectors crowd the middle and a few of them
are nearest to many T(x): the public direction falls while T'(x) to the nearest T(x') holds.

This oracle attacks one game in memory (as ``tprime_fresh.py`` does), then stretches T''s output
about its mean over the game's images by a factor c (the last layer scaled: the same
architecture, a legitimate submission) and scores Challenge 2 on new pictures in both
directions for several c. One of them is the attacker's own estimate, made without Alice's key:
the ratio of the spread of the matched encodings' patch means to that of T''s on the same
originals (over all matched pairs, each encoded in Alice's BatchNorm batches).

Usage::

    python benchmarks/tprime_spread_oracle.py --preset neuracrypt-2 --n 600 --hidden 512 --widths 1024 \\
        --json benchmarks/results/cpu_tprime_spread_oracle_nc2_h512.json
"""
from __future__ import annotations

import argparse
import dataclasses
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_common import load_record, machine, now_utc, sources, write_json
from tprime_fresh import attack_game, fresh_sets, patch_means


def stretched(key, c: float, centre: np.ndarray):
    """``key`` with its output moved to ``centre + c * (output - centre)``: only the last layer changes."""
    return dataclasses.replace(key, mix_w=(c * key.mix_w).astype(np.float32),
                               mix_b=(c * key.mix_b + (1 - c) * centre).astype(np.float32))


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], epilog=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--preset", default="neuracrypt-2")
    ap.add_argument("--kind", default="split", choices=("split", "synthetic"))
    ap.add_argument("--n", type=int, default=600)
    ap.add_argument("--hidden", type=int, default=512)
    ap.add_argument("--seeds", type=int, nargs="+", default=[0])
    ap.add_argument("--widths", default="family", help="T''s widths, as tprime_fresh.py's --tprime-widths")
    ap.add_argument("--stretch", type=float, nargs="+", default=[1.0, 1.02, 1.05])
    ap.add_argument("--fresh", type=int, default=500)
    ap.add_argument("--image-size", type=int, default=128)
    ap.add_argument("--json", type=Path)
    args = ap.parse_args(argv)
    from empirical.evaluate import challenge2_score, share_matched, true_matching

    xp = np
    started, runs = now_utc(), []
    for seed in args.seeds:
        game, secrets, res, seconds, load0 = attack_game(args.preset, args.kind, args.n, args.hidden, seed,
                                                         args.widths, args.image_size, xp)
        # --- the attacker's estimate of the stretch: matched encodings against T' on their originals ---
        a = np.asarray(game.encodings, np.float64).mean(axis=1)  # (N, D) Alice's patch means, as published
        b = patch_means(game.originals[res.matching], res.encoder, xp)  # T' on the matched originals
        centre = b.mean(axis=0)
        c_est = float(np.sqrt(a.var(axis=0).sum() / b.var(axis=0).sum()))
        # --- Alice's secrets from here on ---------------------------------------------------------------
        truth = true_matching(game, secrets)
        sets = fresh_sets(args.kind, game.originals, seed, args.fresh, args.image_size)
        scores = []
        for c in sorted({*args.stretch, round(c_est, 4)}):
            key = stretched(res.encoder, c, centre)
            s = {name: challenge2_score(secrets.key, key, sets[name], xp, seed=1) for name in ("game", "pictures")}
            scores.append({"stretch": c, "estimated": c == round(c_est, 4), **s})
            print(f"{args.preset} N {args.n} D {args.hidden} seed {seed} widths {args.widths}: stretch {c:.4f}"
                  f"{' (estimated)' if scores[-1]['estimated'] else '':>12}  new pictures "
                  f"{s['pictures']['share']:.1%} / {s['pictures']['share_public']:.1%}  game "
                  f"{s['game']['share']:.1%} / {s['game']['share_public']:.1%}", flush=True)
        runs.append({"seed": seed, "final_share_matched": share_matched(res.matching, truth),
                     "attack_seconds": seconds, "stretch_estimated": c_est, "scores": scores,
                     "load": load_record(load0)})
        if args.json:
            write_json(args.json, {"benchmark": "tprime_spread_oracle", "started": started, "date": now_utc(),
                                   "machine": machine(), "source_fingerprint": sources(__file__, "tprime_fresh.py",
                                                                                       "games.py"),
                                   "settings": {k: (str(v) if isinstance(v, Path) else v) for k, v in
                                                vars(args).items()}, "runs": runs})
    return 0


if __name__ == "__main__":
    sys.exit(main())
