"""Secret keys on disk, in the original ``PrivateEncoder`` state-dict layout (paper §1.1).

A key is saved as ``.npz`` with the original PyTorch names and shapes plus a JSON ``config`` entry
naming its family; a key converted from the original code has no such entry, and its family is
then taken from the game (or the other key) and checked against the weights' shapes. A T' wider
inside than its family (:attr:`~empirical.encoder.EncoderKey.widths`) also carries a JSON
``widths`` entry, its layers' widths, which its weights' shapes are checked against. Every read
refuses a damaged, non-finite or oversized key with one line naming the file.
"""
from __future__ import annotations

import json
import math
import zipfile

import numpy as np

from .backend import to_numpy
from .encoder import EncoderConfig, EncoderKey, check_widths, family_differences, family_widths, parse_config
from .errors import PathLike, UserError
from .fileio import read_npy_header, read_npy_stream, regular_file
from .memory import check_memory, format_bytes


def state_dict(key: EncoderKey) -> dict:
    """The key as ``{name: array}`` with the original PyTorch ``PrivateEncoder`` names and shapes."""
    cfg = key.config
    sd = {"image_encoder.0.weight": to_numpy(key.conv_w), "image_encoder.0.bias": to_numpy(key.conv_b)}
    for i, (w, b, g, beta) in enumerate(zip(key.block_w, key.block_b, key.bn_w, key.bn_b, strict=True)):
        sd[f"image_encoder.{2 + 3 * i}.weight"] = to_numpy(w).reshape(*w.shape, 1, 1)
        sd[f"image_encoder.{2 + 3 * i}.bias"] = to_numpy(b)
        sd[f"image_encoder.{3 + 3 * i}.weight"] = to_numpy(g)
        sd[f"image_encoder.{3 + 3 * i}.bias"] = to_numpy(beta)
    if cfg.depth >= 0:
        sd["pos_embedding"] = to_numpy(key.pos).reshape(1, cfg.n_patches, -1)
        sd["mixer.1.weight"] = to_numpy(key.mix_w)
        sd["mixer.1.bias"] = to_numpy(key.mix_b)
    return sd


def save_key(path: PathLike, key: EncoderKey) -> None:
    """Write the key as ``.npz`` (state-dict names plus a JSON ``config`` entry, and ``widths`` for a
    key wider than its family), atomically."""
    from .staging import atomic_path

    arrays = {k: v.astype(np.float32) for k, v in state_dict(key).items()}
    if key.widths != family_widths(key.config):
        arrays["widths"] = np.array(json.dumps(list(key.widths)))
    with atomic_path(path) as tmp:
        with open(tmp, "wb") as f:
            np.savez(f, config=np.array(json.dumps(key.config.to_json())), **arrays)


def _expected_shapes(cfg: EncoderConfig, widths: tuple[int, ...] | None = None) -> dict[str, tuple]:
    d, P = cfg.hidden, cfg.n_patches
    ws = family_widths(cfg) if widths is None else widths
    expected = {"image_encoder.0.weight": (ws[0], cfg.channels, cfg.patch, cfg.patch), "image_encoder.0.bias": (ws[0],)}
    for i in range(max(cfg.depth, 0)):
        expected[f"image_encoder.{2 + 3 * i}.weight"] = (ws[i + 1], ws[i], 1, 1)
        expected[f"image_encoder.{2 + 3 * i}.bias"] = (ws[i + 1],)
        expected[f"image_encoder.{3 + 3 * i}.weight"] = (ws[i + 1],)
        expected[f"image_encoder.{3 + 3 * i}.bias"] = (ws[i + 1],)
    if cfg.depth >= 0:
        expected.update({"pos_embedding": (1, P, ws[-1]), "mixer.1.weight": (d, ws[-1]), "mixer.1.bias": (d,)})
    return expected


