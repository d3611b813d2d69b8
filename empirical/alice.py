"""Alice's move (paper §1.2): a fresh secret key, a random subset encoded in a random order.

She writes the game in the public layout (:mod:`empirical.game`) and keeps the answer key, the
key and the shuffles; the same game can also be built in memory for the attack's own runs.
"""
from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

import numpy as np

from .backend import to_numpy
from .encoder import EncoderConfig, encode, random_key
from .fileio import quantize16, write_json, write_npy, write_png16
from .game import ENC_DIR, ORIG_DIR, PATH_LIST, Game, GameError, Secrets


def check_out_free(out: Path) -> None:
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise GameError(f"{out} exists and is not an empty folder; not overwriting it")


def alice_encode(images: np.ndarray, ids: list, config: EncoderConfig, n_encoded: int, seed: int = 0,
                 progress=None, xp=np) -> tuple[np.ndarray, Secrets]:
    """Alice's move: a fresh key, a random subset encoded in a random order, rows shuffled.

    Returns ``(encodings, secrets)``: encodings (n_encoded, P, D) float32 on the host, in file
    order (file k is ``f"{k}.npy"``, encoded in consecutive BatchNorm batches), and Alice's
    :class:`Secrets`. ``xp`` only chooses where the encoding is computed; the draws are the same.
    """
    rng = np.random.default_rng([seed, 0xA11CE])
    key = random_key(config, rng.integers(2**63))
    order = rng.permutation(len(images))[:n_encoded]  # encode order: file k holds image order[k]
    enc, perms = encode(images[order], key, xp, seed=rng.integers(2**63), progress=progress)
    answer = {ids[i]: f"{k}.npy" for k, i in enumerate(order)}
    return to_numpy(enc), Secrets(key, answer, perms)


def game_in_memory(images: np.ndarray, ids: list, config: EncoderConfig, n_encoded: int, seed: int = 0,
                   progress=None, xp=np) -> tuple[Game, Secrets]:
    """The same game as :func:`make_game` would write, without the disk: ``(Game, Secrets)``."""
    images = quantize16(images)
    enc, secrets = alice_encode(images, ids, config, n_encoded, seed, progress, xp)
    files = [f"{k}.npy" for k in range(n_encoded)]
    return Game(config, list(ids), images, files, enc, sorted(secrets.answer)), secrets


def bundled_ids(n: int) -> list[str]:
    """The ids given to ``n`` drawn images: ``000000.png``, ``000001.png``, ..."""
    return [f"{i:06d}.png" for i in range(n)]


def bundled_game(config: EncoderConfig, n: int, extra: int = 0, seed: int = 0, image_seed: int | None = None,
                 progress=None, xp=np) -> tuple[Game, Secrets]:
    """A game of ``n`` encoded bundled images plus ``extra`` decoys, drawn and keyed from ``seed``.

    ``image_seed`` draws the images from another seed than the key (default: the same).
    """
    from .data import bundled_images

    imgs = bundled_images(n + extra, config.image_size, seed if image_seed is None else image_seed, config.patch)
    return game_in_memory(imgs, bundled_ids(n + extra), config, n, seed=seed, progress=progress, xp=xp)


def make_game(out, images: np.ndarray, ids: list, config: EncoderConfig, n_encoded: int, seed: int = 0,
              progress=None) -> Secrets:
    """Write a game to ``out`` and return Alice's secrets (the caller decides where they go).

    ``images`` (N_o, C, H, W) are written to originals/ as 16-bit PNGs; ``n_encoded`` of them,
    picked at random, are encoded in a random order in consecutive BatchNorm batches with a fresh
    key and written as ``0.npy`` ... in that order. The game is built in a temporary folder and
    renamed into place, so an interrupted run leaves nothing under ``out``.
    """
    out = Path(out)
    check_out_free(out)
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
