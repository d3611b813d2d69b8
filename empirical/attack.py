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
import math
import sys
import time
from dataclasses import replace

import numpy as np

from .alice import bundled_game
from .backend import BACKENDS, BackendError, backend_name, get_backend
from .encoder import CHALLENGE_SCALE, PRESETS, EncoderConfig, expand_widths, family_widths, parse_widths, preset
from .encodings import default_budget
from .errors import OneLineParser, UserError, one_line, run_command
from .evaluate import challenge2_bytes, challenge2_score, true_matching
from .extraction import ExtractConfig
from .fileio import check_output, is_within, resolved, write_json
from .game import Game, Secrets, game_bytes, read_game, write_submission
from .keys import save_key
from .machine import fingerprint_record, load_average, load_record, machine_info
from .memory import check_memory, format_bytes, peak_resident
from .passes import connect
from .pipeline import AttackConfig, run_attack
from .psim import PsimConfig
from .report import score_stages, table_rows
from .secret_files import check_secrets, load_secrets, perms_path, read_answer_key
from .stages.boost import GRAPH_SEARCH

DEFAULT_SUBMISSION = "parallel_data_predictions.json"
MAX_SEED = 2**63 - 1 - 10_000  # the fresh images are drawn with seed + 10,000


def restrict_to_path_list(game: Game) -> Game:
    """The game with only the originals its public path list names as encoded."""
    keep = set(game.path_list)
    idx = [i for i, x in enumerate(game.ids) if x in keep]
    if len(idx) == len(game.ids):
        return game
    return replace(game, ids=[game.ids[i] for i in idx], originals=game.originals[idx])


