"""Oracle: does averaging several independently fitted T's score better on new pictures than any one?

``bn_rule_oracle.py`` keeps each T' it fits in an ``.npz``. T's fitted from different starts or
shapes on the same true pairs miss different new pictures (on NeuraCrypt-7 seed 2, N = 600, a wide
T' misses mostly in the flattest quarter, a random-start one in the middle two), so part of
their error is each fit's own. This oracle scores each member and the mean of the members' patch
means (each normalised with the batch's own statistics, as the attack encodes) on the game's
images and on new pictures, both directions of the Challenge 2 measure, against Alice's encodings:
if the mean scores higher, extraction could fit several T's and average them.

Members must be fitted on the same game (``--preset --kind --n --hidden --seed``, as given here);
each ``--params`` file's shape is read from the file. Alice's key makes the truth: an oracle.

Usage::

    python benchmarks/ensemble_oracle.py --n 600 --seed 2 \\
        --params /tmp/wide.npz /tmp/narrow1.npz /tmp/random1.npz \\
        --json benchmarks/results/cpu_ensemble_oracle_nc7_n600_seed2.json
"""
from __future__ import annotations

import argparse
import itertools
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_common import machine, now_utc, sources, write_json
from bn_rule_oracle import means_under, rules
from tprime_failures_oracle import diagnose
from tprime_knobs import add_game_args
from tprime_oracle import true_pairs
from wide_student_oracle import patch_means


def main(argv=None) -> int:
    from empirical.tprime import mean_batch_stats, params_from_key

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_game_args(ap)
    ap.add_argument("--params", nargs="+", required=True, help=".npz files of T's fitted on this game "
                    "(bn_rule_oracle.py --params)")
    ap.add_argument("--json")
    args = ap.parse_args(argv)
    if len(args.params) < 2:
        ap.error("--params: an ensemble needs at least two T's")
    missing = [p for p in args.params if not Path(p).exists()]
    if missing:
        ap.error(f"--params: no such file: {', '.join(missing)}")
    t0 = time.perf_counter()
    fam, images, key, _, groups, sets = true_pairs(args)
    alice = params_from_key(key, np)
    truth = {name: patch_means(alice, x, fam) for name, x in sets.items()}  # each batch's own statistics
    own = rules()["own"]
    preds: dict[str, dict[str, np.ndarray]] = {}
    for path in args.params:
        est = dict(np.load(path))
        game = [(np.asarray(m), np.asarray(v)) for m, v in mean_batch_stats(est, images, groups, fam, np)]
        preds[Path(path).stem] = {name: means_under(est, x, fam, game, own) for name, x in sets.items()}
    out: dict[str, dict] = {}
    members = list(preds)
    combos = [(m,) for m in members] + [c for r in range(2, len(members) + 1)
                                        for c in itertools.combinations(members, r)]
    for combo in combos:
        label = " + ".join(combo)
        for name in sets:
            mean = np.mean([preds[m][name] for m in combo], axis=0)  # (n, D): the members' average
            r = diagnose(truth[name], mean, sets[name])
            r["misses"] = [m["image"] for m in r["misses"]]
            out.setdefault(label, {})[name] = r
        pic = out[label]["pictures"]
        print(f"{label}: new pictures {pic['share'][0]:.1%} / {pic['share'][1]:.1%}, error "
              f"{pic['error_median']:.3f}; game's images {out[label]['game']['share'][0]:.1%} / "
              f"{out[label]['game']['share'][1]:.1%}", flush=True)
    if args.json:
        write_json(args.json, {"benchmark": "ensemble_oracle", "date": now_utc(), "machine": machine(),
                               "source_fingerprint": sources(__file__, "bn_rule_oracle.py", "tprime_failures_oracle.py",
                                                             "tprime_oracle.py", "wide_student_oracle.py", "games.py"),
                               "settings": {k: v for k, v in vars(args).items() if k != "json"},
                               "seconds": time.perf_counter() - t0, "by_members": out})
    return 0


if __name__ == "__main__":
    sys.exit(main())
