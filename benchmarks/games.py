"""The complete attack through games on disk, family by family, scored by the referee's command.

For each family and each image source this makes a game with ``python -m empirical.challenge
make`` (N encoded images plus decoy originals that were never encoded), attacks it with
``python -m empirical.attack --game`` (which reads only GAME/), and scores the submission with
``python -m empirical.challenge score``. Alice's keys and answer keys stay in a separate folder
and reach the attack command only as the ``--answer-key/--secret-key`` it uses after the attack
has returned, for its table.

Image sources: ``bundled`` (the package's real images) and ``synthetic``, images of a kind the
bundled set does not contain (smooth random fields of several correlation lengths with a few
flat discs and faint noise), generated here from ``--seed``.

Usage::

    python benchmarks/games.py --json benchmarks/results/cpu_games.json
    python benchmarks/games.py --presets neuracrypt-47 --sources bundled --json benchmarks/results/cpu_games_nc47.json
"""
from __future__ import annotations

import argparse
import json
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_common import load_average, load_record, machine, now_utc, sources, write_json

PRESETS = ("linear", "neuracrypt-2-noshuffle", "neuracrypt-2", "neuracrypt-7")


def synthetic_images(n: int, size: int, seed: int) -> np.ndarray:
    """``n`` grey images in [0, 1]: a smooth random field, one to four flat discs, faint noise."""
    from scipy.ndimage import gaussian_filter

    rng = np.random.default_rng([seed, 0x5EED])
    yy, xx = np.mgrid[:size, :size]
    out = np.empty((n, size, size), np.float32)
    for i in range(n):
        a = gaussian_filter(rng.standard_normal((size, size)), sigma=rng.uniform(2, 8))
        a = (a - a.min()) / (np.ptp(a) + 1e-9)
        for _ in range(rng.integers(1, 5)):
            cy, cx = rng.uniform(0, size, 2)
            a[(yy - cy) ** 2 + (xx - cx) ** 2 < rng.uniform(5, 30) ** 2] = rng.uniform()
        out[i] = np.clip(a + rng.normal(0, 0.01, a.shape), 0, 1)
    return out


def _cmd(args: list, log) -> tuple:
    t0 = time.perf_counter()
    proc = subprocess.run([sys.executable, "-m", *args], capture_output=True, text=True)
    log.write(f"$ python -m {' '.join(args)}\n{proc.stdout}{proc.stderr}\n")
    log.flush()
    if proc.returncode != 0:
        raise RuntimeError(f"python -m {' '.join(args[:2])} failed ({proc.returncode}):\n{proc.stderr[-2000:]}")
    return proc.stdout, time.perf_counter() - t0


def one_game(preset: str, source: str, args: argparse.Namespace, work: Path, log) -> dict:
    tag = f"{preset}-{source}"
    load0 = load_average()
    data = "bundled"
    if source == "synthetic":
        data = str(work / "synthetic.npy")
        if not Path(data).exists():
            np.save(data, synthetic_images(args.n + args.extra, args.image_size, args.seed))
    game, secret = work / f"game-{tag}", work / "secret"
    secret.mkdir(exist_ok=True)
    ans, key = secret / f"answers-{tag}.json", secret / f"key-{tag}.npz"
    sub, res = work / f"submission-{tag}.json", work / f"attack-{tag}.json"
    _, t_make = _cmd(["empirical.challenge", "make", "--out", str(game), "--answer-key", str(ans),
                      "--secret-key", str(key), "--n", str(args.n), "--extra", str(args.extra), "--preset", preset,
                      "--image-size", str(args.image_size), "--hidden", str(args.hidden), "--data", data,
                      "--seed", str(args.seed), "--quiet"], log)
    _, t_attack = _cmd(["empirical.attack", "--game", str(game), "--submission", str(sub), "--answer-key", str(ans),
                        "--secret-key", str(key), "--json", str(res), "--seed", str(args.seed), "--quiet"], log)
    out, _ = _cmd(["empirical.challenge", "score", "--answer-key", str(ans), "--submission", str(sub)], log)
    m = re.search(r"score: ([0-9.]+)", out)
    attack = json.loads(res.read_text())
    row = {"preset": preset, "source": source, "n_encoded": attack["config"]["n_encoded"],
           "n_originals_in_game": attack["config"]["n_originals_in_game"],
           "referee_score": float(m.group(1)) if m else None, "referee_output": out.strip(),
           "stages": attack["stages"], "psim": {k: attack["psim"].get(k) for k in ("balanced_accuracy", "auc")},
           "fresh_images": attack["fresh_images"], "attack_seconds": attack["total_seconds"],
           "attack_command_seconds": t_attack, "make_seconds": t_make, "load": load_record(load0)}
    return row


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--presets", nargs="+", default=list(PRESETS), help="families (default: %(default)s)")
    ap.add_argument("--sources", nargs="+", default=["bundled", "synthetic"], choices=("bundled", "synthetic"))
    ap.add_argument("--n", type=int, default=1000, help="encoded images per game (default 1000)")
    ap.add_argument("--extra", type=int, default=50, help="decoy originals per game (default 50)")
    ap.add_argument("--image-size", type=int, default=128, help="default 128 (64 patches of 16 x 16)")
    ap.add_argument("--hidden", type=int, default=256)
    ap.add_argument("--seed", type=int, default=3)
    ap.add_argument("--work", type=Path, help="keep games, keys and logs here (default: a temporary folder)")
    ap.add_argument("--json", help="write the results here")
    args = ap.parse_args(argv)

    started, mach = now_utc(), machine()
    tmp = None if args.work else tempfile.TemporaryDirectory()
    work = args.work or Path(tmp.name)
    work.mkdir(parents=True, exist_ok=True)
    rows = []
    with open(work / "commands.log", "a") as log:
        for preset in args.presets:
            for source in args.sources:
                print(f"{preset}, {source} images ...", file=sys.stderr, flush=True)
                row = one_game(preset, source, args, work, log)
                rows.append(row)
                stages = ", ".join(f"{s['stage']} {s['share_matched']:.1%}" for s in row["stages"]
                                   if isinstance(s["share_matched"], float))
                print(f"  referee score {row['referee_score']:.4f}; {stages}; attack {row['attack_seconds']:.0f} s",
                      file=sys.stderr, flush=True)
    print(f"\n{'family':<24}{'images':<11}{'referee score':>14}{'first':>8}{'attack s':>10}{'T fresh':>9}")
    for r in rows:
        first = next((s["share_matched"] for s in r["stages"] if s["stage"].startswith("i-sim")), None)
        fresh = r["fresh_images"]["share"] if r["fresh_images"] else float("nan")
        print(f"{r['preset']:<24}{r['source']:<11}{r['referee_score']:>14.4f}{first:>8.1%}"
              f"{r['attack_seconds']:>10.0f}{fresh:>9.1%}")
    if args.json:
        # the work folder is where the files went, not a setting of the measurement: left out (a local path)
        write_json(args.json, {"benchmark": "games", "date": now_utc(), "started": started, "machine": mach,
                               "source_fingerprint": sources(__file__),
                               "settings": {k: v for k, v in vars(args).items() if k not in ("json", "work")},
                               "games": rows})
    if tmp is not None:
        tmp.cleanup()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
