"""Speed-up of this project's image-similarity stage over the original per-pair assignment.

One game, one set of p-sim embeddings, both methods timed in the same run:

(a) this project (``empirical.isim``): a sliced pre-score of all N x N pairs as one dense
    product (``sliced_prescore``), balanced by Sinkhorn's iteration (``balance``), the ``k`` best
    encodings per original (``top_candidates``),
    an exact P x P assignment only for those N*k pairs (``isim_candidates``), and the first
    matching over the candidate values (``first_matching``);
(b) the original attack: the exact P x P assignment (``scipy.optimize.linear_sum_assignment`` on
    the p-sim matrix of the pair) for every one of the N^2 (original, encoding) pairs. At large N
    that is hours, so it is timed on a random sample of pairs and extrapolated to N^2; the output
    says when it was extrapolated. Below ``--full-max-pairs`` pairs it is run in full, and its
    first matching is scored as well.

The cost of this stage depends on N, P (patches per image) and the p-sim embedding width, not on
the encoder's hidden width D: D only enters through the moment features, computed before the
stage. So the default family is the challenge's image geometry (256 x 256 grayscale, patch 16,
P = 256, NeuraCrypt-7) with hidden 256 to keep encoding and p-sim training quick on a CPU.

p-sim is trained with few steps by default (``--psim-steps``): the timing comparison does not
depend on its quality; the shares matched do, and are reported for what they are.

Usage::

    python benchmarks/speedup.py                          # N = 2000, k = AttackConfig.candidates
    python benchmarks/speedup.py --n 2000 --json benchmarks/results/cpu_speedup.json
    python benchmarks/speedup.py --n 300 --full           # both methods in full, with shares
"""
from __future__ import annotations

import argparse
import sys
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
from scipy.optimize import linear_sum_assignment

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_common import gib, load_average, load_record, machine, now_utc, peak_rss_bytes, sources, write_json


def build_parser() -> argparse.ArgumentParser:
    from empirical.pipeline import AttackConfig

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", type=int, default=2000, help="originals = encodings (default 2000)")
    ap.add_argument("--candidates", type=int, default=AttackConfig.candidates,
                    help="k: encodings per original that get an exact i-sim (default AttackConfig's, %(default)s)")
    ap.add_argument("--extra-candidates", type=int, nargs="*", default=[],
                    help="also time the project's stage with these k (same pre-score, same embeddings)")
    ap.add_argument("--preset", default="neuracrypt-7")
    ap.add_argument("--image-size", type=int, default=256)
    ap.add_argument("--patch", type=int, default=16)
    ap.add_argument("--hidden", type=int, default=256, help="encoder width D (does not enter the stage's cost)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--psim-steps", type=int, default=300, help="p-sim training steps (default %(default)s)")
    ap.add_argument("--sample-pairs", type=int, default=3000,
                    help="pairs on which the original method is timed when it is not run in full")
    ap.add_argument("--full-max-pairs", type=int, default=250_000,
                    help="run the original method on all N^2 pairs when N^2 is at most this")
    ap.add_argument("--full", action="store_true", help="run the original method on all N^2 pairs whatever N is")
    ap.add_argument("--backend", default="numpy", choices=("numpy", "cupy", "auto"))
    ap.add_argument("--json", help="write the results here")
    return ap


class Clock:
    """Wall and CPU (this process, all threads) seconds of a block: ``with Clock() as c: ...; c.wall, c.cpu``.

    On a machine shared with other jobs the wall time depends on their load; the CPU time much less.
    """

    def __enter__(self):
        self._w, self._c = time.perf_counter(), time.process_time()
        return self

    def __exit__(self, *exc):
        self.wall, self.cpu = time.perf_counter() - self._w, time.process_time() - self._c
        return False


def embeddings(args: argparse.Namespace, xp) -> tuple:
    """Game, Alice's secrets, and the p-sim embeddings of every original patch and aligned row."""
    from empirical.alice import bundled_game
    from empirical.alignment import align_rows, apply_order
    from empirical.encoder import preset
    from empirical.pipeline import AttackConfig
    from empirical.psim import PsimConfig, patch_features, row_features, train_psim, training_pairs

    fam = preset(args.preset, image_size=args.image_size, patch=args.patch, hidden=args.hidden)
    t0 = time.perf_counter()
    game, secrets = bundled_game(fam, args.n, seed=args.seed)
    t_data = time.perf_counter() - t0

    t0 = time.perf_counter()
    pc = replace(PsimConfig(), steps=args.psim_steps)
    originals, encodings = xp.asarray(game.originals), xp.asarray(game.encodings)
    order = align_rows(encodings, xp, AttackConfig.align_iterations)
    aligned = apply_order(encodings, order, xp)
    del encodings
    model, _ = train_psim(training_pairs(originals, fam, pc, args.seed, xp), pc, args.seed, xp)
    K, P = pc.moments, fam.n_patches
    patch_emb = model.embed_patches(patch_features(originals, fam, K, xp).reshape(-1, K), xp).reshape(args.n, P, -1)
    row_emb = model.embed_rows(row_features(aligned, K, xp).reshape(-1, K), xp).reshape(args.n, P, -1)
    del aligned, originals
    t_emb = time.perf_counter() - t0
    return fam, game, secrets, patch_emb, row_emb, t_data, t_emb


