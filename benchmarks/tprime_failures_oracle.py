"""Oracle: which new pictures does T' get wrong by Challenge 2, and how much less error would it take?

On the true pairs of one game (no attack: ``tprime_oracle.true_pairs``) T' is fitted as the attack's
extraction fits it (``fit_encoder`` then ``refine_encoder``). On each scored set (the game's images
and new pictures of its kind) the script compares each image's patch-mean vector under T' with
Alice's, a (n, D) summary each, and reports:

* the images T' gets wrong in either direction of Challenge 2, with their pixel standard deviation
  and mean, T''s error on them and the distance from Alice's vector to its nearest other one (the
  margin T' has), relative to the spread of Alice's vectors;
* the score as T''s errors are scaled by ``s`` (its prediction moved to ``truth + s (est - truth)``),
  which says how much smaller the same errors would have to be for 99%;
* T''s error and the nearest-neighbour margin by quartile of pixel standard deviation, which says
  whether the misses are flat images (small margins) or textured ones (large errors).

With ``--ensemble K`` it fits K T's that differ only in the extraction's seed and diagnoses, after
each one alone, the mean of the first k patch-mean vectors for every k from 2 to K: whether the
errors of separate fits are independent enough for an average to shrink them. ``--extract`` sets
other fields of the extraction's config, as ``tprime_knobs.py``'s variants do (``widths=1024``).

Usage::

    python benchmarks/tprime_failures_oracle.py --json benchmarks/results/cpu_tprime_failures_nc7.json
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_common import machine, now_utc, sources, write_json
from tprime_knobs import add_game_args, parse_fields
from tprime_oracle import true_pairs
from wide_student_oracle import patch_means

SCALES = (1.0, 0.75, 0.5, 0.25)


def squared_distances(est: np.ndarray, truth: np.ndarray) -> np.ndarray:
    """(n, n) squared distances: row i is est[i] against every truth[j]."""
    return (est * est).sum(1)[:, None] - 2 * est @ truth.T + (truth * truth).sum(1)[None, :]


def shares(truth: np.ndarray, est: np.ndarray) -> tuple[float, float]:
    """Challenge 2's two shares (``empirical.nearest.nearest_shares``): est to truth, then truth to est."""
    from empirical.nearest import nearest_shares

    s = nearest_shares(truth, est)
    return s["est_to_nearest_truth"], s["truth_to_nearest_est"]


def diagnose(truth: np.ndarray, est: np.ndarray, x: np.ndarray) -> dict:
    """The misses, the score against the error's scale, and errors and margins by pixel contrast."""
    n = len(truth)
    spread = float(np.sqrt(((truth - truth.mean(0)) ** 2).sum(1).mean()))
    err = np.sqrt(((est - truth) ** 2).sum(1)) / spread  # (n,)
    dt = squared_distances(truth, truth)
    np.fill_diagonal(dt, np.inf)
    margin = np.sqrt(np.maximum(dt.min(1), 0)) / spread  # (n,): to Alice's nearest other vector
    d2, idx = squared_distances(est, truth), np.arange(n)
    wrong = np.flatnonzero((d2.argmin(1) != idx) | (d2.argmin(0) != idx))
    flat = x.reshape(n, -1)
    std, mean = flat.std(1), flat.mean(1)
    misses = [{"image": int(i), "pixel_std": float(std[i]), "pixel_mean": float(mean[i]),
               "error": float(err[i]), "margin": float(margin[i]),
               "confused_with": int(d2[i].argmin()) if d2[i].argmin() != i else int(d2[:, i].argmin())}
              for i in wrong]
    by_scale = {str(s): dict(zip(("share", "share_public"), shares(truth, truth + s * (est - truth)), strict=True))
                for s in SCALES}
    q = np.quantile(std, [0.25, 0.5, 0.75])
    quart = np.searchsorted(q, std)
    by_contrast = [{"quartile": k + 1, "pixel_std_max": float(std[quart == k].max()),
                    "error_median": float(np.median(err[quart == k])),
                    "margin_median": float(np.median(margin[quart == k])),
                    "misses": int(np.isin(np.flatnonzero(quart == k), wrong).sum())} for k in range(4)]
    return {"n": n, "share": shares(truth, est), "error_median": float(np.median(err)),
            "margin_median": float(np.median(margin)), "misses": misses, "by_scale": by_scale,
            "by_contrast": by_contrast}


