"""``python -m empirical.challenge``: Alice's side of the privacy game, and the referee, as commands.

``make`` writes a game in the public NeuraCrypt Challenge layout (:mod:`empirical.game`) and
Alice's secrets outside it; ``score`` scores a submission (Challenge 1); ``score-encoder`` scores an
extracted encoder T' on fresh images (Challenge 2).
"""
from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from .alice import bundled_ids, check_make_outputs, make_bytes, make_game
from .encoder import EncoderConfig
from .errors import OneLineParser, PathLike, UserError, run_command
from .fileio import check_output, is_within, write_json
from .game import GameError, read_submission
from .memory import check_memory
from .referee import score_submission
from .secret_files import perms_path, read_answer_key

MAX_SEED = 2**63 - 1


def check_seed(seed: int, flag: str = "--seed") -> None:
    if not 0 <= seed <= MAX_SEED:
        raise UserError(f"{flag} must be between 0 and 2**63 - 1, got {seed}")


def _load_make_images(source: str, count: int, size: int, patch: int, seed: int) -> tuple[list[str], np.ndarray]:
    """``count`` images and their ids from ``bundled``, a folder, or a ``.npy`` stack."""
    from .data import bundled_images, load_folder, load_npy

    if source == "bundled":
        imgs = bundled_images(count, size, seed, patch)
        return bundled_ids(count), imgs
    p = Path(source)
    if p.suffix == ".npy":
        if not p.exists():
            raise GameError(f"no such file: {p}")
        imgs = load_npy(p, size)
        ids = [f"{i:06d}.png" for i in range(len(imgs))]
    elif p.is_dir():
        rel, imgs = load_folder(p, size)
        ids = [str(Path(r).with_suffix(".png")) for r in rel]
        if len(set(ids)) != len(ids):
            raise GameError(f"{p} holds two images whose names differ only by extension")
    else:
        raise GameError(f"--data must be 'bundled', a folder or a .npy file; {source!r} is none")
    if len(imgs) < count:
        raise GameError(f"{source} holds {len(imgs)} images; {count} are needed (--n plus --extra)")
    return ids[:count], imgs[:count]


def _family(preset_name: str, **overrides) -> EncoderConfig:
    from .encoder import preset

    flags = {"image_size": "--image-size", "patch": "--patch", "hidden": "--hidden", "bn_batch": "--bn-batch"}
    try:
        return preset(preset_name, **overrides)
    except UserError as e:
        named = next((f for k, f in flags.items() if str(e).startswith(k)), None)
        raise UserError(f"{named}: {e}" if named else str(e)) from None


def _cmd_make(args: argparse.Namespace) -> int:
    from .progress import progress_bar

    cfg = _family(args.preset, image_size=args.image_size, patch=args.patch, hidden=args.hidden,
                  bn_batch=args.bn_batch)
    if args.n < 1:
        raise GameError(f"--n must be at least 1, got {args.n}")
    if args.extra < 0:
        raise GameError(f"--extra must be at least 0, got {args.extra}")
    check_seed(args.seed)
    # every output checked before images are drawn and before a progress bar is on stderr
    check_make_outputs(args.out, args.answer_key, args.secret_key, args.force)
    total = args.n + args.extra
    check_memory(make_bytes(cfg, total, args.n), f"--n {args.n} with --extra {args.extra} at {cfg.image_size} px, "
                                                 f"hidden {cfg.hidden}, depth {cfg.depth}")
    ids, imgs = _load_make_images(args.data, total, cfg.image_size, cfg.patch, args.seed)
    with progress_bar(args.n, "encoding", quiet=args.quiet) as bar:
        make_game(args.out, imgs, ids, cfg, args.n, seed=args.seed, progress=bar, answer_key=args.answer_key,
                  secret_key=args.secret_key, force=args.force)
    print(f"wrote game {args.out}: {args.n} encoded of {total} originals, preset {args.preset}, "
          f"{cfg.image_size}px, patch {cfg.patch}, hidden {cfg.hidden}")
    return 0


