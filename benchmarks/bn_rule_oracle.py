"""Oracle: which BatchNorm statistics should T' use on a batch of new pictures?

Challenge 2 encodes a batch of new pictures with Alice's encoder at that batch's own statistics,
and T' is scored on the same batch. ``bn_shift_oracle.py`` found that T' answers a change of
statistics unlike Alice's encoder: it was fitted only at the statistics of the game's few
batches. The attacker is free to choose the statistics T' normalises with; this oracle measures,
against Alice's encodings at each batch's own statistics (the Challenge 2 measure), rules that T'
could follow, each computed block by block (block k's statistics from blocks before it normalised
by the same rule):

* ``own``: the batch's own statistics (what the attack does today);
* ``game``: the average of T''s statistics over the game's batches, frozen (BatchNorm's usual
  evaluation mode);
* ``blend a``: ``a`` times the batch's own plus ``1 - a`` times the game's, means and variances;
* ``mean own, var game`` and ``mean game, var own``: one of the two moments from each source.

Centring a block's units by the batch's means is linear, so it commutes with T' mixing Alice's
units; scaling by their variances does not. Whether that matters is what the last two rules show, and
``unit_match`` measures how nearly T''s units are Alice's, layer by layer, on the game's first batch.

T' is fitted on the true pairs of one game (``tprime_oracle.true_pairs``) as extraction fits it
(``--start fit``) or, as oracle starts, refitted only from a random T' (``random``) or from one whose
patch convolution and blocks 1..K are Alice's own (``alice:K``; held fixed with ``--freeze``), and kept
in ``--params`` (an ``.npz``; reused when it exists, so each rule costs seconds). Alice's
key is used to make the truth: an oracle.

Usage::

    python benchmarks/bn_rule_oracle.py --preset neuracrypt-7 --kind split --n 600 --seed 2 \\
        --extract widths=1024 --params /tmp/tprime_seed2.npz \\
        --json benchmarks/results/cpu_bn_rule_oracle_nc7_n600_seed2.json
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

BLENDS = (0.25, 0.5, 0.75)


def walk_blocks(params: dict, rows: np.ndarray, fam, rule, keep: bool = False) -> tuple[list, list]:
    """T' on patch rows (n, P, C*p*p), block by block, each block normalised by ``rule``: a function
    ``(own_mean, own_var) -> (mean, var)``. Returns the per-block (mean, var) used and, with ``keep``,
    the layers' inputs: the patch convolution's responses after its ReLU, then each block's units before
    BatchNorm (``depth + 1`` arrays (n*P, width); empty without ``keep``)."""
    from empirical.tprime import BN_EPS, BatchNormStats

    h = np.maximum(rows.reshape(-1, rows.shape[2]) @ params["W0"].T + params["b0"], 0)  # (n*P, width)
    stats, layers = [], [h] if keep else []
    for i in range(fam.depth):
        u = h @ params[f"W{i + 1}"].T + params[f"b{i + 1}"]
        if keep:
            layers.append(u)
        mean, var = rule(i, u.mean(axis=0), u.var(axis=0))
        stats.append(BatchNormStats(mean, var))
        h = np.maximum((u - mean) / np.sqrt(var + BN_EPS), 0)
    return stats, layers


def means_under(params: dict, images: np.ndarray, fam, game: list, rule) -> np.ndarray:
    """(n, D) T''s patch means, the images in consecutive batches of ``fam.bn_batch``, each normalised by
    ``rule`` (``(own_mean, own_var, game_mean, game_var) -> (mean, var)``, ``game`` a (mean, var) per block)."""
    from empirical.encoder import patchify

    out = []
    for s in range(0, len(images), fam.bn_batch):
        x = images[s:s + fam.bn_batch]
        stats, _ = walk_blocks(params, patchify(x, fam.patch), fam, lambda i, m, v: rule(m, v, *game[i]))
        out.append(patch_means(params, x, fam, stats))
    return np.concatenate(out)


def own_stats(i: int, mean, var) -> tuple:
    return mean, var


def unit_match(alice: dict, est: dict, images: np.ndarray, fam) -> list:
    """Per layer, does T' hold Alice's units? For each of her units that varies on the images: the largest
    |correlation| with one of T''s units, and the share of its variance that T''s units span linearly
    (medians and the 10% quantile over her units). BatchNorm normalises unit by unit, so T' answers a
    change of statistics as Alice's encoder does only where her units are its units."""
    from empirical.encoder import patchify

    rows = patchify(images, fam.patch)
    out = []
    inputs = (walk_blocks(p, rows, fam, own_stats, keep=True)[1] for p in (alice, est))
    for k, (a, e) in enumerate(zip(*inputs, strict=True)):
        a, e = a - a.mean(axis=0), e - e.mean(axis=0)
        a = a[:, np.linalg.norm(a, axis=0) > 0]  # units dead on every patch have nothing to match
        e = e[:, np.linalg.norm(e, axis=0) > 0]
        a, e = a / np.linalg.norm(a, axis=0), e / np.linalg.norm(e, axis=0)
        best = np.abs(a.T @ e).max(axis=1)  # (her units,)
        q, _ = np.linalg.qr(e)
        spanned = (np.linalg.norm(q.T @ a, axis=0) ** 2)
        out.append({"layer": k, "alice_units": int(a.shape[1]), "tprime_units": int(e.shape[1]),
                    "max_corr_median": float(np.median(best)), "max_corr_q10": float(np.quantile(best, 0.1)),
                    "spanned_median": float(np.median(spanned)), "spanned_q10": float(np.quantile(spanned, 0.1))})
        print(f"layer {k} ({'patch convolution' if k == 0 else f'block {k}, before BatchNorm'}): Alice's units' "
              f"largest |correlation| with a unit of T' {out[-1]['max_corr_median']:.3f} (median; 10% quantile "
              f"{out[-1]['max_corr_q10']:.3f}), variance spanned {out[-1]['spanned_median']:.3f}", flush=True)
    return out


