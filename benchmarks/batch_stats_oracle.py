"""Oracle for the last wrong encodings of a finished attack: do BatchNorm statistics decide them?

The final matching encodes every original with T''s BatchNorm statistics averaged over Alice's
batches; Alice encoded each image with its own batch's. This script takes a finished attack's work
dir (its saved ``align``, ``boost``, ``extract`` and ``final`` stages) and, with Alice's answer key
(never given to the attack), finds the encodings the final matching got wrong. For every swapped
pair among them (encoding a took b's original and b took a's) it compares the two ways of matching
the pair, by several distances between T'(x) and the encoding:

* ``avg``: the final stage's own (statistics averaged over the batches);
* ``batch``: each encoding scored with its own batch's statistics, taken from the originals the
  final matching gives that batch (what ``empirical.rescore`` does, with no secret);
* ``batch_row_means``, ``batch_whitened``, ``batch_position_weighted``: the same predictions
  compared by the squared distance of the rows' means, by a distance whitened with the covariance
  of T''s residuals on ``--control`` right pairs of the same batches, and by one weighted by the
  residual power of each position.

As a control it reports how much the batch's own statistics move the distance of right pairs.

Usage::

    python benchmarks/batch_stats_oracle.py --game G --answer-key A.json --work-dir W \\
        --json benchmarks/results/cpu_batch_stats_oracle.json
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import NamedTuple

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_common import machine, now_utc, sources, write_json

from empirical.batch_sample import whole_batches
from empirical.encoder import EncoderConfig, patchify
from empirical.fileio import read_gray
from empirical.game import ENC_DIR, ORIG_DIR, PATH_LIST, _list_originals, read_config
from empirical.tprime import batch_stats, encode_each, mean_batch_stats

CONTROL_STREAM = 0xB5  # which right pairs are the control


def build_parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--game", required=True, help="the game folder the attack ran on")
    ap.add_argument("--answer-key", required=True)
    ap.add_argument("--work-dir", required=True, help="the attack's --work-dir (its newest saved stages are read)")
    ap.add_argument("--control", type=int, default=100, help="right pairs for the control and the residual covariance")
    ap.add_argument("--json", help="write the results here")
    return ap


def newest(work: Path, stage: str) -> Path:
    files = sorted(work.rglob(f"{stage}-*.npz"), key=lambda p: p.stat().st_mtime)
    if not files:
        raise SystemExit(f"no saved stage {stage!r} under {work}")
    return files[-1]


class FinishedAttack(NamedTuple):
    """A finished attack's saved stages beside Alice's answer key (read for the oracles only)."""

    game: Path
    cfg: EncoderConfig
    ids: list[str]  # the originals' ids, in the game's order
    truth: np.ndarray  # (N,) encoding k's true original
    files: dict[str, Path]  # each stage read -> its newest saved file
    order: np.ndarray  # (N, P) the alignment's local permutations
    pi: np.ndarray  # (P,) the global permutation
    params: dict[str, np.ndarray]  # T''s parameters
    matching: np.ndarray  # (N,) the matching of the last stage read
    groups: np.ndarray  # (N,) each encoding's BatchNorm batch

    def target(self, k: int) -> np.ndarray:
        """Encoding k's rows in position order: (P, D)."""
        return np.load(self.game / ENC_DIR / f"{k}.npy")[self.order[k]][self.pi]


