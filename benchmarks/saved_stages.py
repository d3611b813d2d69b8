"""How far a long attack got: score the stages it saved, without running or resuming it.

``python -m empirical.attack --work-dir W`` saves every finished stage under ``W/<game digest>/``
(``empirical.store``). A run at the challenge's size can be stopped before its end, or still be
running; this reads the saved stage files as they are and prints, per stage, its seconds, its
own record (p-sim's balanced accuracy and the like) and, for a stage that holds a matching, the
share of encodings matched to their true original by Alice's answer key (and, given her
permutations, the share of local permutations the alignment recovered). Only the game's file
listing is read (no image, no encoding), so it takes seconds beside a running attack.

Usage::

    python benchmarks/saved_stages.py --work-dir W --game G --answer-key A --json out.json
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_common import machine, now_utc, write_json

BULKY = ("roc_fpr", "roc_tpr")  # per-threshold curves: left out of the printed and written record


def truth_of(game_dir: Path, answer_path: Path) -> np.ndarray:
    """(N,) index into the game's sorted originals of the original behind each encoding file."""
    from empirical.fileio import resolved
    from empirical.game import ENC_DIR, ORIG_DIR, _list_encodings, _list_originals

    real = resolved(game_dir)
    ids = _list_originals(game_dir / ORIG_DIR, real)  # the order read_game gives the originals
    files = _list_encodings(game_dir / ENC_DIR, real)
    answer = json.loads(answer_path.read_text())
    by_file = {f: i for i, f in answer.items()}
    index = {i: a for a, i in enumerate(ids)}
    return np.array([index[by_file[f]] for f in files])


def main(argv=None) -> int:
    from empirical.evaluate import local_perm_share
    from empirical.stages import STAGES

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--work-dir", required=True, help="the attack's --work-dir (its one game folder is read)")
    ap.add_argument("--game", required=True, help="the game folder attacked")
    ap.add_argument("--answer-key", required=True, help="Alice's answer key of that game")
    ap.add_argument("--perms", help="Alice's permutations (<secret-key>.perms.npy): also score the local permutations")
    ap.add_argument("--json")
    args = ap.parse_args(argv)
    folders = [p for p in Path(args.work_dir).iterdir() if p.is_dir()]
    if len(folders) != 1:
        ap.error(f"{args.work_dir} holds {len(folders)} game folders; name the work dir of one game")
    truth = truth_of(Path(args.game), Path(args.answer_key))
    perms = np.load(args.perms) if args.perms else None
    rows = []
    for name in STAGES:
        for path in sorted(folders[0].glob(f"{name}-*.npz")):
            with np.load(path, allow_pickle=False) as z:
                meta = json.loads(str(z["_meta"]))
                matching = z["matching"] if "matching" in z.files else None
                order = z["order"] if "order" in z.files else None
            info = {k: v for k, v in meta.get("info", {}).items() if k not in BULKY}
            row = {"stage": name, "file": path.name, "seconds": meta.get("seconds"), "info": info}
            if matching is not None:
                row["share_matched"] = float(np.mean(matching == truth))
            if order is not None and perms is not None:
                row["local_perm_share"] = local_perm_share(order, perms)[0]
            rows.append(row)
            share = f", {row['share_matched']:.2%} matched" if "share_matched" in row else ""
            if "local_perm_share" in row:
                share += f", local permutations {row['local_perm_share']:.2%} right"
            print(f"{name}: {row['seconds']:.0f} s{share}; {json.dumps(info)[:200]}", flush=True)
    if args.json:
        write_json(args.json, {"benchmark": "saved_stages", "date": now_utc(), "machine": machine(),
                               "settings": {k: v for k, v in vars(args).items() if k != "json"}, "stages": rows})
    return 0


if __name__ == "__main__":
    sys.exit(main())
