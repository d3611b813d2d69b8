"""Sinkhorn's balancing on every core: what threads would save, and whether the values stay the same.

``empirical.isim.balance`` normalises the rows and then the columns of the (N_o, N) pre-score in
the log domain, a chunk of lines at a time, 50 times; at N = 16,000 that is 115 of the first
matching's 160 s (``first_stage_split.py``), on one core: NumPy's exp and log run on one thread.
Each chunk's normalisation depends only on its own lines, so the chunks of one pass can run on
threads (NumPy releases the GIL inside its ufuncs) and give the same values bit for bit. This
script takes a game and the work dir of an attack run on it (stages up to the first matching
resumed), computes the pre-score, balances it with the attack's function and with a threaded
copy of the same arithmetic written here, and reports both times, their ratio and whether the two
results are identical. No change to the attack is made.

Usage::

    python benchmarks/balance_threads.py --game G --work-dir W --json benchmarks/results/cpu_balance_threads_n16000.json
"""
from __future__ import annotations

import argparse
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_common import machine, now_utc, sources, write_json
from resume_first import add_arguments, game_record, resume

from empirical.isim import BALANCE_CHUNK, TAU_FLOOR, available_cpus, balance, sliced_prescore


def build_parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_arguments(ap, answer_key=None)
    ap.add_argument("--json", help="write the results here")
    return ap


def threaded_balance(score: np.ndarray, pool: ThreadPoolExecutor, tau: float = 0.05, iters: int = 50,
                     chunk: int = BALANCE_CHUNK) -> np.ndarray:
    """The arithmetic of ``empirical.isim.balance`` on a float32 copy, each pass's chunks on ``pool``'s threads."""
    L = np.array(score, dtype=np.float32)
    t = tau * float(L.std()) + TAU_FLOOR
    L -= L.max()
    L /= np.float32(t)
    row_mass = float(np.log(L.shape[1] / L.shape[0]))

    def rows(s: int) -> None:
        blk = L[s:s + chunk]
        m = blk.max(axis=1, keepdims=True)
        blk -= m + np.log(np.exp(blk - m).sum(axis=1, keepdims=True)) - row_mass

    def cols(s: int) -> None:
        blk = L[:, s:s + chunk]
        m = blk.max(axis=0, keepdims=True)
        blk -= m + np.log(np.exp(blk - m).sum(axis=0, keepdims=True))

    for _ in range(iters):
        list(pool.map(rows, range(0, L.shape[0], chunk)))
        list(pool.map(cols, range(0, L.shape[1], chunk)))
    return L


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    game, _, run, _ = resume(args)
    pre = sliced_prescore(run.patch_emb, run.row_emb, np)
    t0 = time.perf_counter()
    one = balance(pre, np)
    t_one = time.perf_counter() - t0
    workers = available_cpus()
    with ThreadPoolExecutor(workers) as pool:
        t0 = time.perf_counter()
        many = threaded_balance(pre, pool)
        t_many = time.perf_counter() - t0
    same = bool(np.array_equal(one, many))
    print(f"N = {pre.shape[1]:,}: balance {t_one:.1f} s on one thread, {t_many:.1f} s on {workers} "
          f"(x{t_one / t_many:.2f}); identical: {same}", flush=True)
    if args.json:
        write_json(args.json, {"benchmark": "balance_threads", "date": now_utc(), "machine": machine(),
                               "game": game_record(args, game),
                               "seconds_one_thread": t_one, "seconds_threaded": t_many, "threads": workers,
                               "speedup": t_one / t_many, "identical": same,
                               "source_fingerprint": sources(__file__, "resume_first.py")})
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
