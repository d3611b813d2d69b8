"""An image stack with nearly flat twin pairs: the hard case of the final matching, at a small size.

At the challenge's size the last wrong matches are pairs of nearly flat crops of similar
brightness, encoded in different BatchNorm batches, whose encodings differ from one another by
about as little as T' errs. Such pairs are rare among bundled crops at 128 px, so a default-size
game cannot show whether a change to the final matching or the re-scoring decides them. This
script writes a ``.npy`` stack for ``challenge make --data``: ``--n`` bundled-style crops, of which
the first ``2 * --pairs`` are replaced by twin pairs. A pair shares one brightness level and each
twin adds its own smooth random texture (a low-passed noise field) of standard deviation
``--texture`` (a share of the [0, 1] range; the challenge's flattest crops had 0.0045 to 0.021),
plus a brightness offset of up to ``--offset``; values are put on the 16-bit grid as the bundled
images are. The pairs' ids (``<k>.png`` for k < 2 * pairs, twins 2i and 2i + 1) are written beside
the stack as ``<stack>.pairs.json``.

Usage::

    python benchmarks/flat_pairs_stack.py --n 1050 --pairs 30 --texture 0.0005 0.003 --offset 0.0005 \\
        --seed 1 --out /tmp/flat/stack.npy
    python -m empirical.challenge make --data /tmp/flat/stack.npy --n 1000 --extra 50 ...
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

BLUR_PASSES = 4  # box-blur passes of the texture's noise field (a smooth field, as in a sky or a wall)
LEVELS = (0.15, 0.85)  # the pairs' brightness is drawn between these


def smooth_field(rng: np.random.Generator, size: int) -> np.ndarray:
    """(size, size) noise, low-passed by repeated 5 x 5 box blurs (wrapping), scaled to unit spread."""
    f = rng.standard_normal((size, size))
    for _ in range(BLUR_PASSES):
        f = sum(np.roll(np.roll(f, dy, 0), dx, 1) for dy in range(-2, 3) for dx in range(-2, 3)) / 25
    return (f - f.mean()) / f.std()


def flat_pair_stack(n: int, pairs: int, size: int, texture: tuple[float, float], offset: float,
                    seed: int) -> tuple[np.ndarray, list[dict]]:
    """``n`` bundled-style crops (n, 1, size, size), the first ``2 * pairs`` replaced by twin pairs; and the pairs."""
    from empirical.data import bundled_images
    from empirical.fileio import quantize16

    imgs = bundled_images(n, size, seed)  # (n, 1, H, W) on the 16-bit grid
    rng = np.random.default_rng([seed, 0xF1A7])
    out = []
    for i in range(pairs):
        level = rng.uniform(*LEVELS)
        spread = float(np.exp(rng.uniform(*np.log(texture))))
        for j in (2 * i, 2 * i + 1):
            img = level + rng.uniform(-offset, offset) + spread * smooth_field(rng, size)
            imgs[j, 0] = quantize16(np.clip(img, 0.0, 1.0).astype(np.float32))
        out.append({"ids": [f"{2 * i:06d}.png", f"{2 * i + 1:06d}.png"], "level": level, "texture": spread})
    return imgs, out


def add_stack_args(ap: argparse.ArgumentParser) -> None:
    ap.add_argument("--pairs", type=int, default=30, help="twin pairs among the first images")
    ap.add_argument("--image-size", type=int, default=128)
    ap.add_argument("--texture", type=float, nargs=2, default=(0.0005, 0.003), metavar=("LO", "HI"),
                    help="each pair's texture spread is drawn log-uniformly between these (share of the range)")
    ap.add_argument("--offset", type=float, default=0.0005, help="largest brightness offset between twins")


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", type=int, required=True, help="images in the stack (the game's --n plus --extra)")
    add_stack_args(ap)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", required=True, help="the .npy stack to write")
    args = ap.parse_args(argv)
    if 2 * args.pairs > args.n:
        raise SystemExit(f"--pairs {args.pairs} needs at least {2 * args.pairs} images, --n is {args.n}")
    imgs, pairs = flat_pair_stack(args.n, args.pairs, args.image_size, tuple(args.texture), args.offset, args.seed)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    np.save(out, imgs)
    out.with_suffix(".pairs.json").write_text(json.dumps({"settings": vars(args), "pairs": pairs}, indent=1))
    print(f"wrote {out} ({args.n} images, {args.pairs} twin pairs)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