def build_parser() -> argparse.ArgumentParser:
    ap = OneLineParser(prog="python -m empirical.attack", description=__doc__,
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--game", help="attack this game folder (public NeuraCrypt Challenge layout)")
    ap.add_argument("--submission", help="with --game: where to write the submission JSON "
                                         "(default parallel_data_predictions.json)")
    ap.add_argument("--answer-key", help="with --game: Alice's answer key, checked against the game before the "
                                         "attack and used only after it, to score it")
    ap.add_argument("--secret-key", help="with --game and --answer-key: Alice's key (.npz; one without a config "
                                         "entry takes the game's family), checked before the attack and used "
                                         "only after it, to score the local permutations and T'")
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
    ap.add_argument("--graph-search", default=AttackConfig.graph_search, choices=GRAPH_SEARCH,
                    help="boosting's second start from the correlation graph of the positions (no matching "
                         "needed): auto (when boosting from the first matching ends with median margin <= 0), "
                         "always or never (default %(default)s)")
    ap.add_argument("--psim-steps", type=int, default=PsimConfig.steps, help="p-sim training steps")
    ap.add_argument("--extract-steps", type=int, default=ExtractConfig.steps,
                    help="model extraction: robust-loss steps on boosting's matching (default %(default)s)")
    ap.add_argument("--refine-steps", type=int, default=ExtractConfig.refine_steps,
                    help="model extraction: squared-loss steps on T''s own matching (default %(default)s)")
    ap.add_argument("--tprime-widths", type=_widths_arg, default=(), metavar="W[,W...]",
                    help="model extraction: T''s layers' widths, one for every layer or one per layer (the patch "
                         "convolution, then each block); its output stays the family's width. Wider fits and "
                         "generalises better and costs more: 4x the family's width took about 7x the "
                         "extraction's seconds for NeuraCrypt-7, 3x for NeuraCrypt-2 (default: the family's own)")
    ap.add_argument("--tprime-decay", type=float, default=ExtractConfig.decay, metavar="RATE",
                    help="model extraction: weight decay of T''s first layer along the patch directions the game's "
                         "images hardly vary in, where the data leave its weights free; 0 turns it off "
                         "(default %(default)s)")
    ap.add_argument("--tprime-members", type=int, default=ExtractConfig.members, metavar="K",
                    help="model extraction: fit T' K times, from the seeds SEED to SEED+K-1, and submit their mean "
                         "(one network K times as wide inside); K times the extraction's seconds "
                         "(default %(default)s)")
    ap.add_argument("--fresh", type=int, default=500, help="fresh images to score T' on (0 to skip; needs the key)")
    ap.add_argument("--memory-budget", type=float, metavar="GIB",
                    help="GiB the attack may hold in encodings at once: a game's encodings larger than half of "
                         "it are read from disk a block at a time (default: half the memory available); it "
                         "changes no result")
    ap.add_argument("--scheduler", metavar="ADDRESS",
                    help="run the passes over every encoding (alignment, p-sim's row features) on the Dask "
                         "cluster whose scheduler is at ADDRESS (e.g. tcp://10.0.0.1:8786; its workers must "
                         "reach the game's files at the same path), or 'sync' for Dask in this process; "
                         "the result is the same as without")
    ap.add_argument("--stop-after", choices=("first", "boost"),
                    help="end after this stage: its matching is the result (and the submission); no T' is "
                         "extracted")
    ap.add_argument("--work-dir", help="keep each finished stage here and resume from it (model extraction also "
                    "from its last save inside, made every 10 minutes)")
    ap.add_argument("--save-encoder", help="write the extracted T' here (.npz, state-dict layout)")
    ap.add_argument("--json", help="write config, per-stage results, totals and machine here")
    ap.add_argument("--plots", help="write PNG figures into this folder")
    ap.add_argument("--quiet", action="store_true", help="no progress bars")
    return ap


def _widths_arg(text: str) -> tuple[int, ...]:
    """``--tprime-widths``: comma-separated positive integers (:func:`~empirical.encoder.parse_widths`)."""
    try:
        return parse_widths(text)
    except UserError as e:
        raise argparse.ArgumentTypeError(str(e)) from None


def share_text(share: float | None) -> str:
    """A share matched as the table prints it: rounded down to 0.1%, so that only a complete matching reads 100.0%."""
    if share is None:
        return "-"
    return f"{math.floor(share * 1000 + 1e-9) / 10:.1f}%"


def _print_table(rows: list, total: float, out=None) -> None:
    out = out or sys.stdout
    print(f"{'stage':28s} {'matched':>8s} {'seconds':>8s}  note", file=out)
    for name, share, secs, note in rows:
        s = share_text(share)
        t = "" if secs is None else f"{secs:.1f}"
        print(f"{name:28s} {s:>8s} {t:>8s}  {note}", file=out)
    print(f"{'total':28s} {'':>8s} {total:8.1f}", file=out)


def check_flags(args: argparse.Namespace) -> None:
    """Refuse out-of-range numbers and flags that need ``--game``, before any work."""
    if args.game is None:
        if args.n < 2:
            raise UserError(f"--n must be at least 2, got {args.n}")
        if args.extra < 0:
            raise UserError(f"--extra must be at least 0, got {args.extra}")
        for flag in ("submission", "answer_key", "secret_key"):
            if getattr(args, flag):
                raise UserError(f"--{flag.replace('_', '-')} needs --game (without it the attack makes its own game)")
    if args.stop_after and args.save_encoder:
        raise UserError(f"--save-encoder needs model extraction, which --stop-after {args.stop_after} skips")
    if args.secret_key and not args.answer_key:
        raise UserError("--secret-key needs --answer-key (the key is used only to score the attack)")
    if not 0 <= args.seed <= MAX_SEED:
        raise UserError(f"--seed must be between 0 and {MAX_SEED}, got {args.seed}")
    if args.candidates < 1:
        raise UserError(f"--candidates must be at least 1 (encodings per original that get an exact i-sim), "
                        f"got {args.candidates}")
    if args.memory_budget is not None and not (args.memory_budget > 0 and math.isfinite(args.memory_budget)):
        raise UserError(f"--memory-budget must be a positive number of GiB, got {args.memory_budget}")
    if not (args.tprime_decay >= 0 and math.isfinite(args.tprime_decay)):
        raise UserError(f"--tprime-decay must be a number at least 0, got {args.tprime_decay}")
    for flag, v, lo in (("--psim-steps", args.psim_steps, 1), ("--extract-steps", args.extract_steps, 1),
                        ("--refine-steps", args.refine_steps, 0), ("--fresh", args.fresh, 0),
                        ("--tprime-members", args.tprime_members, 1)):
        if v < lo:
            raise UserError(f"{flag} must be at least {lo}, got {v}")


def check_outputs(args: argparse.Namespace) -> None:
    """Refuse, before any work, an output inside GAME/, one that is one of Alice's files, two outputs on
    the same path, or an output that cannot be written (a folder where a file is due, and so on)."""
    outputs = {"--submission": args.submission or (DEFAULT_SUBMISSION if args.game else None),
               "--json": args.json, "--save-encoder": args.save_encoder, "--plots": args.plots,
               "--work-dir": args.work_dir}
    outputs = {f: p for f, p in outputs.items() if p}
    inputs = {}
    if args.answer_key:
        inputs["--answer-key"] = args.answer_key
    if args.secret_key:
        inputs["--secret-key"] = args.secret_key
        inputs["the permutations beside --secret-key"] = str(perms_path(args.secret_key))
    seen: dict = {}
    for flag, p in outputs.items():
        if args.game and is_within(p, args.game):
            raise UserError(f"{flag} {p} is inside the game folder {args.game}; the attack never writes into GAME/")
        for what, q in inputs.items():
            if is_within(p, q):
                raise UserError(f"{flag} {p} is {what} {q}; not overwriting Alice's file")
        r = resolved(p)
        for other, q in seen.items():
            if r == q:
                raise UserError(f"{flag} and {other} are the same path ({p}); each output needs its own")
        seen[flag] = r
        check_output(p, flag, "folder" if flag in ("--plots", "--work-dir") else "file")


def main(argv: list[str] | None = None) -> int:
    """Run the attack; any failure is one line on stderr and a non-zero exit (see :func:`run_command`)."""
    args = build_parser().parse_args(argv)
    if args.work_dir:
        note = (f"rerunning the same command resumes after the last finished stage, and inside model extraction "
                f"from its last save (kept in {args.work_dir})")
    else:
        note = "nothing was kept; add --work-dir DIR so that rerunning the command resumes after the last " \
               "finished stage"
    return run_command(lambda: _run(args), note)


def _backend(name: str):
    try:
        return get_backend(name)
    except BackendError as e:
        raise UserError(f"--backend {name}: {e}") from None


def _read_secrets_up_front(args: argparse.Namespace, game: Game) -> Secrets | None:
    """Alice's files, read and checked against the game before the attack starts, then kept unused.

    Another game's answer key or key, a damaged file or a key of another family is refused now,
    not after the whole attack; the attack itself never receives what is read here.
    """
    if not args.answer_key:
        return None
    if args.secret_key:
        secrets = load_secrets(args.answer_key, args.secret_key, game.config)
    else:
        secrets = Secrets(None, read_answer_key(args.answer_key), None)
    check_secrets(secrets, game, args.answer_key, args.secret_key)
    return secrets


def _game(args: argparse.Namespace, budget: int) -> tuple[Game, Secrets | None, float]:
    """The game to attack and Alice's secrets (held back until the attack returns), and data seconds.

    With ``--game``: the game on disk, and Alice's files when given, read and checked now. Without:
    a game drawn from the bundled images, whose secrets are Alice's in memory.
    """
    t0 = time.perf_counter()
    if args.game:
        game = read_game(args.game, memory_budget=budget)
        return game, _read_secrets_up_front(args, game), 0.0
    size = CHALLENGE_SCALE if args.challenge_scale else \
        dict(image_size=args.image_size, patch=args.patch, hidden=args.hidden)
    fam = preset(args.preset, **size)
    check_memory(2 * game_bytes(fam, args.n + args.extra, args.n),
                 f"a game of --n {args.n} and --extra {args.extra} at {fam.image_size} px, hidden {fam.hidden}")
    game, secrets = bundled_game(fam, args.n, args.extra, seed=args.seed)
    return game, secrets, time.perf_counter() - t0


def _budget(args: argparse.Namespace) -> int:
    """``--memory-budget`` in bytes, or the default share of the memory available now."""
    return default_budget() if args.memory_budget is None else int(args.memory_budget * 1024**3)


def _scheduler(address: str | None):
    """None (this process), ``"sync"``, or a Client of the Dask scheduler at ``address`` (one line if unreachable)."""
    if address is None:
        return None
    try:
        return connect(address)
    except ImportError as e:
        raise UserError(f"--scheduler needs Dask's distributed package ({e})") from None
    except (OSError, TimeoutError, ValueError) as e:
        why = one_line(e) or type(e).__name__
        raise UserError(f"--scheduler {address}: cannot reach a Dask scheduler there ({why})") from None


def _config(args: argparse.Namespace, family: EncoderConfig) -> AttackConfig:
    try:
        widths = expand_widths(family, args.tprime_widths)
    except UserError as e:
        raise UserError(f"--tprime-widths: {e}") from None
    if args.tprime_members > 1 and family.depth >= 0:  # the joined T' is as wide as its members' widths summed
        try:
            expand_widths(family, [w * args.tprime_members for w in widths or family_widths(family)])
        except UserError as e:
            raise UserError(f"--tprime-members {args.tprime_members}: the fits' mean is one network; {e}") from None
    return AttackConfig(seed=args.seed, candidates=args.candidates, graph_search=args.graph_search,
                        psim=replace(PsimConfig(), steps=args.psim_steps),
                        extract=replace(ExtractConfig(seed=args.seed), steps=args.extract_steps,
                                        refine_steps=args.refine_steps, decay=args.tprime_decay,
                                        widths=widths, members=args.tprime_members))


def _fresh_score(args: argparse.Namespace, game: Game, encoder, secrets: Secrets | None, xp) -> dict | None:
    """T''s Challenge 2 score on ``--fresh`` new bundled images (needs Alice's key), or None."""
    if secrets is None or secrets.key is None or args.fresh <= 0 or encoder is None:
        return None
    from .data import bundled_images

    t0 = time.perf_counter()
    imgs = bundled_images(args.fresh, game.config.image_size, args.seed + 10_000, game.config.patch)
    fresh = challenge2_score(secrets.key, encoder, imgs, xp, seed=args.seed)
    fresh["seconds"] = time.perf_counter() - t0
    return fresh


def _run(args: argparse.Namespace) -> int:
    check_flags(args)
    check_outputs(args)
    xp = _backend(args.backend)
    scheduler = _scheduler(args.scheduler)  # an unreachable cluster is refused before any work
    try:
        return _attack_and_report(args, xp, scheduler)
    finally:
        if scheduler not in (None, "sync"):
            scheduler.close()


def _attack_and_report(args: argparse.Namespace, xp, scheduler) -> int:
    budget, peaks = _budget(args), {}  # one budget decides both how the game is read and the block sizes
    load_start = load_average()
    t_start = time.perf_counter()
    game, secrets, t_data = _game(args, budget)  # secrets: held back, never handed to the attack
    if secrets is not None and secrets.key is not None and args.fresh > 0:
        check_memory(challenge2_bytes(game.config, args.fresh), f"scoring T' on --fresh {args.fresh} images")
    n_in_game = len(game.ids)
    if not args.all_originals:
        game = restrict_to_path_list(game)
    cfg = _config(args, game.config)
    if not args.quiet:
        print(f"attacking {len(game.files)} encodings of {len(game.ids)} originals "
              f"({game.config.image_size}px, patch {game.config.patch}, hidden {game.config.hidden}, "
              f"depth {game.config.depth}, shuffle {game.config.shuffle}) on {backend_name(xp)}", file=sys.stderr)
    result = run_attack(game, cfg, xp, quiet=args.quiet, work_dir=args.work_dir, memory_budget=budget,
                        on_stage=lambda r: peaks.__setitem__(r.name, peak_resident()),
                        stop_after=args.stop_after, scheduler=scheduler)
    t_attack = time.perf_counter() - t_start
    memory = {"budget_bytes": budget, "encodings_in_memory": isinstance(game.encodings, np.ndarray),
              "peak_resident_bytes": peak_resident(), "peak_resident_bytes_after_stage": peaks}
    load = load_record(load_start)

    # --- everything below uses the attack's output; only now are Alice's secrets used, to score it ---
    if args.game:
        write_submission(args.submission or DEFAULT_SUBMISSION, result.submission(game))
    if args.save_encoder:
        save_key(args.save_encoder, result.encoder)
    fresh = _fresh_score(args, game, result.encoder, secrets, xp)
    records = score_stages(result, game, secrets)
    rows = table_rows(records)
    if t_data:
        rows.insert(0, ("data", None, t_data, f"{len(game.files)} encodings of {len(game.ids)} originals"))
    if fresh is not None:
        rows.append(("T' on fresh images", None, fresh["seconds"],
                     f"Challenge 2 on {fresh['n']} images: T'(x) to the nearest T(x') {fresh['share']:.1%}, "
                     f"T(x) to the nearest T'(x') {fresh['share_public']:.1%}"))
    print()
    _print_table(rows, t_attack)
    if memory["peak_resident_bytes"] is not None:
        print(f"peak resident memory {format_bytes(memory['peak_resident_bytes'])} (budget for encodings "
              f"{format_bytes(budget)}; encodings "
              f"{'held in memory' if memory['encodings_in_memory'] else 'read from disk a block at a time'})")
    if args.game:
        print(f"\nsubmission written to {args.submission or DEFAULT_SUBMISSION}")
    if args.json:
        write_json(args.json, {
            "config": {"attack": cfg.to_json(), "family": game.config.to_json(), "n_encoded": len(game.files),
                       "n_originals": len(game.ids), "n_originals_in_game": n_in_game,
                       "all_originals": args.all_originals, "game": args.game, "seed": args.seed,
                       "stop_after": args.stop_after, "scheduler": args.scheduler},
            "stages": [{"stage": r[0], "share_matched": r[1], "seconds": r[2], "note": r[3]} for r in rows],
            "stage_records": records,
            "psim": dict(result.stages[1].info),
            "final_share_matched": records[-1]["share_matched"],
            "fresh_images": fresh,
            "data_seconds": t_data,
            "total_seconds": t_attack,
            "memory": memory,
            "load": load,
            "machine": machine_info(xp),
            "source_fingerprint": fingerprint_record(("empirical",)),
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
