"""``python -m empirical.attack``: break a NeuraCrypt game and show what each stage achieved.

With no arguments: draw N bundled real images, encode them with a fresh secret key (NeuraCrypt-7,
128 x 128 px, patch 16, hidden 256: a size whose whole run takes a minute or two on 2 CPU
cores), run every stage of the attack, then score each stage against Alice's answer key and
print a table. ``--game DIR`` attacks a game on disk instead, reading only GAME/, and writes a
submission ``{id: "<k>.npy"}``.
"""
from __future__ import annotations

import argparse
import datetime
import sys
import time
from dataclasses import replace

from .alice import bundled_game
from .backend import BACKENDS, BackendError, backend_name, get_backend
from .encoder import CHALLENGE_SCALE, PRESETS, preset, save_key
from .evaluate import challenge2_score, true_matching
from .extraction import ExtractConfig
from .fileio import write_json
from .game import GameError, Secrets, load_secrets, read_answer_key, read_game, write_submission
from .machine import machine_info, source_fingerprint
from .pipeline import AttackConfig, run_attack
from .psim import PsimConfig
from .report import score_stages, table_rows


def restrict_to_path_list(game):
    """The game with only the originals its public path list names as encoded."""
    keep = set(game.path_list)
    idx = [i for i, x in enumerate(game.ids) if x in keep]
    if len(idx) == len(game.ids):
        return game
    return replace(game, ids=[game.ids[i] for i in idx], originals=game.originals[idx])


def build_parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog="python -m empirical.attack", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--game", help="attack this game folder (public NeuraCrypt Challenge layout)")
    ap.add_argument("--submission", help="with --game: where to write the submission JSON "
                                         "(default parallel_data_predictions.json)")
    ap.add_argument("--answer-key", help="with --game: Alice's answer key, read only after the attack to score it")
    ap.add_argument("--secret-key", help="with --game: Alice's key (.npz), read only after the attack to score "
                                         "the local permutations and T'")
    ap.add_argument("--all-originals", action="store_true",
                    help="match against every original, ignoring the public path list of encoded ids "
                         "(harder: decoys become candidates)")
    ap.add_argument("--n", type=int, default=1000, help="images to encode when no --game is given (default 1000)")
    ap.add_argument("--extra", type=int, default=0, help="unencoded decoy originals when no --game is given")
    ap.add_argument("--preset", default="neuracrypt-7", choices=sorted(PRESETS), help="family when no --game is given")
    ap.add_argument("--image-size", type=int, default=128, help="image side when no --game is given (default 128)")
    ap.add_argument("--patch", type=int, default=16, help="patch side when no --game is given (default 16)")
    ap.add_argument("--hidden", type=int, default=256, help="hidden width when no --game is given (default 256)")
    ap.add_argument("--challenge-scale", action="store_true",
                    help="the NeuraCrypt Challenge's geometry when no --game is given: 256 x 256 px, patch 16, "
                         "hidden 2048 (overrides --image-size, --patch, --hidden; use with --backend cupy)")
    ap.add_argument("--seed", type=int, default=0, help="seed of the game (no --game) and of the attack")
    ap.add_argument("--backend", default="auto", choices=BACKENDS, help="array backend (default auto)")
    ap.add_argument("--candidates", type=int, default=AttackConfig.candidates,
                    help="encodings per original that get an exact i-sim (default %(default)s)")
    ap.add_argument("--psim-steps", type=int, default=PsimConfig.steps, help="p-sim training steps")
    ap.add_argument("--extract-steps", type=int, default=ExtractConfig.steps,
                    help="model extraction: robust-loss steps on boosting's matching (default %(default)s)")
    ap.add_argument("--refine-steps", type=int, default=ExtractConfig.refine_steps,
                    help="model extraction: squared-loss steps on T''s own matching (default %(default)s)")
    ap.add_argument("--fresh", type=int, default=500, help="fresh images to score T' on (0 to skip; needs the key)")
    ap.add_argument("--work-dir", help="keep each finished stage here and resume from it")
    ap.add_argument("--save-encoder", help="write the extracted T' here (.npz, state-dict layout)")
    ap.add_argument("--json", help="write config, per-stage results, totals and machine here")
    ap.add_argument("--plots", help="write PNG figures into this folder")
    ap.add_argument("--quiet", action="store_true", help="no progress bars")
    return ap


