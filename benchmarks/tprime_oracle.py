"""Oracle for T''s precision: extraction fed the true pairs, then variants of its last steps.

No attack runs here: Alice's key is drawn directly, every image is paired with its own encoding
(rows in position order, Alice's BatchNorm batches), so what is measured is extraction alone.
T' is fitted once as the attack fits it (``fit_encoder``, then ``refine_encoder``), and each
variant continues from that fit; every result is scored by Challenge 2 in both directions on the
game's own images and on new pictures of the kind (``tprime_fresh.py``'s sets), with the error of
the patch means relative to their spread over the images (what nearest-neighbour search needs).

Variants (``--variant``, repeatable):

* ``mixer-means:LAMBDA``: refit the last layer by least squares with the per-image patch means
  weighted ``LAMBDA`` times more than single rows (Challenge 2 compares patch means);
* ``refine:field=value,...``: the squared-loss refit again with other ``ExtractConfig`` settings;
* ``lbfgs:ITERATIONS``: full-batch L-BFGS on the squared loss, from the first fit, instead of Adam.

Usage::

    python benchmarks/tprime_oracle.py --preset neuracrypt-2 --variant mixer-means:10 --variant lbfgs:100 \\
        --variant refine:refine_lr=1e-2
"""
from __future__ import annotations

import argparse
import dataclasses
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_common import load_average, load_record, machine, now_utc, sources, write_json
from tprime_fresh import fresh_sets, kind_images
from tprime_knobs import add_game_args, parse_fields


def spread_error(true_key, est_key, images, xp) -> float:
    """RMS error of T''s patch means over the RMS spread of T's patch means around their mean."""
    from empirical.backend import to_numpy
    from empirical.encoder import encode

    a = to_numpy(encode(images, true_key, xp, shuffle=False)[0].mean(axis=1)).astype(np.float64)  # (n, D)
    b = to_numpy(encode(images, est_key, xp, shuffle=False)[0].mean(axis=1)).astype(np.float64)
    return float(np.sqrt(((a - b) ** 2).sum(1).mean() / ((a - a.mean(0)) ** 2).sum(1).mean()))


def mixer_means(params, images, targets, groups, family, lam: float, xp):
    """The last layer refitted with each image's patch-mean row weighted ``lam`` times (ridge as refit_mixer)."""
    from empirical.encoder import patchify
    from empirical.extraction import MIXER_RIDGE
    from empirical.tprime import forward

    d, P = family.hidden, family.n_patches
    gram, cross, count = np.zeros((d + 1, d + 1)), np.zeros((d + 1, d)), 0
    for g in np.unique(groups):
        idx = np.flatnonzero(groups == g)
        f = forward(params, patchify(images[idx], family.patch), family, xp).cache.g.astype(np.float64)
        f = np.concatenate([f, np.ones((len(f), 1))], axis=1)  # (n*P, D+1)
        y = targets[idx].reshape(len(f), -1).astype(np.float64)  # (n*P, D)
        fm, ym = f.reshape(len(idx), P, -1).mean(1), y.reshape(len(idx), P, -1).mean(1)  # (n, D+1), (n, D)
        gram += f.T @ f + lam * P * fm.T @ fm
        cross += f.T @ y + lam * P * fm.T @ ym
        count += len(f)
    sol = np.linalg.solve(gram + MIXER_RIDGE * count * np.eye(d + 1), cross)
    return {**params, "Wm": sol[:-1].T.astype(np.float32).copy(), "bm": sol[-1].astype(np.float32).copy()}


def lbfgs(params, images, targets, groups, family, iterations: int, xp):
    """Full-batch L-BFGS on the squared loss from ``params`` (whitened patches), last layer refitted."""
    from scipy.optimize import minimize

    from empirical.extraction import refit_mixer
    from empirical.tprime import backward, forward
    from empirical.whitening import from_white, to_white, whitened_patches

    rows, mu, z = whitened_patches(images, family, 1e-3, xp)
    start = to_white(params, mu, z, xp)
    names = list(start)

    def unflat(v):
        out, o = {}, 0
        for k in names:
            out[k] = v[o:o + start[k].size].reshape(start[k].shape).astype(np.float32)
            o += start[k].size
        return out

    def loss_and_grad(v):
        p, total = unflat(v), 0.0
        grads = {k: np.zeros(start[k].shape) for k in names}
        for g in np.unique(groups):
            idx = np.flatnonzero(groups == g)
            y, cache = forward(p, rows[idx], family, xp)
            r = y - targets[idx]
            total += float((r.astype(np.float64) ** 2).sum())
            for k, gr in backward(p, cache, 2 * r, family, xp).items():
                grads[k] += gr
        scale = 1.0 / targets.size
        return total * scale, np.concatenate([grads[k].ravel() for k in names]) * scale

    v0 = np.concatenate([start[k].ravel() for k in names]).astype(np.float64)
    res = minimize(loss_and_grad, v0, jac=True, method="L-BFGS-B",
                   options={"maxiter": iterations, "maxcor": 20, "ftol": 1e-15, "gtol": 1e-12})
    return refit_mixer(from_white(unflat(res.x), mu, z, xp), images, targets, groups, family, xp)


