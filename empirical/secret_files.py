"""Alice's files beside a game: her answer key, her secret key and its shuffles (paper §1.2).

They live outside GAME/ and are read only to make a game, or to score an attack after it has
returned. Every read refuses a damaged file, or one from another game, with one line naming it:
:func:`check_secrets` compares an answer key with the game's ids and files, and a key with the
game's family and (where affordable) with the game's own encodings.
"""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from .encoder import EncoderConfig, family_differences
from .errors import PathLike
from .fileio import read_json_file, read_npy, write_json, write_npy
from .game import Game, GameError, Secrets, as_game_error
from .keys import load_key, save_key
from .staging import Staging


def perms_path(secret_key_path: PathLike) -> Path:
    """Where Alice's shuffling permutations live: ``<secret key>.perms.npy``."""
    return Path(str(secret_key_path) + ".perms.npy")


@as_game_error
def read_answer_key(path: PathLike) -> dict[str, str]:
    """Alice's answer key ``{id: "<k>.npy"}``: a non-empty JSON object of strings, no file twice."""
    d = read_json_file(path, "answer key")
    if not isinstance(d, dict) or not all(isinstance(k, str) and isinstance(v, str) for k, v in d.items()):
        raise GameError(f"{path} must be a JSON object {{id: \"<k>.npy\"}}")
    if not d:
        raise GameError(f"{path} is an empty answer key: it names no id")
    if len(set(d.values())) != len(d):
        raise GameError(f"{path} maps two ids to the same file")
    return d


def save_secrets(secrets: Secrets, answer_key_path: PathLike, secret_key_path: PathLike,
                 force: bool = False) -> None:
    """Answer key as JSON; key as state-dict ``.npz`` plus Alice's permutations (evaluation only).

    All three files are written, or none: an existing one is replaced only with ``force``.
    """
    with Staging(force=force) as st:
        write_json(st.file(answer_key_path), secrets.answer)
        save_key(st.file(secret_key_path), secrets.key)
        write_npy(st.file(perms_path(secret_key_path)), secrets.perms.astype(np.int32))
        st.commit()


def read_perms(secret_key_path: PathLike) -> np.ndarray | None:
    """Alice's permutations beside her key, or None if there are none; refused if damaged."""
    p = perms_path(secret_key_path)
    if not os.path.lexists(p):
        return None
    a = read_npy(p, "permutations", kinds="iu", err=GameError)
    if a.ndim != 2:
        raise GameError(f"{p} has shape {a.shape}; permutations are (encodings, patches)")
    return a


@as_game_error
def load_secrets(answer_key_path: PathLike, secret_key_path: PathLike | None = None,
                 family: EncoderConfig | None = None) -> Secrets:
    """Alice's answer key, and her key and permutations when ``secret_key_path`` is given.

    ``family`` gives the family of a key in the original state-dict layout (no ``config`` entry)
    and must agree with a key that has one.
    """
    answer = read_answer_key(answer_key_path)
    if secret_key_path is None:
        return Secrets(None, answer, None)
    key = load_key(secret_key_path, family)
    return Secrets(key, answer, read_perms(secret_key_path))


@as_game_error
def check_secrets(secrets: Secrets, game: Game, answer_key_path: PathLike | None = None,
                  secret_key_path: PathLike | None = None) -> None:
    """Refuse Alice's files that do not belong to ``game``: ids, files, family and permutations must fit.

    Called before an attack starts, so another game's answer key or key is refused at once.
    """
    a_name = answer_key_path or "the answer key"
    ids, files = set(game.path_list), set(game.files)
    extra = sorted(set(secrets.answer) - ids)
    if extra:
        raise GameError(f"{a_name} names id {extra[0]!r}, which the game's path list does not "
                        f"(an answer key of another game?)")
    lacking = sorted(ids - set(secrets.answer))
    if lacking:
        raise GameError(f"{a_name} lacks id {lacking[0]!r} of the game's path list ({len(lacking)} in all)")
    unknown = sorted(set(secrets.answer.values()) - files)
    if unknown:
        raise GameError(f"{a_name} maps to {unknown[0]!r}, which is not an encoding of the game")
    if secrets.key is not None and secrets.key.config != game.config:
        differ = family_differences(secrets.key.config, game.config)
        raise GameError(f"{secret_key_path or 'the secret key'} is not of the game's family: " + ", ".join(differ))
    p = perms_path(secret_key_path) if secret_key_path else "the permutations"
    if secrets.perms is not None:
        want = (len(game.files), game.config.n_patches)
        if secrets.perms.shape != want:
            raise GameError(f"{p} has shape {secrets.perms.shape}; the game needs {want}")
        if not (np.sort(secrets.perms, axis=1) == np.arange(want[1])).all():
            raise GameError(f"{p}: a row is not a permutation of 0..{want[1] - 1}")
    if secrets.key is not None:
        _check_key_reproduces(secrets, game, secret_key_path or "the secret key", p)


VERIFY_FLOPS = 2e11  # the most work spent re-encoding one BatchNorm batch to check a key


def _check_key_reproduces(secrets: Secrets, game: Game, key_name, perms_name) -> None:
    """Re-encode the game's last (smallest) BatchNorm batch with the key: it must give the game's encodings.

    This tells another game's key of the same family (or its permutations) from the right one.
    Row means are compared (the shuffle cannot change them), then, with the permutations, every
    row; the tolerance (25% relative) is far above float32 differences between implementations
    and far below the gap to an unrelated key. Skipped when one batch would cost more than
    :data:`VERIFY_FLOPS`.
    """
    from .encoder import encode

    cfg = game.config
    groups = game.bn_groups
    rows = np.flatnonzero(groups == groups.max())  # the last batch, the smallest
    d = cfg.hidden
    flops = 2.0 * len(rows) * cfg.n_patches * d * (cfg.patch_dim + max(cfg.depth, 0) * d + d)
    if flops > VERIFY_FLOPS:
        return
    file_to_id = {f: i for i, f in secrets.answer.items()}
    index = {i: a for a, i in enumerate(game.ids)}
    x = game.originals[[index[file_to_id[game.files[k]]] for k in rows]]
    plain, _ = encode(x, secrets.key, np, shuffle=False)  # one batch: the BatchNorm statistics of the game
    enc = game.encodings[rows].astype(np.float64)
    plain = np.asarray(plain, np.float64)

    def rel(a, ref):
        return float(np.mean(np.abs(a - ref)) / max(float(np.mean(np.abs(ref))), 1e-30))

    err = rel(plain.mean(axis=1), enc.mean(axis=1))
    if err > 0.25:
        raise GameError(f"{key_name} does not reproduce the game's encodings (row means off by {err:.0%} on "
                        f"{len(rows)} of them): the key of another game?")
    if secrets.perms is not None:
        err = rel(np.take_along_axis(plain, secrets.perms[rows][:, :, None].astype(np.intp), axis=1), enc)
        if err > 0.25:
            raise GameError(f"{perms_name} do not match the game's encodings (rows off by {err:.0%}): the "
                            f"permutations of another game?")
