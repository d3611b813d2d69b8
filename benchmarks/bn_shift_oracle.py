"""Oracle: is T''s gap on new pictures the pictures themselves, or the BatchNorm statistics they bring?

NeuraCrypt-7's blocks normalise with the statistics of the batch being encoded. Every batch the
attack fits T' on is drawn from the game's own pictures, so T' learns Alice's encoder only at
statistics close to those; a batch of new pictures brings other statistics, to T and to T' alike.
A T' that fits T on the game's images can still respond to a change of statistics unlike T (it is
wider, its units are not Alice's), and then it errs on every new picture even where the patches
themselves are like the game's.

On the true pairs of one game (``tprime_oracle.true_pairs``, no attack) T' is fitted as extraction
fits it. Then each scored set (the game's images, new pictures) is encoded by T and by T' with
BatchNorm statistics from one of three sources, the same source for both encoders:

* ``own``: each batch's own (how Challenge 2 encodes, and how the attack's scores are made);
* ``game``: one batch of the game's images (the first of Alice's batches), frozen;
* ``pictures``: one batch of the new pictures, frozen;
* ``pictures before block k, game from it``: the new pictures scored with the new pictures'
  statistics in the blocks before k and the game's from block k on (where the shift enters).

First, without T', it measures how far the change of statistics moves Alice's own patch means
(``--shift-only`` stops there: a quick comparison of games). If the new pictures' error falls to
the game's level with the game's statistics, and the game's error rises with the new pictures'
statistics, the gap is the statistics; if the errors follow the images whatever the statistics,
it is the patches. Alice's key is used throughout: an oracle.

Usage::

    python benchmarks/bn_shift_oracle.py --preset neuracrypt-7 --kind split --n 600 --seed 2 \\
        --extract widths=1024 --json benchmarks/results/cpu_bn_shift_oracle_nc7_n600_seed2.json
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_common import machine, now_utc, sources, write_json
from tprime_failures_oracle import diagnose
from tprime_knobs import add_game_args, parse_fields
from tprime_oracle import true_pairs
from wide_student_oracle import patch_means


def stats_of(params: dict, images: np.ndarray, fam) -> list:
    """Per-block BatchNorm statistics of ``params`` on one batch of images (m, C, H, W)."""
    from empirical.encoder import patchify
    from empirical.tprime import batch_stats

    return batch_stats(params, patchify(images, fam.patch), fam, np)


def main(argv=None) -> int:
    from empirical.encoder import encode
    from empirical.extraction import ExtractConfig, fit_encoder, refine_encoder
    from empirical.tprime import params_from_key

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_game_args(ap)
    ap.add_argument("--extract", default="", help="ExtractConfig fields: field=value,... (e.g. widths=1024)")
    ap.add_argument("--shift-only", action="store_true",
                    help="measure only how far the change of statistics moves Alice's encoder (no fit)")
    ap.add_argument("--json")
    args = ap.parse_args(argv)
    fields = parse_fields(args.extract, f"--extract {args.extract!r}")
    t0 = time.perf_counter()
    fam, images, key, targets, groups, sets = true_pairs(args)
    if fam.depth < 1:
        ap.error(f"{args.preset} has no BatchNorm blocks: nothing to measure")
    alice = params_from_key(key, np)
    own = {name: patch_means(alice, x, fam) for name, x in sets.items()}  # (n, D) each, each batch's own statistics
    # Alice's encoder run through T''s forward must be Alice's encoder: check it before using it.
    direct = encode(sets["game"], key, np, shuffle=False)[0].mean(axis=1).astype(np.float64)
    gap = float(np.abs(own["game"] - direct).max() / np.abs(direct).max())
    if gap > 1e-4:
        raise SystemExit(f"Alice's key through T''s forward differs from encode() by {gap:.2e}: cannot measure")
    batches = {"game": images[groups == 0], "pictures": sets["pictures"][:fam.bn_batch]}
    shift = alice_shift(alice, sets, own, {src: stats_of(alice, x, fam) for src, x in batches.items()}, fam)
    record = {"benchmark": "bn_shift_oracle", "date": now_utc(), "machine": machine(),
              "source_fingerprint": sources(__file__, "tprime_failures_oracle.py", "tprime_oracle.py",
                                            "tprime_knobs.py", "wide_student_oracle.py", "games.py"),
              "settings": {k: v for k, v in vars(args).items() if k != "json"}, "bn_batch": fam.bn_batch,
              "alice_shift": shift}
    if args.shift_only:
        if args.json:
            write_json(args.json, {**record, "seconds": time.perf_counter() - t0})
        return 0
    cfg = ExtractConfig(**{**fields, "seed": args.seed})
    t1 = time.perf_counter()
    est = refine_encoder(fit_encoder(images, targets, groups, fam, cfg, np).params,
                         images, targets, groups, fam, cfg, np).params
    fit_seconds = time.perf_counter() - t1
    frozen = {src: (stats_of(alice, x, fam), stats_of(est, x, fam)) for src, x in batches.items()}
    out: dict[str, dict] = {}

    def measure(stats_name: str, name: str, stats: tuple | None) -> None:
        imgs = sets[name]
        truth = own[name] if stats is None else patch_means(alice, imgs, fam, stats[0])
        r = diagnose(truth, patch_means(est, imgs, fam, None if stats is None else stats[1]), imgs)
        r.pop("misses")
        out.setdefault(stats_name, {})[name] = r
        print(f"{name}, statistics {stats_name}: {r['share'][0]:.1%} / {r['share'][1]:.1%}, error "
              f"{r['error_median']:.3f}, margin {r['margin_median']:.3f} (medians, of the spread)", flush=True)

    for stats_name in ("own", *batches):
        for name in sets:
            measure(stats_name, name, frozen.get(stats_name))
    # Where the shift enters: the new pictures' statistics in the blocks before k, the game's from k on.
    for k in range(1, fam.depth):
        mixed = tuple(p[:k] + g[k:] for p, g in zip(frozen["pictures"], frozen["game"], strict=True))
        measure(f"pictures before block {k}, game from it", "pictures", mixed)
    if args.json:
        write_json(args.json, {**record, "seconds": time.perf_counter() - t0, "fit_seconds": fit_seconds,
                               "by_statistics": out})
    return 0


def alice_shift(alice: dict, sets: dict, own: dict, frozen: dict, fam) -> dict:
    """How far freezing the statistics at another batch's moves Alice's own patch means, per set: the
    median over images of the distance to their value with each batch's own statistics, over the
    spread of those values (the same units as T''s errors). The frozen batches are the first
    ``bn_batch`` images of each set, so a set is measured against its own kind's batch only on its
    images after those (another of Alice's batches of the same images, when it has them). ``own[name]``
    (n, D): the set's patch means with each batch's own statistics."""
    out: dict[str, dict] = {}
    for name, imgs in sets.items():
        base = own[name]
        spread = float(np.sqrt(((base - base.mean(0)) ** 2).sum(1).mean()))
        for src, stats in frozen.items():
            rest = slice(fam.bn_batch if src == name else 0, None)  # never the frozen batch itself
            if not len(imgs[rest]):
                continue
            moved = np.sqrt(((patch_means(alice, imgs, fam, stats) - base)[rest] ** 2).sum(1)) / spread
            out.setdefault(name, {})[src] = float(np.median(moved))
            print(f"Alice's patch means of {name}, statistics of a {src} batch instead of their own: moved "
                  f"{out[name][src]:.3f} of the spread (median)", flush=True)
    return out


if __name__ == "__main__":
    sys.exit(main())
