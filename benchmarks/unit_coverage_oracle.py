"""Oracle: do a game's patches pin Alice's first-layer units, and do new pictures leave where they pin them?

``bn_rule_oracle.py`` found that a T' holding Alice's patch convolution and first block (to a
correlation of about 0.99) reaches 99% on new pictures where a fitted T' does not, and that a refit
walks away from her units: the game's pairs do not hold them. A ReLU unit is pinned by data only where
the data cross its hyperplane; on the side the data never leave, any mixture of units fits as well.
This oracle measures that with Alice's key, no T' fitted, for several games at once (seconds each):

* per layer (the patch convolution's units before their ReLU; block 1's units after BatchNorm with
  each batch's own statistics, before their ReLU), the units whose sign never changes on the game's
  patches (``fixed``: the data see them only as linear maps), and how often they switch on a set's
  patches;
* ``beyond``: how far a set's patches go past the range the game's patches span along each unit, in
  units of the game's spread of that unit (per patch the largest over units; median, 90% quantile,
  and the share of patches past 0.25 of the spread);
* ``hamming``: per patch, the fewest units whose sign differs from the nearest game patch's sign
  pattern (on a sample of the set's patches): how far into regions the game never showed a set goes;
* ``pixels``: per patch, the distance to the nearest game patch in pixels, over the median distance
  between game patches and their nearest other-image neighbour (the images' own coverage, key-free).

The sets are the game's own images (the floor), new crops of its pictures (where T' scores 100%) and
new pictures (where it falls short on some games). Comparing games where T' passes with those where
it does not says whether its failures follow from where new pictures take Alice's units.

Usage::

    python benchmarks/unit_coverage_oracle.py --game split:600:256:0 --game split:600:256:2 \\
        --json benchmarks/results/cpu_unit_coverage_oracle.json
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_common import machine, now_utc, sources, write_json
from tprime_fresh import fresh_sets, kind_images

SAMPLE = 2000  # set patches sampled for the nearest-pattern and nearest-pixel measures
CHUNK = 128


def layer_inputs(alice: dict, images: np.ndarray, fam) -> list[np.ndarray]:
    """Alice's pre-activations of the patch convolution and of block 1 after BatchNorm, (n*P, D) each,
    the images in consecutive BatchNorm batches with their own statistics (as she encodes them)."""
    from empirical.encoder import patchify
    from empirical.tprime import BN_EPS

    z0, z1 = [], []
    for s in range(0, len(images), fam.bn_batch):
        rows = patchify(images[s:s + fam.bn_batch], fam.patch)  # (b, P, C*p*p)
        z = rows.reshape(-1, rows.shape[2]) @ alice["W0"].T + alice["b0"]  # (b*P, D)
        u = np.maximum(z, 0) @ alice["W1"].T + alice["b1"]
        z0.append(z)
        z1.append((u - u.mean(axis=0)) / np.sqrt(u.var(axis=0) + BN_EPS))
    return [np.concatenate(z0), np.concatenate(z1)]


def nearest_hamming(signs: np.ndarray, game_signs: np.ndarray) -> np.ndarray:
    """For each row of ``signs`` (m, D) bool, the fewest differing bits to a row of ``game_signs``."""
    a, g = np.packbits(signs, axis=1), np.packbits(game_signs, axis=1)  # (m, D/8), (n_game, D/8) uint8
    out = np.empty(len(a), np.int64)
    for s in range(0, len(a), CHUNK):
        x = a[s:s + CHUNK, None, :] ^ g[None]  # (chunk, n_game, D/8)
        out[s:s + CHUNK] = np.bitwise_count(x).sum(axis=2, dtype=np.int64).min(axis=1)
    return out


def nearest_distance(x: np.ndarray, ref: np.ndarray, ref_img: np.ndarray | None = None,
                     x_img: np.ndarray | None = None) -> np.ndarray:
    """Euclidean distance from each row of ``x`` to the nearest row of ``ref`` (from another image
    when both image labels are given)."""
    rn = (ref ** 2).sum(axis=1)
    out = np.empty(len(x))
    for s in range(0, len(x), CHUNK):
        d = (x[s:s + CHUNK] ** 2).sum(axis=1)[:, None] - 2 * x[s:s + CHUNK] @ ref.T + rn[None]  # (chunk, n_ref)
        if ref_img is not None:
            d[x_img[s:s + CHUNK, None] == ref_img[None]] = np.inf
        out[s:s + CHUNK] = np.sqrt(np.maximum(d.min(axis=1), 0))
    return out


def coverage(game_z: np.ndarray, z: np.ndarray, sample: np.ndarray, game_sample_signs: np.ndarray) -> dict:
    """One layer's measures for one set's pre-activations ``z`` against the game's ``game_z``."""
    lo, hi, spread = game_z.min(axis=0), game_z.max(axis=0), game_z.std(axis=0) + 1e-12
    on = game_z > 0
    fixed = on.all(axis=0) | (~on).all(axis=0)  # (D,): units the game never switches
    switched = ((z[:, fixed] > 0) != on[0, fixed]).any(axis=1) if fixed.any() else np.zeros(len(z), bool)
    beyond = (np.maximum(z - hi, 0) + np.maximum(lo - z, 0)) / spread  # (m, D)
    worst = beyond.max(axis=1)
    ham = nearest_hamming(z[sample] > 0, game_sample_signs)
    return {"fixed_units": int(fixed.sum()), "fixed_always_on": int(on.all(axis=0).sum()),
            "switch_fixed_share": float(switched.mean()),
            "beyond_median": float(np.median(worst)), "beyond_q90": float(np.quantile(worst, 0.9)),
            "beyond_share_0.25": float((worst > 0.25).mean()),
            "hamming_median": float(np.median(ham)), "hamming_q90": float(np.quantile(ham, 0.9)),
            "hamming_mean": float(ham.mean())}


