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

import functools
import hashlib
import json
import os
import re
import stat
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .data import IMAGE_EXTENSIONS, resize_center_crop
from .encoder import EncoderConfig, EncoderKey, parse_config
from .encodings import EncodingFiles, block_size, default_budget
from .errors import PathLike, UserError
from .fileio import is_within, read_gray, read_json_file, resolved
from .memory import check_memory
from .staging import atomic_path

ENC_DIR = "private_encoded_dataset"
PATH_LIST = "private_encoded_dataset_path_list.json"
ORIG_DIR = "originals"


class GameError(UserError):
    """Bad or inconsistent game files; the message is one line a user can act on."""


def as_game_error(fn: Callable) -> Callable:
    """Report every user-facing error of ``fn`` as a :class:`GameError`."""
    @functools.wraps(fn)
    def wrapped(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except GameError:
            raise
        except UserError as e:
            raise GameError(str(e)) from None
    return wrapped


@dataclass(frozen=True)
class Game:
    """What Bob sees: the public family, all originals, and the encodings (never Alice's secrets)."""

    config: EncoderConfig
    ids: list[str]  # ids of all originals, in the order of ``originals``
    originals: np.ndarray  # (N_o, C, H, W) float32 in [0, 1]
    files: list[str]  # encoding file names, in file order ("0.npy", "1.npy", ...)
    encodings: np.ndarray | EncodingFiles  # (N, P, D) float32: in memory, or read a block at a time
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


DIGEST_BLOCK_BYTES = 256 * 1024**2  # encodings hashed this many bytes at a time


def content_digest(game: Game) -> str:
    """A hash of everything a game holds: its family, every id and file name, every array whole.

    Two games share a digest only if every original and every encoding is the same, in the same
    place; a resumed attack (:mod:`empirical.store`) relies on this never to reuse stale work.
    """
    h = hashlib.sha256(json.dumps(game.config.to_json(), sort_keys=True).encode())
    for part in (game.ids, game.files, game.path_list):
        h.update(json.dumps(list(part)).encode())
    h.update(str(np.shape(game.originals)).encode())
    # hashed in place (an array is a buffer): no copy of every original's bytes, which at the public
    # challenge's size would add 3.8 GB to the peak
    h.update(np.ascontiguousarray(game.originals, dtype=np.float32))
    enc = game.encodings
    h.update(str(tuple(enc.shape)).encode())
    step = block_size(DIGEST_BLOCK_BYTES, int(np.prod(enc.shape[1:])) * 4, copies=1, cap=None)
    for s in range(0, len(enc), step):  # a block at a time: the same bytes as hashing the whole array
        h.update(np.ascontiguousarray(enc[s:s + step], dtype=np.float32))
    return h.hexdigest()


# --- reading (Bob's side) ----------------------------------------------------------------------

CONFIG_MAX_BYTES = 64 * 1024
IN_MEMORY_SHARE = 0.5  # encodings up to this share of the memory budget are read whole; larger, a block at a time
_ENC_NAME = re.compile(r"(0|[1-9][0-9]*)\.npy")


def looks_like_game(folder: PathLike) -> bool:
    """Whether ``folder`` holds a game's public files (``encoder.json`` or ``private_encoded_dataset/``)."""
    folder = Path(folder)
    return os.path.lexists(folder / "encoder.json") or os.path.lexists(folder / ENC_DIR)


def _inside(path: Path, game_real: Path) -> Path:
    """``path``, refused if it (or a symlink on the way) leads outside the game folder."""
    if not is_within(path, game_real):
        raise GameError(f"{path} is a symbolic link to {resolved(path)}, outside the game folder; refused")
    return path


@as_game_error
def read_config(game_dir: PathLike) -> EncoderConfig:
    """The public family from ``GAME/encoder.json``, every field checked (types and sane ranges)."""
    path = Path(game_dir) / "encoder.json"
    d = read_json_file(path, "encoder description", max_bytes=CONFIG_MAX_BYTES)
    return parse_config(d, str(path))


def _walk_error(e: OSError) -> None:
    raise GameError(f"cannot list {e.filename}: {e.strerror or e}")


def _list_originals(orig_dir: Path, game_real: Path) -> list[str]:
    """Image files under ``orig_dir`` (recursive, symlinked folders not followed), sorted, relative."""
    ids = []
    for root, dirs, names in os.walk(orig_dir, onerror=_walk_error):
        for name in sorted(dirs):
            p = Path(root) / name
            if p.is_symlink():
                _inside(p, game_real)  # a link to a folder outside is refused; one inside is not followed
        for name in names:
            p = Path(root) / name
            if Path(name).suffix.lower() not in IMAGE_EXTENSIONS:
                continue
            _inside(p, game_real)
            try:
                st = p.stat()
            except OSError as e:
                raise GameError(f"cannot read image {p}: {e.strerror or e}") from None
            if not stat.S_ISREG(st.st_mode):
                raise GameError(f"original {p} is not a regular file")
            ids.append(p.relative_to(orig_dir).as_posix())
    return sorted(ids)


def _list_encodings(enc_dir: Path, game_real: Path) -> list[str]:
    """Encoding file names, in the order they were encoded: exactly ``0.npy`` ... ``<N-1>.npy``."""
    names = []
    with os.scandir(enc_dir) as it:
        for entry in it:
            if not entry.name.endswith(".npy"):
                continue
            if not _ENC_NAME.fullmatch(entry.name):
                raise GameError(f"encoding file {entry.name!r} is not named <k>.npy (k = 0, 1, ... without "
                                f"leading zeros)")
            p = _inside(enc_dir / entry.name, game_real)
            if not p.is_file():
                raise GameError(f"encoding {p} is not a regular file")
            names.append(entry.name)
    if not names:
        raise GameError(f"no .npy encodings in {enc_dir}")
    numbers = sorted(int(n[:-4]) for n in names)
    for k, got in enumerate(numbers):
        if got != k:  # the numbering gives the BatchNorm batches: it must be exactly 0..N-1
            raise GameError(f"the encodings in {enc_dir} are not numbered 0..{len(names) - 1}: {k}.npy is missing "
                            f"(the numbering gives the order of encoding, hence the BatchNorm batches)")
    return [f"{k}.npy" for k in range(len(names))]


@as_game_error
def read_game(game_dir: PathLike, progress: Callable[[int], object] | None = None, *,
              memory_budget: int | None = None) -> Game:
    """Read GAME/, checking every file; uses nothing outside GAME/.

    The originals are read into memory. The encodings are too when they take at most
    :data:`IN_MEMORY_SHARE` of ``memory_budget`` (bytes; default
    :func:`~empirical.encodings.default_budget`); otherwise ``Game.encodings`` is an
    :class:`~empirical.encodings.EncodingFiles` that reads them a block at a time, and every value
    is checked here in one pass of blocks.

    Refused with one line naming the file: a missing, damaged, truncated, wrong-typed or
    non-regular file; a symbolic link leading outside GAME/; encodings not numbered exactly
    0..N-1; a family out of range or not grayscale; a game larger than the available memory
    (checked before anything large is read).
    """
    game_dir = Path(game_dir)
    if not game_dir.is_dir():
        raise GameError(f"no such game folder: {game_dir}")
    game_real = resolved(game_dir)
    if os.path.lexists(game_dir / "encoder.json"):
        _inside(game_dir / "encoder.json", game_real)
    cfg = read_config(game_dir)
    if cfg.channels != 1:
        raise GameError(f"{game_dir / 'encoder.json'}: channels {cfg.channels}; the originals are read as "
                        f"grayscale, so only channels 1 is supported")
    orig_dir = game_dir / ORIG_DIR
    if not orig_dir.is_dir():
        raise GameError(f"missing folder of originals: {orig_dir}")
    _inside(orig_dir, game_real)
    ids = _list_originals(orig_dir, game_real)
    if not ids:
        raise GameError(f"no PNG or JPEG images in {orig_dir}")

    path_list = read_json_file(_inside(game_dir / PATH_LIST, game_real), "path list")
    if not isinstance(path_list, list) or not all(isinstance(x, str) for x in path_list):
        raise GameError(f"{game_dir / PATH_LIST} must be a JSON list of image ids")
    seen: set = set()
    for x in path_list:
        if x in seen:
            raise GameError(f"{game_dir / PATH_LIST} lists id {x!r} more than once")
        seen.add(x)
    missing = sorted(seen - set(ids))
    if missing:
        raise GameError(f"path list names {len(missing)} id(s) with no original, e.g. {missing[0]!r}")

    enc_dir = game_dir / ENC_DIR
    if not enc_dir.is_dir():
        raise GameError(f"missing folder of encodings: {enc_dir}")
    _inside(enc_dir, game_real)
    files = _list_encodings(enc_dir, game_real)
    if len(files) != len(path_list):
        raise GameError(f"{len(files)} encodings but the path list names {len(path_list)} ids")
    budget = default_budget() if memory_budget is None else int(memory_budget)
    lazy = cfg.encoding_bytes(len(files)) > IN_MEMORY_SHARE * budget
    block = block_size(budget, cfg.encoding_bytes(1), copies=1)
    held = block * cfg.encoding_bytes(1) if lazy else cfg.encoding_bytes(len(files))
    check_memory(cfg.image_bytes(len(ids)) + held + cfg.key_bytes(),
                 f"the game {game_dir} ({len(files):,} encodings of {cfg.n_patches:,} x {cfg.hidden:,}"
                 f"{', read a block at a time' if lazy else ''}, {len(ids):,} originals of {cfg.image_size} px)")
    # every header next: cheap, and a bad file is named before anything large is read
    encodings = EncodingFiles(enc_dir, files, (cfg.n_patches, cfg.hidden), err=GameError)
    if lazy:  # every value checked now, a block at a time, so bad data is named before the attack starts
        for _ in encodings.blocks(block):
            pass
    else:
        encodings = encodings.load()

    originals = np.empty((len(ids), cfg.channels, cfg.image_size, cfg.image_size), np.float32)
    for i, img_id in enumerate(ids):
        img = read_gray(orig_dir / img_id, err=GameError)
        if img.shape != (cfg.image_size, cfg.image_size):
            img = resize_center_crop(img, cfg.image_size)
        originals[i, 0] = img
        if progress is not None:
            progress(1)
    return Game(cfg, ids, originals, files, encodings, path_list)


# --- the submission ------------------------------------------------------------------------------


@as_game_error
def read_submission(path: PathLike) -> object:
    return read_json_file(path, "submission")


def write_submission(path: PathLike, submission: dict[str, str]) -> None:
    with atomic_path(path) as tmp:
        Path(tmp).write_text(json.dumps(submission, indent=0, sort_keys=True) + "\n")


def game_bytes(config: EncoderConfig, n_originals: int, n_encoded: int) -> int:
    """Memory a game of this size holds: originals, encodings and one key (float32)."""
    return config.image_bytes(n_originals) + config.encoding_bytes(n_encoded) + config.key_bytes()