def project_stage(patch_emb, row_emb, k: int, xp, prescore=None) -> dict:
    """This project's stage, timed piece by piece. ``prescore`` = (matrix, Clock) to reuse one."""
    from empirical.isim import balance, first_matching, isim_candidates, sliced_prescore, top_candidates

    n = row_emb.shape[0]
    if prescore is None:
        with Clock() as c_pre:
            pre = balance(sliced_prescore(patch_emb, row_emb, xp), xp)
    else:
        pre, c_pre = prescore
    with Clock() as c_top:
        cand = top_candidates(pre, k, xp)
    with Clock() as c_isim:
        vals = isim_candidates(patch_emb, row_emb, cand, xp)
    with Clock() as c_match:
        m = first_matching(vals, cand, n)
    parts = {"prescore": c_pre, "top_candidates": c_top, "isim": c_isim, "first_matching": c_match}
    out = {"k": int(cand.shape[1])}
    for name, c in parts.items():
        out[f"{name}_seconds"], out[f"{name}_cpu_seconds"] = c.wall, c.cpu
    out["total_seconds"] = sum(c.wall for c in parts.values())
    out["total_cpu_seconds"] = sum(c.cpu for c in parts.values())
    out.update({"exact_assignments": int(cand.size), "assignment_size": int(patch_emb.shape[1]),
                "seconds_per_exact_assignment": c_isim.wall / cand.size,
                "cpu_seconds_per_exact_assignment": c_isim.cpu / cand.size,
                "plus_one_assignment_of_size": [int(patch_emb.shape[0]), n],
                "_matching": m, "_candidates": cand, "_prescore": (pre, c_pre)})
    return out


def _pair_value(s) -> float:
    r, c = linear_sum_assignment(s, maximize=True)
    return float(s[r, c].sum())


def original_sampled(patch_emb, row_emb, n_pairs: int, seed: int, xp) -> dict:
    """The original method on ``n_pairs`` random (original, encoding) pairs: seconds per pair."""
    from empirical.backend import to_numpy

    pe, re = to_numpy(patch_emb), to_numpy(row_emb)
    n_o, n = pe.shape[0], re.shape[0]
    rng = np.random.default_rng([seed, 0x5A3])
    a, b = rng.integers(n_o, size=n_pairs), rng.integers(n, size=n_pairs)
    order = np.argsort(a, kind="stable")
    groups = np.split(order, np.flatnonzero(np.diff(a[order])) + 1)
    with Clock() as c:
        for g in groups:
            # (pairs, P, P) p-sim matrices, computed as isim_candidates does, then one exact assignment each
            sims = np.einsum("pe,kqe->kpq", pe[a[g[0]]], re[b[g]])
            for s in sims:
                _pair_value(s)
    # How often would the argmax shortcut (rows' favourites already distinct) have spared the solver?
    distinct = np.mean([len(np.unique((pe[a[i]] @ re[b[i]].T).argmax(1))) == pe.shape[1]
                        for i in range(min(n_pairs, 500))])
    return {"sampled_pairs": n_pairs, "sample_seconds": c.wall, "sample_cpu_seconds": c.cpu,
            "seconds_per_pair": c.wall / n_pairs, "cpu_seconds_per_pair": c.cpu / n_pairs,
            "all_pairs": n_o * n, "extrapolated_seconds": c.wall / n_pairs * n_o * n,
            "extrapolated_cpu_seconds": c.cpu / n_pairs * n_o * n, "extrapolated": True,
            "share_of_pairs_with_distinct_row_favourites": float(distinct)}


