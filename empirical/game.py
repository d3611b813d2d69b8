"""The privacy game's data (paper §1.2, Challenge 1) and its files, in the public NeuraCrypt layout.

::

    GAME/
      encoder.json                            the public family
      originals/<id>                          plaintext images (16-bit grayscale PNG, or PNG/JPEG)
      private_encoded_dataset/<k>.npy         one encoding each, float32 (P, D), rows shuffled
      private_encoded_dataset_path_list.json  the ids that were encoded (unordered)

Alice's answer key ``{id: "<k>.npy"}``, her secret key and her shuffling permutations never live
inside GAME/. This module holds the two sides' data types (:class:`Game`, what Bob sees;
:class:`Secrets`, what Alice keeps) and reads and writes their files. Making a game is
:mod:`empirical.alice`; scoring one is :mod:`empirical.referee`; the command line is
:mod:`empirical.challenge`.
"""
from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .encoder import EncoderConfig, EncoderKey, load_key, save_key
from .fileio import atomic_path, read_gray, write_json, write_npy

ENC_DIR = "private_encoded_dataset"
PATH_LIST = "private_encoded_dataset_path_list.json"
ORIG_DIR = "originals"


class GameError(ValueError):
    """Bad or inconsistent game files; the message is one line a user can act on."""


@dataclass(frozen=True)
class Game:
    """What Bob sees: the public family, all originals, and the encodings (never Alice's secrets)."""

    config: EncoderConfig
    ids: list[str]  # ids of all originals, in the order of ``originals``
    originals: np.ndarray  # (N_o, C, H, W) float32 in [0, 1]
    files: list[str]  # encoding file names, in file order ("0.npy", "1.npy", ...)
    encodings: np.ndarray  # (N, P, D) float32
    path_list: list[str]  # ids that were encoded, as published

    @property
    def bn_groups(self) -> np.ndarray:
        """BatchNorm batch of each encoding: the files are numbered in the order they were encoded."""
        order = np.array([int(Path(f).stem) for f in self.files])
        return order // self.config.bn_batch


@dataclass(frozen=True)
class Secrets:
    """Alice's side of a game: used to make it and, after an attack, to evaluate it."""

    key: EncoderKey | None
    answer: dict[str, str]  # {id: "<k>.npy"}
    perms: np.ndarray | None  # (N, P): encoding k's row r is unshuffled row perms[k, r]


def content_digest(game: Game) -> str:
    """A hash of everything a game holds: its family, every id and file name, every array whole.

    Two games share a digest only if every original and every encoding is the same, in the same
    place; a resumed attack (:mod:`empirical.store`) relies on this never to reuse stale work.
    """
    h = hashlib.sha256(json.dumps(game.config.to_json(), sort_keys=True).encode())
    for part in (game.ids, game.files, game.path_list):
        h.update(json.dumps(list(part)).encode())
    for a in (game.originals, game.encodings):
        h.update(str(np.shape(a)).encode())
        h.update(np.ascontiguousarray(a, dtype=np.float32).tobytes())
    return h.hexdigest()


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



# --- Alice's files: answer key, secret key; the submission -------------------------------------

def read_answer_key(path) -> dict:
    d = _read_json(Path(path), "answer key")
    if not isinstance(d, dict) or not all(isinstance(k, str) and isinstance(v, str) for k, v in d.items()):
        raise GameError(f"{path} must be a JSON object {{id: \"<k>.npy\"}}")
    if len(set(d.values())) != len(d):
        raise GameError(f"{path} maps two ids to the same file")
    return d


def read_submission(path) -> dict:
    return _read_json(Path(path), "submission")


def write_submission(path, submission: dict) -> None:
    with atomic_path(path) as tmp:
        Path(tmp).write_text(json.dumps(submission, indent=0, sort_keys=True) + "\n")


def save_secrets(secrets: Secrets, answer_key_path, secret_key_path) -> None:
    """Answer key as JSON; key as state-dict ``.npz`` plus Alice's permutations (evaluation only)."""
    write_json(answer_key_path, secrets.answer)
    save_key(secret_key_path, secrets.key)
    perm_path = Path(str(secret_key_path) + ".perms.npy")
    write_npy(perm_path, secrets.perms.astype(np.int32))


def load_secrets(answer_key_path, secret_key_path) -> Secrets:
    answer = read_answer_key(answer_key_path)
    key = load_key(secret_key_path)
    perm_path = Path(str(secret_key_path) + ".perms.npy")
    perms = np.load(perm_path) if perm_path.exists() else None
    return Secrets(key, answer, perms)
