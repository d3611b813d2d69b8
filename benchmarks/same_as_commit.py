"""Does the attack in the tree compute what an earlier commit computed? Both, side by side, on one game.

A refactor that should change no result (a new data path, a module split) is checked here before
the results it leaves stale are trusted: the script checks out ``--commit`` into a temporary git
worktree, runs :func:`empirical.pipeline.run_attack` from that checkout and from this tree, each in
its own process, on the same in-memory game (bundled images, NeuraCrypt-7 by default), and compares
the local permutations, every stage's matching and figures, the global permutation and T''s
weights. It prints what differs (nothing, for a pure refactor) and writes it to ``--json``.

Usage::

    python benchmarks/same_as_commit.py --commit edb7182 --json benchmarks/results/cpu_same_as_edb7182.json
"""
from __future__ import annotations

import argparse
import pickle
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_common import REPO, machine, now_utc, sources, write_json
from commit_checkout import checked_out, resolve


def build_parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--commit", required=True, help="the earlier commit to compare with")
    ap.add_argument("--n", type=int, default=1100,
                    help="encoded images (default 1100: more than one block of every pass)")
    ap.add_argument("--preset", default="neuracrypt-7")
    ap.add_argument("--hidden", type=int, default=128)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--json", help="write the comparison here")
    ap.add_argument("--child", nargs=2, metavar=("ROOT", "OUT"), help=argparse.SUPPRESS)
    return ap


def child(root: str, out: str, args: argparse.Namespace) -> None:
    """Run the attack with the package found under ``root``; pickle what it found to ``out``."""
    sys.path.insert(0, root)
    for name in [m for m in sys.modules if m == "empirical" or m.startswith("empirical.")]:
        del sys.modules[name]
    import numpy as np

    from empirical.alice import bundled_game
    from empirical.encoder import preset
    from empirical.extraction import ExtractConfig
    from empirical.pipeline import AttackConfig, run_attack
    from empirical.psim import PsimConfig

    assert Path(sys.modules["empirical"].__file__).resolve().is_relative_to(Path(root).resolve())
    # small budgets, so that every stage runs (both fits included) within a minute or two
    cfg = AttackConfig(seed=args.seed, candidates=10, boost_rounds=40,
                       psim=PsimConfig(steps=500, batch=256, width=64, n_encoders=4, images_per_encoder=128),
                       extract=ExtractConfig(steps=60, images_per_step=16, whiten=3e-2, refine_whiten=3e-2,
                                             refine_steps=60, refine_images_per_step=16, seed=args.seed))
    fam = preset(args.preset, image_size=128, patch=16, hidden=args.hidden, bn_batch=100)
    game, _ = bundled_game(fam, args.n, seed=args.seed)
    t0 = time.perf_counter()
    r = run_attack(game, cfg, np, quiet=True)
    key = r.encoder
    weights = {"conv_w": key.conv_w, "mix_w": key.mix_w, **{f"block_w{i}": w for i, w in enumerate(key.block_w)}}
    with open(out, "wb") as f:
        pickle.dump({"order": r.order, "pi": r.pi, "matching": r.matching, "weights": weights,
                     "stages": [(s.name, s.matching, s.info) for s in r.stages],
                     "seconds": time.perf_counter() - t0}, f)


def compare(old: dict, new: dict) -> list[str]:
    import numpy as np

    diffs = []
    for k in ("order", "pi", "matching"):
        if not np.array_equal(old[k], new[k]):
            diffs.append(f"{k}: {int(np.sum(old[k] != new[k]))} entries differ")
    for k in old["weights"]:
        d = float(np.abs(old["weights"][k] - new["weights"][k]).max())
        if d != 0.0:
            diffs.append(f"T' {k}: max difference {d:.3g}")
    for (name, m_old, i_old), (_, m_new, i_new) in zip(old["stages"], new["stages"], strict=True):
        if (m_old is None) != (m_new is None) or (m_old is not None and not np.array_equal(m_old, m_new)):
            diffs.append(f"{name}: matching differs")
        for k in sorted(set(i_old) | set(i_new)):
            a, b = i_old.get(k), i_new.get(k)
            if a != b and not (isinstance(a, float) and isinstance(b, float) and np.isnan(a) and np.isnan(b)):
                diffs.append(f"{name}: {k} {i_old.get(k)!r} -> {i_new.get(k)!r}")
    return diffs


def main() -> int:
    args = build_parser().parse_args()
    if args.child:
        child(*args.child, args)
        return 0
    commit = resolve(args.commit)
    found = {}
    with checked_out(commit, "same-as-") as (tmp, wt):
        for side, root in (("old", wt), ("new", REPO)):
            out = tmp / f"{side}.pkl"
            cmd = [sys.executable, str(Path(__file__).resolve()), "--commit", commit, "--n", str(args.n),
                   "--preset", args.preset, "--hidden", str(args.hidden), "--seed", str(args.seed),
                   "--child", str(root), str(out)]
            subprocess.run(cmd, check=True, cwd=tmp)
            with open(out, "rb") as f:
                found[side] = pickle.load(f)
    diffs = compare(found["old"], found["new"])
    print(f"against {commit[:12]}: " + ("identical (permutations, every stage's matching and figures, T')"
                                        if not diffs else f"{len(diffs)} differences"))
    for d in diffs:
        print(f"  {d}")
    if args.json:
        write_json(args.json, {"benchmark": "same_as_commit", "date": now_utc(), "machine": machine(),
                               "commit": commit, "settings": {k: v for k, v in vars(args).items()
                                                              if k not in ("json", "child", "commit")},
                               "identical": not diffs, "differences": diffs,
                               "seconds": {s: found[s]["seconds"] for s in found},
                               "final_matching_share_equal": bool((found["old"]["matching"]
                                                                   == found["new"]["matching"]).all()),
                               "source_fingerprint": sources(__file__, "commit_checkout.py")})
    return 0 if not diffs else 1


if __name__ == "__main__":
    raise SystemExit(main())
