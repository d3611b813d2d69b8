"""The privacy game on disk (paper §1.2, Challenge 1), in the public NeuraCrypt Challenge layout.

::

    GAME/
      encoder.json                            the public family
      originals/<id>                          plaintext images (16-bit grayscale PNG, or PNG/JPEG)
      private_encoded_dataset/<k>.npy         one encoding each, float32 (P, D), rows shuffled
      private_encoded_dataset_path_list.json  the ids that were encoded (unordered)

Alice's answer key ``{id: "<k>.npy"}``, her secret key and her shuffling permutations never live
inside GAME/. This module writes games (Alice), reads them (Bob: only what is in GAME/), and
scores submissions (the referee).
"""
from __future__ import annotations

import json
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .encoder import EncoderConfig, EncoderKey, encode, random_key, save_key
from .fileio import atomic_path, quantize16, read_gray, write_json, write_npy, write_png16

ENC_DIR = "private_encoded_dataset"
PATH_LIST = "private_encoded_dataset_path_list.json"
ORIG_DIR = "originals"


class GameError(ValueError):
    """Bad or inconsistent game files; the message is one line a user can act on."""


@dataclass(frozen=True)
class Game:
    """What Bob sees: the public family, all originals, and the encodings (never Alice's secrets)."""

    config: EncoderConfig
    ids: list  # ids of all originals, in the order of ``originals``
    originals: np.ndarray  # (N_o, C, H, W) float32 in [0, 1]
    files: list  # encoding file names, in file order ("0.npy", "1.npy", ...)
    encodings: np.ndarray  # (N, P, D) float32
    path_list: list  # ids that were encoded, as published

    @property
    def bn_groups(self) -> np.ndarray:
        """BatchNorm batch of each encoding: the files are numbered in the order they were encoded."""
        order = np.array([int(Path(f).stem) for f in self.files])
        return order // self.config.bn_batch


@dataclass(frozen=True)
class Secrets:
    """Alice's side of a game: used to make it and, after an attack, to evaluate it."""

    key: EncoderKey
    answer: dict  # {id: "<k>.npy"}
    perms: np.ndarray  # (N, P): encoding k's row r is unshuffled row perms[k, r]


def _check_out_free(out: Path) -> None:
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise GameError(f"{out} exists and is not an empty folder; not overwriting it")


def alice_encode(images: np.ndarray, ids: list, config: EncoderConfig, n_encoded: int, seed: int = 0,
                 progress=None) -> tuple:
    """Alice's move: a fresh key, a random subset encoded in a random order, rows shuffled.

    Returns ``(encodings, secrets)``: encodings (n_encoded, P, D) float32 in file order (file k is
    ``f"{k}.npy"``, encoded in consecutive BatchNorm batches), and Alice's :class:`Secrets`.
    """
    rng = np.random.default_rng([seed, 0xA11CE])
    key = random_key(config, rng.integers(2**63))
    order = rng.permutation(len(images))[:n_encoded]  # encode order: file k holds image order[k]
    enc, perms = encode(images[order], key, np, seed=rng.integers(2**63), progress=progress)
    answer = {ids[i]: f"{k}.npy" for k, i in enumerate(order)}
    return enc, Secrets(key, answer, perms)


def game_in_memory(images: np.ndarray, ids: list, config: EncoderConfig, n_encoded: int, seed: int = 0,
                   progress=None) -> tuple:
    """The same game as :func:`make_game` would write, without the disk: ``(Game, Secrets)``."""
    images = quantize16(images)
    enc, secrets = alice_encode(images, ids, config, n_encoded, seed, progress)
    files = [f"{k}.npy" for k in range(n_encoded)]
    return Game(config, list(ids), images, files, enc, sorted(secrets.answer)), secrets


