"""How much of a patch survives the private layers: the encoder's sensitivity to small changes.

NeuraCrypt-47's p-sim stalls near 59% balanced accuracy and T' fitted on the *true* pairs does
not learn the encoder (``partial_oracle.py``). This oracle asks whether anything could: it
measures, per depth, how far apart the encodings of two nearly identical patches land, against
how far apart the encodings of two unrelated images' patches at the same position land.

For one BatchNorm batch of images and one random key per depth (Alice's architecture, no shuffle,
float64 throughout so that rounding does not count as a change), each patch x of each image is
moved by ``eps * s`` in one of two directions and the whole batch re-encoded:

* ``random``: a uniformly random unit direction in pixel space;
* ``contrast``: the patch's own deviation from its mean, normalised (a change of its contrast).

``s`` is the median distance between two images' patches at the same position, and the change
of a row is reported in the same unit (the median distance between two images' rows at the same
position). A ratio near ``eps`` means the encoder moves a row as far as its patch moved (relative
to what separates images); a ratio near 1 at small ``eps`` means that change alone makes the row
as different as another image's: the encoder scrambles that direction. Beside it, the change
that float32 arithmetic makes (Alice encodes in float32) and the Spearman correlation, over pairs
of images, between the patches' and the rows' distances at the same position.

No attack runs here and no secret of a game is read: the keys are drawn by the script.

Usage::

    python benchmarks/sensitivity_oracle.py --json benchmarks/results/cpu_sensitivity_oracle.json
    python benchmarks/sensitivity_oracle.py --depths 0 4 44 --kind synthetic --keys 1
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
from scipy.stats import spearmanr

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_common import load_average, load_record, machine, now_utc, sources, write_json
from tprime_fresh import kind_images

from empirical.data import bundled_images
from empirical.encoder import BN_EPS, EncoderConfig, encode_batch, patchify, random_key

DIRECTIONS = ("random", "contrast")


def forward64(rows: np.ndarray, key) -> np.ndarray:
    """Alice's encoder on patch rows (B, P, C*p*p) in float64, no shuffle: (B, P, D)."""
    f = lambda a: np.asarray(a, np.float64)  # noqa: E731
    h = rows @ f(key.conv_w).reshape(len(key.conv_w), -1).T + f(key.conv_b)  # (B, P, W0)
    h = np.maximum(h, 0)
    for w, b, g, beta in zip(key.block_w, key.block_b, key.bn_w, key.bn_b, strict=True):
        h = h @ f(w).T + f(b)
        mean = h.mean(axis=(0, 1), keepdims=True)
        var = ((h - mean) ** 2).mean(axis=(0, 1), keepdims=True)
        h = np.maximum((h - mean) / np.sqrt(var + BN_EPS) * f(g) + f(beta), 0)
    h = np.maximum(h + f(key.pos), 0)
    return h @ f(key.mix_w).T + f(key.mix_b)


def pair_distances(a: np.ndarray, pairs: np.ndarray) -> np.ndarray:
    """Distances between images ``pairs[:, 0]`` and ``pairs[:, 1]`` at every position: (pairs, P)."""
    return np.linalg.norm(a[pairs[:, 0]] - a[pairs[:, 1]], axis=-1)


def directions(rows: np.ndarray, kind: str, rng: np.random.Generator) -> np.ndarray:
    """A unit direction per patch (B, P, C*p*p)."""
    if kind == "random":
        u = rng.standard_normal(rows.shape)
    else:  # contrast: away from the patch's own mean; a flat patch gets a random direction
        u = rows - rows.mean(axis=-1, keepdims=True)
        flat = np.linalg.norm(u, axis=-1) < 1e-9
        u[flat] = rng.standard_normal(u[flat].shape)
    return u / np.linalg.norm(u, axis=-1, keepdims=True)


