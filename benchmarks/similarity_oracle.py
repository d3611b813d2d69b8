"""Oracle for the per-image similarity: what could match more images than p-sim, once the permutations are known?

With the true global permutation, one p-sim re-matching is as far as the matching stages go (at
NeuraCrypt-47, about half the images), and boosting cannot go further because each re-matching
is only as sharp as p-sim. This script compares other ways to score an (original, encoding) pair,
all given the true slot order, on the same held-out half of the game (the other half, when a
method learns from pairs, gives its training pairs):

* ``psim``: the attack's own p-sim (trained on the attacker's random encoders), as boosting uses it;
* ``psim-budget``: p-sim trained again with ``--psim-steps`` steps on ``--psim-encoders`` encoders
  (0 steps: not run);
* ``psim-game``: p-sim's towers trained on this game's own pairs (Alice's key), with ``--right`` of
  them right and the rest a random derangement (what boosting's matching would give);
* ``readout``: a ridge regression, shared by all positions, from an encoded row to its patch's
  features (the 15 moment features, the means and standard deviations of 4 x 4 blocks), trained
  on the game's pairs as ``psim-game``; a pair scores minus the squared distance between the
  predicted and the actual features, each weighted by R^2 / (1 - R^2) on the training pairs;
* ``psim+readout``: the two scores standardised and added.

Each method's score matrix is matched by the best assignment over the held-out half, and the share
right is reported. Alice's secrets are used throughout: this is an oracle, not an attack.

Usage::

    python benchmarks/similarity_oracle.py --preset neuracrypt-47 \\
        --json benchmarks/results/cpu_similarity_oracle_nc47.json
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
from oracles import add_game_args

RIDGE = 1e-2  # the read-out's ridge per training row
SPLIT_STREAM = 0x51A1


def block_features(images: np.ndarray, family) -> np.ndarray:
    """(n, P, 32): the mean and standard deviation of each 4 x 4 block of every patch."""
    from empirical.encoder import patchify

    n, p = len(images), family.patch
    pix = patchify(images, p).astype(np.float64).reshape(n, family.n_patches, 4, p // 4, 4, p // 4)
    return np.concatenate([pix.mean((3, 5)).reshape(n, family.n_patches, 16),
                           pix.std((3, 5)).reshape(n, family.n_patches, 16)], axis=-1)


def readout_scores(rows_tr, feats_tr, rows_te, feats_te) -> np.ndarray:
    """(n_te originals, n_te encodings) read-out scores; rows (n, P, D), feats (n, P, F) standardised."""
    d = rows_tr.shape[2]
    a = rows_tr.reshape(-1, d)
    b = feats_tr.reshape(-1, feats_tr.shape[2])
    w = np.linalg.solve(a.T @ a + RIDGE * len(a) * np.eye(d), a.T @ b)  # (D, F)
    r2 = 1 - ((a @ w - b) ** 2).sum(0) / ((b - b.mean(0)) ** 2).sum(0)
    weight = np.sqrt(np.clip(r2, 0, None) / (1 - np.clip(r2, 0, 0.99)))  # (F,)
    pred = (rows_te.reshape(-1, d) @ w).reshape(len(rows_te), -1, w.shape[1]) * weight
    f = (feats_te * weight).reshape(len(feats_te), -1)
    p = pred.reshape(len(pred), -1)
    return 2 * f @ p.T - (f * f).sum(1)[:, None] - (p * p).sum(1)[None, :]


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_game_args(ap)
    ap.add_argument("--right", type=float, default=0.54, help="share of right pairs the game-trained methods get")
    ap.add_argument("--psim-steps", type=int, default=6000, help="steps of psim-budget (0: not run)")
    ap.add_argument("--psim-encoders", type=int, default=30)
    ap.add_argument("--json")
    args = ap.parse_args(argv)

    from empirical.alice import bundled_game
    from empirical.alignment import apply_order
    from empirical.assignment import match_encodings
    from empirical.backend import to_numpy
    from empirical.boosting import known_perm_scores
    from empirical.encoder import preset
    from empirical.evaluate import local_perm_share, true_matching
    from empirical.pipeline import AttackConfig, run_attack
    from empirical.psim import patch_features, row_features, train_psim, training_pairs

    xp = np
    started, mach = now_utc(), machine(xp)
    fam = preset(args.preset, image_size=args.image_size, hidden=args.hidden)
    game, secrets = bundled_game(fam, args.n, seed=args.seed)
    cfg = AttackConfig(seed=args.seed)
    load0, t0 = load_average(), time.perf_counter()
    res = run_attack(game, cfg, xp, quiet=True, stop_after="first")
    pe, re = to_numpy(res.patch_emb), to_numpy(res.row_emb)  # (N, P, E)
    t_attack = time.perf_counter() - t0

    # --- Alice's secrets from here on: the true slot order and matching ------------------------------
    P, k = fam.n_patches, cfg.psim.moments
    truth = true_matching(game, secrets)  # encoding -> original
    _, common = local_perm_share(res.order, secrets.perms) if fam.shuffle else (1.0, np.arange(P))
    true_pi = np.empty(P, dtype=int)
    true_pi[common] = np.arange(P)
    aligned = apply_order(game.encodings, res.order, xp)[:, true_pi, :]  # (N, P, D) rows in position order
    rng = np.random.default_rng([args.seed, SPLIT_STREAM])
    order = rng.permutation(args.n)
    tr_k, te_k = order[: args.n // 2], order[args.n // 2:]  # encodings that train / are matched
    te_o = truth[te_k]  # the held-out encodings' originals: the candidates
    fed = truth[tr_k].copy()  # the training pairs, a share right
    bad = rng.permutation(len(tr_k))[: round((1 - args.right) * len(tr_k))]
    if len(bad) >= 2:
        fed[bad] = fed[bad[np.roll(np.arange(len(bad)), 1)]]
    n_te = len(te_k)
    rows: dict[str, dict] = {}

    def record(name, score, seconds):
        share = float(np.mean(match_encodings(score) == np.arange(n_te)))
        rows[name] = {"share_right": share, "seconds": seconds}
        print(f"  {name:<14}{share:8.1%}  ({seconds:.0f} s)", flush=True)

    print(f"{args.preset}, N = {args.n}, {n_te} held-out pairs matched; game-trained methods fed "
          f"{np.mean(fed == truth[tr_k]):.0%} right pairs", flush=True)
    s_psim = known_perm_scores(pe[te_o], re[te_k], true_pi, xp)  # (originals, encodings)
    record("psim", s_psim, 0.0)

    pf = patch_features(game.originals, fam, k, xp)  # (N_o, P, K)
    rf = row_features(aligned, k, xp)  # (N, P, K), position order
    t1 = time.perf_counter()
    game_pairs = [(pf[fed].reshape(-1, k), rf[tr_k].reshape(-1, k))]
    model = train_psim(game_pairs, cfg.psim, args.seed, xp).model
    s = known_perm_scores(model.embed_patches(pf[te_o].reshape(-1, k), xp).reshape(n_te, P, -1),
                          model.embed_rows(rf[te_k].reshape(-1, k), xp).reshape(n_te, P, -1), np.arange(P), xp)
    record("psim-game", s, time.perf_counter() - t1)

    t1 = time.perf_counter()
    feats = np.concatenate([pf.astype(np.float64), block_features(game.originals, fam)], axis=-1)
    feats = (feats - feats.mean((0, 1))) / (feats.std((0, 1)) + 1e-12)
    x = aligned.astype(np.float64)
    x = (x - x.mean(0, keepdims=True)) / x.std()  # each position's mean over the encodings removed
    s_read = readout_scores(x[tr_k], feats[fed], x[te_k], feats[te_o])
    record("readout", s_read, time.perf_counter() - t1)
    z = lambda a: (a - a.mean()) / a.std()  # noqa: E731
    record("psim+readout", z(s_psim) + z(s_read), 0.0)

    if args.psim_steps > 0:
        t1 = time.perf_counter()
        big = dataclasses.replace(cfg.psim, steps=args.psim_steps, n_encoders=args.psim_encoders)
        model = train_psim(training_pairs(game.originals, fam, big, args.seed, xp), big, args.seed, xp).model
        s = known_perm_scores(model.embed_patches(pf[te_o].reshape(-1, k), xp).reshape(n_te, P, -1),
                              model.embed_rows(row_features(apply_order(game.encodings, res.order, xp), k, xp)[te_k]
                                               .reshape(-1, k), xp).reshape(n_te, P, -1), true_pi, xp)
        record("psim-budget", s, time.perf_counter() - t1)

    if args.json:
        write_json(args.json, {"benchmark": "similarity_oracle", "date": now_utc(), "started": started,
                               "machine": mach, "source_fingerprint": sources(__file__, "oracles.py"),
                               "settings": {k: v for k, v in vars(args).items() if k != "json"},
                               "attack_seconds_through_first": t_attack, "load": load_record(load0),
                               "held_out_pairs": n_te, "methods": rows})
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