class _KeyFile:
    """An open key file (``.npz``): its members by name, read one at a time with their headers checked."""

    def __init__(self, path):
        self.path = regular_file(path, "key file")
        try:
            self.zip = zipfile.ZipFile(self.path)
        except (zipfile.BadZipFile, OSError, ValueError, EOFError) as e:
            raise UserError(f"{self.path} is not a key file (.npz): {_msg(e)}") from None
        self.members = {i.filename[:-4]: i for i in self.zip.infolist() if i.filename.endswith(".npy")}

    def __enter__(self) -> _KeyFile:
        return self

    def __exit__(self, *exc) -> None:
        self.zip.close()

    def _open(self, name: str):
        try:
            return self.zip.open(self.members[name])
        except (zipfile.BadZipFile, OSError, ValueError, EOFError, RuntimeError, NotImplementedError) as e:
            raise UserError(f"{self.path}: cannot read {name!r}: {_msg(e)}") from None

    def shape(self, name: str) -> tuple:
        with self._open(name) as f:
            try:
                return read_npy_header(f, f"{self.path}: {name!r}")[0]
            except (zipfile.BadZipFile, EOFError, OSError) as e:
                raise UserError(f"{self.path}: cannot read {name!r}: {_msg(e)}") from None

    def array(self, name: str, shape: tuple | None = None, kinds: str = "biuf",
              max_bytes: int | None = None) -> np.ndarray:
        import zlib

        info = self.members[name]
        with self._open(name) as f:
            try:
                return read_npy_stream(f, f"{self.path}: {name!r}", shape=shape, size=info.file_size, kinds=kinds,
                                       max_bytes=max_bytes)
            except (zipfile.BadZipFile, zlib.error, EOFError, OSError, RuntimeError) as e:
                raise UserError(f"{self.path}: cannot read {name!r}: {_msg(e)}") from None

    def _json(self, name: str) -> object:
        a = self.array(name, kinds="U", max_bytes=2**20)
        if a.ndim != 0:
            raise UserError(f"{self.path}: its {name!r} entry is not one JSON string")
        try:
            return json.loads(str(a))
        except (json.JSONDecodeError, RecursionError):
            raise UserError(f"{self.path}: its {name!r} entry is not valid JSON") from None

    def config(self) -> EncoderConfig | None:
        if "config" not in self.members:
            return None
        return parse_config(self._json("config"), f"{self.path} (its config)")

    def widths(self, cfg: EncoderConfig) -> tuple[int, ...] | None:
        """The layers' widths of a T' wider than ``cfg`` (its ``widths`` entry); None without one."""
        if "widths" not in self.members:
            return None
        ws = self._json("widths")
        if not isinstance(ws, list):
            raise UserError(f"{self.path}: its 'widths' entry must be a JSON list of layer widths")
        try:
            return check_widths(cfg, ws)
        except UserError as e:
            raise UserError(f"{self.path} (its widths): {e}") from None


def _msg(e: BaseException) -> str:
    return " ".join(str(e).split()) or type(e).__name__


def key_config(path: PathLike) -> EncoderConfig | None:
    """The family a key file carries in its ``config`` entry; None for the original state-dict layout."""
    with _KeyFile(path) as kf:
        return kf.config()


def infer_family(path: PathLike, image_size: int | None = None, bn_batch: int | None = None,
                 shuffle: bool = True) -> EncoderConfig:
    """The family of a key in the original state-dict layout (no ``config``), from its weights' shapes.

    The shapes give the channels, patch, hidden width, depth and (through the positional
    embedding) the image size; ``image_size`` is needed for the linear family, which has no
    positional embedding, and ``bn_batch`` for a family with BatchNorm layers (the weights cannot
    tell the batch size). Given values must agree with the weights.
    """
    with _KeyFile(path) as kf:
        if "image_encoder.0.weight" not in kf.members:
            raise UserError(f"{kf.path}: missing weight 'image_encoder.0.weight'; not an encoder key")
        conv = kf.shape("image_encoder.0.weight")
        if len(conv) != 4 or conv[2] != conv[3]:
            raise UserError(f"{kf.path}: 'image_encoder.0.weight' has shape {conv}, not (hidden, channels, p, p)")
        hidden, channels, patch = conv[0], conv[1], conv[2]
        depth = 0
        while f"image_encoder.{2 + 3 * depth}.weight" in kf.members:
            depth += 1
        if "pos_embedding" in kf.members:
            pos = kf.shape("pos_embedding")
            if len(pos) != 3:
                raise UserError(f"{kf.path}: 'pos_embedding' has shape {pos}, expected (1, patches, hidden)")
            grid = math.isqrt(pos[1])
            if grid * grid != pos[1]:
                raise UserError(f"{kf.path}: 'pos_embedding' has {pos[1]} patches, not a square grid")
            size = grid * patch
            if image_size is not None and image_size != size:
                raise UserError(f"{kf.path}: its weights are for {size} px images, not {image_size}")
            image_size = size
        else:
            if depth:
                raise UserError(f"{kf.path}: has {depth} BatchNorm block(s) but no 'pos_embedding'")
            depth = -1
            if image_size is None:
                raise UserError(f"{kf.path} is a linear key without a config; give the image size (--image-size)")
        if bn_batch is None:
            if depth >= 1:
                raise UserError(f"{kf.path} has BatchNorm layers but no config; give the BatchNorm batch "
                                f"size (--bn-batch)")
            bn_batch = EncoderConfig.bn_batch
    try:
        return EncoderConfig(channels=channels, image_size=image_size, patch=patch, hidden=hidden, depth=depth,
                             shuffle=shuffle, bn_batch=bn_batch)
    except UserError as e:
        raise UserError(f"{path}: {e}") from None