def _check_json_output(path, inputs: dict[str, str]) -> None:
    """``--json`` must be a writable file that is none of the command's inputs."""
    check_output(path, "--json")
    for flag, p in inputs.items():
        if p is not None and is_within(path, p):
            raise UserError(f"--json {path} is the {flag} file; not overwriting an input")


def _cmd_score(args: argparse.Namespace) -> int:
    if args.json:
        _check_json_output(args.json, {"--answer-key": args.answer_key, "--submission": args.submission})
    answer = read_answer_key(args.answer_key)
    result = score_submission(answer, read_submission(args.submission), source=args.submission)
    print(f"score: {result['share']:.4f} ({result['correct']} of {result['total']} ids mapped to the right file)")
    if args.json:
        write_json(args.json, result)
    return 0


def score_encoder_families(secret_key: PathLike, encoder: PathLike, image_size: int | None = None,
                           bn_batch: int | None = None) -> tuple[EncoderConfig, EncoderConfig]:
    """The families of Alice's key and of T', settled before either is read whole.

    A key with a ``config`` entry carries its family. A key without one (the original PyTorch
    state-dict layout) takes the other key's family, or else the family its weights' shapes give
    (``image_size`` and ``bn_batch`` supply what the shapes cannot). Given flags must agree with a
    carried config, and the two families must agree in shape.
    """
    from .encoder import family_differences
    from .keys import infer_family, key_config

    configs = {"--secret-key": key_config(secret_key), "--encoder": key_config(encoder)}
    for flag, cfg in configs.items():
        for name, value, opt in (("image_size", image_size, "--image-size"), ("bn_batch", bn_batch, "--bn-batch")):
            if cfg is not None and value is not None and getattr(cfg, name) != value:
                path = secret_key if flag == "--secret-key" else encoder
                raise UserError(f"{opt} {value} disagrees with {path}, whose config says {getattr(cfg, name)}")
    a, b = configs["--secret-key"], configs["--encoder"]
    if a is None:
        a = b if b is not None else infer_family(secret_key, image_size, bn_batch)
    if b is None:
        b = a
    shape_fields = ("channels", "image_size", "patch", "hidden", "depth")
    differ = family_differences(b, a, shape_fields)
    if differ:
        raise UserError(f"{encoder} is not of the secret key's family: " + ", ".join(differ))
    if a.channels != 1:
        raise UserError(f"{secret_key}: channels {a.channels}; the fresh images are grayscale, so only "
                        f"channels 1 can be scored")
    return a, b


def _cmd_score_encoder(args: argparse.Namespace) -> int:
    from .data import load_images
    from .evaluate import challenge2_bytes, challenge2_score
    from .keys import load_key

    if args.n < 2:
        raise GameError(f"--n must be at least 2, got {args.n}")
    check_seed(args.seed)
    for flag, v in (("--image-size", args.image_size), ("--bn-batch", args.bn_batch)):
        if v is not None and v < 1:
            raise UserError(f"{flag} must be positive, got {v}")
    if args.json:
        _check_json_output(args.json, {"--secret-key": args.secret_key, "--encoder": args.encoder,
                                       "permutations": str(perms_path(args.secret_key))})
    fam_a, fam_b = score_encoder_families(args.secret_key, args.encoder, args.image_size, args.bn_batch)
    check_memory(challenge2_bytes(fam_a, args.n), f"scoring on --n {args.n} images")
    true_key, est_key = load_key(args.secret_key, fam_a), load_key(args.encoder, fam_b)
    imgs = load_images(args.data, args.n, fam_a.image_size, seed=args.seed, patch=fam_a.patch)
    result = challenge2_score(true_key, est_key, imgs, seed=args.seed)
    print(f"T' nearest-neighbour score: {result['share']:.4f} on {result['n']} images "
          f"(chance {1 / result['n']:.4f}); the public script's direction (T(x) to the nearest T'(x')) "
          f"{result['share_public']:.4f}; relative error of patch means {result['relative_error']:.3f}")
    if args.json:
        write_json(args.json, result)
    return 0


