"""What else was tried for ``perm_oracle.py``'s global permutation: other graphs and other searches.

Runs the attack through the first matching on one game (as ``perm_oracle.py`` does), then reports,
from Alice's secrets, how much signal other ways of building the slots' and positions' graphs
carry, and how other searches of the quadratic assignment fare against the annealing that
``perm_oracle.py`` uses:

* graphs (correlation with the positions' graph through the true permutation, over off-diagonal
  entries, and the share of each slot's four most correlated slots that hold grid neighbours):
  ``embeddings`` (``perm_oracle.py``'s), ``whitened`` (the embedding dimensions decorrelated
  first), ``ranked`` (each place's values replaced by their ranks over the images), ``row-pcs``
  (the slots' own rows projected on their top principal directions, 1 and 16 of them, against the
  patches' standard deviation), ``cross`` (every pair of embedding dimensions, weighted by how the
  positions' neighbours correlate in them);
* searches (objective reached against the true permutation's, and positions right up to the
  grid's symmetries): FAQ (``scipy.optimize.quadratic_assignment``) from random starts and from
  spectral ones (the two leading Laplacian eigenvectors of each graph, every flip and swap of
  axes), each finished by the exchange search; and a consensus of the adjacencies of several
  annealed solutions, re-laid out spectrally and annealed cold.

Usage::

    python benchmarks/graph_variants.py --json benchmarks/results/cpu_graph_variants_nc47.json
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
import perm_oracle as po
from bench_common import load_average, load_record, machine, now_utc, sources, write_json
from oracles import add_game_args

FAQ_STARTS = 16  # random starts of FAQ
CONSENSUS_CHAINS, CONSENSUS_STEPS = 12, 300_000


def whiten(x: np.ndarray) -> np.ndarray:
    """(n, P, E) with each image's mean over places removed and the E dimensions decorrelated."""
    x = x - x.mean(1, keepdims=True)
    f = x.reshape(-1, x.shape[2])
    vals, vecs = np.linalg.eigh(np.cov(f.T))
    return (x @ vecs) / np.sqrt(vals + 1e-12)


def cross_graph(x: np.ndarray, weights: np.ndarray | None) -> tuple[np.ndarray, np.ndarray]:
    """``(graph, template)``: sum over dimension pairs (e, f) of weights[e, f] corr(x_se, x_tf).

    Without ``weights``, the template is the mean cross-correlation of grid neighbours in ``x``
    (the positions' side, where the grid is known) and is used as the weights.
    """
    a = x - x.mean(1, keepdims=True)
    a = (a - a.mean(0)) / (a.std(0) + 1e-12)
    c = np.einsum("kse,ktf->stef", a, a, optimize=True) / len(a)  # (P, P, E, E)
    if weights is None:
        nb = po.grid_neighbours(round(float(np.sqrt(x.shape[1]))))
        weights = np.mean([c[j, list(nb[j])].mean(0) for j in range(x.shape[1])], axis=0)
    g = np.einsum("stef,ef->st", c, weights)
    np.fill_diagonal(g, 0.0)
    return g, weights


