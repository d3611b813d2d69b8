"""GPU check, in one script for the lent GPU machine: tests, NumPy/CuPy agreement, challenge scale.

Parts, in this order (``--parts`` picks some):

``tests``      the CuPy tests of the suite (``pytest -k "cupy or gpu or cuda"``; ``--all-tests`` for all)
``agree``      every stage of the attack on a small game, once with NumPy and once with CuPy, on the
               same inputs: the largest difference relative to the values' scale for continuous
               outputs, the share of equal entries for discrete ones (orders, candidates, matchings);
               then the whole attack end to end on both backends
``challenge``  the challenge-scale attack (256 x 256 grayscale, patch 16, hidden 2048; N = 14,643
               distinct bundled images by default) for NeuraCrypt-7 and NeuraCrypt-47. Alice's
               encoding runs on the GPU too. Each (N, variant) runs in its own process, with
               ``--run-timeout`` seconds, so one that runs out of time or GPU memory does not stop the
               others; each finished stage is written at once, so a run cut short still reports
               how far it got and how much GPU memory it held. ``--tprime-widths family 4096`` runs
               each variant once per entry, T' at the family's width and then 4,096 wide (the wide
               T' fits the game's images better, at several times the CPU cost: README, T' on new
               pictures), side by side in one run.

Writes ``gpu_check.json`` (everything) and ``gpu_challenge_summary.json`` (device, date, N, final
share matched, total seconds per variant: the file to commit under ``benchmarks/results/``) into
``$OUT``, or ``--out``. Prints a short table last.

The exit status is 0 only when every part that ran passed: the tests, every agreement check, and
every challenge run finished (one that failed, timed out or was not started before the deadline
counts as a failure; the share it matched does not, since NeuraCrypt-47 is not expected to break).
Without a CUDA GPU and CuPy nothing is measured: it says so and exits 3. ``--dry-run`` (the same as
``--backend numpy --small``) is an explicit CPU dry run of every code path, which exits 0 when
all of it ran: NumPy is compared with itself, the challenge part runs a small game.

On the lent machine (no network): the image holds CuPy, SciPy, scikit-image, Pillow, tqdm, pytest
and hypothesis but not pydicom or pydicom-data, which the bundled images need; carry their wheels
(see benchmarks/README.md).

    PYTHONPATH=. python benchmarks/gpu_check.py                       # everything, N = 14,643
    PYTHONPATH=. python benchmarks/gpu_check.py --n-list 14643 10000 --run-timeout 400
    PYTHONPATH=. python benchmarks/gpu_check.py --dry-run --out /tmp/gpu_dry
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
import traceback
from dataclasses import replace
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_common import (
    REPO,
    GpuMemory,
    gib,
    load_average,
    load_record,
    machine,
    now_utc,
    peak_rss_bytes,
    sources,
    write_json,
)

CHALLENGE_N = 14_643
VARIANTS = ("neuracrypt-7", "neuracrypt-47")
NO_GPU_EXIT = 3  # nothing was measured: no CUDA GPU usable through CuPy


def build_parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--backend", default="cupy", choices=("cupy", "numpy"),
                    help=f"cupy (default; exits {NO_GPU_EXIT} without a GPU) or numpy (a CPU run)")
    ap.add_argument("--dry-run", action="store_true",
                    help="an explicit CPU dry run of every code path: --backend numpy --small")
    ap.add_argument("--small", action="store_true",
                    help="small challenge part (N = 300, 128 px, hidden 128, few steps): a dry run of the code")
    ap.add_argument("--out", default=os.environ.get("OUT") or "gpu_check_out",
                    help="folder for the JSON files (default $OUT, else ./gpu_check_out)")
    ap.add_argument("--parts", nargs="+", default=["tests", "agree", "challenge"],
                    choices=("tests", "agree", "challenge"))
    ap.add_argument("--all-tests", action="store_true", help="run the whole test suite, not only the CuPy tests")
    ap.add_argument("--n-list", type=int, nargs="+", default=None, help=f"challenge N (default {CHALLENGE_N})")
    ap.add_argument("--variants", nargs="+", default=list(VARIANTS))
    ap.add_argument("--hidden", type=int, default=None, help="override the challenge hidden width (2048)")
    ap.add_argument("--candidates", type=int, default=None, help="default: AttackConfig.candidates")
    ap.add_argument("--psim-steps", type=int, default=None, help="default: PsimConfig.steps")
    ap.add_argument("--extract-steps", type=int, default=None, help="default: ExtractConfig.steps")
    ap.add_argument("--tprime-widths", nargs="+", default=["family"], metavar="W",
                    help="T''s layer widths, one run of each variant per entry: 'family' (the family's own, "
                         "the default), one width for every layer (4096) or one per layer (2048,4096,4096,...)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--run-timeout", type=float, default=None, help="seconds allowed per (N, variant)")
    ap.add_argument("--tests-timeout", type=float, default=300)
    ap.add_argument("--deadline", type=float, default=None,
                    help="seconds from the start by which everything must be written; runs that would pass it "
                         "are cut short or not started (use it to stay inside a device command's limit)")
    ap.add_argument("--child", help=argparse.SUPPRESS)  # JSON: one challenge run, in its own process
    ap.add_argument("--draw", help=argparse.SUPPRESS)  # JSON: draw the challenge images, in its own process
    return ap


# --- backend and time budget ---------------------------------------------------------------------

T_START = time.perf_counter()


def _budget(args, limit):
    """``limit`` seconds, cut to what is left before ``--deadline`` (less a margin to write the report)."""
    if args.deadline is None:
        return limit
    left = args.deadline - (time.perf_counter() - T_START) - 20
    return max(1.0, left if limit is None else min(limit, left))


def pick_backend(name: str):
    """The array module, or ``(None, reason)`` when CuPy or a GPU is missing."""
    from empirical.backend import BackendError, get_backend

    try:
        return get_backend(name), None
    except BackendError as e:
        return None, str(e)


def sync(xp) -> None:
    if xp.__name__.startswith("cupy"):
        xp.cuda.Stream.null.synchronize()


# --- part 1: the CuPy tests ---------------------------------------------------------------------

def part_tests(args) -> dict:
    cmd = [sys.executable, "-m", "pytest", "tests", "-rs", "-p", "no:cacheprovider"]  # the project's addopts has -q
    if not args.all_tests:
        cmd += ["-k", "cupy or gpu or cuda"]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")]))}
    t0 = time.perf_counter()
    try:
        p = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, env=env,
                           timeout=_budget(args, args.tests_timeout))
        rc, out = p.returncode, p.stdout + p.stderr
    except subprocess.TimeoutExpired as e:
        partial = e.stdout or ""
        rc, out = "timeout", partial.decode(errors="replace") if isinstance(partial, bytes) else partial
    summary = next((ln for ln in reversed(out.splitlines()) if any(w in ln for w in ("passed", "failed", "skipped",
                                                                                      "error", "deselected"))), "")
    ok = rc == 0 or rc == 5  # 5: nothing collected (no test matched)
    return {"command": " ".join(cmd), "returncode": rc, "ok": ok, "summary": summary.strip("= "),
            "seconds": time.perf_counter() - t0, "output_tail": out[-6000:]}


# --- part 2: NumPy vs CuPy, stage by stage ---------------------------------------------------------

def _rel(a, b) -> float:
    """Largest |a - b| relative to the scale of ``a`` (both host arrays)."""
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    if a.shape != b.shape:
        return float("inf")
    return float(np.abs(a - b).max() / max(np.abs(a).max(), 1e-12)) if a.size else 0.0


def _rel_norm(a, b) -> float:
    """||a - b|| / ||a|| over all entries (for trained weights, where one weight's flip says little)."""
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    if a.shape != b.shape:
        return float("inf")
    return float(np.linalg.norm(a - b) / max(np.linalg.norm(a), 1e-12))


def _same(a, b) -> float:
    a, b = np.asarray(a), np.asarray(b)
    return float(np.mean(a == b)) if a.shape == b.shape else 0.0


def part_agree(args, xp) -> dict:
    """Each stage on identical inputs with NumPy (reference) and ``xp``; then the whole attack on both."""
    from empirical.alice import bundled_ids, game_in_memory
    from empirical.alignment import align_rows, apply_order
    from empirical.backend import to_numpy
    from empirical.boosting import boost
    from empirical.data import bundled_images
    from empirical.encoder import encode, preset, random_key
    from empirical.evaluate import share_matched, true_matching
    from empirical.extraction import ExtractConfig, encode_each, fit_encoder, mean_batch_stats
    from empirical.isim import balance, first_matching, isim_candidates, sliced_prescore, top_candidates
    from empirical.pipeline import AttackConfig, run_attack
    from empirical.psim import (
        PsimConfig,
        pair_encodings,
        patch_features,
        row_features,
        train_psim,
        training_pairs,
    )

    h = lambda a: to_numpy(a)  # noqa: E731
    d = lambda a: xp.asarray(a)  # noqa: E731
    checks = []

    def check(stage, what, value, kind, tol):
        ok = value <= tol if kind.endswith("diff") else value >= tol
        checks.append({"stage": stage, "output": what, "measure": kind, "value": value,
                       "limit": tol, "ok": bool(ok)})

    t0 = time.perf_counter()
    fam = preset("neuracrypt-7", image_size=128, patch=16, hidden=64)
    n, K = 300, PsimConfig.moments
    imgs = bundled_images(n, fam.image_size, args.seed, fam.patch)
    key = random_key(fam, 11)

    # encoder (BatchNorm batches of 256: two batches here)
    enc_h, perms_h = encode(imgs, key, np, seed=5)
    enc_d, perms_d = encode(imgs, key, xp, seed=5)
    check("encode", "encodings", _rel(enc_h, h(enc_d)), "rel_diff", 1e-4)
    check("encode", "shuffle permutations", _same(perms_h, perms_d), "share_equal", 1.0)

    # local permutations
    order_h = align_rows(enc_h, np, 2)
    order_d = align_rows(d(enc_h), xp, 2)
    check("align", "row orders", _same(order_h, order_d), "share_equal", 0.99)
    al_h = apply_order(enc_h, order_h, np)
    al_d = apply_order(d(enc_h), order_h, xp)
    check("align", "aligned rows (same order)", _rel(al_h, h(al_d)), "rel_diff", 0.0)

    # p-sim: features, training pairs, training, embeddings
    pc = replace(PsimConfig(), steps=40, n_encoders=2, images_per_encoder=128)
    pf_h, pf_d = patch_features(imgs, fam, K, np), patch_features(d(imgs), fam, K, xp)
    check("psim", "patch moment features", _rel(pf_h, h(pf_d)), "rel_diff", 1e-3)
    rf_h, rf_d = row_features(al_h, K, np), row_features(d(al_h), K, xp)
    check("psim", "row moment features", _rel(rf_h, h(rf_d)), "rel_diff", 1e-3)
    # The training pairs' two steps, each on identical inputs: the attacker encoders' encodings, then the
    # row features of the host's encodings. Row features of each backend's own encodings would compound
    # the two: |central moment k|^(1/k) is steep where an odd moment is near 0, so encodings 1e-6 apart
    # give features 1e-2 apart there (the H200 run of benchmarks/results/gpu_check_h200.json).
    encs_h = list(pair_encodings(imgs, fam, pc, args.seed, np))
    encs_d = list(pair_encodings(d(imgs), fam, pc, args.seed, xp))
    check("psim", "training-pair picks", min(_same(a, h(c)) for (a, _), (c, _) in zip(encs_h, encs_d, strict=True)),
          "share_equal", 1.0)
    check("psim", "training-pair encodings", max(_rel(b, h(e)) for (_, b), (_, e) in zip(encs_h, encs_d, strict=True)),
          "rel_diff", 1e-4)
    check("psim", "training-pair row features (same encodings)",
          max(_rel(row_features(e, K, np), h(row_features(d(e), K, xp))) for _, e in encs_h), "rel_diff", 1e-3)
    pairs_h = training_pairs(imgs, fam, pc, args.seed, np)
    model_h, loss_h = train_psim(pairs_h, pc, args.seed, np)
    model_d, loss_d = train_psim([(d(a), d(b)) for a, b in pairs_h], pc, args.seed, xp)
    check("psim", f"training loss, {pc.steps} steps", _rel(loss_h, loss_d), "rel_diff", 1e-2)
    pe_h = model_h.embed_patches(pf_h.reshape(-1, K), np).reshape(n, fam.n_patches, -1)
    re_h = model_h.embed_rows(rf_h.reshape(-1, K), np).reshape(n, fam.n_patches, -1)
    pe_d = model_d.embed_patches(d(pf_h).reshape(-1, K), xp).reshape(n, fam.n_patches, -1)
    check("psim", "patch embeddings after training", _rel_norm(pe_h, h(pe_d)), "rel_norm_diff", 1e-2)
    # From here on both backends get the NumPy model's embeddings, so each stage is compared alone.
    pe_d, re_d = d(pe_h), d(re_h)

    # i-sim and the first matching
    pre_h, pre_d = sliced_prescore(pe_h, re_h, np), sliced_prescore(pe_d, re_d, xp)
    check("first", "sliced pre-score", _rel(pre_h, h(pre_d)), "rel_diff", 1e-4)
    pre_h, pre_d = balance(pre_h, np), balance(pre_d, xp)
    check("first", "balanced pre-score", _rel(pre_h, h(pre_d)), "rel_diff", 1e-3)
    k = 10
    cand_h, cand_d = top_candidates(pre_h, k, np), top_candidates(pre_d, k, xp)
    same_sets = np.mean([set(a) == set(b) for a, b in zip(cand_h, cand_d, strict=True)])
    check("first", "candidate sets", float(same_sets), "share_equal", 0.98)
    val_h, val_d = isim_candidates(pe_h, re_h, cand_h, np), isim_candidates(pe_d, re_d, cand_h, xp)
    check("first", "exact i-sim on candidates", _rel(val_h, val_d), "rel_diff", 1e-4)
    m_h, m_d = first_matching(val_h, cand_h, n), first_matching(val_d, cand_h, n)
    check("first", "first matching", _same(m_h, m_d), "share_equal", 0.98)

    # boosting
    (b_h, pi_h, _), (b_d, pi_d, _) = boost(pe_h, re_h, m_h, np, 6, 0), boost(pe_d, re_d, m_h, xp, 6, 0)
    check("boost", "matching", _same(b_h, b_d), "share_equal", 0.98)
    check("boost", "global permutation", _same(pi_h, pi_d), "share_equal", 0.98)

    # model extraction and the final matching
    targets = al_h[:, pi_h, :]
    groups = np.arange(n) // fam.bn_batch
    ec = replace(ExtractConfig(), steps=30, adapt_steps=False, holdout=0.0)  # the same steps on both backends
    par_h, el_h = fit_encoder(imgs[b_h], targets, groups, fam, ec, np)[:2]
    par_d, el_d = fit_encoder(d(imgs)[d(b_h)], d(targets), groups, fam, ec, xp)[:2]
    check("extract", f"robust loss, {ec.steps} steps", _rel(el_h, el_d), "rel_diff", 1e-2)
    check("extract", "fitted weights", max(_rel_norm(par_h[q], h(par_d[q])) for q in par_h), "rel_norm_diff", 2e-2)
    par_d = {q: d(v) for q, v in par_h.items()}
    st_h = mean_batch_stats(par_h, imgs[b_h], groups, fam, np)
    st_d = mean_batch_stats(par_d, d(imgs)[d(b_h)], groups, fam, xp)
    stat_diff = max(_rel(a[i], h(b[i])) for a, b in zip(st_h, st_d, strict=True) for i in (0, 1))
    check("final", "mean BatchNorm statistics", stat_diff, "rel_diff", 1e-3)
    y_h = encode_each(par_h, imgs, fam, st_h, np)
    y_d = encode_each(par_d, d(imgs), fam, st_h and [(d(a), d(b)) for a, b in st_h], xp)
    check("final", "T'(x) of every original", _rel(y_h, h(y_d)), "rel_diff", 1e-3)
    stage_seconds = time.perf_counter() - t0

    # the whole attack on both backends (a fresh game of the same images)
    t0 = time.perf_counter()
    game, secrets = game_in_memory(imgs, bundled_ids(n), fam, n, seed=args.seed)
    truth = true_matching(game, secrets)
    steps = (100, 40) if args.small else (300, 100)
    cfg = AttackConfig(seed=args.seed, psim=replace(PsimConfig(), steps=steps[0]),
                       extract=replace(ExtractConfig(), steps=steps[1]))
    res_h = run_attack(game, cfg, np, quiet=True)
    res_d = run_attack(game, cfg, xp, quiet=True)
    e2e = []
    for a, b in zip(res_h.stages, res_d.stages, strict=True):
        row = {"stage": a.name, "numpy_seconds": a.seconds, "device_seconds": b.seconds}
        if a.matching is not None:
            row.update(numpy_share=share_matched(a.matching, truth), device_share=share_matched(b.matching, truth),
                       agreement=_same(a.matching, b.matching))
        e2e.append(row)
    # Where the attack fails at this small size, the two backends' matchings are both near chance and need
    # not coincide, so the end-to-end check compares the shares; the agreement itself is reported above.
    check("whole attack", "final share matched, NumPy minus device",
          abs(share_matched(res_h.matching, truth) - share_matched(res_d.matching, truth)), "abs_diff", 0.02)
    return {"game": {"n": n, **fam.to_json()}, "checks": checks, "stage_checks_seconds": stage_seconds,
            "end_to_end": e2e, "end_to_end_seconds": time.perf_counter() - t0,
            "ok": all(c["ok"] for c in checks)}


# --- part 3: the challenge-scale attack ------------------------------------------------------------

def challenge_child(spec: dict) -> int:
    """One (N, variant) run; writes its record to ``spec['record']`` after every stage.

    Alice's encoding runs on the device too (:func:`empirical.alice.game_in_memory` with ``xp``):
    the same draws as on the host, the encodings brought back because the Game is host data.
    """
    from empirical.alice import bundled_ids, game_in_memory
    from empirical.encoder import CHALLENGE_SCALE, expand_widths, parse_widths, preset
    from empirical.evaluate import share_matched, true_matching
    from empirical.extraction import ExtractConfig
    from empirical.pipeline import STAGES, AttackConfig, run_attack
    from empirical.psim import PsimConfig

    xp, why = pick_backend(spec["backend"])
    if xp is None:
        raise SystemExit(why)
    rec = {"variant": spec["variant"], "n": spec["n"], "tprime_widths": spec.get("tprime_widths", "family"),
           "status": "started", "stages": []}
    out = Path(spec["record"])
    load0 = load_average()

    def save():
        rec["load"] = load_record(load0)  # the load average at the start and at this record
        rec["host_peak_rss_gib"] = gib(peak_rss_bytes())
        rec.update(mem.info())
        write_json(out, rec)

    mem = GpuMemory(xp)
    with mem:
        try:
            imgs = np.array(np.load(spec["images"], mmap_mode="r")[: spec["n"]])
            scale = {**CHALLENGE_SCALE, **spec.get("scale", {})}
            fam = preset(spec["variant"], **scale)
            rec["family"] = fam.to_json()
            t0 = time.perf_counter()
            game, secrets = game_in_memory(imgs, bundled_ids(len(imgs)), fam, spec["n"], seed=spec["seed"], xp=xp)
            sync(xp)
            rec["encode_seconds"] = time.perf_counter() - t0
            del imgs
            truth = true_matching(game, secrets)
            wtext = spec.get("tprime_widths", "family")
            widths = () if wtext == "family" else expand_widths(fam, parse_widths(wtext))
            cfg = AttackConfig(seed=spec["seed"], candidates=spec["candidates"] or AttackConfig.candidates,
                               psim=replace(PsimConfig(), steps=spec["psim_steps"] or PsimConfig.steps),
                               extract=replace(ExtractConfig(seed=spec["seed"]),
                                               steps=spec["extract_steps"] or ExtractConfig.steps,
                                               refine_steps=spec.get("refine_steps") or ExtractConfig.refine_steps,
                                               widths=widths))
            rec["attack_config"] = cfg.to_json()
            rec["status"] = "attacking"
            save()
            t1 = time.perf_counter()

            def on_stage(st):
                row = {"stage": st.name, "seconds": st.seconds, "gpu_in_use_gib_after": gib(mem.used),
                       "gpu_peak_gib_so_far": gib(mem.peak)}
                if st.matching is not None:
                    row["share_matched"] = share_matched(st.matching, truth)
                row.update({q: v for q, v in st.info.items() if isinstance(v, (int, float, str)) and q != "resumed"})
                rec["stages"].append(row)
                save()

            result = run_attack(game, cfg, xp, quiet=True, on_stage=on_stage)
            sync(xp)
            rec["attack_seconds"] = time.perf_counter() - t1
            rec["total_seconds"] = rec["encode_seconds"] + rec["attack_seconds"]
            rec["final_share_matched"] = share_matched(result.matching, truth)
            rec["status"] = "done"
        except Exception as e:  # out of GPU memory above all: record how far it got
            rec["status"] = "failed"
            rec["error"] = f"{type(e).__name__}: {e}"[:2000]
            rec["traceback"] = traceback.format_exc()[-4000:]
            done = [s["stage"] for s in rec["stages"]]
            rec["failed_in_stage"] = "encode" if "encode_seconds" not in rec else (
                STAGES[len(done)] if len(done) < len(STAGES) else f"after {STAGES[-1]}")
        save()
    return 0


def challenge_plan(args) -> dict:
    n_list = args.n_list or ([300] if args.small else [CHALLENGE_N])
    scale = {"image_size": 128, "hidden": 128} if args.small else {}
    if args.hidden:
        scale["hidden"] = args.hidden
    return {"n_list": n_list, "scale": scale, "size": scale.get("image_size", 256),
            "psim_steps": args.psim_steps or (200 if args.small else None),
            "extract_steps": args.extract_steps or (50 if args.small else None),
            "refine_steps": 50 if args.small else None}


def draw_child(spec: dict) -> int:
    """Draw the bundled images (CPU work) into ``spec['path']``, timing it."""
    from empirical.data import bundled_images

    t0 = time.perf_counter()
    imgs = bundled_images(spec["n"], spec["size"], spec["seed"], 16)
    np.save(spec["path"], imgs)
    write_json(spec["path"] + ".json", {"seconds": time.perf_counter() - t0, "n": spec["n"], "size": spec["size"]})
    return 0


def start_drawing(args, plan: dict, tmp_dir: Path):
    """Start drawing the challenge images in the background (CPU), while the GPU runs the other parts."""
    spec = {"n": max(plan["n_list"]), "size": plan["size"], "seed": args.seed, "path": str(tmp_dir / "images.npy")}
    proc = subprocess.Popen([sys.executable, str(Path(__file__).resolve()), "--draw", json.dumps(spec)],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    return proc, spec


def part_challenge(args, xp_name: str, tmp_dir: Path, record, drawing) -> dict:
    plan = challenge_plan(args)
    proc, dspec = drawing
    t0 = time.perf_counter()
    try:
        out, _ = proc.communicate(timeout=_budget(args, None))
    except subprocess.TimeoutExpired:
        proc.kill()
        raise RuntimeError("drawing the images did not finish before the deadline") from None
    if proc.returncode != 0:
        raise RuntimeError(f"drawing the images failed: {out[-2000:]}")
    drawn = json.loads(Path(dspec["path"] + ".json").read_text())
    img_path = dspec["path"]
    res = {"images_seconds": drawn["seconds"], "images_waited_seconds": time.perf_counter() - t0,
           "images": {"n": drawn["n"], "size": drawn["size"], "seed": args.seed,
                      "drawn": "in the background while the tests and the agreement check ran"}, "runs": []}
    record(res)
    runs = [(n, variant, w) for n in plan["n_list"] for variant in args.variants for w in args.tprime_widths]
    for n, variant, wtext in runs:
        spec = {"variant": variant, "n": n, "backend": xp_name, "seed": args.seed, "images": str(img_path),
                "record": str(tmp_dir / f"run_{variant}_{n}_{wtext.replace(',', '-')}.json"),
                "scale": plan["scale"], "tprime_widths": wtext,
                "candidates": args.candidates, "psim_steps": plan["psim_steps"],
                "extract_steps": plan["extract_steps"], "refine_steps": plan["refine_steps"]}
        limit = _budget(args, args.run_timeout)
        if args.deadline is not None and limit < 30:
            res["runs"].append({"variant": variant, "n": n, "tprime_widths": wtext,
                                "status": "not started (deadline)", "stages": []})
            record(res)
            continue
        print(f"challenge scale: {variant}, N = {n}, T' widths {wtext} ...", file=sys.stderr, flush=True)
        t1 = time.perf_counter()
        try:
            p = subprocess.run([sys.executable, str(Path(__file__).resolve()), "--child", json.dumps(spec)],
                               capture_output=True, text=True, timeout=limit)
            rc, tail = p.returncode, (p.stdout + p.stderr)[-3000:]
        except subprocess.TimeoutExpired:
            rc, tail = "timeout", f"stopped after {limit:.0f} s (--run-timeout / --deadline)"
        rpath = Path(spec["record"])
        rec = json.loads(rpath.read_text()) if rpath.exists() else {"variant": variant, "n": n,
                                                                     "tprime_widths": wtext, "stages": []}
        rec["process_seconds"] = time.perf_counter() - t1
        if rc != 0:
            rec["status"] = "timed out" if rc == "timeout" else (
                "killed (out of host memory?)" if rc in (-9, 137) else f"exit {rc}")
            rec["process_output_tail"] = tail
        res["runs"].append(rec)
        record(res)
        print(f"  {rec.get('status')}: " + (f"final share {rec['final_share_matched']:.1%}, "
                                             f"{rec['total_seconds']:.0f} s" if rec.get("status") == "done" else
                                             f"{rec.get('error', '')[:200]}"), file=sys.stderr, flush=True)
    return res


# --- the driver ----------------------------------------------------------------------------------------

def _table(report: dict) -> str:
    lines = [f"GPU check on {report['machine'].get('gpu', 'CPU (' + report['backend'] + ', dry run)')}, "
             f"{report['date']}"]
    t = report.get("tests")
    if t:
        lines.append(f"tests      {'ok' if t['ok'] else 'FAILED'}  {t['summary']}  ({t['seconds']:.0f} s)")
    a = report.get("agree")
    if a:
        if "error" in a:
            lines.append(f"agreement  FAILED to run: {a['error'][:200]}")
        else:
            bad = [c for c in a["checks"] if not c["ok"]]
            failed = ", ".join(c["stage"] + " " + c["output"] for c in bad)
            n_ok, n_all = len(a["checks"]) - len(bad), len(a["checks"])
            lines.append(f"agreement  {'ok' if a['ok'] else 'FAILED'}  {n_ok}/{n_all} "
                         f"stage outputs within limits" + (f"; failed: {failed}" if bad else ""))
    c = report.get("challenge")
    if c:
        if "error" in c:
            lines.append(f"challenge  FAILED to run: {c['error'][:200]}")
        else:
            lines.append(f"challenge  {'ok' if c.get('ok') else 'FAILED'}  "
                         f"{c['images']['n']:,} images drawn in {c['images_seconds']:.0f} s (CPU, in the "
                         f"background; waited {c['images_waited_seconds']:.0f} s for them)")
            lines.append(f"  {'variant':14s} {'N':>6s} {'T width':>8s} {'status':>10s} {'final':>7s} {'total s':>8s} "
                         f"{'GPU peak':>9s}  stages (s)")
            for r in c["runs"]:
                share = f"{r['final_share_matched']:.1%}" if "final_share_matched" in r else "-"
                tot = f"{r['total_seconds']:.0f}" if "total_seconds" in r else "-"
                peak = f"{r['gpu_peak_gib']:.1f}Gi" if "gpu_peak_gib" in r else "-"
                st = " ".join(f"{s['stage']} {s['seconds']:.0f}" for s in r.get("stages", []))
                lines.append(f"  {r['variant']:14s} {r['n']:6d} {str(r.get('tprime_widths', 'family'))[:8]:>8s} "
                             f"{str(r.get('status'))[:10]:>10s} {share:>7s} {tot:>8s} "
                             f"{peak:>9s}  {st}" + (f"  [{r.get('failed_in_stage')}: {r.get('error', '')[:80]}]"
                                                    if r.get("status") == "failed" else ""))
    return "\n".join(lines)


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    if args.child:
        return challenge_child(json.loads(args.child))
    if args.draw:
        return draw_child(json.loads(args.draw))
    if args.dry_run:
        args.backend, args.small = "numpy", True
    from empirical.encoder import parse_widths
    from empirical.errors import UserError

    try:
        for w in args.tprime_widths:
            if w != "family":
                parse_widths(w)
    except UserError as e:
        print(f"error: --tprime-widths: {e}", file=sys.stderr)
        return 2
    out_dir = Path(args.out)
    out_dir.mkdir(parents=True, exist_ok=True)
    xp, why = pick_backend(args.backend)
    if xp is None:
        msg = (f"no CUDA GPU usable through CuPy here ({why}); nothing was measured. This check needs a GPU; "
               "`--dry-run` runs its code paths on the CPU instead.")
        print(f"error: {msg}", file=sys.stderr)
        write_json(out_dir / "gpu_check.json", {"benchmark": "gpu_check", "date": now_utc(), "error": msg,
                                                "machine": machine()})
        return NO_GPU_EXIT
    try:
        from empirical.data import bundled_sources

        bundled_sources()
    except Exception as e:
        print(f"error: the bundled images cannot be read ({e}); on the lent GPU machine carry the pydicom and "
              "pydicom-data wheels (benchmarks/README.md)", file=sys.stderr)
        return 2
    report = {"benchmark": "gpu_check", "date": now_utc(), "backend": args.backend, "small": args.small,
              "dry_run": args.backend == "numpy", "machine": machine(xp), "source_fingerprint": sources(__file__),
              "argv": sys.argv[1:]}

    def save():
        write_json(out_dir / "gpu_check.json", report)

    with tempfile.TemporaryDirectory(prefix="gpu_check_") as tmp:
        drawing = start_drawing(args, challenge_plan(args), Path(tmp)) if "challenge" in args.parts else None
        if "tests" in args.parts:
            print("CuPy tests ...", file=sys.stderr, flush=True)
            report["tests"] = part_tests(args)
            save()
        if "agree" in args.parts:
            print("NumPy vs " + args.backend + ", stage by stage ...", file=sys.stderr, flush=True)
            try:
                report["agree"] = part_agree(args, xp)
            except Exception as e:
                report["agree"] = {"error": f"{type(e).__name__}: {e}", "traceback": traceback.format_exc()[-4000:],
                                   "ok": False}
            save()
        if "challenge" in args.parts:
            def record(res):
                report["challenge"] = res
                save()

            try:
                part_challenge(args, args.backend, Path(tmp), record, drawing)
            except Exception as e:
                report["challenge"] = {**report.get("challenge", {}), "error": f"{type(e).__name__}: {e}",
                                       "traceback": traceback.format_exc()[-4000:]}
            ch = report.setdefault("challenge", {})
            # A run counts when it finished; one that failed, timed out or never started does not.
            ch["ok"] = "error" not in ch and bool(ch.get("runs")) and all(
                r.get("status") == "done" for r in ch["runs"])
            save()
        if drawing is not None and drawing[0].poll() is None:
            drawing[0].kill()  # only when the challenge part stopped early
            drawing[0].wait()
    summary = [{"device": report["machine"].get("gpu", f"CPU dry run ({args.backend})"), "date": report["date"],
                "variant": r["variant"], "n": r["n"], "tprime_widths": r.get("tprime_widths", "family"),
                "family": r.get("family"), "status": r.get("status"),
                "final_share_matched": r.get("final_share_matched"), "total_seconds": r.get("total_seconds"),
                "encode_seconds": r.get("encode_seconds"), "attack_seconds": r.get("attack_seconds"),
                "stage_seconds": {s["stage"]: s["seconds"] for s in r.get("stages", [])},
                "gpu_peak_gib": r.get("gpu_peak_gib"), "host_peak_rss_gib": r.get("host_peak_rss_gib"),
                "failed_in_stage": r.get("failed_in_stage"), "error": r.get("error")}
               for r in report.get("challenge", {}).get("runs", [])]
    if summary:
        write_json(out_dir / "gpu_challenge_summary.json", {"benchmark": "gpu_check challenge scale",
                                                            "machine": report["machine"],
                                                            "source_fingerprint": report["source_fingerprint"],
                                                            "runs": summary})
    failed = [p for p in args.parts if not report.get(p, {}).get("ok", False)]
    report["failed_parts"] = failed
    report["finished"] = now_utc()
    save()
    print()
    print(_table(report))
    print("all parts passed" + (" (a CPU dry run: nothing measured on a GPU)" if report["dry_run"] else "")
          if not failed else f"FAILED: {', '.join(failed)}")
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