def original_full(patch_emb, row_emb, xp) -> dict:
    """The original method on all N^2 pairs, then its first matching (one N x N assignment)."""
    from empirical.assignment import match_encodings
    from empirical.backend import to_numpy

    pe, re = to_numpy(patch_emb), to_numpy(row_emb)
    n_o, n = pe.shape[0], re.shape[0]
    vals = np.empty((n_o, n))
    with Clock() as c_isim:
        for a in range(n_o):
            sims = np.einsum("pe,kqe->kpq", pe[a], re)  # (N, P, P)
            for b in range(n):
                vals[a, b] = _pair_value(sims[b])
    with Clock() as c_match:
        m = match_encodings(vals)
    return {"all_pairs": n_o * n, "isim_seconds": c_isim.wall, "isim_cpu_seconds": c_isim.cpu,
            "seconds_per_pair": c_isim.wall / (n_o * n), "cpu_seconds_per_pair": c_isim.cpu / (n_o * n),
            "first_matching_seconds": c_match.wall, "first_matching_cpu_seconds": c_match.cpu,
            "total_seconds": c_isim.wall + c_match.wall, "total_cpu_seconds": c_isim.cpu + c_match.cpu,
            "extrapolated": False, "_matching": m}


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    from empirical.backend import backend_name, get_backend
    from empirical.evaluate import share_matched, true_matching

    xp = get_backend(args.backend)
    started, mach, load0 = now_utc(), machine(xp), load_average()
    print(f"building one game: N = {args.n} bundled images, {args.preset}, {args.image_size} px, patch {args.patch}, "
          f"hidden {args.hidden}, backend {backend_name(xp)} ...", file=sys.stderr, flush=True)
    fam, game, secrets, patch_emb, row_emb, t_data, t_emb = embeddings(args, xp)
    truth = true_matching(game, secrets)
    n, P, E = args.n, fam.n_patches, patch_emb.shape[2]
    print(f"  data {t_data:.1f} s; local permutations + p-sim ({args.psim_steps} steps) + embeddings {t_emb:.1f} s",
          file=sys.stderr, flush=True)

    runs = []
    pre = None
    for k in [args.candidates] + [k for k in args.extra_candidates if k != args.candidates]:
        print(f"this project's stage, k = {k} ...", file=sys.stderr, flush=True)
        r = project_stage(patch_emb, row_emb, k, xp, prescore=pre)
        if pre is None:
            pre = r["_prescore"]
        else:
            r["prescore_reused_from_first_run"] = True
        cand = r.pop("_candidates")
        r["share_matched"] = share_matched(r.pop("_matching"), truth)
        r["true_encoding_among_candidates"] = float(np.mean([k_ in set(cand[a]) for k_, a in enumerate(truth)]))
        r.pop("_prescore")
        runs.append(r)
    # Diagnostic, not part of either method: the first matching from the pre-score alone.
    from empirical.assignment import match_encodings

    with Clock() as c:
        m_pre = match_encodings(pre[0])
    prescore_only = {"share_matched": share_matched(m_pre, truth), "seconds": pre[1].wall + c.wall}
    del pre

    full = args.full or n * n <= args.full_max_pairs
    if full:
        print(f"original method on all {n * n:,} pairs ...", file=sys.stderr, flush=True)
        orig = original_full(patch_emb, row_emb, xp)
        orig["share_matched"] = share_matched(orig.pop("_matching"), truth)
    else:
        print(f"original method on a random sample of {args.sample_pairs:,} of the {n * n:,} pairs ...",
              file=sys.stderr, flush=True)
        orig = original_sampled(patch_emb, row_emb, args.sample_pairs, args.seed, xp)
    for r in runs:
        # The original also ends with an N x N first matching; leaving it out of its time (when it was
        # extrapolated) makes the ratio a lower bound.
        r["speedup_vs_original"] = orig["total_seconds" if full else "extrapolated_seconds"] / r["total_seconds"]
        r["speedup_vs_original_cpu_time"] = (orig["total_cpu_seconds" if full else "extrapolated_cpu_seconds"]
                                             / r["total_cpu_seconds"])

    # --- report ----------------------------------------------------------------------------------
    main_run = runs[0]
    lines = [
        f"image-similarity stage (i-sim + first matching), one game: N = {n:,} originals x {n:,} encodings, "
        f"P = {P} patches per image ({fam.image_size}x{fam.image_size} px, patch {fam.patch}), "
        f"p-sim embedding width {E}, {args.preset}, hidden {fam.hidden} (D does not enter this stage's cost)",
        f"machine: {mach['cpus']} CPU cores ({mach['cpu']}), load average at start "
        f"{(mach['loadavg'] or [float('nan')])[0]:.1f}, backend {backend_name(xp)}",
        "",
    ]
    for r in runs:
        lines.append(
            f"this project, k = {r['k']}: balanced sliced pre-score {r['prescore_seconds']:.1f} s"
            f"{' (reused)' if r.get('prescore_reused_from_first_run') else ''}"
            f" + top-k {r['top_candidates_seconds']:.2f} s"
            f" + exact i-sim on candidates {r['isim_seconds']:.1f} s"
            f" + first matching {r['first_matching_seconds']:.1f} s"
            f" = {r['total_seconds']:.1f} s wall ({r['total_cpu_seconds']:.1f} s CPU)")
        lines.append(
            f"    exact assignments: {r['exact_assignments']:,} of size {P}x{P} "
            f"({r['seconds_per_exact_assignment'] * 1e3:.2f} ms wall, {r['cpu_seconds_per_exact_assignment'] * 1e3:.2f}"
            f" ms CPU each) + 1 of size {n}x{n}; "
            f"first matching {r['share_matched']:.1%} right; true encoding among candidates "
            f"{r['true_encoding_among_candidates']:.1%}")
    if full:
        lines.append(
            f"original (run in full): {orig['all_pairs']:,} exact assignments of size {P}x{P} "
            f"({orig['seconds_per_pair'] * 1e3:.2f} ms each) = {orig['isim_seconds']:.1f} s + first matching "
            f"(1 of size {n}x{n}) {orig['first_matching_seconds']:.1f} s = {orig['total_seconds']:.1f} s wall "
            f"({orig['total_cpu_seconds']:.1f} s CPU); "
            f"first matching {orig['share_matched']:.1%} right")
    else:
        lines.append(
            f"original: {orig['all_pairs']:,} exact assignments of size {P}x{P} + 1 of size {n}x{n}. "
            f"TIMED ON A RANDOM SAMPLE of {orig['sampled_pairs']:,} pairs: {orig['sample_seconds']:.1f} s, "
            f"{orig['seconds_per_pair'] * 1e3:.2f} ms wall ({orig['cpu_seconds_per_pair'] * 1e3:.2f} ms CPU) per pair; "
            f"EXTRAPOLATED to all {orig['all_pairs']:,} pairs: {orig['extrapolated_seconds']:.0f} s wall = "
            f"{orig['extrapolated_seconds'] / 3600:.1f} h ({orig['extrapolated_cpu_seconds'] / 3600:.1f} CPU-hours) "
            f"(its final {n}x{n} assignment not counted, so the ratio below is a lower bound)")
    lines.append(f"(diagnostic: first matching from the sliced pre-score alone, no {P}x{P} assignment: "
                 f"{prescore_only['share_matched']:.1%} right in {prescore_only['seconds']:.1f} s)")
    lines.append("")
    for r in runs:
        lines.append(f"SPEED-UP (original / this project), N = {n}, P = {P}, k = {r['k']}: "
                     f"{r['speedup_vs_original']:.0f}x wall time, {r['speedup_vs_original_cpu_time']:.0f}x CPU time")
    text = "\n".join(lines)
    print(text)

    if args.json:
        write_json(args.json, {
            "benchmark": "speedup", "date": now_utc(), "started": started,
            "machine": {**mach, "loadavg_at_end": load_average()}, "source_fingerprint": sources(__file__),
            "load": load_record(load0),
            "settings": {"n": n, "preset": args.preset, "image_size": fam.image_size, "patch": fam.patch,
                         "patches_per_image": P, "hidden": fam.hidden, "embedding_width": E,
                         "psim_steps": args.psim_steps, "seed": args.seed, "backend": backend_name(xp)},
            "data_seconds": t_data, "embedding_seconds": t_emb,
            "project": runs, "original": orig, "speedup": runs[0]["speedup_vs_original"],
            "speedup_cpu_time": runs[0]["speedup_vs_original_cpu_time"],
            "speedup_by_k": {str(r["k"]): r["speedup_vs_original"] for r in runs},
            "speedup_cpu_time_by_k": {str(r["k"]): r["speedup_vs_original_cpu_time"] for r in runs},
            "share_matched_project": main_run["share_matched"],
            "share_matched_original": orig.get("share_matched"),
            "prescore_only_first_matching": prescore_only,
            "peak_rss_gib": gib(peak_rss_bytes()),
            "printed": text,
            "notes": ["both methods run on the same embeddings in the same process; exact assignments are "
                      "single-threaded SciPy in both",
                      "original extrapolated from a random sample of pairs unless 'extrapolated' is false",
                      "the machine may have been shared with other jobs: see load (the load average at the "
                      "start and the end, the run's threads and the limit of a quiet machine)"],
        })
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