def measure(images: np.ndarray, config: EncoderConfig, seed: int, eps_list, n_pairs: int) -> dict:
    key = random_key(config, seed)
    rows = patchify(images.astype(np.float64), config.patch)  # (B, P, C*p*p)
    rng = np.random.default_rng([seed, 7])
    b = len(rows)
    pairs = rng.integers(0, b, size=(4 * n_pairs, 2))
    pairs = pairs[pairs[:, 0] != pairs[:, 1]][:n_pairs]
    base = forward64(rows, key)  # (B, P, D)
    s_in = float(np.median(pair_distances(rows, pairs)))
    d_out = pair_distances(base, pairs)  # (pairs, P)
    s_out = float(np.median(d_out))
    d_in = pair_distances(rows, pairs)
    rho = spearmanr(d_in.ravel(), d_out.ravel())[0]
    # float32, as Alice encodes: its change of a row in the same unit
    f32 = np.asarray(encode_batch(images, key, np), np.float64)
    out = {"depth": config.depth, "key_seed": seed, "images": b, "pixel_scale": s_in, "row_scale": s_out,
           "spearman_patch_vs_row_distance": float(rho),
           "float32_change": float(np.median(np.linalg.norm(f32 - base, axis=-1)) / s_out), "directions": {}}
    for kind in DIRECTIONS:
        u = directions(rows, kind, rng)
        ratios = []
        for eps in eps_list:
            moved = forward64(rows + eps * s_in * u, key)
            change = np.linalg.norm(moved - base, axis=-1) / s_out  # (B, P)
            ratios.append({"eps": eps, "median": float(np.median(change)),
                           "p90": float(np.quantile(change, 0.9))})
        out["directions"][kind] = ratios
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__)
    ap.add_argument("--depths", type=int, nargs="+", default=[0, 4, 12, 24, 44],
                    help="private blocks (NeuraCrypt-2: 0, -7: 4, -47: 44)")
    ap.add_argument("--keys", type=int, default=2, help="random keys per depth (seeds 0, 1, ...)")
    ap.add_argument("--kind", choices=("bundled", "synthetic"), default="bundled")
    ap.add_argument("--images", type=int, default=128, help="one BatchNorm batch of this many images")
    ap.add_argument("--image-size", type=int, default=128)
    ap.add_argument("--hidden", type=int, default=256)
    ap.add_argument("--eps", type=float, nargs="+", default=[1e-6, 1e-4, 1e-2, 1e-1])
    ap.add_argument("--pairs", type=int, default=2000, help="image pairs for the scales")
    ap.add_argument("--json", type=Path)
    args = ap.parse_args(argv)
    started = now_utc()
    load0 = load_average()
    images = (bundled_images(args.images, args.image_size, seed=0) if args.kind == "bundled"
              else kind_images("synthetic", args.images, args.image_size, 0, held_out=False))
    runs = []
    for depth in args.depths:
        cfg = EncoderConfig(image_size=args.image_size, hidden=args.hidden, depth=depth, bn_batch=args.images)
        for seed in range(args.keys):
            t0 = time.perf_counter()
            r = measure(images, cfg, seed, args.eps, args.pairs)
            r["seconds"] = time.perf_counter() - t0
            runs.append(r)
            line = "  ".join(f"{k} " + " ".join(f"{x['median']:.2g}" for x in r["directions"][k])
                             for k in DIRECTIONS)
            print(f"depth {depth:3d} key {seed}: spearman {r['spearman_patch_vs_row_distance']:+.3f}  "
                  f"float32 {r['float32_change']:.2g}  row change at eps {args.eps}: {line}", flush=True)
    if args.json:
        write_json(args.json, {"benchmark": "sensitivity_oracle", "started": started, "date": now_utc(),
                               "machine": machine(), "source_fingerprint": sources(__file__, "tprime_fresh.py",
                                                                                   "games.py"),
                               "settings": {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()},
                               "load": load_record(load0), "runs": runs})
    return 0


if __name__ == "__main__":
    sys.exit(main())
