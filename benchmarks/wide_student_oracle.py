"""Oracle: is T' short of 99% on new pictures because it is exactly as wide as Alice's encoder?

T' has NeuraCrypt's public architecture, so its width is the family's D. A student network wider
than its teacher is often easier to fit; this script fits, on the true pairs of one game (no
attack: ``tprime_oracle.true_pairs``), students whose blocks are ``W`` units wide and whose last
layer still maps to D outputs, the way extraction fits T' (first layer centred on the data,
whitened patch rows, the robust fit with dead units revived, then the squared-loss refit, the
family's step counts, every pair fitted, no hold-out), and scores each by Challenge 2 in both
directions on the game's images and on new pictures of its kind. Beside them, in the same run,
the attack's own extraction (``fit_encoder`` then ``refine_encoder``, which also refit the last
layer by least squares and keep the step with the lowest held-out error) fitted on the same pairs.
W = D is the students' control: the same procedure at the family's width.

Usage::

    python benchmarks/wide_student_oracle.py --widths 256 512 --json benchmarks/results/cpu_wide_student_nc7.json
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
from tprime_knobs import add_game_args
from tprime_oracle import true_pairs


def student(fam, widths: tuple[int, ...], seed: int) -> dict:
    """Random parameters of a student whose layers (the patch convolution, then each block) are
    ``widths`` units wide, with D outputs; each layer drawn at PyTorch's default scale for its fan-in.
    One width for all layers draws a key of the family made that wide (its mixer cut to D outputs)."""
    from empirical.encoder import random_key
    from empirical.tprime import params_from_key

    if len(set(widths)) > 1:
        return params_from_key(random_key(fam, [seed, *widths, 0x51DE], widths), np)
    wide = dataclasses.replace(fam, hidden=widths[0])
    p = params_from_key(random_key(wide, [seed, widths[0], 0x51DE]), np)
    p["Wm"], p["bm"] = p["Wm"][:fam.hidden].copy(), p["bm"][:fam.hidden].copy()  # (D, W), (D,)
    return p


def parse_widths(text: str, fam) -> tuple[int, ...]:
    """``"1024"`` (every layer) or ``"1024,256,256,256,256"`` (one per layer: convolution, then blocks)."""
    from empirical.encoder import expand_widths, family_widths
    from empirical.encoder import parse_widths as parse

    return expand_widths(fam, parse(text)) or family_widths(fam)


def fit_student(params: dict, images, targets, groups, fam, cfg) -> dict:
    """The robust fit, then the squared-loss refit, on every pair (what extraction does, minus its hold-out)."""
    from empirical.extraction import CENTRE_IMAGES, FIT_STREAM, REFINE_STREAM, huber_loss, squared_loss
    from empirical.fit_budget import fit_steps
    from empirical.fit_loop import train
    from empirical.whitening import from_white, to_white, whitened_patches

    xp, every = np, np.arange(len(images))
    steps, refine_steps = fit_steps(cfg, fam)
    rng = np.random.default_rng([cfg.seed, FIT_STREAM])
    rows, mu, z = whitened_patches(images, fam, cfg.whiten, xp)  # (n, P, C*p*p)
    pick = rng.choice(every, min(CENTRE_IMAGES, len(every)), replace=False)
    params["b0"] = -np.median(rows[pick].reshape(-1, rows.shape[2]) @ params["W0"].T, axis=0).astype(np.float32)
    delta = cfg.huber * float(targets[pick].std())
    train(params, rows, targets, groups, every, fam, steps, cfg.lr, cfg.images_per_step,
          lambda y, t: huber_loss(y, t, delta, xp), rng, xp, True, None)
    plain = from_white(params, mu, z, xp)
    rng = np.random.default_rng([cfg.seed, REFINE_STREAM])
    rows, mu, z = whitened_patches(images, fam, cfg.refine_whiten, xp)
    work = {k: v.copy() for k, v in to_white(plain, mu, z, xp).items()}
    train(work, rows, targets, groups, every, fam, refine_steps, cfg.refine_lr, cfg.refine_images_per_step,
          lambda y, t: squared_loss(y, t, xp), rng, xp, False, None)
    return from_white(work, mu, z, xp)


def patch_means(params: dict, images: np.ndarray, fam, bn_stats: list | None = None) -> np.ndarray:
    """(n, D) means of the rows T' gives, the images encoded in consecutive BatchNorm batches as Alice's are
    (each batch with its own statistics, or all frozen at ``bn_stats``: a (mean, var) per block)."""
    from empirical.encoder import patchify
    from empirical.tprime import forward

    out = [forward(params, patchify(images[s:s + fam.bn_batch], fam.patch), fam, np, bn_stats=bn_stats).y.mean(axis=1)
           for s in range(0, len(images), fam.bn_batch)]
    return np.concatenate(out).astype(np.float64)


def score(params: dict, truth: dict, sets: dict, fam) -> dict:
    """Challenge 2 both ways and the spread error on each set; ``truth[name]`` (n, D) Alice's patch means."""
    from empirical.nearest import nearest_shares

    out = {}
    for name, x in sets.items():
        a, b = truth[name], patch_means(params, x, fam)
        s = nearest_shares(a, b)
        spread = float(np.sqrt(((a - b) ** 2).sum(1).mean() / ((a - a.mean(0)) ** 2).sum(1).mean()))
        out[name] = {"share": s["est_to_nearest_truth"], "share_public": s["truth_to_nearest_est"],
                     "spread_error": spread}
    return out