def make_game(out, images: np.ndarray, ids: list, config: EncoderConfig, n_encoded: int, seed: int = 0,
              progress=None) -> Secrets:
    """Write a game to ``out`` and return Alice's secrets (the caller decides where they go).

    ``images`` (N_o, C, H, W) are written to originals/ as 16-bit PNGs; ``n_encoded`` of them,
    picked at random, are encoded in a random order in consecutive BatchNorm batches with a fresh
    key and written as ``0.npy`` ... in that order. The game is built in a temporary folder and
    renamed into place, so an interrupted run leaves nothing under ``out``.
    """
    out = Path(out)
    _check_out_free(out)
    if len(ids) != len(images) or len(set(ids)) != len(ids):
        raise GameError("image ids must be unique, one per image")
    if not 1 <= n_encoded <= len(images):
        raise GameError(f"cannot encode {n_encoded} of {len(images)} images")
    if images.shape[1:] != (config.channels, config.image_size, config.image_size):
        raise GameError(f"images have shape {images.shape[1:]}, the encoder expects "
                        f"{(config.channels, config.image_size, config.image_size)}")
    images = quantize16(images)  # encode exactly what the 16-bit PNGs in originals/ will hold
    enc, secrets = alice_encode(images, ids, config, n_encoded, seed, progress)
    answer = secrets.answer

    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.", dir=out.parent))
    try:
        write_json(tmp / "encoder.json", config.to_json())
        for img_id, img in zip(ids, images, strict=True):
            write_png16(tmp / ORIG_DIR / img_id, img[0])
        for k in range(n_encoded):
            write_npy(tmp / ENC_DIR / f"{k}.npy", enc[k].astype(np.float32))
        write_json(tmp / PATH_LIST, sorted(answer))
        if out.exists():
            out.rmdir()
        tmp.rename(out)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp)
    return secrets


def save_secrets(secrets: Secrets, answer_key_path, secret_key_path) -> None:
    """Answer key as JSON; key as state-dict ``.npz`` plus Alice's permutations (evaluation only)."""
    write_json(answer_key_path, secrets.answer)
    save_key(secret_key_path, secrets.key)
    perm_path = Path(str(secret_key_path) + ".perms.npy")
    write_npy(perm_path, secrets.perms.astype(np.int32))


def load_secrets(answer_key_path, secret_key_path) -> Secrets:
    from .encoder import load_key

    answer = read_answer_key(answer_key_path)
    key = load_key(secret_key_path)
    perm_path = Path(str(secret_key_path) + ".perms.npy")
    perms = np.load(perm_path) if perm_path.exists() else None
    return Secrets(key, answer, perms)


# --- reading (Bob's side) ----------------------------------------------------------------------

def _read_json(path: Path, what: str):
    if not path.is_file():
        raise GameError(f"missing {what}: {path}")
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError as e:
        raise GameError(f"{path} is not valid JSON ({e.msg} at line {e.lineno})") from None
    except UnicodeDecodeError:
        raise GameError(f"{path} is not a text (JSON) file") from None


def read_config(game_dir) -> EncoderConfig:
    path = Path(game_dir) / "encoder.json"
    d = _read_json(path, "encoder description")
    if not isinstance(d, dict):
        raise GameError(f"{path} must be a JSON object with the encoder's fields")
    for name in EncoderConfig.__dataclass_fields__:
        want = bool if name == "shuffle" else int
        if name not in d:
            raise GameError(f"{path} lacks the field {name!r}")
        if type(d[name]) is not want:  # bool is an int: exact types, so 2.5, "64" and true are refused
            raise GameError(f"{path}: {name!r} must be {'true or false' if want is bool else 'an integer'}, "
                            f"got {d[name]!r}")
    try:
        return EncoderConfig.from_json(d)
    except (TypeError, ValueError) as e:
        raise GameError(f"{game_dir}/encoder.json: {e}") from None


