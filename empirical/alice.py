"""Alice's move (paper §1.2): a fresh secret key, a random subset encoded in a random order.

She writes the game in the public layout (:mod:`empirical.game`) and keeps the answer key, the
key and the shuffles; the same game can also be built in memory for the attack's own runs.
"""
from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path, PurePosixPath
from types import ModuleType

import numpy as np

from .backend import to_numpy
from .encoder import EncoderConfig, EncoderKey, encode, encode_batches, random_key
from .errors import PathLike
from .fileio import check_output, quantize16, resolved, write_json, write_npy, write_png16
from .game import ENC_DIR, ORIG_DIR, PATH_LIST, Game, GameError, Secrets, looks_like_game
from .keys import save_key
from .memory import check_memory
from .secret_files import perms_path
from .staging import Staging

GAME_ENTRIES = frozenset({"encoder.json", ORIG_DIR, ENC_DIR, PATH_LIST})


def check_out_free(out: PathLike, force: bool = False) -> None:
    """Refuse a game folder that exists and is not empty (with ``force``, an existing game may be replaced)."""
    out = Path(out)
    if out.is_symlink():
        raise GameError(f"{out} is a symbolic link; give the game folder itself")
    if not out.exists():
        return
    if out.is_dir():
        entries = {p.name for p in out.iterdir()}
        if not entries:
            return
        if entries <= GAME_ENTRIES and looks_like_game(out):
            if force:
                return
            raise GameError(f"{out} exists and holds a game; not overwriting it (--force replaces it)")
    raise GameError(f"{out} exists and is not an empty folder; not overwriting it")


def check_make_outputs(out: PathLike, answer_key: PathLike | None = None, secret_key: PathLike | None = None,
                       force: bool = False) -> None:
    """Refuse, before any work, outputs of ``make`` that would destroy something or mix secrets into a game.

    The game folder, the answer key, the secret key and its ``.perms.npy`` must be four different
    paths, none inside another; Alice's files must not lie inside any folder that looks like a
    game, nor the game inside another game; an existing file is replaced only with ``force``, and
    never a folder, a fifo or a link that leads nowhere.
    """
    out = Path(out)
    outputs = [("--out", out)]
    if answer_key is not None:
        outputs.append(("--answer-key", Path(answer_key)))
    if secret_key is not None:
        outputs += [("--secret-key", Path(secret_key)),
                    ("the permutations beside --secret-key", perms_path(secret_key))]
    real = [resolved(p) for _, p in outputs]
    for i, (fi, pi) in enumerate(outputs):
        for j in range(i + 1, len(outputs)):
            fj, pj = outputs[j]
            if real[i] == real[j]:
                raise GameError(f"{fi} and {fj} are the same path ({pj}); each output needs its own")
            if real[i] in real[j].parents or real[j] in real[i].parents:
                inner, outer = (pj, pi) if real[i] in real[j].parents else (pi, pj)
                if outer == out:
                    raise GameError(f"{inner} is inside the game folder; Alice's secrets must live outside GAME/")
                raise GameError(f"{inner} is inside {outer}, another output of make")
    for (flag, p), r in zip(outputs, real, strict=True):
        for anc in r.parents:
            if looks_like_game(anc):
                what = "the game" if flag == "--out" else "Alice's secrets"
                raise GameError(f"{flag} {p} is inside {anc}, which looks like a game folder; {what} must not "
                                f"go inside a game")
    check_out_free(out, force)
    for flag, p in outputs[1:]:
        if os.path.lexists(p):
            if p.is_symlink() and not p.exists():
                raise GameError(f"{flag} {p} is a symbolic link that leads nowhere; not replacing it")
            if not p.is_file():
                raise GameError(f"{flag} {p} exists and is not a regular file; not replacing it")
            if not force:
                raise GameError(f"{flag} {p} exists; not overwriting it (--force replaces it)")
    for flag, p in outputs:
        check_output(p, flag, "folder" if flag == "--out" else "file")