def measure(spec: str, n_fresh: int) -> dict:
    from empirical.encoder import patchify, preset, random_key
    from empirical.fileio import quantize16
    from empirical.tprime import params_from_key

    kind, n, hidden, seed = spec.split(":")
    n, hidden, seed, size = int(n), int(hidden), int(seed), 128
    fam = preset("neuracrypt-7", image_size=size, hidden=hidden)
    images = quantize16(kind_images(kind, n, size, seed, held_out=False))
    alice = params_from_key(random_key(fam, [seed, 0x0AC1E]), np)  # the key tprime_oracle.true_pairs draws
    sets = {k: v for k, v in fresh_sets(kind, images, seed, n_fresh, size).items() if k != "other"}
    sets["game"] = images
    P = (size // fam.patch) ** 2
    rng = np.random.default_rng([seed, 0xC0FE])
    game_rows = patchify(images, fam.patch).reshape(n * P, -1)  # (n*P, C*p*p)
    game_img = np.repeat(np.arange(n), P)
    game_layers = layer_inputs(alice, images, fam)
    probe = rng.choice(n * P, SAMPLE, replace=False)
    floor = float(np.median(nearest_distance(game_rows[probe], game_rows, game_img, game_img[probe])))
    out = {"game": spec, "pixel_floor": floor, "sets": {}}
    for name, x in sets.items():
        rows = patchify(x, fam.patch).reshape(len(x) * P, -1)
        sample = rng.choice(len(rows), SAMPLE, replace=False)
        if name == "game":  # the game's patches against the game's other images
            pix = nearest_distance(rows[sample], game_rows, game_img, game_img[sample])
        else:
            pix = nearest_distance(rows[sample], game_rows)
        r = {"pixels_median": float(np.median(pix) / floor), "pixels_q90": float(np.quantile(pix, 0.9) / floor)}
        own = name == "game"  # its layers are the game's; a game patch's own image is not evidence for itself
        keep = ~np.isin(game_img, game_img[sample]) if own else slice(None)
        for k, (gz, z) in enumerate(zip(game_layers, game_layers if own else layer_inputs(alice, x, fam),
                                        strict=True)):
            r[f"layer{k}"] = coverage(gz, z, sample, gz[keep] > 0)
        out["sets"][name] = r
        l0, l1 = r["layer0"], r["layer1"]
        print(f"{spec:<20}{name:<9}pixels {r['pixels_median']:5.2f} ({r['pixels_q90']:5.2f})  "
              f"conv: fixed {l0['fixed_units']:3d} switch {l0['switch_fixed_share']:6.1%} beyond "
              f"{l0['beyond_median']:.3f}/{l0['beyond_q90']:.3f} {l0['beyond_share_0.25']:6.1%} ham "
              f"{l0['hamming_median']:4.0f}/{l0['hamming_q90']:4.0f}  block1: fixed {l1['fixed_units']:3d} "
              f"beyond {l1['beyond_median']:.3f}/{l1['beyond_q90']:.3f} {l1['beyond_share_0.25']:6.1%} ham "
              f"{l1['hamming_median']:4.0f}/{l1['hamming_q90']:4.0f}", flush=True)
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--game", action="append", required=True,
                    help="KIND:N:HIDDEN:SEED, a NeuraCrypt-7 game as tprime_oracle.py draws it (repeatable)")
    ap.add_argument("--fresh", type=int, default=500, help="images per fresh set (default 500)")
    ap.add_argument("--json")
    args = ap.parse_args(argv)
    for spec in args.game:
        parts = spec.split(":")
        if len(parts) != 4 or parts[0] not in ("split", "synthetic") or not all(p.isdigit() for p in parts[1:]):
            ap.error(f"--game {spec!r}: not KIND:N:HIDDEN:SEED (KIND split or synthetic)")
    t0 = time.perf_counter()
    games = [measure(spec, args.fresh) for spec in args.game]
    if args.json:
        write_json(args.json, {"benchmark": "unit_coverage_oracle", "date": now_utc(), "machine": machine(),
                               "source_fingerprint": sources(__file__, "tprime_fresh.py", "games.py"),
                               "settings": {"fresh": args.fresh, "sample": SAMPLE},
                               "seconds": time.perf_counter() - t0, "games": games})
    return 0


if __name__ == "__main__":
    sys.exit(main())
