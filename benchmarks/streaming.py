"""Encodings held in memory against encodings read from disk a block at a time, side by side.

For each N in ``--n-list`` a game is made on disk by ``python -m empirical.challenge make`` (which
encodes and writes one BatchNorm batch at a time), then attacked by ``python -m empirical.attack
--game`` once per mode:

* ``memory``: the default budget (half the available memory), so the encodings are read whole;
* ``blocks``: ``--memory-budget`` of ``--budget-gib`` (default: ``--budget-ratio`` times the
  encodings' size), small enough that the encodings are read from their files a block at a time
  by every pass (``empirical.encodings``);
* ``budget``: the same ``--memory-budget``, the encodings read whole or a block at a time as that
  budget decides: one fixed ``--budget-gib`` over a sweep of N shows how the peak grows with N.

Each attack's ``--json`` says whether it held the encodings in memory; a mode that did not run as
its name says is reported as an error.

Every command runs in its own process, which reports its own peak resident memory (the attack in
its ``--json``, ``make`` through this script's child wrapper), so one run's memory never hides in
another's. The two modes must give the same submission; the script prints, per N, the seconds and
peak memory of each and their ratios (blocks / memory), and writes everything to ``--json``.

Usage::

    python benchmarks/streaming.py --n-list 1000 4000 --json benchmarks/results/cpu_streaming.json
    python benchmarks/streaming.py --n-list 1000 2000 4000 8000 16000 --modes budget --budget-gib 1 \\
        --json benchmarks/results/cpu_streaming_sweep.json   # one budget, N from 1,000 to 16,000
    python benchmarks/streaming.py --n-list 14643 --image-size 256 --hidden 1024 --modes blocks \\
        --budget-gib 2 --stop-after boost       # the challenge's geometry, hidden 1,024, up to boosting
"""
from __future__ import annotations

import argparse
import json
import resource
import runpy
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_common import gib, load_average, load_record, machine, now_utc, sources, write_json

MODES = ("memory", "blocks", "budget")


def build_parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n-list", type=int, nargs="+", default=[1000, 4000], help="encoded images per game")
    ap.add_argument("--preset", default="neuracrypt-7")
    ap.add_argument("--image-size", type=int, default=128)
    ap.add_argument("--patch", type=int, default=16)
    ap.add_argument("--hidden", type=int, default=256)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--modes", nargs="+", default=["memory", "blocks"], choices=MODES)
    ap.add_argument("--budget-gib", type=float, default=None,
                    help="the blocks mode's --memory-budget (default: --budget-ratio times the game's encodings)")
    ap.add_argument("--budget-ratio", type=float, default=1.0,
                    help="without --budget-gib, the blocks mode's budget as a multiple of the encodings' size "
                         "(default 1: below the 2 at which they would be loaded whole)")
    ap.add_argument("--stop-after", choices=("first", "boost"), help="end each attack after this stage")
    ap.add_argument("--games", help="make the games in this folder and keep them (default: a temporary folder, "
                                    "removed at the end)")
    ap.add_argument("--timeout", type=float, default=None, help="seconds allowed per command (default: none)")
    ap.add_argument("--json", help="write the results here")
    return ap


def child(argv: list[str]) -> None:
    """``--child MODULE ARGS...``: run ``python -m MODULE ARGS...`` here, then print its seconds and peak memory."""
    module, args = argv[0], argv[1:]
    sys.argv = [module, *args]
    t0 = time.perf_counter()
    code = 0
    try:
        runpy.run_module(module, run_name="__main__")
    except SystemExit as e:
        code = e.code or 0
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    print(json.dumps({"exit": code, "seconds": time.perf_counter() - t0, "peak_rss_bytes": peak}))
    sys.exit(code)


