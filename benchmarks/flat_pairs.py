"""Nearly flat twins: the re-scoring with and without its patch twins, side by side on the same attack.

Each game is a default-size game (``--n`` images and ``--extra`` decoys, 128 px, the family's
default width) whose first images are nearly flat twin pairs (``flat_pairs_stack.py``: smooth
faint texture, one brightness per pair). The whole attack runs once (``run_attack``, no secret
read); then the re-scoring is computed again from the same final matching and T', once with
:data:`empirical.rescore.PATCH_TWINS` patch twins (the attack's own) and once with none (the
re-scoring as it was), and both are scored against Alice's answer key, read only here: wrong
encodings among the flat twins and among the other images, the re-scoring's seconds.

Usage::

    python benchmarks/flat_pairs.py --presets neuracrypt-7 neuracrypt-2 --seeds 1 2 3 \\
        --json benchmarks/results/cpu_flat_pairs.json
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_common import load_average, load_record, machine, now_utc, result_header, sources, write_json
from flat_pairs_stack import add_stack_args, flat_pair_stack


def save(args, started: str, mach: dict, rows: list) -> None:
    """Rewrite the JSON with every game so far (a stopped run keeps what it finished)."""
    if args.json:
        head = result_header("flat_pairs", started, mach, sources(__file__, "empirical"), args)
        write_json(args.json, {**head, "games": rows})


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--presets", nargs="+", default=["neuracrypt-7"])
    ap.add_argument("--seeds", type=int, nargs="+", default=[1])
    ap.add_argument("--n", type=int, default=1000)
    ap.add_argument("--extra", type=int, default=50)
    add_stack_args(ap)
    ap.add_argument("--json")
    args = ap.parse_args(argv)

    from empirical.alice import bundled_ids, game_in_memory
    from empirical.alignment import apply_order
    from empirical.encoder import preset
    from empirical.encodings import Rows
    from empirical.evaluate import true_matching
    from empirical.pipeline import AttackConfig, run_attack
    from empirical.rescore import PASSES, PATCH_TWINS, rescore_close_calls
    from empirical.tprime import params_from_key

    xp = np
    started, mach = now_utc(), machine(xp)
    rows = []
    for name in args.presets:
        for seed in args.seeds:
            fam = preset(name, image_size=args.image_size)
            imgs, pairs = flat_pair_stack(args.n + args.extra, args.pairs, args.image_size, tuple(args.texture),
                                          args.offset, seed)
            game, secrets = game_in_memory(imgs, bundled_ids(len(imgs)), fam, args.n, seed=seed)
            load0, t0 = load_average(), time.perf_counter()
            res = run_attack(game, AttackConfig(seed=seed), xp, quiet=True)
            t_attack = time.perf_counter() - t0
            by = {s.name: s for s in res.stages}
            # --- Alice's answer key from here on --------------------------------------------------------
            truth = true_matching(game, secrets)
            flat_ids = {i for p in pairs for i in p["ids"]}
            flat = np.array([game.ids[int(a)] in flat_ids for a in truth])  # encodings of a flat twin
            row = {"preset": name, "seed": seed, "flat_encodings": int(flat.sum()), "attack_seconds": t_attack,
                   "load": load_record(load0),
                   "stages": {s.name: float(np.mean(s.matching == truth)) for s in res.stages
                              if s.matching is not None}}
            if res.encoder is None or "rescore" not in by or "skipped" in by["rescore"].info:
                row["note"] = "no re-scoring: the final matching is not T''s"
                rows.append(row)
                print(f"{name} seed {seed}: {row['note']}; shares {row['stages']}", flush=True)
                save(args, started, mach, rows)
                continue
            params = params_from_key(res.encoder, xp)
            aligned = apply_order(game.encodings, res.order, xp)[:, res.pi]  # (N, P, D) position order
            final = by["final"].matching
            for label, k, passes in (("one_pass_plain", 0, 1), ("passes_plain", 0, PASSES),
                                     ("passes_patch_twins", PATCH_TWINS, PASSES)):
                t1 = time.perf_counter()
                out = rescore_close_calls(params, game.originals, Rows(aligned, xp), final, game.bn_groups,
                                          fam, xp, patch_twins=k, passes=passes)
                wrong = out.matching != truth
                row[label] = {"patch_twins": k, "passes_allowed": passes, "passes": out.info["passes"],
                              "seconds": time.perf_counter() - t1, "changed": out.info["changed"],
                              "wrong_flat": int((wrong & flat).sum()), "wrong_other": int((wrong & ~flat).sum())}
            row["attack_is_passes_patch_twins"] = bool(np.array_equal(res.matching, out.matching))
            wrong = final != truth
            row["final"] = {"wrong_flat": int((wrong & flat).sum()), "wrong_other": int((wrong & ~flat).sum())}
            rows.append(row)
            labels = ("one_pass_plain", "passes_plain", "passes_patch_twins")
            parts = [f"{lab} {row[lab]['wrong_flat']} / {row[lab]['wrong_other']} ({row[lab]['passes']} passes, "
                     f"{row[lab]['seconds']:.1f} s)" for lab in labels]
            print(f"{name} seed {seed}: {row['flat_encodings']} flat encodings; wrong flat / other: final "
                  f"{row['final']['wrong_flat']} / {row['final']['wrong_other']}, " + ", ".join(parts)
                  + f"; attack {t_attack:.0f} s", flush=True)
            save(args, started, mach, rows)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
