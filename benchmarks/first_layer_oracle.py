"""Where along the patch directions does T''s first layer go wrong? Alice's weights against T''s.

Extraction fits T' on whitened patches: each whitened direction is an eigenvector u_k of the
game's patch covariance, scaled by 1 / sqrt(s_k + f s_max) (f: the eigenvalue floor). Along the
directions the game's images hardly vary in, the data barely constrain the first layer, and every
whitened step of Adam, mapped back to pixels, is amplified by up to 1 / sqrt(f). Alice's weights,
drawn uniformly, have about the same norm along every direction. This oracle attacks one game per
``--decay`` value (``ExtractConfig.decay``) and prints, for directions from the patches' main one
to the least used, the norm |W u_k| of Alice's first layer and of T''s (each over its norm along
the main direction, since T''s units have their own scale), then T''s Challenge 2 score on new
pictures, and that score once T''s first layer is cut to the directions with s_k above tau s_max
(the last layer refitted by least squares on Alice's rows, so an oracle).

Usage::

    python benchmarks/first_layer_oracle.py --preset neuracrypt-2 --n 600 --decay 0 10 \\
        --json benchmarks/results/cpu_first_layer_oracle_nc2.json
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_common import load_record, machine, now_utc, sources, write_json
from tprime_fresh import attack_game, fresh_sets, patch_means

AT = (0, 1, 5, 20, 50, 100, 150, 200, 230, 250, 255)  # directions reported, from the main one (0)
TAUS = (1e-4, 1e-3)


def profile(w: np.ndarray, u: np.ndarray) -> np.ndarray:
    """|W u_k| over |W u_0|: ``w`` (units, F), ``u`` (F, F) eigenvectors, main direction first."""
    n = np.linalg.norm(w.astype(np.float64) @ u, axis=0)
    return n / n[0]


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], epilog=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--preset", default="neuracrypt-2")
    ap.add_argument("--kind", default="split", choices=("split", "synthetic"))
    ap.add_argument("--n", type=int, default=600)
    ap.add_argument("--hidden", type=int, default=256)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--decay", type=float, nargs="+", default=[0.0, 10.0])
    ap.add_argument("--fresh", type=int, default=500)
    ap.add_argument("--image-size", type=int, default=128)
    ap.add_argument("--json", type=Path)
    args = ap.parse_args(argv)
    from empirical.encoder import encode, patchify
    from empirical.evaluate import share_matched, true_matching
    from empirical.extraction import refit_mixer
    from empirical.nearest import nearest_shares
    from empirical.tprime import key_from_params, params_from_key

    xp, started, runs = np, now_utc(), []
    for decay in args.decay:
        game, secrets, res, seconds, load0 = attack_game(args.preset, args.kind, args.n, args.hidden, args.seed,
                                                         "family", args.image_size, xp, decay=decay)
        # --- Alice's secrets from here on ---------------------------------------------------------------
        fam, x = game.config, game.originals
        rows = patchify(x.astype(np.float32), fam.patch).reshape(-1, fam.patch_dim).astype(np.float64)
        s, u = np.linalg.eigh(np.cov(rows[::4].T))
        s, u = s[::-1], u[:, ::-1]  # main direction first
        alice = profile(secrets.key.conv_w.reshape(len(secrets.key.conv_w), -1), u)
        est = profile(res.encoder.conv_w.reshape(len(res.encoder.conv_w), -1), u)
        new = fresh_sets(args.kind, x, args.seed, args.fresh, args.image_size)["pictures"]
        truth_new = patch_means(new, secrets.key, xp, seed=1)

        def score(key, new=new, truth_new=truth_new) -> list[float]:
            sh = nearest_shares(truth_new, patch_means(new, key, xp, seed=2))
            return [sh["est_to_nearest_truth"], sh["truth_to_nearest_est"]]

        targets, _ = encode(x, secrets.key, xp, seed=0, shuffle=False)  # Alice's rows in position order
        params, cut = params_from_key(res.encoder, xp), {}
        mu = rows.mean(axis=0)
        for tau in TAUS:
            low = u[:, s < tau * s[0]]  # (F, k) the directions cut
            w0 = params["W0"].astype(np.float64)
            part = w0 @ low @ low.T
            q = dict(params, W0=(w0 - part).astype(np.float32), b0=(params["b0"] + part @ mu).astype(np.float32))
            q = refit_mixer(q, x, targets, np.arange(len(x)) // fam.bn_batch, fam, xp)
            cut[str(tau)] = {"directions_cut": int(low.shape[1]), "pictures": score(key_from_params(q, fam))}
        run = {"decay": decay, "final_share_matched": share_matched(res.matching, true_matching(game, secrets)),
               "attack_seconds": seconds, "load": load_record(load0),
               "eigenvalue_over_largest": {k: float(s[k] / s[0]) for k in AT if k < len(s)},
               "alice_profile": {k: float(alice[k]) for k in AT if k < len(s)},
               "tprime_profile": {k: float(est[k]) for k in AT if k < len(s)},
               "pictures": score(res.encoder), "cut_to_used_directions": cut}
        runs.append(run)
        print(f"decay {decay}: matched {run['final_share_matched']:.1%}; new pictures {run['pictures'][0]:.1%} / "
              f"{run['pictures'][1]:.1%}; cut at 1e-4: {cut['0.0001']['pictures'][0]:.1%} / "
              f"{cut['0.0001']['pictures'][1]:.1%}")
        for k in run["alice_profile"]:
            print(f"    direction {k:>3}  s/s_max {run['eigenvalue_over_largest'][k]:.1e}  Alice "
                  f"{run['alice_profile'][k]:.2f}  T' {run['tprime_profile'][k]:.2f}", flush=True)
        if args.json:
            write_json(args.json, {"benchmark": "first_layer_oracle", "started": started, "date": now_utc(),
                                   "machine": machine(), "source_fingerprint": sources(__file__, "tprime_fresh.py",
                                                                                       "games.py"),
                                   "settings": {k: (str(v) if isinstance(v, Path) else v) for k, v in
                                                vars(args).items()}, "runs": runs})
    return 0


if __name__ == "__main__":
    sys.exit(main())
