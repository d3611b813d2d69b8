"""Oracle for the global permutation without a matching: the slots' correlation graph against the grid's.

Where the first matching is near chance (NeuraCrypt-47), boosting cannot estimate the global
permutation (which slot of the aligned encodings holds which image position) from matched pairs.
This script measures whether the permutation can be found from dataset-level statistics alone,
which need no matching at all. Neighbouring patches of an image are alike (texture, contrast), so
across the images, the p-sim embeddings of two neighbouring positions are correlated; if the
encoder keeps even a weak trace of each patch, the same holds across the encodings for the two
slots those positions went to. Averaged over N images, a weak trace becomes a clear correlation.

Runs the attack through the first matching on one game in memory (alignment and p-sim as the
attack computes them, never Alice's key), then:

* ``C_pos`` (P x P): the correlation, across the images, of the p-sim embeddings of every two
  positions (each image's mean over positions removed, each embedding dimension standardised);
  ``C_slot`` (P x P): the same for the aligned rows' embeddings across the encodings;
* signal, from Alice's secrets: the correlation of ``C_slot`` (read in position order through the
  true permutation) with ``C_pos`` over the off-diagonal entries, and the share of each position's
  most correlated slots that hold grid neighbours;
* recovery, without secrets: the permutation maximising the agreement of the two matrices (a
  quadratic assignment), by simulated annealing from random starts in many independent chains,
  each finished by a local search over exchanges of two positions, the highest objective kept; it is
  defined at best up to the grid's 8 symmetries when images are alike everywhere, so each of the 8
  is tried by one p-sim re-matching and the one whose matching has the largest median margin is
  kept (the attacker's own choice);
* scored from the secrets: the share of positions right (each symmetry's and the one chosen), the
  re-matching's share, and boosting started from it.

Usage::

    python benchmarks/perm_oracle.py --preset neuracrypt-47 --json benchmarks/results/cpu_perm_oracle_nc47.json
    python benchmarks/perm_oracle.py --preset neuracrypt-47 --kind synthetic
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_common import load_average, load_record, machine, now_utc, sources, write_json
from tprime_fresh import kind_images

from empirical.graph_perm import (  # noqa: F401  (graph_variants.py reads these through this module)
    anneal,
    correlation_graph,
    graph_start,
    grid_symmetries,
    objective,
    two_swap,
)


def grid_neighbours(side: int) -> list[set]:
    """Each row-major position's 4-neighbours on the grid."""
    out = []
    for j in range(side * side):
        r, c = divmod(j, side)
        out.append({(r + dr) * side + (c + dc) for dr, dc in ((1, 0), (-1, 0), (0, 1), (0, -1))
                    if 0 <= r + dr < side and 0 <= c + dc < side})
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--preset", default="neuracrypt-47")
    ap.add_argument("--kind", default="bundled", choices=("bundled", "split", "synthetic"))
    ap.add_argument("--n", type=int, default=1000)
    ap.add_argument("--image-size", type=int, default=128)
    ap.add_argument("--hidden", type=int, default=256)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--work-dir", help="keep finished stages here (resumable)")
    ap.add_argument("--json")
    args = ap.parse_args(argv)

    from empirical.alice import bundled_game, bundled_ids, game_in_memory
    from empirical.assignment import match_encodings
    from empirical.backend import to_numpy
    from empirical.boosting import boost, known_perm_scores
    from empirical.encoder import preset
    from empirical.evaluate import global_perm_share, local_perm_share, share_matched, true_matching
    from empirical.pipeline import AttackConfig, run_attack

    xp = np
    started, mach = now_utc(), machine(xp)
    fam = preset(args.preset, image_size=args.image_size, hidden=args.hidden)
    if args.kind == "bundled":
        game, secrets = bundled_game(fam, args.n, seed=args.seed)
    else:
        game, secrets = game_in_memory(kind_images(args.kind, args.n, args.image_size, args.seed, held_out=False),
                                       bundled_ids(args.n), fam, args.n, seed=args.seed)
    cfg = AttackConfig(seed=args.seed)
    load0, t0 = load_average(), time.perf_counter()
    res = run_attack(game, cfg, xp, quiet=False, work_dir=args.work_dir, stop_after="first")
    t_attack = time.perf_counter() - t0
    pe, re = to_numpy(res.patch_emb), to_numpy(res.row_emb)  # (N, P, E) each
    P, side = fam.n_patches, fam.image_size // fam.patch

    # --- the attacker's side: the attack's own graph start (empirical.graph_perm), then boosting ----
    t1 = time.perf_counter()
    gs = graph_start(pe, re, args.seed, xp)
    candidates = [(pi_g, match_encodings(known_perm_scores(pe, re, pi_g, xp)), margin)  # each symmetry's
                  for pi_g, margin in zip(gs.symmetry_pis, gs.info["symmetry_margins"], strict=True)]
    chosen = gs.info["symmetry_chosen"]
    m_boost, _, _ = boost(pe, re, gs.matching, xp, cfg.boost_rounds, cfg.seed)
    t_recover = time.perf_counter() - t1

    c_pos, c_slot = correlation_graph(pe), correlation_graph(re)
    chain_objs, obj_found = gs.info["chain_objectives"], gs.info["objective"]

    # --- Alice's secrets from here on ---------------------------------------------------------------
    truth = true_matching(game, secrets)
    local, common = local_perm_share(res.order, secrets.perms) if fam.shuffle else (1.0, np.arange(P))
    true_pi = np.empty(P, dtype=int)
    true_pi[common] = np.arange(P)
    c_true = c_slot[np.ix_(true_pi, true_pi)]  # the slots' graph in position order
    true_obj = objective(c_pos, c_slot, true_pi)
    off = ~np.eye(P, dtype=bool)
    nb = grid_neighbours(side)
    top4 = np.argsort(-c_true, axis=1)[:, :4]
    pos_top4 = np.argsort(-c_pos, axis=1)[:, :4]
    signal = {
        "corr_slot_graph_vs_position_graph": float(np.corrcoef(c_true[off], c_pos[off])[0, 1]),
        "slot_top4_are_grid_neighbours": float(np.mean([len(set(top4[j]) & nb[j]) / len(nb[j]) for j in range(P)])),
        "position_top4_are_grid_neighbours": float(np.mean([len(set(pos_top4[j]) & nb[j]) / len(nb[j])
                                                           for j in range(P)])),
        "mean_neighbour_corr_slots": float(np.mean([c_true[j, list(nb[j])].mean() for j in range(P)])),
        "mean_neighbour_corr_positions": float(np.mean([c_pos[j, list(nb[j])].mean() for j in range(P)])),
        "objective_recovered": obj_found,
        "chains_reaching_the_true_objective": int(sum(o >= true_obj - 1e-9 for o in chain_objs)),
        "chains": len(chain_objs),
        "objective_true": true_obj,
    }
    per_symmetry = [{"positions_right": global_perm_share(pi_g, common), "rematch": share_matched(m, truth),
                     "median_margin": margin} for pi_g, m, margin in candidates]
    out = {
        "local_permutations_right": local,
        "psim_balanced_accuracy": next(s for s in res.stages if s.name == "psim").info["balanced_accuracy"],
        "first_matching": share_matched(res.matching, truth),
        "signal": signal,
        "per_symmetry": per_symmetry,
        "chosen_symmetry": chosen,
        "best_symmetry_positions_right": max(s["positions_right"] for s in per_symmetry),
        "chosen_positions_right": per_symmetry[chosen]["positions_right"],
        "chosen_rematch": per_symmetry[chosen]["rematch"],
        "boosting_from_chosen": share_matched(m_boost, truth),
        "rematch_with_true_permutation": share_matched(match_encodings(known_perm_scores(pe, re, true_pi, xp)), truth),
    }
    print(f"\n{args.preset}, {args.kind}, N = {args.n}, hidden {fam.hidden}, seed {args.seed}: attack through the "
          f"first matching {t_attack:.0f} s, recovery {t_recover:.0f} s")
    for k, v in out.items():
        if k == "per_symmetry":
            for i, s in enumerate(v):
                print(f"  symmetry {i}: positions {s['positions_right']:.1%}, re-match {s['rematch']:.1%}, "
                      f"margin {s['median_margin']:.4f}")
        elif k == "signal":
            for a, b in v.items():
                print(f"  {a:<40}{b:.4f}")
        else:
            print(f"  {k:<40}{v if isinstance(v, int) else f'{v:.1%}'}")
    if args.json:
        write_json(args.json, {"benchmark": "perm_oracle", "date": now_utc(), "started": started, "machine": mach,
                               "source_fingerprint": sources(__file__, "tprime_fresh.py", "games.py"),
                               "settings": {k: v for k, v in vars(args).items() if k not in ("json", "work_dir")},
                               "attack_seconds_through_first": t_attack, "recovery_seconds": t_recover,
                               "load": load_record(load0), **out})
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
