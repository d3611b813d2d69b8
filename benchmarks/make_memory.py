"""`challenge make`'s peak resident memory, side by side for two or more source trees.

Each case (``--case N SIZE HIDDEN``) is made once per tree in ``--trees`` (this repository by
default; an older commit's code is a ``git worktree add --detach DIR COMMIT`` away), each run in
its own process (``streaming.py``'s child wrapper, with ``PYTHONPATH`` set to the tree) that
reports its own peak. Printed per case: each tree's seconds and peak, the peak over the first
tree's, and whether the trees wrote the same game (every file's bytes, the answer key, the secret
key and its permutations). Made to measure what rounding the images to the 16-bit grid a batch at
a time saves: before, ``make`` held the images, a rounded copy of them and two float64 temporaries
of their size (18 GiB for the challenge's 14,643 images of 256 px).

Usage::

    git worktree add --detach /tmp/before c3fb866
    python benchmarks/make_memory.py --trees /tmp/before . --case 4000 256 64 --case 1000 256 1024 \\
        --json benchmarks/results/cpu_make_memory.json
"""
from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_common import gib, load_average, load_record, machine, now_utc, sources, write_json

from empirical.machine import source_fingerprint

STREAMING = Path(__file__).resolve().parent / "streaming.py"


def build_parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--trees", nargs="+", default=["."], help="source trees to run make from (first: the reference)")
    ap.add_argument("--case", nargs=3, type=int, action="append", metavar=("N", "SIZE", "HIDDEN"),
                    help="images, side in pixels, hidden width (repeatable; default 2000 256 64)")
    ap.add_argument("--preset", default="neuracrypt-7")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--json", help="write the results here")
    return ap


def tree_record(tree: Path) -> dict:
    """The tree's path, git commit, uncommitted files under empirical/ and fingerprint of empirical/."""
    def git(*a):
        return subprocess.run(["git", "-C", str(tree), *a], capture_output=True, text=True).stdout.strip()

    return {"path": str(tree), "commit": git("rev-parse", "HEAD") or None,
            "uncommitted": [ln[3:] for ln in git("status", "--porcelain", "--", "empirical").splitlines()],
            "empirical_fingerprint": source_fingerprint(tree, ("empirical",))}


def digest(paths: list[Path]) -> str:
    """One hash over the files' relative names and bytes (folders walked in sorted order)."""
    h = hashlib.sha256()
    for p in paths:
        files = sorted(f for f in p.rglob("*") if f.is_file()) if p.is_dir() else [p]
        for f in files:
            h.update(f.relative_to(p.parent).as_posix().encode() + b"\0" + f.read_bytes())
    return h.hexdigest()


def make_once(tree: Path, n: int, size: int, hidden: int, args: argparse.Namespace, root: Path) -> dict:
    game = root / "G"
    cmd = [sys.executable, str(STREAMING), "--child", "empirical.challenge", "make", "--out", str(game),
           "--answer-key", str(root / "answer.json"), "--secret-key", str(root / "key.npz"), "--n", str(n),
           "--preset", args.preset, "--image-size", str(size), "--hidden", str(hidden), "--seed", str(args.seed),
           "--quiet"]
    env = {**os.environ, "PYTHONPATH": str(tree)}
    load0 = load_average()
    p = subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=root)
    if p.returncode != 0:
        return {"error": f"exit code {p.returncode}: {p.stderr.strip()[-500:]}"}
    ran = json.loads(p.stdout.strip().splitlines()[-1])
    peak = ran["peak_rss_bytes"]
    out = {"seconds": ran["seconds"], "peak_rss_bytes": peak, "peak_rss_gib": gib(peak), "load": load_record(load0),
           "game_digest": digest([game, root / "answer.json", root / "key.npz", root / "key.npz.perms.npy"])}
    shutil.rmtree(game)
    return out


def main() -> int:
    args = build_parser().parse_args()
    trees = [Path(t).resolve() for t in args.trees]
    cases = args.case or [[2000, 256, 64]]
    started, runs = now_utc(), []
    for n, size, hidden in cases:
        run = {"n": n, "image_size": size, "hidden": hidden,
               "images_gib": gib(4 * n * size * size), "by_tree": []}
        for tree in trees:
            with tempfile.TemporaryDirectory(prefix="make-memory-") as tmp:
                run["by_tree"].append({**tree_record(tree), **make_once(tree, n, size, hidden, args, Path(tmp))})
        ok = [r for r in run["by_tree"] if "error" not in r]
        if len(ok) == len(trees) > 1:
            ref = ok[0]["peak_rss_bytes"]
            run["peak_over_first"] = [r["peak_rss_bytes"] / ref for r in ok]
            run["same_game"] = len({r["game_digest"] for r in ok}) == 1
        runs.append(run)
        print(f"N = {n}, {size} px, hidden {hidden} (images {run['images_gib']:.2f} GiB): " + "; ".join(
            r.get("error") or f"{Path(r['path']).name} ({(r['commit'] or '?')[:7]}) {r['seconds']:.0f} s, "
                              f"peak {r['peak_rss_gib']:.2f} GiB" for r in run["by_tree"])
            + (f"; peak / first: {', '.join(f'x{q:.2f}' for q in run['peak_over_first'])}; "
               f"same game: {run['same_game']}" if "same_game" in run else ""), flush=True)
        if args.json:
            write_json(args.json, {"benchmark": "make_memory", "started": started, "date": now_utc(),
                                   "machine": machine(), "settings": {"preset": args.preset, "seed": args.seed},
                                   "source_fingerprint": sources(__file__, "streaming.py"), "runs": runs})
    return 0 if all("error" not in r for run in runs for r in run["by_tree"]) else 1


if __name__ == "__main__":
    raise SystemExit(main())
