"""Oracle: must i-sim on the candidates be an exact assignment, or does a cheap bound carry the attack?

On the H200 (``gpu_check_h200.json``) the first matching at the challenge's size took 155 s of the
attack's first 210 s, nearly all of it the N_o x k exact 256 x 256 assignments of i-sim, solved by
SciPy on the host. This script takes a game and the work dir of an attack run on it up to its first
matching (``resume_first.py``), keeps the attack's candidates, and scores them in several ways:

``exact``      the attack's i-sim: the value of the best assignment of the (P, P) p-sim matrix
``rowmax``     the sum over patches of each patch's best row (an upper bound; one reduction)
``rowcol``     the mean of that sum and the sum over rows of each row's best patch
``sinkhorn``   the transport value of the entropic plan (``--eps``, ``--iters`` log-domain Sinkhorn
               iterations with unit marginals), which tends to the exact value as eps -> 0

All but ``exact`` are a few array operations per block of matrices, which a GPU runs batched. For
each it reports the seconds (NumPy, this machine), the share of originals whose best candidate is
the one the exact i-sim picks, the first matching's share, and the share after boosting from that
first matching (the stage that follows it in the attack). Alice's answer key is read to score:
an oracle, not an attack.

    python -m empirical.challenge make --n 1000 --image-size 256 --hidden 256 --out G --answer-key A --secret-key K
    python -m empirical.attack --game G --work-dir W --stop-after first
    python benchmarks/isim_approx_oracle.py --game G --work-dir W --answer-key A --json out.json
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_common import load_average, load_record, machine, now_utc, result_header, sources, write_json
from resume_first import add_arguments, game_record, resume

BLOCK = 16  # originals per block of (BLOCK, k, P, P) similarity matrices


def sims_blocks(patch_emb: np.ndarray, row_emb: np.ndarray, cand: np.ndarray):
    """Yield ``(start, sims)``: sims (b, k, P, P), patch p of original a against row q of candidate i."""
    for s in range(0, len(cand), BLOCK):
        c = cand[s:s + BLOCK]  # (b, k)
        rows = np.swapaxes(row_emb[c], 2, 3)  # (b, k, E, P)
        yield s, patch_emb[s:s + len(c), None] @ rows  # (b, 1, P, E) @ (b, k, E, P) -> (b, k, P, P)


def rowmax(sims: np.ndarray) -> np.ndarray:
    return sims.max(axis=3).sum(axis=2)  # (b, k)


def rowcol(sims: np.ndarray) -> np.ndarray:
    return (sims.max(axis=3).sum(axis=2) + sims.max(axis=2).sum(axis=2)) / 2


def sinkhorn_value(sims: np.ndarray, eps: float, iters: int) -> np.ndarray:
    """Transport value sum(T * S) of the entropic plan T with unit row and column sums, per matrix."""
    from scipy.special import logsumexp

    logk = sims / eps  # (b, k, P, P)
    f = np.zeros(sims.shape[:3], dtype=sims.dtype)  # (b, k, P) row potentials
    g = np.zeros(sims.shape[:3], dtype=sims.dtype)  # (b, k, P) column potentials
    for _ in range(iters):
        f = -logsumexp(logk + g[:, :, None, :], axis=3)
        g = -logsumexp(logk + f[:, :, :, None], axis=2)
    plan = np.exp(logk + f[:, :, :, None] + g[:, :, None, :])
    return (plan * sims).sum(axis=(2, 3))


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_arguments(ap, answer_key="Alice's answer key (to score the matchings)")
    ap.add_argument("--eps", type=float, nargs="*", default=[0.05, 0.02], help="Sinkhorn's eps values to try")
    ap.add_argument("--iters", type=int, default=30, help="Sinkhorn iterations")
    ap.add_argument("--methods", nargs="+", default=None,
                    help="which to run (default all: exact rowmax rowcol sinkhorn_<eps>...); without exact, the "
                         "attack's own first matching (saved in the work dir) stands for it")
    ap.add_argument("--boost-rounds", type=int, default=12)
    ap.add_argument("--json")
    args = ap.parse_args(argv)

    from empirical.boosting import boost
    from empirical.evaluate import share_matched
    from empirical.isim import first_matching, isim_candidates

    started, mach = now_utc(), machine(np)
    r = resume(args)
    first = next(s for s in r.run.stages if s.name == "first")
    cand = np.asarray(first.arrays["candidates"])  # (N_o, k)
    pe, re = np.asarray(r.run.patch_emb), np.asarray(r.run.row_emb)
    n_enc = len(re)
    print(f"N = {n_enc}, N_o = {len(cand)}, k = {cand.shape[1]}, P = {pe.shape[1]}; the attack's first matching "
          f"{share_matched(first.matching, r.truth):.1%}", flush=True)

    def run_blocks(fn):
        out = np.empty(cand.shape, dtype=np.float64)
        for s, sims in sims_blocks(pe, re, cand):
            out[s:s + len(sims)] = fn(sims)
        return out

    methods = {"exact": lambda: isim_candidates(pe, re, cand, np), "rowmax": lambda: run_blocks(rowmax),
               "rowcol": lambda: run_blocks(rowcol)}
    for eps in args.eps:
        methods[f"sinkhorn_{eps:g}"] = lambda eps=eps: run_blocks(lambda s: sinkhorn_value(s, eps, args.iters))
    if args.methods:
        unknown = set(args.methods) - set(methods)
        if unknown:
            raise SystemExit(f"--methods: unknown {sorted(unknown)}; choose from {sorted(methods)}")
        methods = {k: v for k, v in methods.items() if k in args.methods}
    rows, best_exact = {}, None
    if "exact" not in methods:
        rows["attack's first matching"] = {"first_share": share_matched(first.matching, r.truth),
                                           "seconds": first.seconds}
    for name, fn in methods.items():
        load0, t0 = load_average(), time.perf_counter()
        vals = fn()
        secs = time.perf_counter() - t0
        best = cand[np.arange(len(cand)), vals.argmax(1)]
        if name == "exact":
            best_exact = best
        m = first_matching(vals, cand, n_enc)
        t1 = time.perf_counter()
        b = boost(pe, re, m, np, args.boost_rounds, args.seed)
        same = None if best_exact is None else float(np.mean(best == best_exact))
        rows[name] = {"seconds": secs, "same_best_candidate_as_exact": same,
                      "first_share": share_matched(m, r.truth), "boosted_share": share_matched(b[0], r.truth),
                      "boost_rounds": int(b[2]), "boost_seconds": time.perf_counter() - t1, "load": load_record(load0)}
        print(f"  {name:<14} {secs:7.1f} s  best candidate as exact "
              f"{'-' if same is None else format(same, '6.1%'):>6}  first {rows[name]['first_share']:6.1%}"
              f"  boosted {rows[name]['boosted_share']:6.1%} ({b[2]} rounds)", flush=True)
        if args.json:
            head = result_header("isim_approx_oracle", started, mach, sources(__file__, "resume_first.py"), args)
            write_json(args.json, {**head, "game": game_record(args, r.game), "iters": args.iters, "methods": rows})
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