def read_finished_attack(game: Path, answer_key: Path, work: Path, last: str, *,
                         all_originals: bool = False) -> FinishedAttack:
    """The newest ``align``, ``boost``, ``extract`` and ``last`` stages under ``work``, with the truth.

    The originals are those the attack matched against: the path list's ids, or every original
    when it ran with ``--all-originals``.
    """
    cfg = read_config(game)
    ids = _list_originals(game / ORIG_DIR, game.resolve())
    if not all_originals:  # the attack's default: only the ids the public path list names as encoded
        listed = set(json.loads((game / PATH_LIST).read_text()))
        ids = [s for s in ids if s in listed]
    where = {s: i for i, s in enumerate(ids)}
    answer = json.loads(Path(answer_key).read_text())
    truth = np.empty(len(answer), np.int64)
    for s, f in answer.items():
        truth[int(Path(f).stem)] = where[s]
    files = {s: newest(work, s) for s in ("align", "boost", "extract", last)}
    ex = np.load(files["extract"])
    return FinishedAttack(game, cfg, ids, truth, files, np.load(files["align"])["order"],
                          np.load(files["boost"])["pi"], {k[2:]: ex[k] for k in ex.files if k.startswith("p.")},
                          np.load(files[last])["matching"], np.arange(len(truth)) // cfg.bn_batch)


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    t0 = time.perf_counter()
    game = Path(args.game)
    run = read_finished_attack(game, Path(args.answer_key), Path(args.work_dir), "final")
    cfg, ids, truth, files, params, groups = run.cfg, run.ids, run.truth, run.files, run.params, run.groups
    final, n, target = run.matching, len(truth), run.target
    wrong = np.flatnonzero(final != truth)
    holder = {int(truth[k]): int(k) for k in wrong}
    pairs = sorted({tuple(sorted((int(k), holder[int(final[k])]))) for k in wrong
                    if int(final[k]) in holder and final[holder[int(final[k])]] == truth[k]})
    cache: dict[int, np.ndarray] = {}

    def img(i: int) -> np.ndarray:
        if i not in cache:
            cache[i] = read_gray(game / ORIG_DIR / ids[i])[None]
        return cache[i]

    involved = sorted({int(groups[k]) for p in pairs for k in p})
    stats = {g: batch_stats(params, patchify(np.stack([img(i) for i in final[groups == g]]), cfg.patch), cfg, np)
             for g in involved}
    sample = whole_batches(groups, cfg.n_patches)  # the batches the final stage averages over
    avg = mean_batch_stats(params, np.stack([img(i) for i in final[sample]]), groups[sample], cfg, np)
    print(f"{len(wrong)} wrong, {len(pairs)} swapped pairs, batches {involved}", flush=True)

    def predict(i: int, st) -> np.ndarray:
        return encode_each(params, img(i)[None], cfg, st, np)[0]

    rng = np.random.default_rng(CONTROL_STREAM)
    right = np.flatnonzero((final == truth) & np.isin(groups, involved))
    control, residuals = [], []
    for k in rng.choice(right, min(args.control, len(right)), replace=False):
        e = target(k)
        own, mean = predict(truth[k], stats[int(groups[k])]), predict(truth[k], avg)
        d_own, d_avg = float(((own - e) ** 2).sum()), float(((mean - e) ** 2).sum())
        control.append({"encoding": int(k), "pixel_std": float(img(truth[k]).std()),
                        "relative_change": (d_own - d_avg) / d_avg})
        residuals.append(own - e)
    res = np.stack(residuals).astype(np.float64)  # (c, P, D)
    cov = np.cov(res.reshape(-1, res.shape[2]), rowvar=False)
    ev, vec = np.linalg.eigh(cov)
    white = vec / np.sqrt(np.maximum(ev, ev.max() * 1e-4))
    power = (res ** 2).mean(axis=(0, 2))  # (P,)
    metrics = {
        "batch": lambda d: float((d ** 2).sum()),
        "batch_row_means": lambda d: float((d.mean(axis=1) ** 2).sum()),
        "batch_whitened": lambda d: float(((d.astype(np.float64) @ white) ** 2).sum()),
        "batch_position_weighted": lambda d: float(((d ** 2).sum(axis=1) / power).sum()),
    }
    out_pairs = []
    for a, b in pairs:
        ea, eb, xa, xb = target(a), target(b), int(truth[a]), int(truth[b])
        rec = {"encodings": [a, b], "batches": [int(groups[a]), int(groups[b])],
               "pixel_std": [float(img(xa).std()), float(img(xb).std())],
               "pixel_mean": [float(img(xa).mean()), float(img(xb).mean())]}
        pa, pb = predict(xa, avg), predict(xb, avg)
        right_sum = float(((pa - ea) ** 2).sum() + ((pb - eb) ** 2).sum())
        swap_sum = float(((pb - ea) ** 2).sum() + ((pa - eb) ** 2).sum())
        rec["avg"] = {"right": right_sum < swap_sum, "swap_gain": (swap_sum - right_sum) / right_sum}
        sa, sb = stats[int(groups[a])], stats[int(groups[b])]
        aa, bb, ba, ab = predict(xa, sa), predict(xb, sb), predict(xb, sa), predict(xa, sb)
        for name, f in metrics.items():
            r_, s_ = f(aa - ea) + f(bb - eb), f(ba - ea) + f(ab - eb)
            rec[name] = {"right": r_ < s_, "swap_gain": (s_ - r_) / r_}
        out_pairs.append(rec)
        print(a, b, {k: (v["right"], round(v["swap_gain"], 4)) for k, v in rec.items() if isinstance(v, dict)},
              flush=True)
    changes = np.abs([c["relative_change"] for c in control])
    summary = {name: sum(p[name]["right"] for p in out_pairs) for name in ("avg", *metrics)}
    print(f"pairs put right (of {len(pairs)}): {summary}; control: |relative change| median "
          f"{np.median(changes):.4f}, max {changes.max():.4f}")
    if args.json:
        write_json(args.json, {
            "benchmark": "batch_stats_oracle", "date": now_utc(), "machine": machine(),
            "source_fingerprint": sources(__file__, "empirical"), "seconds": time.perf_counter() - t0,
            "game": str(game), "stage_files": {k: str(v) for k, v in files.items()},
            "n": n, "wrong": [int(k) for k in wrong], "pairs": out_pairs, "pairs_right": summary,
            "control": control, "control_abs_relative_change_median": float(np.median(changes)),
            "control_abs_relative_change_max": float(changes.max()),
        })
    return 0


if __name__ == "__main__":
    sys.exit(main())