def spectral_starts(c_pos: np.ndarray, c_slot: np.ndarray) -> list[np.ndarray]:
    """Positions and slots placed by the two leading non-trivial Laplacian eigenvectors of each
    graph (positive weights), paired by the nearest placement, for each flip and swap of axes."""
    from scipy.optimize import linear_sum_assignment

    def coords(c):
        w = np.clip(c, 0, None)
        v = np.linalg.eigh(np.diag(w.sum(1)) - w)[1][:, 1:3]
        return (v - v.mean(0)) / (v.std(0) + 1e-12)

    a, b = coords(c_pos), coords(c_slot)
    out = []
    for swap in (False, True):
        for sx in (1, -1):
            for sy in (1, -1):
                bb = (b[:, ::-1] if swap else b) * np.array([sx, sy])
                out.append(linear_sum_assignment(((a[:, None, :] - bb[None, :, :]) ** 2).sum(-1))[1])
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_game_args(ap)
    ap.add_argument("--json")
    args = ap.parse_args(argv)

    from scipy.optimize import quadratic_assignment
    from scipy.stats import rankdata

    from empirical.alice import bundled_game
    from empirical.alignment import apply_order
    from empirical.backend import to_numpy
    from empirical.encoder import patchify, preset
    from empirical.evaluate import local_perm_share
    from empirical.pipeline import AttackConfig, run_attack

    started, mach = now_utc(), machine(np)
    fam = preset(args.preset, image_size=args.image_size, hidden=args.hidden)
    game, secrets = bundled_game(fam, args.n, seed=args.seed)
    load0, t0 = load_average(), time.perf_counter()
    res = run_attack(game, AttackConfig(seed=args.seed), np, quiet=True, stop_after="first")
    t_attack = time.perf_counter() - t0
    pe, re = to_numpy(res.patch_emb).astype(np.float64), to_numpy(res.row_emb).astype(np.float64)
    P, side = fam.n_patches, fam.image_size // fam.patch

    # --- Alice's secrets from here on -----------------------------------------------------------------
    _, common = local_perm_share(res.order, secrets.perms) if fam.shuffle else (1.0, np.arange(P))
    true_pi = np.empty(P, dtype=int)
    true_pi[common] = np.arange(P)
    off, nb = ~np.eye(P, dtype=bool), po.grid_neighbours(side)

    def signal(c_pos, c_slot):
        ct = c_slot[np.ix_(true_pi, true_pi)]
        top = np.argsort(-ct, axis=1)[:, :4]
        return {"corr_with_position_graph": float(np.corrcoef(ct[off], c_pos[off])[0, 1]),
                "slot_top4_are_grid_neighbours": float(np.mean([len(set(top[j]) & nb[j]) / len(nb[j])
                                                                for j in range(P)]))}

    graphs = {}
    c_pos, c_slot = po.correlation_graph(pe), po.correlation_graph(re)
    graphs["embeddings"] = signal(c_pos, c_slot)
    graphs["whitened"] = signal(po.correlation_graph(whiten(pe)), po.correlation_graph(whiten(re)))
    graphs["ranked"] = signal(po.correlation_graph(rankdata(pe, axis=0)), po.correlation_graph(rankdata(re, axis=0)))
    rows = apply_order(game.encodings, res.order, np).astype(np.float64)  # (N, P, D) slot order
    rows -= rows.mean(0)
    flat = rows.reshape(-1, rows.shape[2])[::7]
    vecs = np.linalg.eigh(flat.T @ flat)[1][:, ::-1]
    std = patchify(game.originals, fam.patch).astype(np.float64).std(-1)[..., None]  # (N_o, P, 1)
    for r in (1, 16):
        graphs[f"row-pcs-{r}"] = signal(po.correlation_graph(std), po.correlation_graph(rows @ vecs[:, :r]))
    g_pos, template = cross_graph(pe, None)
    graphs["cross"] = signal(g_pos, cross_graph(re, template)[0])

    true_obj = po.objective(c_pos, c_slot, true_pi)
    syms = po.grid_symmetries(side * side)

    def outcome(pi):
        return {"objective": po.objective(c_pos, c_slot, pi),
                "positions_right": float(max(np.mean(pi[g] == true_pi) for g in syms))}

    rng = np.random.default_rng([args.seed, 0x6A1])
    searches = {}
    t1 = time.perf_counter()
    for name, starts in (("faq-random", ["randomized"] * FAQ_STARTS),
                         ("faq-spectral", [np.eye(P)[s] for s in spectral_starts(c_pos, c_slot)])):
        runs = []
        for s in starts:
            r = quadratic_assignment(c_pos, c_slot, method="faq",
                                     options={"maximize": True, "P0": s, "rng": rng, "maxiter": 200})
            runs.append(outcome(po.two_swap(c_pos, c_slot, np.asarray(r.col_ind))))
        searches[name] = runs
    adjacency = np.zeros((P, P))
    for j in range(P):
        adjacency[j, list(nb[j])] = 1.0
    votes = np.zeros((P, P))
    for pi in po.anneal(c_pos, c_slot, CONSENSUS_CHAINS, CONSENSUS_STEPS, rng):
        pi = po.two_swap(c_pos, c_slot, pi)
        votes[np.ix_(pi, pi)] += adjacency  # slots this solution puts next to each other
    inv = np.argsort(true_pi)  # slot -> position
    top = np.argsort(-(votes + 1e-6 * c_slot), axis=1)[:, :4]
    consensus_precision = float(np.mean([adjacency[inv[s], inv[top[s]]].mean() for s in range(P)]))
    searches["consensus"] = [outcome(po.two_swap(c_pos, c_slot, s))
                             for s in spectral_starts(c_pos, votes + 1e-6 * c_slot)]
    t_search = time.perf_counter() - t1

    print(f"{args.preset}, N = {args.n}: attack through the first matching {t_attack:.0f} s, searches {t_search:.0f} s")
    for k, v in graphs.items():
        print(f"  graph {k:<14} corr {v['corr_with_position_graph']:.3f}  top-4 neighbours "
              f"{v['slot_top4_are_grid_neighbours']:.1%}")
    print(f"  true permutation's objective {true_obj:.3f}; consensus top-4 neighbours {consensus_precision:.1%}")
    for k, runs in searches.items():
        print(f"  search {k:<14} objectives {min(r['objective'] for r in runs):.3f}-"
              f"{max(r['objective'] for r in runs):.3f}, positions right at most "
              f"{max(r['positions_right'] for r in runs):.1%}")
    if args.json:
        write_json(args.json, {"benchmark": "graph_variants", "date": now_utc(), "started": started, "machine": mach,
                               "source_fingerprint": sources(__file__, "perm_oracle.py", "oracles.py",
                                                                 "tprime_fresh.py", "games.py"),
                               "settings": {k: v for k, v in vars(args).items() if k != "json"},
                               "attack_seconds_through_first": t_attack, "search_seconds": t_search,
                               "load": load_record(load0), "graphs": graphs, "true_objective": true_obj,
                               "consensus_top4_neighbours": consensus_precision, "searches": searches})
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