def main(argv=None) -> int:
    from empirical.encoder import encode
    from empirical.extraction import ExtractConfig, fit_encoder, refine_encoder

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_game_args(ap)
    ap.add_argument("--widths", nargs="+", default=["256", "512"],
                    help="students' widths: one per student, a single width for every layer or one per layer "
                         "separated by commas (the patch convolution, then each block)")
    ap.add_argument("--json")
    args = ap.parse_args(argv)
    fam, images, key, targets, groups, sets = true_pairs(args)
    try:
        profiles = [parse_widths(w, fam) for w in args.widths]
    except ValueError as err:  # a UserError is a ValueError
        ap.error(str(err))
    truth = {name: encode(x, key, np, shuffle=False)[0].mean(axis=1).astype(np.float64)  # (n, D) Alice's, once
             for name, x in sets.items()}
    cfg = ExtractConfig(seed=args.seed)
    started, mach, runs = now_utc(), machine(), []

    def report(name: str, params: dict, seconds: float, load0) -> None:
        runs.append({"variant": name, "seconds": seconds, "load": load_record(load0),
                     "sets": score(params, truth, sets, fam)})
        cols = (f"  {k} {s['share']:.1%}/{s['share_public']:.1%} spread err {s['spread_error']:.3f}"
                for k, s in runs[-1]["sets"].items())
        print(f"{name:<34}" + "".join(cols) + f"  {seconds:.0f} s", flush=True)
        if args.json:
            write_json(args.json, {"benchmark": "wide_student_oracle", "date": now_utc(), "started": started,
                                   "machine": mach, "source_fingerprint": sources(__file__, "tprime_oracle.py",
                                                                                  "tprime_fresh.py", "tprime_knobs.py",
                                                                                  "games.py"),
                                   "settings": {k: v for k, v in vars(args).items() if k != "json"}, "runs": runs})

    load0, t0 = load_average(), time.perf_counter()
    fit = fit_encoder(images, targets, groups, fam, cfg, np).params
    refined = refine_encoder(fit, images, targets, groups, fam, cfg, np).params
    report("attack's extraction", refined, time.perf_counter() - t0, load0)
    for widths in profiles:
        load0, t0 = load_average(), time.perf_counter()
        params = fit_student(student(fam, widths, args.seed), images, targets, groups, fam, cfg)
        name = f"width {widths[0]}" if len(set(widths)) == 1 else "widths " + ",".join(map(str, widths))
        report(f"student, {name}", params, time.perf_counter() - t0, load0)
    return 0


if __name__ == "__main__":
    sys.exit(main())