def build_parser() -> argparse.ArgumentParser:
    from .encoder import PRESETS

    ap = OneLineParser(prog="python -m empirical.challenge",
                       description="Alice's side of the NeuraCrypt privacy game, and the referee.")
    sub = ap.add_subparsers(dest="cmd", required=True)
    mk = sub.add_parser("make", help="draw images, encode them with a fresh secret key, write GAME/",
                        description="Write a game in the public NeuraCrypt Challenge layout. The answer "
                                    "key and the secret key go to the given paths, outside GAME/. All or "
                                    "nothing: every output is written to a temporary beside it and renamed "
                                    "into place at the end.")
    mk.add_argument("--out", required=True, help="game folder to create (must not exist or be empty)")
    mk.add_argument("--answer-key", required=True, help="where to write Alice's answer key {id: '<k>.npy'}")
    mk.add_argument("--secret-key", required=True, help="where to write the encoder's weights (.npz); the "
                                                        "shuffles go beside it as <secret-key>.perms.npy")
    mk.add_argument("--n", type=int, required=True, help="number of images to encode")
    mk.add_argument("--extra", type=int, default=0, help="unencoded decoy originals to add (default 0)")
    mk.add_argument("--preset", default="neuracrypt-7", choices=sorted(PRESETS), help="encoder family")
    mk.add_argument("--image-size", type=int, help="image side in pixels (default 128)")
    mk.add_argument("--patch", type=int, help="patch side (default 16)")
    mk.add_argument("--hidden", type=int, help="hidden width D (default 256)")
    mk.add_argument("--bn-batch", type=int, help="BatchNorm batch size (default 256)")
    mk.add_argument("--data", default="bundled", help="'bundled', a folder of PNG/JPEG, or a .npy stack")
    mk.add_argument("--seed", type=int, default=0, help="seed of the images, key, order and shuffles")
    mk.add_argument("--force", action="store_true",
                    help="replace existing answer-key, secret-key and permutation files, and an existing game "
                         "folder (never any other folder)")
    mk.add_argument("--quiet", action="store_true", help="no progress bar")
    mk.set_defaults(func=_cmd_make)
    sc = sub.add_parser("score", help="score a submission against the answer key",
                        description="Print the share of ids a submission maps to the right encoding file.")
    sc.add_argument("--answer-key", required=True, help="Alice's answer key JSON")
    sc.add_argument("--submission", required=True, help="parallel_data_predictions.json {id: '<k>.npy'}")
    sc.add_argument("--json", help="also write the score as JSON here")
    sc.set_defaults(func=_cmd_score)
    se = sub.add_parser("score-encoder", help="score an extracted encoder T' on fresh images (Challenge 2)",
                        description="For each fresh image x, is T(x) the nearest neighbour of T'(x) among all "
                                    "T(x'), by mean squared error between patch means (rows averaged)? "
                                    "Both encoders encode the images in the same BatchNorm batches. A key in "
                                    "the original state-dict layout (no config entry) takes its family from "
                                    "the other key, or from its weights' shapes with --image-size/--bn-batch.")
    se.add_argument("--secret-key", required=True, help="Alice's key T (.npz)")
    se.add_argument("--encoder", required=True, help="the extracted T' (.npz, same layout)")
    se.add_argument("--data", default="bundled", help="'bundled', a folder of PNG/JPEG, or a .npy stack")
    se.add_argument("--n", type=int, default=500, help="number of fresh images (default 500)")
    se.add_argument("--seed", type=int, default=12345, help="seed of the bundled draw and the shuffles")
    se.add_argument("--image-size", type=int,
                    help="image side, for keys without a config whose weights cannot tell it (linear)")
    se.add_argument("--bn-batch", type=int, help="BatchNorm batch size, for keys without a config")
    se.add_argument("--json", help="also write the score as JSON here")
    se.set_defaults(func=_cmd_score_encoder)
    return ap


def main(argv: list[str] | None = None) -> int:
    """Run one command; any failure is one line on stderr and a non-zero exit (see :func:`run_command`)."""
    args = build_parser().parse_args(argv)
    if args.cmd == "make":
        note = "nothing was written (make writes everything or nothing)"
    else:
        note = "nothing was written"
    return run_command(lambda: args.func(args), note)


if __name__ == "__main__":
    raise SystemExit(main())
