"""Oracle for T''s generalisation: which extraction setting closes the gap to new pictures?

Companion of ``tprime_fresh.py`` (whose image kinds and scores it uses): one game, attacked once
up to model extraction; then model extraction alone is re-run with each variant of its settings
(``ExtractConfig`` fields, e.g. the whitening floor, the robust loss's threshold, images per
step), the earlier stages coming from a work dir, and T' is scored on the four image sets of
``tprime_fresh.py`` (the game's images, new crops, new pictures of the kind, the other kind).

Usage::

    python benchmarks/tprime_knobs.py --variant default: --variant floor1e-2:whiten=1e-2,refine_whiten=1e-2 \\
        --json benchmarks/results/cpu_tprime_knobs.json
    python benchmarks/tprime_knobs.py --variant wide:widths=1024 --variant wide-decay:widths=1024,decay=10
"""
from __future__ import annotations

import argparse
import dataclasses
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_common import load_average, load_record, machine, now_utc, sources, write_json
from tprime_fresh import SETS, fresh_sets, held_out_estimate, kind_images, score_columns, score_header, score_sets


def parse_fields(body: str, option: str) -> dict:
    """``field=value,field=value`` -> ``{field: value}`` with each ``ExtractConfig`` field's own type.

    ``option`` names the command-line text in the error for an unknown field.
    """
    from empirical.extraction import ExtractConfig

    types = {f.name: type(getattr(ExtractConfig(), f.name)) for f in dataclasses.fields(ExtractConfig)}
    out = {}
    for item in filter(None, body.split(",")):
        field, _, value = item.partition("=")
        if field not in types:
            raise SystemExit(f"{option}: ExtractConfig has no field {field!r} (has {', '.join(types)})")
        if field == "widths":  # one width for every layer, or one per layer separated by ';'
            out[field] = tuple(int(w) for w in value.split(";"))
        else:
            out[field] = types[field](float(value)) if types[field] is int else types[field](value)
    return out


def parse_variant(text: str) -> tuple[str, dict]:
    """``name:field=value,field=value`` -> ``(name, {field: value})`` (:func:`parse_fields`)."""
    name, _, body = text.partition(":")
    return name, parse_fields(body, f"--variant {text!r}")


def add_game_args(ap: argparse.ArgumentParser) -> None:
    """The game's options shared with ``tprime_oracle.py``: family, kind, N, width, seed, fresh images."""
    ap.add_argument("--preset", default="neuracrypt-7")
    ap.add_argument("--kind", default="split", choices=("split", "synthetic"))
    ap.add_argument("--n", type=int, default=1000)
    ap.add_argument("--hidden", type=int, default=256)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--fresh", type=int, default=500)


def main(argv=None) -> int:
    from empirical.alice import bundled_ids, game_in_memory
    from empirical.backend import get_backend
    from empirical.encoder import expand_widths
    from empirical.encoder import preset as family
    from empirical.evaluate import share_matched, true_matching
    from empirical.extraction import ExtractConfig
    from empirical.pipeline import AttackConfig, run_attack

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_game_args(ap)
    ap.add_argument("--variant", action="append", required=True, help="name:field=value,... (repeatable)")
    ap.add_argument("--image-size", type=int, default=128)
    ap.add_argument("--json")
    args = ap.parse_args(argv)
    variants = [parse_variant(v) for v in args.variant]

    started, mach, xp = now_utc(), machine(), get_backend("numpy")
    fam = family(args.preset, image_size=args.image_size, hidden=args.hidden)
    seed, size = args.seed, args.image_size
    game, secrets = game_in_memory(kind_images(args.kind, args.n, size, seed, held_out=False), bundled_ids(args.n),
                                   fam, args.n, seed=seed)
    sets = fresh_sets(args.kind, game.originals, seed, args.fresh, size)
    print(f"{'variant':<22}{'match':>8}" + score_header() + f"{'held back':>14}{'ext s':>8}")
    rows = []
    with tempfile.TemporaryDirectory() as work:
        for name, fields in variants:
            ec = dataclasses.replace(ExtractConfig(), seed=seed, **fields)
            ec = dataclasses.replace(ec, widths=expand_widths(fam, ec.widths))
            load0, t0 = load_average(), time.perf_counter()
            res = run_attack(game, AttackConfig(seed=seed, extract=ec), xp, quiet=True, work_dir=work)
            seconds = time.perf_counter() - t0
            # --- Alice's secrets from here on ------------------------------------------------------
            st = {s.name: s for s in res.stages}
            matched = share_matched(res.matching, true_matching(game, secrets))
            row = {"variant": name, "fields": fields, "final_share_matched": matched,
                   "extract_seconds": st["extract"].seconds, "run_seconds": seconds,
                   "extract_info": st["extract"].info,
                   "fresh": score_sets(secrets.key, res.encoder, sets, xp),
                   "load": load_record(load0)}
            rows.append(row)
            print(f"{name:<22}{row['final_share_matched']:>8.1%}" + score_columns(row["fresh"])
                  + f"{held_out_estimate(row['extract_info']):>14}{row['extract_seconds']:>8.0f}", flush=True)
            if args.json:
                write_json(args.json, {
                    "benchmark": "tprime_knobs", "date": now_utc(), "started": started, "machine": mach,
                    "source_fingerprint": sources(__file__, "tprime_fresh.py", "games.py"),
                    "settings": {k: v for k, v in vars(args).items() if k != "json"}, "sets": SETS, "runs": rows})
    return 0


if __name__ == "__main__":
    sys.exit(main())
