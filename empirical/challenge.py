"""``python -m empirical.challenge``: Alice's side of the privacy game, and the referee, as commands.

``make`` writes a game in the public NeuraCrypt Challenge layout (:mod:`empirical.game`) and
Alice's secrets outside it; ``score`` scores a submission (Challenge 1); ``score-encoder`` scores an
extracted encoder T' on fresh images (Challenge 2).
"""
from __future__ import annotations

from pathlib import Path

from .alice import bundled_ids, check_out_free, make_game
from .fileio import write_json
from .game import GameError, read_answer_key, read_submission, save_secrets
from .referee import score_submission


def _load_make_images(source: str, count: int, size: int, patch: int, seed: int) -> tuple:
    """``count`` images and their ids from ``bundled``, a folder, or a ``.npy`` stack."""
    from .data import bundled_images, load_folder, load_npy

    if source == "bundled":
        imgs = bundled_images(count, size, seed, patch)
        return bundled_ids(count), imgs
    p = Path(source)
    if p.suffix == ".npy":
        if not p.is_file():
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


def _cmd_make(args) -> int:
    from .encoder import preset
    from .fileio import quantize16
    from .progress import progress_bar

    try:
        cfg = preset(args.preset, image_size=args.image_size, patch=args.patch, hidden=args.hidden,
                     bn_batch=args.bn_batch)
    except ValueError as e:
        raise GameError(str(e)) from None
    if args.n < 1 or args.extra < 0:
        raise GameError("--n must be at least 1 and --extra at least 0")
    for p in (args.answer_key, args.secret_key):
        if Path(args.out).resolve() in Path(p).resolve().parents:
            raise GameError(f"{p} is inside the game folder; Alice's secrets must live outside GAME/")
    check_out_free(Path(args.out))  # before drawing images, and before a progress bar is on stderr
    total = args.n + args.extra
    ids, imgs = _load_make_images(args.data, total, cfg.image_size, cfg.patch, args.seed)
    imgs = quantize16(imgs)  # encode exactly what the 16-bit PNGs hold
    with progress_bar(args.n, "encoding", quiet=args.quiet) as bar:
        secrets = make_game(args.out, imgs, ids, cfg, args.n, seed=args.seed, progress=bar)
    save_secrets(secrets, args.answer_key, args.secret_key)
    print(f"wrote game {args.out}: {args.n} encoded of {total} originals, preset {args.preset}, "
          f"{cfg.image_size}px, patch {cfg.patch}, hidden {cfg.hidden}")
    return 0


def _cmd_score(args) -> int:
    answer = read_answer_key(args.answer_key)
    result = score_submission(answer, read_submission(args.submission))
    print(f"score: {result['share']:.4f} ({result['correct']} of {result['total']} ids mapped to the right file)")
    if args.json:
        write_json(args.json, result)
    return 0


def _cmd_score_encoder(args) -> int:
    from .data import load_images
    from .encoder import load_key
    from .evaluate import challenge2_score

    true_key, est_key = load_key(args.secret_key), load_key(args.encoder)
    a, b = true_key.config, est_key.config
    fields = ("channels", "image_size", "patch", "hidden", "depth")
    if any(getattr(a, f) != getattr(b, f) for f in fields):
        differ = [f"{f} {getattr(b, f)} vs {getattr(a, f)}" for f in fields if getattr(a, f) != getattr(b, f)]
        raise GameError(f"{args.encoder} is not of the secret key's family: " + ", ".join(differ))
    if args.n < 2:
        raise GameError("--n must be at least 2")
    imgs = load_images(args.data, args.n, a.image_size, seed=args.seed, patch=a.patch)
    result = challenge2_score(true_key, est_key, imgs, seed=args.seed)
    print(f"T' nearest-neighbour score: {result['share']:.4f} on {result['n']} images "
          f"(chance {1 / result['n']:.4f}); relative error of patch means {result['relative_error']:.3f}")
    if args.json:
        write_json(args.json, result)
    return 0


def build_parser():
    import argparse

    from .encoder import PRESETS

    ap = argparse.ArgumentParser(prog="python -m empirical.challenge",
                                 description="Alice's side of the NeuraCrypt privacy game, and the referee.")
    sub = ap.add_subparsers(dest="cmd", required=True)
    mk = sub.add_parser("make", help="draw images, encode them with a fresh secret key, write GAME/",
                        description="Write a game in the public NeuraCrypt Challenge layout. The answer "
                                    "key and the secret key go to the given paths, outside GAME/.")
    mk.add_argument("--out", required=True, help="game folder to create (must not exist or be empty)")
    mk.add_argument("--answer-key", required=True, help="where to write Alice's answer key {id: '<k>.npy'}")
    mk.add_argument("--secret-key", required=True, help="where to write the encoder's weights (.npz)")
    mk.add_argument("--n", type=int, required=True, help="number of images to encode")
    mk.add_argument("--extra", type=int, default=0, help="unencoded decoy originals to add (default 0)")
    mk.add_argument("--preset", default="neuracrypt-7", choices=sorted(PRESETS), help="encoder family")
    mk.add_argument("--image-size", type=int, help="image side in pixels (default 128)")
    mk.add_argument("--patch", type=int, help="patch side (default 16)")
    mk.add_argument("--hidden", type=int, help="hidden width D (default 256)")
    mk.add_argument("--bn-batch", type=int, help="BatchNorm batch size (default 256)")
    mk.add_argument("--data", default="bundled", help="'bundled', a folder of PNG/JPEG, or a .npy stack")
    mk.add_argument("--seed", type=int, default=0, help="seed of the images, key, order and shuffles")
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
                                    "Both encoders encode the images in the same BatchNorm batches.")
    se.add_argument("--secret-key", required=True, help="Alice's key T (.npz)")
    se.add_argument("--encoder", required=True, help="the extracted T' (.npz, same layout)")
    se.add_argument("--data", default="bundled", help="'bundled', a folder of PNG/JPEG, or a .npy stack")
    se.add_argument("--n", type=int, default=500, help="number of fresh images (default 500)")
    se.add_argument("--seed", type=int, default=12345, help="seed of the bundled draw and the shuffles")
    se.add_argument("--json", help="also write the score as JSON here")
    se.set_defaults(func=_cmd_score_encoder)
    return ap


def main(argv=None) -> int:
    import sys

    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except (GameError, ValueError, OSError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    raise SystemExit(main())