def true_pairs(args: argparse.Namespace) -> tuple:
    """``(family, images, key, targets, groups, sets)``: a game's true pairs at 128 px, no attack.

    ``targets`` (n, P, D) are Alice's encodings in position order (her BatchNorm batches, given by
    ``groups``); ``sets`` the game's own images and new pictures to score T' on.
    """
    from empirical.encoder import encode, preset, random_key
    from empirical.fileio import quantize16

    size = 128
    fam = preset(args.preset, image_size=size, hidden=args.hidden)
    images = quantize16(kind_images(args.kind, args.n, size, args.seed, held_out=False))
    key = random_key(fam, [args.seed, 0x0AC1E])
    targets, _ = encode(images, key, np, shuffle=False)  # (n, P, D): Alice's batches, rows in position order
    groups = np.arange(args.n) // fam.bn_batch
    sets = {k: v for k, v in fresh_sets(args.kind, images, args.seed, args.fresh, size).items()
            if k in ("game", "pictures")}
    return fam, images, key, targets, groups, sets


def main(argv=None) -> int:
    from empirical.evaluate import challenge2_score
    from empirical.extraction import ExtractConfig, fit_encoder, refine_encoder
    from empirical.tprime import key_from_params

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_game_args(ap)
    ap.add_argument("--variant", action="append", default=[], help="mixer-means:L, refine:f=v,..., lbfgs:ITERS")
    ap.add_argument("--json")
    args = ap.parse_args(argv)
    for text in args.variant:  # refuse a bad variant before minutes of fitting
        kind, _, body = text.partition(":")
        if kind not in ("mixer-means", "refine", "lbfgs") or not body:
            ap.error(f"--variant {text!r}: not mixer-means:L, refine:field=value,... or lbfgs:ITERATIONS")
        if kind == "refine":
            parse_fields(body, f"--variant {text!r}")
    xp = np
    fam, images, key, targets, groups, sets = true_pairs(args)
    started, mach, rows = now_utc(), machine(), []

    def report(name, params, seconds, load0):
        est = key_from_params(params, fam)
        row = {"variant": name, "seconds": seconds, "load": load_record(load0),
               "sets": {k: {**challenge2_score(key, est, x, xp, seed=1), "spread_error": spread_error(key, est, x, xp)}
                        for k, x in sets.items()}}
        rows.append(row)
        cols = (f"  {k} {s['share']:.1%}/{s['share_public']:.1%} spread err {s['spread_error']:.3f}"
                for k, s in row["sets"].items())
        print(f"{name:<28}" + "".join(cols) + f"  {seconds:.0f} s", flush=True)
        if args.json:
            write_json(args.json, {"benchmark": "tprime_oracle", "date": now_utc(), "started": started,
                                   "machine": mach, "source_fingerprint": sources(__file__, "tprime_fresh.py",
                                                                                  "tprime_knobs.py", "games.py"),
                                   "settings": {k: v for k, v in vars(args).items() if k != "json"}, "runs": rows})

    ec = ExtractConfig(seed=args.seed)
    load0, t0 = load_average(), time.perf_counter()
    fit = fit_encoder(images, targets, groups, fam, ec, xp).params
    report("first fit", fit, time.perf_counter() - t0, load0)
    load0, t0 = load_average(), time.perf_counter()
    refined = refine_encoder(fit, images, targets, groups, fam, ec, xp).params
    report("first fit + refit (attack)", refined, time.perf_counter() - t0, load0)
    for text in args.variant:
        kind, _, body = text.partition(":")
        load0, t0 = load_average(), time.perf_counter()
        if kind == "mixer-means":
            params = mixer_means(refined, images, targets, groups, fam, float(body), xp)
        elif kind == "refine":
            cfg = dataclasses.replace(ec, **parse_fields(body, f"--variant {text!r}"))
            params = refine_encoder(fit, images, targets, groups, fam, cfg, xp).params
        else:
            params = lbfgs(fit, images, targets, groups, fam, int(body), xp)
        report(text, params, time.perf_counter() - t0, load0)
    return 0


if __name__ == "__main__":
    sys.exit(main())