def check_ids(ids: list) -> None:
    """Image ids become file names under ``originals/``: relative ``.png`` paths that stay inside it."""
    for i in ids:
        ok = (isinstance(i, str) and i.endswith(".png") and str(PurePosixPath(i)) == i and not i.startswith("/")
              and ".." not in PurePosixPath(i).parts and "\\" not in i and "\x00" not in i)
        if not ok:
            raise GameError(f"image id {i!r} is not a relative path ending in .png inside originals/")


def alice_encode(images: np.ndarray, ids: list, config: EncoderConfig, n_encoded: int, seed: int = 0,
                 progress: Callable[[int], object] | None = None, xp: ModuleType = np) -> tuple[np.ndarray, Secrets]:
    """Alice's move: a fresh key, a random subset encoded in a random order, rows shuffled.

    Returns ``(encodings, secrets)``: encodings (n_encoded, P, D) float32 on the host, in file
    order (file k is ``f"{k}.npy"``, encoded in consecutive BatchNorm batches), and Alice's
    :class:`Secrets`. ``xp`` only chooses where the encoding is computed; the draws are the same.
    """
    key, order, shuffle_seed = alice_draws(len(images), config, n_encoded, seed)
    enc, perms = encode(images[order], key, xp, seed=shuffle_seed, progress=progress)
    return to_numpy(enc), Secrets(key, make_answer(ids, order), perms)


def alice_draws(n_images: int, config: EncoderConfig, n_encoded: int, seed: int) -> tuple[EncoderKey, np.ndarray, int]:
    """Alice's random choices, all from ``seed``: ``(key, order, shuffle_seed)``.

    ``order`` (n_encoded,) host: file k holds image ``order[k]`` (a random subset in a random order);
    ``shuffle_seed`` seeds the rows' shuffles (:func:`~empirical.encoder.encode`).
    """
    rng = np.random.default_rng([seed, 0xA11CE])
    key = random_key(config, rng.integers(2**63))
    order = rng.permutation(n_images)[:n_encoded]
    return key, order, int(rng.integers(2**63))


def make_answer(ids: list, order: np.ndarray) -> dict[str, str]:
    """``{id: "<k>.npy"}``: file k holds image ``order[k]``."""
    return {ids[i]: f"{k}.npy" for k, i in enumerate(order)}


def game_in_memory(images: np.ndarray, ids: list, config: EncoderConfig, n_encoded: int, seed: int = 0,
                   progress: Callable[[int], object] | None = None, xp: ModuleType = np) -> tuple[Game, Secrets]:
    """The same game as :func:`make_game` would write, without the disk: ``(Game, Secrets)``."""
    images = quantize16(images)
    enc, secrets = alice_encode(images, ids, config, n_encoded, seed, progress, xp)
    files = [f"{k}.npy" for k in range(n_encoded)]
    return Game(config, list(ids), images, files, enc, sorted(secrets.answer)), secrets


def bundled_ids(n: int) -> list[str]:
    """The ids given to ``n`` drawn images: ``000000.png``, ``000001.png``, ..."""
    return [f"{i:06d}.png" for i in range(n)]


def bundled_game(config: EncoderConfig, n: int, extra: int = 0, seed: int = 0, image_seed: int | None = None,
                 progress: Callable[[int], object] | None = None, xp: ModuleType = np) -> tuple[Game, Secrets]:
    """A game of ``n`` encoded bundled images plus ``extra`` decoys, drawn and keyed from ``seed``.

    ``image_seed`` draws the images from another seed than the key (default: the same).
    """
    from .data import bundled_images

    imgs = bundled_images(n + extra, config.image_size, seed if image_seed is None else image_seed, config.patch)
    return game_in_memory(imgs, bundled_ids(n + extra), config, n, seed=seed, progress=progress, xp=xp)


def make_bytes(config: EncoderConfig, n_originals: int, n_encoded: int) -> int:
    """Memory ``make`` needs: the images, one BatchNorm batch's 16-bit rounding and activations (a few
    copies of its encodings) and the key; the encodings are written batch by batch."""
    batch = min(n_encoded, config.bn_batch)
    return (config.image_bytes(n_originals) + 3 * config.image_bytes(batch) + 4 * config.encoding_bytes(batch)
            + config.key_bytes())