def load_key(path: PathLike, family: EncoderConfig | None = None) -> EncoderKey:
    """Read a key written by :func:`save_key`, or one in the original state-dict layout.

    A file without a ``config`` entry (the original PyTorch ``PrivateEncoder`` state dict saved as
    ``.npz``) takes its family from ``family``; a file with one must agree with ``family`` when
    that is given. Every weight's shape is checked against the family before it is read, and
    every weight must be finite.
    """
    with _KeyFile(path) as kf:
        cfg = kf.config()
        if cfg is None:
            if family is None:
                raise UserError(f"{kf.path}: no 'config' entry; not an encoder key file of this project "
                                f"(a key in the original layout needs its family from the game or the other key)")
            cfg = family
        elif family is not None and cfg != family:
            raise UserError(f"{kf.path} is not of the expected family: "
                            + ", ".join(family_differences(cfg, family)))
        widths = kf.widths(cfg)
        size = cfg.key_bytes(widths)
        check_memory(2 * size, f"the key {kf.path} ({format_bytes(size)} as float32)")
        sd = {}
        for name, shape in _expected_shapes(cfg, widths).items():
            if name not in kf.members:
                raise UserError(f"{kf.path}: missing weight {name!r}")
            sd[name] = kf.array(name, shape=shape, kinds="biuf")
    return key_from_state_dict(cfg, sd, source=str(path), widths=widths)


def key_from_state_dict(cfg: EncoderConfig, sd: dict, source: str = "key",
                        widths: tuple[int, ...] | None = None) -> EncoderKey:
    """An :class:`EncoderKey` of family ``cfg`` from state-dict arrays, checking every name, shape and value
    (against ``widths``, each layer's, for a T' wider than its family)."""
    P = cfg.n_patches
    expected = _expected_shapes(cfg, widths)
    for name, shape in expected.items():
        if name not in sd:
            raise UserError(f"{source}: missing weight {name!r}")
        if tuple(np.shape(sd[name])) != shape:
            raise UserError(f"{source}: {name!r} has shape {tuple(np.shape(sd[name]))}, expected {shape}")
    sd = {name: np.asarray(sd[name], dtype=np.float32) for name in expected}  # EncoderKey holds float32
    for name, a in sd.items():
        if not np.isfinite(a).all():
            raise UserError(f"{source}: weight {name!r} contains NaN or inf (or exceeds float32)")
    n = max(cfg.depth, 0)
    blk = lambda j, part: tuple(sd[f"image_encoder.{j + 3 * i}.{part}"] for i in range(n))  # noqa: E731
    return EncoderKey(
        cfg, sd["image_encoder.0.weight"], sd["image_encoder.0.bias"],
        tuple(w.reshape(w.shape[:2]) for w in blk(2, "weight")), blk(2, "bias"), blk(3, "weight"), blk(3, "bias"),
        sd["pos_embedding"].reshape(P, -1) if cfg.depth >= 0 else None,
        sd.get("mixer.1.weight") if cfg.depth >= 0 else None,
        sd.get("mixer.1.bias") if cfg.depth >= 0 else None,
    )