def rules() -> dict:
    out = {"own": lambda m, v, gm, gv: (m, v), "game": lambda m, v, gm, gv: (gm, gv)}
    for a in BLENDS:
        out[f"blend {a}"] = lambda m, v, gm, gv, a=a: (a * m + (1 - a) * gm, a * v + (1 - a) * gv)
    out["mean own, var game"] = lambda m, v, gm, gv: (m, gv)
    out["mean game, var own"] = lambda m, v, gm, gv: (gm, v)
    return out


def alice_layers(start: str) -> tuple[str, ...]:
    """The parameters ``--start alice:K`` takes from Alice (and ``--freeze`` holds, with ``alice:K`` or
    ``random:K``): the patch convolution's and blocks 1..K's."""
    k = int(start.partition(":")[2])
    return ("W0", "b0", *(f"{w}{i}" for i in range(1, k + 1) for w in "Wb"))


def start_params(start: str, alice: dict, fam, cfg, perturb: float = 0.0) -> dict:
    """T''s starting parameters for ``--start random`` or ``alice:K``: a random key at ``cfg.widths`` (seeded by
    ``cfg.seed``), with the patch convolution and blocks 1..K replaced by Alice's (an oracle start). With
    ``perturb`` > 0 each of her units' weights gets Gaussian noise of ``perturb`` times the row's norm (the
    same norm in a random direction: cosine about 1 / sqrt(1 + perturb^2) with her row), and each bias noise
    of ``perturb`` times the biases' spread: her units known only approximately, as a recovery would give them."""
    from empirical.encoder import expand_widths, random_key
    from empirical.tprime import params_from_key

    params = params_from_key(random_key(fam, [cfg.seed, 0x57A27], expand_widths(fam, cfg.widths) or None), np)
    rng = np.random.default_rng([cfg.seed, 0x9E27])
    if start.startswith("alice:"):  # random:K keeps the random start
        for name in alice_layers(start):
            if params[name].shape != alice[name].shape:
                raise SystemExit(f"--start {start}: T''s {name} is {params[name].shape}, Alice's {alice[name].shape}; "
                                 "give those layers her width in --extract widths=")
            params[name] = alice[name].copy()
            if perturb > 0:
                w = params[name]
                if w.ndim == 2:  # (units, fan-in)
                    noise = rng.standard_normal(w.shape)
                    noise *= np.linalg.norm(w, axis=1, keepdims=True) / np.linalg.norm(noise, axis=1, keepdims=True)
                else:
                    noise = rng.standard_normal(w.shape) * w.std()
                params[name] = (w + perturb * noise).astype(np.float32)
    return params


def freeze(names: tuple[str, ...]) -> None:
    """Make extraction's training leave ``names`` where they start: their gradients are zeroed as
    the fit loop (``empirical.fit_loop``, which holds the name ``backward`` it calls) computes them, so
    Adam never moves them. An oracle's device, patched into this process only; the first layer's decay
    still acts, so freezing ``W0`` needs ``decay=0``. :func:`check_frozen` checks afterwards that it held."""
    import empirical.fit_loop as fit_loop

    plain = fit_loop.backward

    def backward(params, cache, dy, family, xp):
        grads = plain(params, cache, dy, family, xp)
        for name in names:
            grads[name] = grads[name] * 0
        return grads

    fit_loop.backward = backward