class Rounded16:
    """``images`` seen through :func:`~empirical.fileio.quantize16`: indexing rounds only the rows taken.

    ``make`` encodes exactly what its 16-bit PNGs hold without holding a rounded copy of every image
    (3.8 GB more at the challenge's size): each BatchNorm batch is rounded as it is encoded.
    """

    def __init__(self, images: np.ndarray):
        self.images = images

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, index) -> np.ndarray:
        return quantize16(self.images[index])


def make_game(out: PathLike, images: np.ndarray, ids: list, config: EncoderConfig, n_encoded: int, seed: int = 0,
              progress: Callable[[int], object] | None = None, *, answer_key: PathLike | None = None,
              secret_key: PathLike | None = None, force: bool = False) -> Secrets:
    """Write a game to ``out`` and return Alice's secrets; with ``answer_key``/``secret_key``, write them too.

    ``images`` (N_o, 1, H, W) are written to originals/ as 16-bit PNGs; ``n_encoded`` of them,
    picked at random, are encoded in a random order in consecutive BatchNorm batches with a fresh
    key and written as ``0.npy`` ... in that order. All or nothing: the game and Alice's files
    (``answer_key``, ``secret_key`` and ``<secret_key>.perms.npy``) are written to temporaries
    beside their final paths and renamed into place only at the end, so a failure or an
    interruption leaves no game, no secret and no temporary behind. Outputs are checked first by
    :func:`check_make_outputs` (an existing file is replaced only with ``force``).
    """
    out = Path(out)
    check_make_outputs(out, answer_key, secret_key, force)
    if len(ids) != len(images) or len(set(ids)) != len(ids):
        raise GameError("image ids must be unique, one per image")
    check_ids(ids)
    if not 1 <= n_encoded <= len(images):
        raise GameError(f"cannot encode {n_encoded} of {len(images)} images")
    if config.channels != 1:
        raise GameError(f"channels {config.channels}: originals are written as grayscale PNGs, so a game "
                        f"must have channels 1")
    if images.shape[1:] != (config.channels, config.image_size, config.image_size):
        raise GameError(f"images have shape {images.shape[1:]}, the encoder expects "
                        f"{(config.channels, config.image_size, config.image_size)}")
    if seed < 0:
        raise GameError(f"the seed must be at least 0, got {seed}")
    check_memory(make_bytes(config, len(images), n_encoded),
                 f"making a game of {n_encoded:,} encodings of {len(images):,} images")
    rounded = Rounded16(images)  # encode exactly what the 16-bit PNGs in originals/ will hold
    key, order, shuffle_seed = alice_draws(len(images), config, n_encoded, seed)
    secrets = Secrets(key, make_answer(ids, order), np.empty((n_encoded, config.n_patches), np.int64))

    with Staging(force=force) as st:
        tmp = st.folder(out)
        write_json(tmp / "encoder.json", config.to_json())
        for i, img_id in enumerate(ids):
            write_png16(tmp / ORIG_DIR / img_id, rounded[i][0])
        # one BatchNorm batch at a time, rounded, encoded, written and dropped: neither the encodings
        # nor a rounded copy of the images are ever all in memory
        for s, enc, perms in encode_batches(rounded, key, np, shuffle_seed, index=order, progress=progress):
            for i in range(len(enc)):
                write_npy(tmp / ENC_DIR / f"{s + i}.npy", enc[i].astype(np.float32))
            secrets.perms[s:s + len(enc)] = perms
        write_json(tmp / PATH_LIST, sorted(secrets.answer))
        if answer_key is not None:
            write_json(st.file(answer_key), secrets.answer)
        if secret_key is not None:
            save_key(st.file(secret_key), secrets.key)
            write_npy(st.file(perms_path(secret_key)), secrets.perms.astype(np.int32))
        st.commit()
    return secrets
