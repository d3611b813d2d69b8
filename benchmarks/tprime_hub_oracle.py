"""Which images does T' lose in the public direction of Challenge 2, and what would win them back?

Challenge 2 is scored two ways: T'(x) to the nearest T(x') (the attack's) and T(x) to the nearest
T'(x') (the public script's). At N = 600 on bundled-style images, NeuraCrypt-2's wide T' (before
extraction's first-layer decay, ``ExtractConfig.decay``, which this oracle led to) finds
T(x) from T'(x) for every new picture while 3-4% of the T(x) have another image's T'(x') nearer.
With e(x) = T'(x) - T(x) (patch means), a public miss of x taken by x' needs
|e(x')| < |T(x) - T(x') + e(x')| < |e(x)| whenever x' itself is found: x's error is larger than
its neighbour's. This oracle attacks one game in memory (as ``tprime_fresh.py`` does) and, on the
new pictures, measures:

* the misses in each direction, with the size of each image's error (in units of the median
  distance from a T(x) to its nearest other T(x')), its neighbour's, and the image's contrast;
* how many T(x) each T'(x') is nearest to (hubs);
* how the error's size follows the image's contrast and its distance to the game's images;
* counterfactual scores (Alice's key needed, so oracle only): every error scaled by c; the
  set's mean error removed; the largest errors (top 5%) cut to the median.

Usage::

    python benchmarks/tprime_hub_oracle.py --preset neuracrypt-2 --n 600 --widths 1024 \\
        --json benchmarks/results/cpu_tprime_hub_oracle_nc2.json
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_common import load_record, machine, now_utc, sources, write_json
from tprime_fresh import attack_game, fresh_sets, patch_means


def sq_dist(u: np.ndarray, v: np.ndarray) -> np.ndarray:
    return (u * u).sum(1)[:, None] - 2 * u @ v.T + (v * v).sum(1)[None, :]  # (n, m)


def scores(a: np.ndarray, b: np.ndarray) -> tuple[float, float]:
    """Challenge 2's two shares for truths ``a`` and estimates ``b`` (:func:`empirical.nearest.nearest_shares`)."""
    from empirical.nearest import nearest_shares

    sh = nearest_shares(a, b)
    return sh["est_to_nearest_truth"], sh["truth_to_nearest_est"]


def anatomy(a: np.ndarray, b: np.ndarray, contrast: np.ndarray, dist_to_game: np.ndarray) -> dict:
    """Misses in both directions and what sets the missed images apart (see the module's docstring)."""
    n = len(a)
    idx = np.arange(n)
    tt = sq_dist(a, a)
    np.fill_diagonal(tt, np.inf)
    spacing = np.sqrt(tt.min(1))  # each T(x)'s distance to its nearest other T(x')
    unit = float(np.median(spacing))
    err = np.linalg.norm(b - a, axis=1) / unit
    d = sq_dist(b, a)
    est_hit = d.argmin(1)  # the truth each T'(x) lands nearest
    pub_hit = d.argmin(0)  # the T'(x') each T(x) finds nearest
    hub = np.bincount(pub_hit, minlength=n)
    miss_pub = np.flatnonzero(pub_hit != idx)
    miss_est = np.flatnonzero(est_hit != idx)

    def q(v):
        return [round(float(x), 3) for x in np.quantile(v, [0.1, 0.5, 0.9])] if len(v) else []

    ranks = lambda v: np.argsort(np.argsort(v)) / max(len(v) - 1, 1)  # noqa: E731
    return {
        "unit_median_spacing": unit,
        "misses_public": len(miss_pub), "misses_est": len(miss_est),
        "error_all_q10_50_90": q(err),
        "error_of_public_misses": q(err[miss_pub]),
        "error_of_their_thieves": q(err[pub_hit[miss_pub]]),
        "spacing_of_public_misses": q(spacing[miss_pub] / unit),
        "thief_also_found_itself": (float(np.mean(est_hit[pub_hit[miss_pub]] == pub_hit[miss_pub]))
                                    if len(miss_pub) else None),
        "error_rank_of_public_misses": q(ranks(err)[miss_pub]),
        "contrast_rank_of_public_misses": q(ranks(contrast)[miss_pub]),
        "spacing_rank_of_public_misses": q(ranks(spacing)[miss_pub]),
        "hub_counts": {int(k): int(v) for k, v in zip(*np.unique(hub, return_counts=True), strict=True)},
        "spearman_error_contrast": float(np.corrcoef(ranks(err), ranks(contrast))[0, 1]),
        "spearman_error_spacing": float(np.corrcoef(ranks(err), ranks(spacing))[0, 1]),
        "spearman_error_dist_to_game": float(np.corrcoef(ranks(err), ranks(dist_to_game))[0, 1]),
    }