def _run(cmd: list[str], timeout: float | None) -> tuple[dict | None, str | None]:
    """Run one child; ``(its last JSON line, None)`` or ``(None, why it failed)``."""
    try:
        p = subprocess.run([sys.executable, str(Path(__file__).resolve()), "--child", *cmd],
                           capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        return None, f"timed out after {timeout} s"
    if p.returncode != 0:
        why = "killed by signal 9 (out of memory?)" if p.returncode in (-9, 137) else f"exit code {p.returncode}"
        return None, f"{why}: {p.stderr.strip()[-500:]}"
    return json.loads(p.stdout.strip().splitlines()[-1]), None


def one_n(n: int, args: argparse.Namespace, root: Path) -> dict:
    game, answer, key = root / f"G{n}", root / f"G{n}-answer.json", root / f"G{n}-key.npz"
    out: dict = {"n": n}
    load0 = load_average()
    made, err = _run(["empirical.challenge", "make", "--out", str(game), "--answer-key", str(answer),
                      "--secret-key", str(key), "--n", str(n), "--preset", args.preset,
                      "--image-size", str(args.image_size), "--patch", str(args.patch), "--hidden", str(args.hidden),
                      "--seed", str(args.seed), "--force", "--quiet"], args.timeout)
    if err:
        return {**out, "error": f"make: {err}"}
    out["make"] = {"seconds": made["seconds"], "peak_rss_bytes": made["peak_rss_bytes"],
                   "peak_rss_gib": gib(made["peak_rss_bytes"]), "load": load_record(load0)}
    enc_bytes = sum(f.stat().st_size for f in (game / "private_encoded_dataset").iterdir())
    out["encodings_gib"] = gib(enc_bytes)
    budget_gib = args.budget_gib if args.budget_gib is not None else args.budget_ratio * enc_bytes / 2**30
    subs = {}
    for mode in args.modes:
        js, sub = root / f"G{n}-{mode}.json", root / f"G{n}-{mode}-submission.json"
        cmd = ["empirical.attack", "--game", str(game), "--answer-key", str(answer), "--secret-key", str(key),
               "--submission", str(sub), "--json", str(js), "--fresh", "0", "--seed", str(args.seed), "--quiet"]
        if mode in ("blocks", "budget"):
            cmd += ["--memory-budget", repr(budget_gib)]
        if args.stop_after:
            cmd += ["--stop-after", args.stop_after]
        load0 = load_average()
        ran, err = _run(cmd, args.timeout)
        if err:
            out[mode] = {"error": err}
            continue
        rec = json.loads(js.read_text())
        mem = rec["memory"]
        if mode != "budget" and mem["encodings_in_memory"] != (mode == "memory"):
            out[mode] = {"error": f"the {mode} mode held the encodings "
                                  f"{'in memory' if mem['encodings_in_memory'] else 'on disk'}: not what it measures"}
            continue
        out[mode] = {"seconds": rec["total_seconds"], "process_seconds": ran["seconds"],
                     "final_share_matched": rec["final_share_matched"],
                     "stages": [{k: s[k] for k in ("stage", "share_matched", "seconds")} for s in rec["stages"]],
                     "encodings_in_memory": mem["encodings_in_memory"], "budget_gib": gib(mem["budget_bytes"]),
                     "peak_rss_bytes": ran["peak_rss_bytes"], "peak_rss_gib": gib(ran["peak_rss_bytes"]),
                     "peak_rss_gib_after_stage": {k: gib(v) for k, v in mem["peak_resident_bytes_after_stage"].items()},
                     "load": load_record(load0)}
        subs[mode] = json.loads(sub.read_text())
    if "memory" in subs and "blocks" in subs:
        out["same_submission"] = subs["memory"] == subs["blocks"]
        m, b = out["memory"], out["blocks"]
        out["ratio_blocks_over_memory"] = {"seconds": b["seconds"] / m["seconds"],
                                           "peak_rss": b["peak_rss_bytes"] / m["peak_rss_bytes"]}
    return out


def main() -> int:
    if len(sys.argv) > 1 and sys.argv[1] == "--child":
        child(sys.argv[2:])
    args = build_parser().parse_args()
    root = Path(args.games) if args.games else Path(tempfile.mkdtemp(prefix="streaming-"))
    root.mkdir(parents=True, exist_ok=True)
    started = now_utc()
    runs = []
    try:
        for n in args.n_list:
            runs.append(one_n(n, args, root))
            r = runs[-1]
            print(f"N = {n}: " + (r.get("error") or ", ".join(
                f"{m} {r[m]['final_share_matched']:.1%} in {r[m]['seconds']:.0f} s, peak {r[m]['peak_rss_gib']:.2f} GiB"
                if "error" not in r[m] else f"{m}: {r[m]['error']}" for m in args.modes if m in r)
                + (f"; make {r['make']['seconds']:.0f} s, peak {r['make']['peak_rss_gib']:.2f} GiB"
                   f"; encodings {r['encodings_gib']:.2f} GiB" if "make" in r else "")), flush=True)
            if "ratio_blocks_over_memory" in r:
                q = r["ratio_blocks_over_memory"]
                print(f"  blocks / memory: seconds x{q['seconds']:.2f}, peak memory x{q['peak_rss']:.2f}; "
                      f"same submission: {r['same_submission']}", flush=True)
            if args.json:  # after every N, so a sweep stopped part way keeps what it measured
                write_json(args.json, {"benchmark": "streaming", "started": started, "date": now_utc(),
                                       "machine": machine(),
                                       "settings": {k: v for k, v in vars(args).items() if k not in ("json", "games")},
                                       "source_fingerprint": sources(__file__), "runs": runs})
    finally:
        if not args.games:
            shutil.rmtree(root, ignore_errors=True)
    return 0 if all("error" not in r and all("error" not in r.get(m, {}) for m in args.modes) for r in runs) else 1


if __name__ == "__main__":
    raise SystemExit(main())