def _print_table(rows, total: float, out=None) -> None:
    out = out or sys.stdout
    print(f"{'stage':28s} {'matched':>8s} {'seconds':>8s}  note", file=out)
    for name, share, secs, note in rows:
        s = "-" if share is None else f"{share:.1%}"
        t = "" if secs is None else f"{secs:.1f}"
        print(f"{name:28s} {s:>8s} {t:>8s}  {note}", file=out)
    print(f"{'total':28s} {'':>8s} {total:8.1f}", file=out)


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return _run(args)
    except (GameError, BackendError, ValueError, OSError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2


def _run(args) -> int:
    xp = get_backend(args.backend)
    t_start = time.perf_counter()
    secrets = None
    t_data = 0.0
    if args.game:
        game = read_game(args.game)
    else:
        if args.n < 2:
            raise ValueError("--n must be at least 2")
        size = CHALLENGE_SCALE if args.challenge_scale else \
            dict(image_size=args.image_size, patch=args.patch, hidden=args.hidden)
        fam = preset(args.preset, **size)
        game, secrets = bundled_game(fam, args.n, args.extra, seed=args.seed)
        t_data = time.perf_counter() - t_start
    n_in_game = len(game.ids)
    if not args.all_originals:
        game = restrict_to_path_list(game)
    cfg = AttackConfig(seed=args.seed, candidates=args.candidates,
                       psim=replace(PsimConfig(), steps=args.psim_steps),
                       extract=replace(ExtractConfig(seed=args.seed), steps=args.extract_steps,
                                       refine_steps=args.refine_steps))
    if not args.quiet:
        print(f"attacking {len(game.files)} encodings of {len(game.ids)} originals "
              f"({game.config.image_size}px, patch {game.config.patch}, hidden {game.config.hidden}, "
              f"depth {game.config.depth}, shuffle {game.config.shuffle}) on {backend_name(xp)}", file=sys.stderr)
    result = run_attack(game, cfg, xp, quiet=args.quiet, work_dir=args.work_dir)
    t_attack = time.perf_counter() - t_start

    # --- everything below uses the attack's output; Alice's secrets are read only now ---
    submission = result.submission(game)
    if args.game:
        write_submission(args.submission or "parallel_data_predictions.json", submission)
        if args.answer_key:
            secrets = load_secrets(args.answer_key, args.secret_key) if args.secret_key else None
            if secrets is None:
                secrets = Secrets(None, read_answer_key(args.answer_key), None)
    if args.save_encoder:
        save_key(args.save_encoder, result.encoder)
    fresh = None
    if secrets is not None and secrets.key is not None and args.fresh > 0:
        from .data import bundled_images

        t0 = time.perf_counter()
        imgs = bundled_images(args.fresh, game.config.image_size, args.seed + 10_000, game.config.patch)
        fresh = challenge2_score(secrets.key, result.encoder, imgs, xp, seed=args.seed)
        fresh["seconds"] = time.perf_counter() - t0
    records = score_stages(result, game, secrets)
    rows = table_rows(records)
    if t_data:
        rows.insert(0, ("data", None, t_data, f"{len(game.files)} encodings of {len(game.ids)} originals"))
    if fresh is not None:
        rows.append(("T' on fresh images", None, fresh["seconds"],
                     f"nearest-neighbour score {fresh['share']:.1%} on {fresh['n']} images (Challenge 2)"))
    print()
    _print_table(rows, t_attack)
    if args.game:
        print(f"\nsubmission written to {args.submission or 'parallel_data_predictions.json'}")
    if args.json:
        write_json(args.json, {
            "config": {"attack": cfg.to_json(), "family": game.config.to_json(), "n_encoded": len(game.files),
                       "n_originals": len(game.ids), "n_originals_in_game": n_in_game,
                       "all_originals": args.all_originals, "game": args.game, "seed": args.seed},
            "stages": [{"stage": r[0], "share_matched": r[1], "seconds": r[2], "note": r[3]} for r in rows],
            "stage_records": records,
            "psim": {k: v for k, v in result.stages[1].info.items()},
            "final_share_matched": records[-1]["share_matched"],
            "fresh_images": fresh,
            "data_seconds": t_data,
            "total_seconds": t_attack,
            "machine": machine_info(xp),
            "source_fingerprint": source_fingerprint(),
            "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        })
    if args.plots:
        from .plots import attack_figures

        truth = true_matching(game, secrets) if secrets is not None else None
        for p in attack_figures(args.plots, game, result, rows, truth):
            print(f"figure written to {p}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
