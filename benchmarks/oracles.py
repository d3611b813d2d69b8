"""Where the attack gives way: each stage's share, then the stages fed with the truth.

Runs the attack's matching stages (local permutations, p-sim, first matching, boosting) on one
game in memory and reports, from Alice's secrets and only after the attack has returned:

* what each stage achieved (local permutations right, p-sim's balanced accuracy, first matching,
  the global permutation, boosting's matching);
* counterfactuals that replace one stage's output by the truth, to see which stage limits the rest:
  the global permutation estimated from the *true* matching, and from only the right pairs of the
  first matching; one re-matching with the *true* global permutation; boosting started from the
  true matching.

If the true global permutation re-matches most images but the first matching cannot estimate it,
the first matching (that is, p-sim's resolution) is what gives way, not the later stages.

Usage::

    python benchmarks/oracles.py --preset neuracrypt-47 --json benchmarks/results/cpu_oracles_nc47.json
    python benchmarks/oracles.py --preset neuracrypt-7
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_common import load_average, load_record, machine, now_utc, sources, write_json


def add_game_args(ap: argparse.ArgumentParser) -> None:
    """The game options the NeuraCrypt-47 oracles share: family, N, image size, hidden width, seed."""
    ap.add_argument("--preset", default="neuracrypt-47")
    ap.add_argument("--n", type=int, default=1000)
    ap.add_argument("--image-size", type=int, default=128)
    ap.add_argument("--hidden", type=int, default=256)
    ap.add_argument("--seed", type=int, default=0)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_game_args(ap)
    ap.add_argument("--backend", default="numpy", choices=("numpy", "cupy", "auto"))
    ap.add_argument("--work-dir", help="keep finished stages here (resumable)")
    ap.add_argument("--json", help="write the results here")
    args = ap.parse_args(argv)

    from empirical.alice import bundled_game
    from empirical.assignment import best_assignment, match_encodings
    from empirical.attack import restrict_to_path_list
    from empirical.backend import get_backend, to_numpy
    from empirical.boosting import boost, estimate_global_perm, known_perm_scores
    from empirical.encoder import preset
    from empirical.evaluate import global_perm_share, local_perm_share, share_matched, true_matching
    from empirical.pipeline import AttackConfig, run_attack

    xp = get_backend(args.backend)
    started, mach = now_utc(), machine(xp)
    fam = preset(args.preset, image_size=args.image_size, hidden=args.hidden)
    game, secrets = bundled_game(fam, args.n, seed=args.seed)
    game = restrict_to_path_list(game)
    cfg = AttackConfig(seed=args.seed)
    load0 = load_average()
    t0 = time.perf_counter()
    res = run_attack(game, cfg, xp, quiet=False, work_dir=args.work_dir, stop_after="boost")
    t_attack = time.perf_counter() - t0
    load = load_record(load0)

    # --- Alice's secrets from here on -------------------------------------------------------------
    truth = true_matching(game, secrets)
    st = {s.name: s for s in res.stages}
    pe, re = res.patch_emb, res.row_emb
    P = fam.n_patches
    if fam.shuffle:
        local, common = local_perm_share(res.order, secrets.perms)
    else:
        local, common = 1.0, np.arange(P)
    true_pi = np.empty(P, dtype=int)
    true_pi[common] = np.arange(P)  # position j sits in slot true_pi[j] of the common order
    first = st["first"].matching
    right = first == truth
    achieved = {
        "local_permutations_right": local,
        "psim_balanced_accuracy": st["psim"].info["balanced_accuracy"],
        "psim_auc": st["psim"].info["auc"],
        "first_matching": share_matched(first, truth),
        "global_permutation_from_first_matching": global_perm_share(
            estimate_global_perm(pe, re, first, xp), common),
        "boosting_rounds": [share_matched(m, truth) for m in st["boost"].arrays["history"]],
        "global_permutation_after_boosting": global_perm_share(res.pi, common),
        "boosting": share_matched(st["boost"].matching, truth),
    }
    ri = xp.asarray(np.flatnonzero(right))
    votes_right = xp.einsum("kje,kqe->jq", pe[xp.asarray(first[np.flatnonzero(right)])], re[ri])
    m_true_pi = match_encodings(known_perm_scores(pe, re, true_pi, xp))
    m_boost_true, _, _ = boost(pe, re, truth, xp, cfg.boost_rounds, cfg.seed)
    oracle = {
        "global_permutation_from_true_matching": global_perm_share(estimate_global_perm(pe, re, truth, xp), common),
        "right_pairs_in_first_matching": int(right.sum()),
        "global_permutation_from_right_pairs_only": global_perm_share(best_assignment(to_numpy(votes_right)), common)
        if right.any() else 0.0,
        "one_rematch_with_true_global_permutation": share_matched(m_true_pi, truth),
        "boosting_from_true_matching": share_matched(m_boost_true, truth),
    }
    print(f"\n{args.preset}, N = {args.n}, {fam.image_size}px, hidden {fam.hidden}, seed {args.seed}: "
          f"attack stages through boosting in {t_attack:.0f} s")
    print("what each stage achieved:")
    for k, v in achieved.items():
        print(f"  {k:<48}" + (" -> ".join(f"{x:.1%}" for x in v) if isinstance(v, list) else f"{v:.1%}"))
    print("with the truth in place of one stage's output:")
    for k, v in oracle.items():
        print(f"  {k:<48}" + (f"{v}" if isinstance(v, int) else f"{v:.1%}"))
    if args.json:
        write_json(args.json, {"benchmark": "oracles", "date": now_utc(), "started": started, "machine": mach,
                               "source_fingerprint": sources(__file__),
                               "settings": {k: v for k, v in vars(args).items() if k not in ("json", "work_dir")},
                               "attack_seconds_through_boosting": t_attack, "load": load,
                               "stages_resumed": [st.name for st in res.stages if st.info.get("resumed")],
                               "achieved": achieved,
                               "oracle": oracle})
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