def counterfactuals(a: np.ndarray, b: np.ndarray) -> dict:
    e = b - a
    out = {f"scaled_{c}": scores(a, a + c * e) for c in (0.9, 0.75, 0.5)}
    out["mean_error_removed"] = scores(a, b - e.mean(0))
    size = np.linalg.norm(e, axis=1)
    cap = np.quantile(size, 0.5)
    top = size > np.quantile(size, 0.95)
    capped = e.copy()
    capped[top] *= (cap / size[top])[:, None]
    out["top5pct_errors_cut_to_median"] = scores(a, a + capped)
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], epilog=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--preset", default="neuracrypt-2")
    ap.add_argument("--kind", default="split", choices=("split", "synthetic"))
    ap.add_argument("--n", type=int, default=600)
    ap.add_argument("--hidden", type=int, default=256)
    ap.add_argument("--seeds", type=int, nargs="+", default=[0])
    ap.add_argument("--widths", default="1024", help="T''s widths, as tprime_fresh.py's --tprime-widths")
    ap.add_argument("--fresh", type=int, default=500)
    ap.add_argument("--image-size", type=int, default=128)
    ap.add_argument("--save", type=Path, help="also save the patch means and image statistics here (.npz)")
    ap.add_argument("--json", type=Path)
    args = ap.parse_args(argv)
    from empirical.evaluate import share_matched, true_matching

    xp = np
    started, runs = now_utc(), []
    for seed in args.seeds:
        game, secrets, res, seconds, load0 = attack_game(args.preset, args.kind, args.n, args.hidden, seed,
                                                         args.widths, args.image_size, xp)
        # --- Alice's secrets from here on ---------------------------------------------------------------
        truth = true_matching(game, secrets)
        sets = fresh_sets(args.kind, game.originals, seed, args.fresh, args.image_size)
        flat_game = game.originals.reshape(len(game.originals), -1).astype(np.float64)
        run = {"seed": seed, "final_share_matched": share_matched(res.matching, truth), "attack_seconds": seconds,
               "load": load_record(load0), "sets": {}}
        saved = {}
        for name in ("game", "pictures"):
            x = sets[name]
            a = patch_means(x, secrets.key, xp, seed=1)
            b = patch_means(x, res.encoder, xp, seed=2)
            flat = x.reshape(len(x), -1).astype(np.float64)
            contrast = flat.std(axis=1)
            if name == "game":
                to_game = np.zeros(len(x))
            else:
                to_game = np.sqrt(np.maximum(sq_dist(flat, flat_game).min(1), 0))
            s = scores(a, b)
            run["sets"][name] = {"share": s[0], "share_public": s[1], **anatomy(a, b, contrast, to_game),
                                 "counterfactuals": counterfactuals(a, b)}
            saved |= {f"{name}_truth": a, f"{name}_est": b, f"{name}_contrast": contrast}
            r = run["sets"][name]
            print(f"{args.preset} N {args.n} D {args.hidden} seed {seed} widths {args.widths} {name}: "
                  f"{s[0]:.1%} / {s[1]:.1%}; public misses' error q10/50/90 {r['error_of_public_misses']}, "
                  f"their thieves' {r['error_of_their_thieves']}, all {r['error_all_q10_50_90']}; "
                  f"hubs {r['hub_counts']}", flush=True)
            for k, v in r["counterfactuals"].items():
                print(f"    {k}: {v[0]:.1%} / {v[1]:.1%}")
        if args.save:
            np.savez(args.save, **saved)
        runs.append(run)
        if args.json:
            write_json(args.json, {"benchmark": "tprime_hub_oracle", "started": started, "date": now_utc(),
                                   "machine": machine(), "source_fingerprint": sources(__file__, "tprime_fresh.py",
                                                                                       "games.py"),
                                   "settings": {k: (str(v) if isinstance(v, Path) else v) for k, v in
                                                vars(args).items()}, "runs": runs})
    return 0


if __name__ == "__main__":
    sys.exit(main())