def main(argv=None) -> int:
    from empirical.encoder import encode
    from empirical.extraction import ExtractConfig, fit_encoder, refine_encoder

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_game_args(ap)
    ap.add_argument("--ensemble", type=int, default=1, help="T's fitted with seeds seed, seed+1, ...; their mean too")
    ap.add_argument("--extract", default="",
                    help="ExtractConfig fields for every fit: field=value,... (e.g. widths=1024)")
    ap.add_argument("--json")
    args = ap.parse_args(argv)
    if args.ensemble < 1:
        ap.error("--ensemble must be at least 1")
    fields = parse_fields(args.extract, f"--extract {args.extract!r}")
    t0 = time.perf_counter()
    fam, images, key, targets, groups, sets = true_pairs(args)
    truths = {name: encode(x, key, np, shuffle=False)[0].mean(axis=1).astype(np.float64)  # (n, D) Alice's
              for name, x in sets.items()}
    preds: dict[str, list] = {name: [] for name in sets}
    out: dict[str, dict] = {}
    for k in range(args.ensemble):
        cfg = ExtractConfig(**{**fields, "seed": args.seed + k})
        params = refine_encoder(fit_encoder(images, targets, groups, fam, cfg, np).params,
                                images, targets, groups, fam, cfg, np).params
        for name, x in sets.items():
            preds[name].append(patch_means(params, x, fam))
            report(f"T' {k}", name, out, diagnose(truths[name], preds[name][-1], x), brief=args.ensemble > 1)
            if k:
                report(f"mean of {k + 1}", name, out, diagnose(truths[name], np.mean(preds[name], axis=0), x),
                       brief=k + 1 < args.ensemble)
    if args.json:
        write_json(args.json, {"benchmark": "tprime_failures_oracle", "date": now_utc(), "machine": machine(),
                               "source_fingerprint": sources(__file__, "tprime_oracle.py", "tprime_fresh.py",
                                                             "tprime_knobs.py", "wide_student_oracle.py", "games.py"),
                               "seconds": time.perf_counter() - t0,
                               "settings": {k: v for k, v in vars(args).items() if k != "json"}, "fits": out})
    return 0


def report(fit: str, name: str, out: dict, r: dict, brief: bool = False) -> None:
    """Print one diagnosis (``brief``: its first two lines) and keep it under ``out[fit][name]``."""
    out.setdefault(fit, {})[name] = r
    print(f"{fit}, {name}: {r['share'][0]:.1%} / {r['share'][1]:.1%}, error {r['error_median']:.3f}, "
          f"margin {r['margin_median']:.3f} (medians, of the spread)")
    print("  errors scaled by " + ", ".join(f"{s}: {v['share']:.1%}/{v['share_public']:.1%}"
                                            for s, v in r["by_scale"].items()))
    if brief:
        return
    for c in r["by_contrast"]:
        print(f"  pixel-std quartile {c['quartile']} (<= {c['pixel_std_max']:.3f}): error {c['error_median']:.3f},"
              f" margin {c['margin_median']:.3f}, misses {c['misses']}")
    for m in r["misses"]:
        print(f"  miss {m['image']}: pixel std {m['pixel_std']:.3f} mean {m['pixel_mean']:.2f}, error "
              f"{m['error']:.3f}, margin {m['margin']:.3f}, confused with {m['confused_with']}")

if __name__ == "__main__":
    sys.exit(main())
