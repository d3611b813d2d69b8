"""Oracle for p-sim's training budget: does a larger budget lift the matching at depth 47?

The original attack trained its patch similarity for 80,000 steps at batch 4,096 on 30 random
encoders; the attack here trains for 1,500 steps at batch 1,024 on 10 (about 1/200th of the pairs
seen). This script trains p-sim at several budgets on the attacker's own random encoders of the
family, exactly as the attack would (``empirical.psim.training_pairs`` and ``train_psim``), and
for each reports

* the balanced accuracy on (patch, row) pairs of fresh attacker encoders (``evaluate_psim``), and
* the share of the game's encodings one p-sim matching gets right when the permutations are given:
  every encoding's rows put in position order with Alice's permutations, all N encodings matched
  against all originals (decoys included) by the best assignment of summed p-sim scores. This is
  the ceiling of boosting's re-matching, as the global permutation search reaches 100% of positions.

Alice's permutations and answer key are read: an oracle, not an attack. A budget is
``NAME:field=value,...`` over ``PsimConfig`` fields (``steps``, ``batch``, ``n_encoders``,
``width``, ``embed``, ``images_per_encoder``, ``lr``). The JSON is rewritten after each budget, so
a long run that is stopped keeps what it finished.

``--patch-bands B`` adds B features to the patch tower's 15 moments (the rows keep theirs): the
log energy of the patch, less the mean patch, in B bands of the principal directions of all the
game's patches (the first direction, the next 2, 4, 8, ...). With Gaussian random weights in the
first layer, what a random encoder's output can say about a patch, over the keys, is carried by
the patch's inner products with the batch's patches: its distance from their mean and its energy
along their principal directions. The moments hold the first (a patch's mean and spread), not
the second.

``--backend cupy`` runs the pairs, the training and the scores on a GPU (the game itself is made
on the host, as the attack's games are).

Usage::

    python benchmarks/psim_budget_oracle.py --budget base: --budget x4:steps=6000,n_encoders=30 \\
        --json benchmarks/results/cpu_psim_budget_oracle_nc47.json
"""
from __future__ import annotations

import argparse
import dataclasses
import sys
import time
from itertools import pairwise
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_common import load_average, load_record, machine, now_utc, result_header, sources, write_json
from oracles import add_game_args

EVAL_ENCODERS = 4  # fresh attacker encoders for the balanced accuracy (2 choose the threshold, 2 score)
EVAL_SEED_OFFSET = 7919  # their seed: the game's seed plus this, so no training encoder is reused
ENERGY_FLOOR = 1e-12  # added to a band's energy before its log


def band_features(images: np.ndarray, family, bands: int) -> np.ndarray:
    """(N, P, bands): log mean energy of each centred patch in doubling bands of principal directions."""
    from empirical.encoder import patchify
    from empirical.moments import standardise

    pix = patchify(np.asarray(images, dtype=np.float32), family.patch).astype(np.float64)  # (N, P, C*p*p)
    flat = pix.reshape(-1, pix.shape[-1])
    flat = flat - flat.mean(0)
    _, vecs = np.linalg.eigh(flat.T @ flat / len(flat))
    coef = (flat @ vecs[:, ::-1]) ** 2  # (N*P, C*p*p), largest direction first
    edges = [0] + [min(2 ** b - 1 + 2 ** b, coef.shape[1]) for b in range(bands)]
    edges[-1] = coef.shape[1]  # the last band takes every direction left
    out = np.stack([np.log(coef[:, a:b].mean(1) + ENERGY_FLOOR) for a, b in pairwise(edges)], axis=-1)
    return standardise(out.reshape(pix.shape[0], pix.shape[1], bands), np)


INT_FIELDS = ("steps", "batch", "n_encoders", "width", "embed", "images_per_encoder")


