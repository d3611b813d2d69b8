"""Scaling of the whole attack with N: time and peak memory, and the fitted exponent.

For each N in ``--n-list`` a fresh Python process draws N bundled real images and makes a game in
memory (:func:`empirical.alice.bundled_game`), and runs every stage of the attack
(:func:`empirical.pipeline.run_attack`). Each process reports its own peak resident set size
(``getrusage``), so one N's memory never hides inside another's, and the load average at the
start and the end of its run. The exponent is the least-squares slope of log(seconds) against
log(N); it is fitted to the times only when no run was taken under load
(:func:`empirical.machine.fit_refusal`: the one-minute load average stayed within a quarter of the
cores above the run's own threads), and the output says why otherwise.

Default family: the attack CLI's default, NeuraCrypt-7 at 128 x 128 px, patch 16 (P = 64),
hidden 256.

Usage::

    python benchmarks/scaling.py                        # N = 250 500 1000 2000 4000, NumPy
    python benchmarks/scaling.py --n-list 10000 --json benchmarks/results/cpu_scaling.json --merge
    python benchmarks/scaling.py --backend cupy         # on a GPU machine (also reports GPU memory)
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from dataclasses import replace
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_common import (
    GpuMemory,
    fit_exponent,
    gib,
    load_average,
    load_record,
    machine,
    now_utc,
    peak_rss_bytes,
    sources,
    write_json,
)

from empirical.machine import LOAD_LIMIT_PER_CORE, fit_refusal

DEFAULT_N = (250, 500, 1000, 2000, 4000)
N_DEPENDENT = ("align", "first", "boost", "final", "rescore")  # stages whose work grows with N


def build_parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n-list", type=int, nargs="+", default=list(DEFAULT_N), help="game sizes N")
    ap.add_argument("--preset", default="neuracrypt-7")
    ap.add_argument("--image-size", type=int, default=128)
    ap.add_argument("--patch", type=int, default=16)
    ap.add_argument("--hidden", type=int, default=256)
    ap.add_argument("--backend", default="numpy", choices=("numpy", "cupy", "auto"))
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--candidates", type=int, default=None, help="default: AttackConfig.candidates")
    ap.add_argument("--psim-steps", type=int, default=None, help="default: PsimConfig.steps")
    ap.add_argument("--extract-steps", type=int, default=None, help="default: ExtractConfig.steps")
    ap.add_argument("--json", help="write the results here")
    ap.add_argument("--merge", action="store_true",
                    help="with --json: keep runs already in that file for other N (same settings), refit")
    ap.add_argument("--timeout", type=float, default=None, help="seconds allowed per N (default: none)")
    ap.add_argument("--child", type=int, help=argparse.SUPPRESS)
    return ap


def settings(args: argparse.Namespace) -> dict:
    from empirical.extraction import ExtractConfig
    from empirical.pipeline import AttackConfig
    from empirical.psim import PsimConfig

    return {"preset": args.preset, "image_size": args.image_size, "patch": args.patch, "hidden": args.hidden,
            "backend": args.backend, "seed": args.seed,
            "candidates": args.candidates if args.candidates is not None else AttackConfig.candidates,
            "psim_steps": args.psim_steps if args.psim_steps is not None else PsimConfig.steps,
            "extract_steps": args.extract_steps if args.extract_steps is not None else ExtractConfig.steps}


# --- one N, in its own process ----------------------------------------------------------------

def _cpu_seconds() -> float:
    """User + system CPU time of this process, all threads: robust to other jobs on a shared machine."""
    import resource

    ru = resource.getrusage(resource.RUSAGE_SELF)
    return ru.ru_utime + ru.ru_stime


def run_one(n: int, s: dict) -> dict:
    import numpy as np

    from empirical.alice import bundled_game
    from empirical.backend import get_backend
    from empirical.encoder import preset
    from empirical.evaluate import share_matched, true_matching
    from empirical.extraction import ExtractConfig
    from empirical.pipeline import AttackConfig, run_attack
    from empirical.psim import PsimConfig

    xp = get_backend(s["backend"])
    fam = preset(s["preset"], image_size=s["image_size"], patch=s["patch"], hidden=s["hidden"])
    load0 = load_average()
    t0 = time.perf_counter()
    game, secrets = bundled_game(fam, n, seed=s["seed"])
    t_data = time.perf_counter() - t0
    rss_data = peak_rss_bytes()
    cfg = AttackConfig(seed=s["seed"], candidates=s["candidates"],
                       psim=replace(PsimConfig(), steps=s["psim_steps"]),
                       extract=replace(ExtractConfig(seed=s["seed"]), steps=s["extract_steps"]))
    data_cpu = _cpu_seconds()
    stage_cpu = []  # process CPU time at the end of each stage: robust to other jobs' load
    t1 = time.perf_counter()
    with GpuMemory(xp) as gpu:
        result = run_attack(game, cfg, xp, quiet=True, on_stage=lambda st: stage_cpu.append(_cpu_seconds()))
    t_attack = time.perf_counter() - t1
    truth = true_matching(game, secrets)
    stages = []
    for i, st in enumerate(result.stages):
        row = {"stage": st.name, "seconds": st.seconds,
               "cpu_seconds": stage_cpu[i] - (stage_cpu[i - 1] if i else data_cpu)}
        if st.matching is not None:
            row["share_matched"] = share_matched(st.matching, truth)
        if st.name == "psim":
            row["balanced_accuracy"] = st.info.get("balanced_accuracy")
        if st.name == "first" and "candidates" in st.arrays:
            cand = st.arrays["candidates"]
            row["true_among_candidates"] = float(np.mean([k in set(cand[a]) for k, a in enumerate(truth)]))
            row.update({k: st.info[k] for k in ("exact_assignments", "assignment_size") if k in st.info})
        if st.name == "boost":
            row["rounds"] = st.info.get("rounds")
        stages.append(row)
    out = {"n": n, "data_seconds": t_data, "attack_seconds": t_attack, "total_seconds": t_data + t_attack,
           "data_cpu_seconds": data_cpu, "attack_cpu_seconds": _cpu_seconds() - data_cpu,
           "final_share_matched": share_matched(result.matching, truth), "stages": stages,
           "peak_rss_bytes_after_data": rss_data, "peak_rss_bytes": peak_rss_bytes(),
           "peak_rss_gib": gib(peak_rss_bytes()), "load": load_record(load0), "process_cpu_seconds": _cpu_seconds()}
    if gpu.hook is not None:
        out["gpu_peak_pool_bytes_in_use"] = gpu.peak
        out["gpu_peak_gib"] = gib(gpu.peak)
        out["gpu_pool_total_bytes"] = int(xp.get_default_memory_pool().total_bytes())
    return out


# --- the driver --------------------------------------------------------------------------------

def _spawn(n: int, args) -> dict:
    cmd = [sys.executable, str(Path(__file__).resolve()), "--child", str(n)]
    for flag in ("preset", "image_size", "patch", "hidden", "backend", "seed", "candidates", "psim_steps",
                 "extract_steps"):
        v = getattr(args, flag)
        if v is not None:
            cmd += [f"--{flag.replace('_', '-')}", str(v)]
    t0 = time.perf_counter()
    try:
        p = subprocess.run(cmd, capture_output=True, text=True, timeout=args.timeout)
    except subprocess.TimeoutExpired:
        return {"n": n, "error": f"timed out after {args.timeout} s"}
    wall = time.perf_counter() - t0
    if p.returncode != 0:
        why = "killed by signal 9 (out of memory?)" if p.returncode in (-9, 137) else f"exit code {p.returncode}"
        return {"n": n, "error": why, "stderr_tail": p.stderr[-2000:], "process_seconds": wall}
    res = json.loads(p.stdout.strip().splitlines()[-1])
    res["process_seconds"] = wall
    return res


def _fits(runs: list) -> dict:
    ok = sorted((r for r in runs if "error" not in r), key=lambda r: r["n"])
    ns = [r["n"] for r in ok]
    refusal = fit_refusal(ok)
    if refusal is not None:  # times stretched by other jobs: fit memory only
        return {"time_exponents_refused": refusal, "load_limit_per_core": LOAD_LIMIT_PER_CORE,
                "peak_rss_exponent": fit_exponent(ns, [r["peak_rss_bytes"] for r in ok]), "n_used": ns}
    fit = {"time_exponents_refused": None, "load_limit_per_core": LOAD_LIMIT_PER_CORE,
           "attack_seconds_exponent": fit_exponent(ns, [r["attack_seconds"] for r in ok]),
           "total_seconds_exponent": fit_exponent(ns, [r["total_seconds"] for r in ok]),
           "peak_rss_exponent": fit_exponent(ns, [r["peak_rss_bytes"] for r in ok]),
           # CPU time (user + system, all threads) depends much less than wall time on other jobs' load.
           "process_cpu_seconds_exponent": fit_exponent(ns, [r.get("process_cpu_seconds") for r in ok])
           if all("process_cpu_seconds" in r for r in ok) else None,
           "stage_seconds_exponent": {},
           # p-sim training and model extraction run a fixed number of steps whatever N is, so at small N
           # they hide how the rest grows; this fit leaves them out.
           "n_dependent_stages": list(N_DEPENDENT),
           "n_dependent_seconds_exponent": fit_exponent(
               ns, [sum(st["seconds"] for st in r["stages"] if st["stage"] in N_DEPENDENT) for r in ok])}
    if ok:
        for i, st in enumerate(ok[0]["stages"]):
            fit["stage_seconds_exponent"][st["stage"]] = fit_exponent(ns, [r["stages"][i]["seconds"] for r in ok])
    if ok and all("attack_cpu_seconds" in r for r in ok):
        fit["attack_cpu_seconds_exponent"] = fit_exponent(ns, [r["attack_cpu_seconds"] for r in ok])
        fit["stage_cpu_seconds_exponent"] = {
            st["stage"]: fit_exponent(ns, [r["stages"][i]["cpu_seconds"] for r in ok])
            for i, st in enumerate(ok[0]["stages"])}
        fit["n_dependent_cpu_seconds_exponent"] = fit_exponent(
            ns, [sum(st["cpu_seconds"] for st in r["stages"] if st["stage"] in N_DEPENDENT) for r in ok])
    fit["n_used"] = ns
    return fit


def _table(runs: list, fit: dict) -> str:
    lines = [f"{'N':>6s} {'data s':>8s} {'attack s':>9s} {'total s':>8s} {'att.CPU':>8s} {'peak RSS':>9s} "
             f"{'first':>7s} {'final':>7s}  slowest stage"]
    for r in sorted(runs, key=lambda r: r["n"]):
        if "error" in r:
            lines.append(f"{r['n']:6d}  failed: {r['error']}")
            continue
        first = next((s.get("share_matched") for s in r["stages"] if s["stage"] == "first"), None)
        slow = max(r["stages"], key=lambda s: s.get("cpu_seconds", s["seconds"]))
        cpu = f"{r['attack_cpu_seconds']:8.1f}" if "attack_cpu_seconds" in r else f"{'-':>8s}"
        lines.append(f"{r['n']:6d} {r['data_seconds']:8.1f} {r['attack_seconds']:9.1f} {r['total_seconds']:8.1f} {cpu} "
                     f"{r['peak_rss_gib']:7.2f}Gi {first:7.1%} {r['final_share_matched']:7.1%}  "
                     f"{slow['stage']} {slow['seconds']:.1f} s ({slow.get('cpu_seconds', float('nan')):.1f} s CPU)")
    refused = fit.get("time_exponents_refused")
    if refused is not None:
        why = ("its load average was not recorded" if refused["reason"] == "not recorded" else
               f"the one-minute load average reached {refused['load']:.2f}, above the limit {refused['limit']:.2f} "
               f"(the run's {refused['threads']} threads + {fit['load_limit_per_core']} x {refused['cpus']} cores)")
        lines.append(f"no exponent of time in N fitted: at N = {refused['n']} {why}; times stretched by other jobs "
                     "would make the slope measure their load")
        if fit.get("peak_rss_exponent") is not None:
            lines.append(f"peak RSS ~ N^{fit['peak_rss_exponent']:.2f} (memory does not depend on the load)")
    e = fit.get("attack_seconds_exponent")
    if e is not None:
        lines.append(f"fitted exponent (log-log least squares, N = {fit['n_used']}): attack time ~ N^{e:.2f}, "
                     f"total ~ N^{fit['total_seconds_exponent']:.2f}, peak RSS ~ N^{fit['peak_rss_exponent']:.2f}")
        if fit.get("attack_cpu_seconds_exponent") is not None:
            lines.append(f"CPU time (all threads; robust to other jobs' load): attack ~ "
                         f"N^{fit['attack_cpu_seconds_exponent']:.2f}, stages that grow with N ~ "
                         f"N^{fit['n_dependent_cpu_seconds_exponent']:.2f}; per stage: "
                         + ", ".join(f"{k} N^{v:.2f}" for k, v in fit["stage_cpu_seconds_exponent"].items()
                                     if v is not None))
        if fit["n_dependent_seconds_exponent"] is not None:
            lines.append(f"stages that grow with N ({', '.join(N_DEPENDENT)}) together: "
                         f"~ N^{fit['n_dependent_seconds_exponent']:.2f}")
        lines.append("per stage: " + ", ".join(f"{k} N^{v:.2f}" for k, v in fit["stage_seconds_exponent"].items()
                                              if v is not None))
    return "\n".join(lines)


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    s = settings(args)
    if args.child is not None:
        print(json.dumps(run_one(args.child, s)))
        return 0
    from empirical.backend import BackendError, get_backend

    try:
        xp = get_backend(args.backend)
    except BackendError as e:
        print(f"skipped: {e}", file=sys.stderr)
        return 0
    started = now_utc()
    mach = machine(xp)
    runs = []
    for n in args.n_list:
        print(f"N = {n} ...", file=sys.stderr, flush=True)
        runs.append(_spawn(n, args))
        r = runs[-1]
        if "error" in r:
            print(f"  failed: {r['error']}", file=sys.stderr)
        else:
            print(f"  {r['total_seconds']:.1f} s, peak RSS {r['peak_rss_gib']:.2f} GiB, "
                  f"final share {r['final_share_matched']:.1%}", file=sys.stderr, flush=True)
    source = sources(__file__)
    previous = []
    if args.merge and args.json and Path(args.json).exists():  # read now: another invocation may have just written it
        old = json.loads(Path(args.json).read_text())
        if old.get("settings") == s and old.get("source_fingerprint") == source:
            previous = [r for r in old["runs"] if r["n"] not in args.n_list]
        else:
            print(f"note: {args.json} was made with other settings or other code; not merging", file=sys.stderr)
    all_runs = sorted(previous + runs, key=lambda r: r["n"])
    fit = _fits(all_runs)
    print(_table(all_runs, fit))
    if args.json:
        mach["loadavg_at_end"] = load_average()
        write_json(args.json, {
            "benchmark": "scaling", "date": now_utc(), "started": started, "machine": mach, "settings": s,
            "source_fingerprint": source, "runs": all_runs, "fit": fit,
            "notes": ["each N runs in a fresh process; peak_rss_bytes is that process's peak resident set "
                      "(getrusage ru_maxrss), images, game and attack together",
                      "data_seconds: drawing the bundled images and Alice's encoding (NumPy); attack_seconds: "
                      "run_attack, every stage",
                      "each run records the load average at its start and end (load); no exponent of time is "
                      "fitted when a run's one-minute load exceeded its own threads plus a quarter of the cores",
                      "runs merged from earlier invocations keep their own load records"],
        })
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
