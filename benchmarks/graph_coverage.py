"""Which candidate graph holds the dense optimum of boosting's re-matchings? An oracle on one game.

The attack solves its matchings at large N on a sparse candidate graph
(``empirical.candidate_graph``). A graph is useful when it admits a matching of every encoding and
its best matching is (nearly) the dense one. This script takes a game on disk and the work dir of
an attack run on it (the alignment, p-sim and first matching are resumed, or computed once), and
scores all pairs with the known-permutation p-sim scores of three regimes of boosting:

* ``first``: the global permutation estimated from the first matching (boosting's first round);
* ``half``: the true permutation (from Alice's answer key) on a random half of the positions
  (a cross-fitted half round);
* ``all``: the true permutation on all positions (boosting's last rounds).

For each it solves the dense assignment (seconds, share right) and reports how hub-like the scores
are (originals among some encoding's 50 best; encodings whose dense pair is among their 50 or 200
best originals). Then for each graph (each encoding's k best originals alone, k = 50; and both
sides' k best, k = 10 to 400): edges per encoding, the share of encodings a maximum matching of
the graph covers (Hopcroft-Karp: 1 means a full matching exists), and where one exists the graph's
solve seconds, its agreement with the dense optimum and its share right. The candidates are taken
once at the largest k and cut down for the smaller ones. Alice's answer key is used only here.

Usage::

    python benchmarks/graph_coverage.py --game G --answer-key A --work-dir W \\
        --json benchmarks/results/cpu_graph_coverage_n16000.json
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_common import machine, now_utc, sources, write_json
from resume_first import add_arguments, game_record, resume

from empirical.assignment import match_encodings
from empirical.boosting import estimate_global_perm, known_perm_blocks, known_perm_scores
from empirical.candidate_graph import Candidates, match_on_graph, stream_candidates
from empirical.candidate_graph import _edges as candidate_edges  # the graph's pairs, as the attack builds them
from empirical.candidate_graph import _top as top_k

GRAPHS = [("encodings' side", 50), ("both sides", 10), ("both sides", 20), ("both sides", 50),
          ("both sides", 100), ("both sides", 200), ("both sides", 400)]


def build_parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_arguments(ap, answer_key="Alice's answer key (the oracle's truth)",
                  seed_help="the attack's seed; also draws the half of the positions")
    ap.add_argument("--json", help="write the results here")
    return ap


def cut(c: Candidates, k: int, both: bool) -> Candidates:
    """The same candidates with each list cut to its ``k`` best (the originals' lists emptied unless ``both``)."""
    ev, ei = top_k(c.enc_score, c.enc_best, k, np)
    ov, oi = top_k(c.orig_score, c.orig_best, k, np) if both else (c.orig_score[:, :0], c.orig_best[:, :0])
    return Candidates(ei, ev, oi, ov, c.std)


def covered(c: Candidates, n_orig: int) -> float:
    """Share of encodings a maximum matching of the candidate graph covers."""
    from scipy.sparse import csr_array
    from scipy.sparse.csgraph import maximum_bipartite_matching

    enc, orig, _ = candidate_edges(c)
    g = csr_array((np.ones(len(enc)), (enc, orig)), shape=(len(c.enc_best), n_orig))
    return float(np.mean(maximum_bipartite_matching(g, perm_type="column") >= 0))


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    game, _, run, truth = resume(args)
    pe, re_ = run.patch_emb, run.row_emb
    n_orig, P = pe.shape[0], pe.shape[1]
    pi_true = estimate_global_perm(pe, re_, truth, np)
    half = np.sort(np.random.default_rng([args.seed, 0x6C0]).permutation(P)[:P // 2])
    regimes = {"first": (pe, estimate_global_perm(pe, re_, run.matching, np)),
               "half": (pe[:, half], pi_true[half]), "all": (pe, pi_true)}
    out = []
    for name, (p_emb, pi) in regimes.items():
        s = known_perm_scores(p_emb, re_, pi, np)
        t0 = time.perf_counter()
        dense = match_encodings(s)
        rec = {"regime": name, "dense_seconds": time.perf_counter() - t0,
               "dense_share_right": float(np.mean(dense == truth)),
               "favourite_share_right": float(np.mean(s.argmax(axis=0) == truth))}
        del s
        big = stream_candidates(known_perm_blocks(p_emb, re_, pi, np), max(k for _, k in GRAPHS), np)
        in_lists = np.zeros(n_orig, bool)
        in_lists[cut(big, 50, False).enc_best.ravel()] = True
        rec["originals_among_some_encodings_50_best"] = float(in_lists.mean())
        for k in (50, 200):
            rec[f"dense_pair_among_encodings_{k}_best"] = float(
                np.mean((cut(big, k, False).enc_best == dense[:, None]).any(axis=1)))
        print(f"{name}: dense {rec['dense_seconds']:.1f} s, {rec['dense_share_right']:.2%} right "
              f"(favourites {rec['favourite_share_right']:.2%}); originals in some 50-best list "
              f"{rec['originals_among_some_encodings_50_best']:.3f}; dense pair in the encoding's 50 / 200 best "
              f"{rec['dense_pair_among_encodings_50_best']:.3f} / {rec['dense_pair_among_encodings_200_best']:.3f}",
              flush=True)
        rec["graphs"] = []
        for side, k in GRAPHS:
            c = cut(big, k, side == "both sides")
            g = {"sides": side, "k": k, "edges_per_encoding": len(candidate_edges(c)[0]) / len(c.enc_best),
                 "max_matching_covers": covered(c, n_orig)}
            if g["max_matching_covers"] == 1.0:
                t0 = time.perf_counter()
                m = match_on_graph(c, n_orig)
                g.update(solve_seconds=time.perf_counter() - t0, agrees_with_dense=float(np.mean(m == dense)),
                         share_right=float(np.mean(m == truth)))
            rec["graphs"].append(g)
            print(f"   {side:15s} k {k:3d}: {g['edges_per_encoding']:6.1f} edges per encoding, a maximum matching "
                  f"covers {g['max_matching_covers']:.4f}"
                  + (f"; solve {g['solve_seconds']:.2f} s, agrees {g['agrees_with_dense']:.2%}, "
                     f"{g['share_right']:.2%} right" if "solve_seconds" in g else ": no full matching"), flush=True)
        out.append(rec)
    if args.json:
        write_json(args.json, {"benchmark": "graph_coverage", "date": now_utc(), "machine": machine(),
                               "game": game_record(args, game),
                               "first_share_matched": float(np.mean(run.matching == truth)),
                               "regimes": out, "source_fingerprint": sources(__file__, "resume_first.py")})
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