def parse_budget(text: str, base):
    """``NAME:field=value,...`` -> (name, PsimConfig)."""
    name, _, spec = text.partition(":")
    if not name:
        raise SystemExit(f"--budget {text!r}: give it a name before the colon")
    changes = {}
    for item in filter(None, spec.split(",")):
        field, _, value = item.partition("=")
        if field not in {f.name for f in dataclasses.fields(base)}:
            raise SystemExit(f"--budget {text!r}: PsimConfig has no field {field!r}")
        changes[field] = int(value) if field in INT_FIELDS else float(value)
    return name, dataclasses.replace(base, **changes)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_game_args(ap)
    ap.add_argument("--decoys", type=int, default=50, help="originals with no encoding (as in the games on disk)")
    ap.add_argument("--budget", action="append", required=True, metavar="NAME:FIELD=VALUE,...",
                    help="a p-sim training budget; repeat for several")
    ap.add_argument("--patch-bands", type=int, default=0, metavar="B",
                    help="add B principal-band energies to the patch features (0: the moments alone)")
    ap.add_argument("--backend", default="numpy", choices=("numpy", "cupy", "auto"),
                    help="array backend of p-sim's pairs, training and scores (cupy: on a GPU)")
    ap.add_argument("--json")
    args = ap.parse_args(argv)

    from empirical.alice import bundled_game
    from empirical.assignment import match_encodings
    from empirical.backend import get_backend, to_numpy
    from empirical.boosting import known_perm_scores
    from empirical.encoder import preset
    from empirical.evaluate import true_matching
    from empirical.psim import PsimConfig, evaluate_psim, patch_features, row_features, train_psim, training_pairs

    xp = get_backend(args.backend)
    started, mach = now_utc(), machine(xp)
    budgets = [parse_budget(b, PsimConfig()) for b in args.budget]
    fam = preset(args.preset, image_size=args.image_size, hidden=args.hidden)
    game, secrets = bundled_game(fam, args.n, extra=args.decoys, seed=args.seed)
    truth = true_matching(game, secrets)  # (N,) encoding -> original
    # --- Alice's permutations: every encoding's rows in position order --------------------------------
    if fam.shuffle:
        rows_of = np.argsort(secrets.perms, axis=1)  # (N, P): the row holding position j
        aligned = np.take_along_axis(game.encodings, rows_of[:, :, None], axis=1)  # (N, P, D)
    else:
        aligned = game.encodings
    P = fam.n_patches
    originals, aligned = xp.asarray(game.originals), xp.asarray(aligned)  # the one conversion to the backend
    print(f"{args.preset}, N = {args.n} + {args.decoys} decoys, {args.image_size} px, hidden {args.hidden}, "
          f"seed {args.seed}; permutations given", flush=True)

    rows: dict[str, dict] = {}
    for name, cfg in budgets:
        load0, t0 = load_average(), time.perf_counter()
        k = cfg.moments
        pf = patch_features(originals, fam, k, xp)  # (N_o, P, K)
        if args.patch_bands:
            pf = xp.concatenate([pf, xp.asarray(band_features(game.originals, fam, args.patch_bands))], axis=-1)
        pairs = training_pairs(originals, fam, cfg, args.seed, xp, patch_feats=pf)
        t_pairs = time.perf_counter() - t0
        model = train_psim(pairs, cfg, args.seed, xp).model
        t_train = time.perf_counter() - t0 - t_pairs
        held = training_pairs(originals, fam, dataclasses.replace(cfg, n_encoders=EVAL_ENCODERS),
                              args.seed + EVAL_SEED_OFFSET, xp, patch_feats=pf)
        ev = evaluate_psim(model, held[:2], held[2:], args.seed, xp)
        pe = model.embed_patches(pf.reshape(-1, pf.shape[-1]), xp)
        re = model.embed_rows(row_features(aligned, k, xp).reshape(-1, k), xp)
        score = known_perm_scores(pe.reshape(len(game.originals), P, -1), re.reshape(len(aligned), P, -1),
                                  np.arange(P), xp)  # (N_o, N)
        share = float(np.mean(match_encodings(to_numpy(score)) == truth))
        pairs_seen = cfg.steps * cfg.batch
        rows[name] = {"config": dataclasses.asdict(cfg), "pairs_seen": pairs_seen,
                      "balanced_accuracy": ev.balanced_accuracy, "auc": ev.auc, "share_matched": share,
                      "pairs_seconds": t_pairs, "train_seconds": t_train, "backend": args.backend,
                      "load": load_record(load0)}
        print(f"  {name:<12} {pairs_seen / 1e6:8.1f} M pairs  balanced accuracy {ev.balanced_accuracy:.1%}  "
              f"AUC {ev.auc:.3f}  matched {share:.1%}  ({t_pairs:.0f} + {t_train:.0f} s)", flush=True)
        if args.json:
            head = result_header("psim_budget_oracle", started, mach, sources(__file__, "oracles.py"), args)
            write_json(args.json, {**head, "budgets": rows})
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