def check_frozen(start: dict, end: dict, names: tuple[str, ...], tol: float = 1e-3) -> None:
    """Stop unless every layer in ``names`` ended where it started (up to the rounding of the fit's
    change to whitened coordinates and back): a freeze that did not act would make the oracle's figures
    those of an ordinary refit."""
    for name in names:
        moved = float(np.linalg.norm(np.asarray(end[name]) - start[name]) / max(np.linalg.norm(start[name]), 1e-30))
        if moved > tol:
            raise SystemExit(f"--freeze did not hold {name}: it moved by {moved:.3g} of its norm")


def main(argv=None) -> int:
    from empirical.extraction import ExtractConfig, fit_encoder, refine_encoder
    from empirical.tprime import mean_batch_stats, params_from_key

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_game_args(ap)
    ap.add_argument("--extract", default="", help="ExtractConfig fields: field=value,... (e.g. widths=1024)")
    ap.add_argument("--params", help=".npz of the fitted T' (written after the fit; read instead if it exists)")
    ap.add_argument("--start", default="fit", help="fit (as extraction: robust fit, then refit), random (a random "
                    "T', refit only), alice:K (refit only, from a T' whose patch convolution and blocks 1..K are "
                    "Alice's: an oracle start) or random:K (random, with --freeze holding those layers: the control)")
    ap.add_argument("--freeze", action="store_true", help="with --start alice:K or random:K, those layers stay "
                    "where they start through the refit (needs decay=0 in --extract)")
    ap.add_argument("--perturb", type=float, default=0.0, help="with --start alice:K, noise on her units' weights, "
                    "relative to each row's norm (default 0: her exact units)")
    ap.add_argument("--json")
    args = ap.parse_args(argv)
    kind, _, k = args.start.partition(":")
    if args.start not in ("fit", "random") and not (kind in ("alice", "random") and k.isdigit()):
        ap.error(f"--start {args.start!r}: not fit, random, alice:K or random:K")
    fields = parse_fields(args.extract, f"--extract {args.extract!r}")
    if args.freeze and not (k and fields.get("decay") == 0):
        ap.error("--freeze needs --start alice:K or random:K and decay=0 in --extract")
    if kind == "random" and k and not args.freeze:
        ap.error("--start random:K is the control of --freeze: give --freeze")
    if args.perturb < 0 or (args.perturb > 0 and not args.start.startswith("alice:")):
        ap.error("--perturb needs --start alice:K and a value >= 0")
    t0 = time.perf_counter()
    fam, images, key, targets, groups, sets = true_pairs(args)
    if fam.depth < 1:
        ap.error(f"{args.preset} has no BatchNorm blocks: nothing to measure")
    alice = params_from_key(key, np)
    truth = {name: patch_means(alice, x, fam) for name, x in sets.items()}  # each batch's own statistics
    path = Path(args.params) if args.params else None
    fit_seconds = 0.0
    if path is not None and path.exists():
        est = dict(np.load(path))
        print(f"T' read from {path}", flush=True)
    else:
        cfg = ExtractConfig(**{"seed": args.seed, **fields})  # seed=K in --extract: another fit of the same game
        t1 = time.perf_counter()
        if args.freeze:
            freeze(alice_layers(args.start))
        first = (fit_encoder(images, targets, groups, fam, cfg, np).params if args.start == "fit"
                 else start_params(args.start, alice, fam, cfg, args.perturb))
        start = {k: np.array(v) for k, v in first.items()}
        est = refine_encoder(first, images, targets, groups, fam, cfg, np).params
        if args.freeze:
            check_frozen(start, est, alice_layers(args.start))
        fit_seconds = time.perf_counter() - t1
        if path is not None:
            np.savez(path, **{k: np.asarray(v) for k, v in est.items()})
    units = unit_match(alice, est, images[groups == 0], fam)
    game = [(np.asarray(m), np.asarray(v)) for m, v in mean_batch_stats(est, images, groups, fam, np)]
    out: dict[str, dict] = {}
    for rule_name, rule in rules().items():
        for name, x in sets.items():
            r = diagnose(truth[name], means_under(est, x, fam, game, rule), x)
            r.pop("misses")
            out.setdefault(rule_name, {})[name] = r
            print(f"{name}, T' statistics {rule_name}: {r['share'][0]:.1%} / {r['share'][1]:.1%}, error "
                  f"{r['error_median']:.3f} (median, of the spread)", flush=True)
    if args.json:
        write_json(args.json, {"benchmark": "bn_rule_oracle", "date": now_utc(), "machine": machine(),
                               "source_fingerprint": sources(__file__, "tprime_failures_oracle.py", "tprime_oracle.py",
                                                             "tprime_knobs.py", "wide_student_oracle.py", "games.py"),
                               "settings": {k: v for k, v in vars(args).items() if k not in ("json", "params")},
                               "bn_batch": fam.bn_batch, "seconds": time.perf_counter() - t0,
                               "fit_seconds": fit_seconds, "unit_match": units, "by_rule": out})
    return 0


if __name__ == "__main__":
    sys.exit(main())