def read_game(game_dir, progress=None) -> Game:
    """Read GAME/ into arrays, checking every file; uses nothing outside GAME/."""
    game_dir = Path(game_dir)
    if not game_dir.is_dir():
        raise GameError(f"no such game folder: {game_dir}")
    cfg = read_config(game_dir)
    from .data import list_image_files, resize_center_crop

    orig_dir = game_dir / ORIG_DIR
    if not orig_dir.is_dir():
        raise GameError(f"missing folder of originals: {orig_dir}")
    ids = list_image_files(orig_dir)
    if not ids:
        raise GameError(f"no PNG or JPEG images in {orig_dir}")
    originals = np.empty((len(ids), cfg.channels, cfg.image_size, cfg.image_size), np.float32)
    for i, img_id in enumerate(ids):
        try:
            img = read_gray(orig_dir / img_id)
        except OSError as e:
            raise GameError(f"cannot read image {orig_dir / img_id}: {e}") from None
        if img.shape != (cfg.image_size, cfg.image_size):
            img = resize_center_crop(img, cfg.image_size)
        originals[i, 0] = img
        if progress is not None:
            progress(1)

    path_list = _read_json(game_dir / PATH_LIST, "path list")
    if not isinstance(path_list, list) or not all(isinstance(x, str) for x in path_list):
        raise GameError(f"{game_dir / PATH_LIST} must be a JSON list of image ids")
    if len(set(path_list)) != len(path_list):
        dup = next(x for x in path_list if path_list.count(x) > 1)
        raise GameError(f"{game_dir / PATH_LIST} lists id {dup!r} more than once")
    missing = sorted(set(path_list) - set(ids))
    if missing:
        raise GameError(f"path list names {len(missing)} id(s) with no original, e.g. {missing[0]!r}")

    enc_dir = game_dir / ENC_DIR
    if not enc_dir.is_dir():
        raise GameError(f"missing folder of encodings: {enc_dir}")
    files = sorted((p.name for p in enc_dir.glob("*.npy")), key=lambda n: (len(n), n))
    if not files:
        raise GameError(f"no .npy encodings in {enc_dir}")
    bad = [f for f in files if not Path(f).stem.isdigit()]
    if bad:
        raise GameError(f"encoding file {bad[0]!r} is not named <k>.npy")
    if len(files) != len(path_list):
        raise GameError(f"{len(files)} encodings but the path list names {len(path_list)} ids")
    shape = (cfg.n_patches, cfg.hidden)
    encodings = np.empty((len(files), *shape), np.float32)
    for k, name in enumerate(files):
        try:
            a = np.load(enc_dir / name, allow_pickle=False)
        except (OSError, ValueError) as e:
            raise GameError(f"cannot read {enc_dir / name}: {e}") from None
        if a.shape != shape:
            raise GameError(f"{enc_dir / name} has shape {a.shape}, the encoder gives {shape}")
        if a.dtype != np.float32:
            raise GameError(f"{enc_dir / name} has dtype {a.dtype}, expected float32")
        if not np.isfinite(a).all():
            raise GameError(f"{enc_dir / name} contains NaN or inf")
        encodings[k] = a
    return Game(cfg, ids, originals, files, encodings, path_list)


# --- scoring (the referee) ---------------------------------------------------------------------

def read_answer_key(path) -> dict:
    d = _read_json(Path(path), "answer key")
    if not isinstance(d, dict) or not all(isinstance(k, str) and isinstance(v, str) for k, v in d.items()):
        raise GameError(f"{path} must be a JSON object {{id: \"<k>.npy\"}}")
    if len(set(d.values())) != len(d):
        raise GameError(f"{path} maps two ids to the same file")
    return d


def score_submission(answer: dict, submission: dict) -> dict:
    """Share and count of the answer key's ids that the submission maps to the right file.

    A submission naming an id or a file that the game does not have is rejected.
    """
    if not isinstance(submission, dict) or not all(isinstance(k, str) and isinstance(v, str)
                                                   for k, v in submission.items()):
        raise GameError("submission must be a JSON object {id: \"<k>.npy\"}")
    unknown_ids = sorted(set(submission) - set(answer))
    if unknown_ids:
        raise GameError(f"submission names {len(unknown_ids)} id(s) not in the game, e.g. {unknown_ids[0]!r}")
    files = set(answer.values())
    unknown_files = sorted(set(submission.values()) - files)
    if unknown_files:
        raise GameError(f"submission names {len(unknown_files)} file(s) not in the game, "
                        f"e.g. {unknown_files[0]!r}")
    correct = sum(submission.get(i) == f for i, f in answer.items())
    return {"correct": correct, "total": len(answer), "share": correct / len(answer)}


def read_submission(path) -> dict:
    return _read_json(Path(path), "submission")


def write_submission(path, submission: dict) -> None:
    with atomic_path(path) as tmp:
        Path(tmp).write_text(json.dumps(submission, indent=0, sort_keys=True) + "\n")


# --- command line ------------------------------------------------------------------------------

def _load_make_images(source: str, count: int, size: int, patch: int, seed: int) -> tuple:
    """``count`` images and their ids from ``bundled``, a folder, or a ``.npy`` stack."""
    from .data import bundled_images, load_folder, load_npy

    if source == "bundled":
        imgs = bundled_images(count, size, seed, patch)
        return [f"{i:06d}.png" for i in range(count)], imgs
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
    _check_out_free(Path(args.out))  # before drawing images, and before a progress bar is on stderr
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
        raise GameError(f"{args.encoder} is not of the secret key's family: "
                        + ", ".join(f"{f} {getattr(b, f)} vs {getattr(a, f)}" for f in fields if getattr(a, f) != getattr(b, f)))
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
