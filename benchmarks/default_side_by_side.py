"""The default command, this tree against an earlier commit, timed side by side on one machine.

This virtual machine runs some days a third slower than others, so a default run's seconds are
compared only with a run of the other code made in the same sitting. The script checks
``--commit`` out into a temporary git worktree and runs ``python -m empirical.attack --seed S``
(the default game and attack) from that checkout and from this tree, alternating which goes first
in each round, ``--rounds`` times per seed. It prints each stage's median seconds for both and the
ratio (this tree over the commit), and checks that both found the same thing: every stage's share
matched and note, and T''s Challenge 2 scores. A change that should only be faster must show no
difference there.

Usage::

    python benchmarks/default_side_by_side.py --commit 54d7e7f --seeds 0 1 --rounds 2 \\
        --json benchmarks/results/cpu_default_side_by_side_54d7e7f.json
"""
from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_common import REPO, machine, now_utc, sources, write_json
from commit_checkout import checked_out, resolve


def run_default(root: Path, seed: int, out: Path) -> dict:
    """One default attack run from the package under ``root``; its ``--json`` record."""
    subprocess.run([sys.executable, "-m", "empirical.attack", "--seed", str(seed), "--quiet", "--json", str(out)],
                   cwd=root, check=True, stdout=subprocess.DEVNULL)
    return json.loads(out.read_text())


def findings(rec: dict) -> dict:
    """What a run found, without its timings: each stage's share and note, and T''s fresh-image scores."""
    fresh = rec.get("fresh_images") or {}
    return {"stages": [(s["stage"], s["share_matched"], s["note"]) for s in rec["stages"]],
            "fresh": (fresh.get("share"), fresh.get("share_public"))}


def stage_seconds(rec: dict) -> dict:
    out = {s["stage"]: s["seconds"] for s in rec["stages"] if s["seconds"] is not None}
    out["total"] = rec["total_seconds"]
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--commit", required=True, help="the earlier commit to time against")
    ap.add_argument("--seeds", type=int, nargs="+", default=[0], help="seeds of the default run (default 0)")
    ap.add_argument("--rounds", type=int, default=2, help="runs of each side per seed (default 2)")
    ap.add_argument("--json", help="write the comparison here")
    args = ap.parse_args(argv)
    if args.rounds < 1:
        ap.error("--rounds must be at least 1")
    commit = resolve(args.commit)
    runs: dict[str, list[dict]] = {"commit": [], "tree": []}
    same = True
    with checked_out(commit, "side-by-side-") as (tmp, wt):
        for seed in args.seeds:
            for r in range(args.rounds):
                order = (("commit", wt), ("tree", REPO)) if r % 2 == 0 else (("tree", REPO), ("commit", wt))
                found = {}
                for side, root in order:
                    rec = run_default(root, seed, tmp / f"{side}.json")
                    found[side] = findings(rec)
                    runs[side].append({"seed": seed, "round": r, "seconds": stage_seconds(rec),
                                       "load": rec.get("load"), "fresh": found[side]["fresh"]})
                    print(f"seed {seed}, round {r}, {side}: {rec['total_seconds']:.1f} s", flush=True)
                if found["commit"] != found["tree"]:
                    same = False
                    print(f"seed {seed}, round {r}: the two found different things", flush=True)
    medians = {side: {k: statistics.median(run["seconds"][k] for run in rs) for k in rs[0]["seconds"]}
               for side, rs in runs.items()}
    print(f"{'stage':<28}{'commit':>9}{'tree':>9}{'ratio':>8}")
    for k in medians["commit"]:
        a, b = medians["commit"][k], medians["tree"].get(k, float("nan"))
        print(f"{k:<28}{a:9.1f}{b:9.1f}{b / a if a else float('nan'):8.3f}")
    print("same findings (every stage's share and note, T''s scores): " + ("yes" if same else "NO"))
    if args.json:
        write_json(args.json, {"benchmark": "default_side_by_side", "date": now_utc(), "machine": machine(),
                               "commit": commit, "settings": {"seeds": args.seeds, "rounds": args.rounds},
                               "runs": runs, "median_seconds": medians, "same_findings": same,
                               "source_fingerprint": sources(__file__, "commit_checkout.py")})
    return 0 if same else 1


if __name__ == "__main__":
    raise SystemExit(main())
