"""The NeuraCrypt encoder (paper §1.1; original ``PrivateEncoder``), in NumPy or CuPy.

An image (C, H, W) is cut into P = (H/p)(W/p) patches in row-major grid order. Each patch goes
through a p x p stride-p convolution C -> D with bias and a ReLU, then ``depth`` blocks of
(1x1 convolution, BatchNorm over batch and patches with the statistics of the batch being
encoded, ReLU). A positional embedding ``pos`` (P, D) is added, then ReLU and a Linear D -> D.
Finally each image's P rows are shuffled by a fresh random permutation. ``depth = -1`` is the
challenge's linear encoder: the convolution alone.

Weights follow PyTorch's default initialisation, U(-1/sqrt(fan_in), 1/sqrt(fan_in)), and are
saved in the original state-dict names so keys interoperate with the original code.
"""
from __future__ import annotations

import numbers
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass, replace
from itertools import pairwise

import numpy as np

from .backend import Array, Namespace
from .errors import UserError
from .progress import Progress

BN_EPS = 1e-5


# The sane range of each field of a family; a game or key outside them is refused before any work.
LIMITS = {
    "channels": (1, 16),
    "image_size": (1, 8192),
    "patch": (1, 8192),
    "hidden": (1, 32768),
    "depth": (-1, 256),
    "bn_batch": (1, 2**24),
}
MAX_PATCHES = 65536  # (image_size / patch)^2


@dataclass(frozen=True)
class EncoderConfig:
    """The public family of an encoder (everything but the secret weights).

    Every field is checked on construction: integers (``shuffle`` a bool), each within
    :data:`LIMITS`, the image a whole number of patches, at most :data:`MAX_PATCHES` of them. A
    bad field raises :class:`~empirical.errors.UserError` (a ``ValueError``) naming it.
    """

    channels: int = 1
    image_size: int = 128
    patch: int = 16
    hidden: int = 256
    depth: int = 4
    shuffle: bool = True
    bn_batch: int = 256

    def __post_init__(self):
        for name, (lo, hi) in LIMITS.items():
            v = getattr(self, name)
            if isinstance(v, (bool, np.bool_)) or not isinstance(v, numbers.Integral):
                raise UserError(f"{name} must be an integer, got {v!r}")
            v = int(v)
            object.__setattr__(self, name, v)  # NumPy integers become plain ints
            if not lo <= v <= hi:
                what = "positive" if lo == 1 else f"at least {lo}"
                raise UserError(f"{name} must be {what} and at most {hi:,}, got {v:,}")
        if not isinstance(self.shuffle, (bool, np.bool_)):
            raise UserError(f"shuffle must be true or false, got {self.shuffle!r}")
        object.__setattr__(self, "shuffle", bool(self.shuffle))
        if self.image_size % self.patch:
            raise UserError(f"image size {self.image_size} is not a multiple of patch {self.patch}")
        if self.n_patches > MAX_PATCHES:
            raise UserError(f"image size {self.image_size} with patch {self.patch} gives {self.n_patches:,} "
                            f"patches per image; at most {MAX_PATCHES:,} are supported")

    @property
    def n_patches(self) -> int:
        return (self.image_size // self.patch) ** 2

    @property
    def patch_dim(self) -> int:
        return self.channels * self.patch * self.patch

    def key_bytes(self, widths: Sequence[int] | None = None) -> int:
        """Bytes of one key of this family (float32); ``widths``: of a key with layers that wide."""
        d = self.hidden
        ws = family_widths(self) if widths is None else tuple(widths)
        n = ws[0] * self.patch_dim + ws[0] + sum(w_in * w + 3 * w for w_in, w in pairwise(ws))
        if self.depth >= 0:
            n += self.n_patches * ws[-1] + d * ws[-1] + d
        return 4 * n

    def encoding_bytes(self, n: int) -> int:
        """Bytes of ``n`` encodings (float32)."""
        return 4 * n * self.n_patches * self.hidden

    def image_bytes(self, n: int) -> int:
        """Bytes of ``n`` images (float32)."""
        return 4 * n * self.channels * self.image_size * self.image_size

    def to_json(self) -> dict:
        return asdict(self)

    @classmethod
    def from_json(cls, d: dict) -> EncoderConfig:
        if not isinstance(d, dict):
            raise UserError(f"an encoder description must be a JSON object, not {type(d).__name__}")
        known = {k: d[k] for k in cls.__dataclass_fields__ if k in d}
        return cls(**known)


# The public NeuraCrypt Challenge variants (``--private_depth`` of the original code).
PRESETS = {
    "linear": dict(depth=-1, shuffle=False),
    "neuracrypt-2-noshuffle": dict(depth=0, shuffle=False),
    "neuracrypt-2": dict(depth=0, shuffle=True),
    "neuracrypt-7": dict(depth=4, shuffle=True),
    "neuracrypt-47": dict(depth=44, shuffle=True),
}

# Challenge scale: 256 x 256 grayscale, patch 16 (P = 256), hidden 2048.
CHALLENGE_SCALE = dict(image_size=256, patch=16, hidden=2048)


def preset(name: str, **overrides) -> EncoderConfig:
    """Config of a named challenge variant at CPU scale, with fields overridable."""
    if name not in PRESETS:
        raise UserError(f"unknown preset {name!r}; choose one of {', '.join(PRESETS)}")
    fields = dict(PRESETS[name])
    fields.update({k: v for k, v in overrides.items() if v is not None})
    return EncoderConfig(**fields)


def family_widths(config: EncoderConfig) -> tuple[int, ...]:
    """The widths of a key's layers in ``config``'s own architecture: the patch convolution's, then each block's."""
    return (config.hidden,) * (max(config.depth, 0) + 1)


def check_widths(config: EncoderConfig, widths: Sequence[int]) -> tuple[int, ...]:
    """``widths`` as a tuple of ints, checked for ``config``: one per layer (the patch convolution, then
    each block), each within the hidden width's limits; the linear family's one layer is its output,
    so it keeps the family's width. Raises :class:`~empirical.errors.UserError` naming the fault."""
    lo, hi = LIMITS["hidden"]
    out = []
    for w in widths:
        if isinstance(w, (bool, np.bool_)) or not isinstance(w, numbers.Integral) or not lo <= int(w) <= hi:
            raise UserError(f"each layer's width must be an integer from {lo} to {hi:,}, got {w!r}")
        out.append(int(w))
    want = max(config.depth, 0) + 1
    if len(out) != want:
        raise UserError(f"a depth-{config.depth} encoder has {want} layer width{'s' if want > 1 else ''} "
                        f"(the patch convolution{', then each block' if want > 1 else ''}), got {len(out)}")
    if config.depth == -1 and out[0] != config.hidden:
        raise UserError(f"the linear family's one layer is its output: width {config.hidden}, got {out[0]}")
    return tuple(out)


def parse_widths(text: str) -> tuple[int, ...]:
    """Layer widths written as ``1024`` or ``256,256,256,256,1024``: positive integers, comma-separated
    (:func:`expand_widths` then fits them to a family). Raises :class:`~empirical.errors.UserError`."""
    try:
        widths = tuple(int(w) for w in text.split(","))
    except ValueError:
        raise UserError(f"expected widths such as 1024 or 256,256,256,256,1024, got {text!r}") from None
    if min(widths) < 1:
        raise UserError(f"widths must be positive, got {text!r}")
    return widths


def expand_widths(config: EncoderConfig, widths: Sequence[int]) -> tuple[int, ...]:
    """A T''s layer widths as asked for: ``()`` for the family's own, one width for every layer, or one
    per layer (:func:`check_widths`). Returns ``()`` where that is the family's own architecture."""
    if len(widths) == 0:
        return ()
    ws = tuple(widths) * (max(config.depth, 0) + 1) if len(widths) == 1 else tuple(widths)
    ws = check_widths(config, ws)
    return () if ws == family_widths(config) else ws


@dataclass(frozen=True)
class EncoderKey:
    """Secret weights of one encoder (host NumPy float32 arrays).

    Alice's keys have every layer D wide. A T' fitted by the attack may be wider inside
    (:attr:`widths`: W0 for the patch convolution, W_i for block i); its output is still D wide.
    """

    config: EncoderConfig
    conv_w: np.ndarray  # (W0, C, p, p); W0 = D in Alice's keys, as for every width below
    conv_b: np.ndarray  # (W0,)
    block_w: tuple  # depth x (W_i, W_{i-1})   1x1 convolutions, (out, in)
    block_b: tuple  # depth x (W_i,)
    bn_w: tuple  # depth x (W_i,)
    bn_b: tuple  # depth x (W_i,)
    pos: np.ndarray | None  # (P, W_last)
    mix_w: np.ndarray | None  # (D, W_last)  (out, in)
    mix_b: np.ndarray | None  # (D,)

    @property
    def widths(self) -> tuple[int, ...]:
        """Each layer's width: the patch convolution's, then each block's."""
        return (int(self.conv_w.shape[0]), *(int(w.shape[0]) for w in self.block_w))

    def to(self, xp: Namespace) -> EncoderKey:
        """The same key with its arrays on ``xp``'s device."""
        conv = lambda a: None if a is None else xp.asarray(a)  # noqa: E731
        return replace(
            self,
            conv_w=conv(self.conv_w), conv_b=conv(self.conv_b),
            block_w=tuple(map(conv, self.block_w)), block_b=tuple(map(conv, self.block_b)),
            bn_w=tuple(map(conv, self.bn_w)), bn_b=tuple(map(conv, self.bn_b)),
            pos=conv(self.pos), mix_w=conv(self.mix_w), mix_b=conv(self.mix_b),
        )


def _uniform(rng, shape, fan_in):
    bound = 1.0 / np.sqrt(fan_in)
    return rng.uniform(-bound, bound, size=shape).astype(np.float32)


def random_key(config: EncoderConfig, seed: int | Sequence[int], widths: Sequence[int] | None = None) -> EncoderKey:
    """Draw a fresh secret key with PyTorch's default initialisation.

    ``widths`` (:func:`check_widths`) draws a key whose layers are that wide (a wider T'), each
    layer at the default scale for its own fan-in; the family's own widths draw exactly the key
    that no ``widths`` draws.
    """
    rng = np.random.default_rng(seed)
    c, p, d = config.channels, config.patch, config.hidden
    widths = family_widths(config) if widths is None else check_widths(config, widths)
    fan = c * p * p
    conv_w = _uniform(rng, (widths[0], c, p, p), fan)
    conv_b = _uniform(rng, (widths[0],), fan)
    block_w, block_b = [], []
    for w_in, w in pairwise(widths):  # block i maps W_{i-1} -> W_i
        block_w.append(_uniform(rng, (w, w_in), w_in))
        block_b.append(_uniform(rng, (w,), w_in))
    last = widths[-1]
    if config.depth >= 0:
        pos = rng.standard_normal((config.n_patches, last)).astype(np.float32)
        mix_w, mix_b = _uniform(rng, (d, last), last), _uniform(rng, (d,), last)
    else:
        pos = mix_w = mix_b = None
    return EncoderKey(
        config, conv_w, conv_b, tuple(block_w), tuple(block_b),
        tuple(np.ones(w, np.float32) for w in widths[1:]), tuple(np.zeros(w, np.float32) for w in widths[1:]),
        pos, mix_w, mix_b,
    )


def patchify(x: Array, patch: int) -> Array:
    """Split images (B, C, H, W) into rows (B, P, C*p*p): row-major grid, (c, i, j) flattening."""
    b, c, h, w = x.shape
    gh, gw = h // patch, w // patch
    x = x.reshape(b, c, gh, patch, gw, patch)
    x = x.transpose(0, 2, 4, 1, 3, 5)  # (B, gh, gw, C, p, p)
    return x.reshape(b, gh * gw, c * patch * patch)


def batchnorm(h: Array, weight: Array, bias: Array, xp: Namespace) -> Array:
    """BatchNorm over all rows of ``h`` (B, P, D) per channel, biased variance (train mode)."""
    mean = h.mean(axis=(0, 1), keepdims=True)
    var = ((h - mean) ** 2).mean(axis=(0, 1), keepdims=True)
    return (h - mean) / xp.sqrt(var + BN_EPS) * weight + bias


def encode_batch(x: Array, key: EncoderKey, xp: Namespace) -> Array:
    """Encode one BatchNorm batch without shuffling: (B, C, H, W) -> (B, P, D).

    ``key`` must already live on ``xp`` (see :meth:`EncoderKey.to`).
    """
    cfg = key.config
    rows = patchify(xp.asarray(x, dtype=xp.float32), cfg.patch)  # (B, P, C*p*p)
    w0 = key.conv_w.reshape(len(key.conv_w), -1)  # (W0, C*p*p)
    h = rows @ w0.T + key.conv_b  # (B, P, W0)
    if cfg.depth == -1:
        return h
    h = xp.maximum(h, 0)
    for w, b, g, beta in zip(key.block_w, key.block_b, key.bn_w, key.bn_b, strict=True):
        h = h @ w.T + b
        h = xp.maximum(batchnorm(h, g, beta, xp), 0)
    h = xp.maximum(h + key.pos, 0)
    return h @ key.mix_w.T + key.mix_b


def encode(x: Array, key: EncoderKey, xp: Namespace = np, seed: int | Sequence[int] | None = None,
           bn_batch: int | None = None, shuffle: bool | None = None,
           progress: Progress | None = None) -> tuple[Array, np.ndarray]:
    """Encode images in consecutive BatchNorm batches, then shuffle each image's rows.

    Parameters
    ----------
    x : array (N, C, H, W), float32 in [0, 1]
    key : EncoderKey (host or ``xp`` arrays)
    seed : seed of the shuffling permutations
    bn_batch : BatchNorm batch size; defaults to the key's config
    shuffle : defaults to the key's config
    progress : optional callable taking the number of images finished in a step

    Returns
    -------
    enc : xp array (N, P, D) float32, ``enc[a, r] = unshuffled[a, perms[a, r]]``
    perms : host int array (N, P); identity rows when not shuffling
    """
    cfg = key.config
    out = xp.empty((len(x), cfg.n_patches, cfg.hidden), dtype=xp.float32)
    perms = np.empty((len(x), cfg.n_patches), dtype=np.int64)
    for s, enc, p in encode_batches(x, key, xp, seed, bn_batch, shuffle, progress=progress):
        out[s:s + len(enc)], perms[s:s + len(enc)] = enc, p
    return out, perms


def encode_batches(x: Array, key: EncoderKey, xp: Namespace = np, seed: int | Sequence[int] | None = None,
                   bn_batch: int | None = None, shuffle: bool | None = None, *, index: np.ndarray | None = None,
                   progress: Progress | None = None) -> Iterator[tuple[int, Array, np.ndarray]]:
    """:func:`encode`, one BatchNorm batch at a time: yields ``(start, enc, perms)`` per batch.

    ``enc`` (b, P, D) and ``perms`` (b, P) are rows ``start .. start + b`` of :func:`encode`'s
    results, the same values (the shuffles are drawn batch after batch from the same stream), so a
    caller can write each batch and drop it. With ``index`` (host ints), the images encoded are
    ``x[index]``, taken a batch at a time.
    """
    cfg = key.config
    bn_batch = bn_batch or cfg.bn_batch
    shuffle = cfg.shuffle if shuffle is None else shuffle
    dev_key = key.to(xp)
    n, P = (len(x) if index is None else len(index)), cfg.n_patches
    rng = np.random.default_rng(seed) if shuffle else None
    for s in range(0, n, bn_batch):
        if index is None:
            batch = x[s:s + bn_batch]
        else:
            pick = index[s:s + bn_batch]
            batch = x[pick] if isinstance(x, np.ndarray) else x[xp.asarray(pick)]
        enc = encode_batch(batch, dev_key, xp)  # (b, P, D)
        if shuffle:
            perms = np.argsort(rng.random((len(enc), P)), axis=1)  # (b, P): enc row r <- unshuffled row perms[r]
            enc = xp.take_along_axis(enc, xp.asarray(perms)[:, :, None], axis=1)
        else:
            perms = np.tile(np.arange(P), (len(enc), 1))
        if progress is not None:
            progress(len(enc))
        yield s, enc, perms


# --- the family's description, strictly parsed ----------------------------------------------

CONFIG_FIELDS = ("channels", "image_size", "patch", "hidden", "depth", "shuffle", "bn_batch")


def parse_config(d: object, source: str) -> EncoderConfig:
    """A family from its JSON object, strictly: every field present, of its exact type, in range.

    ``source`` names where it came from in the one-line error (e.g. ``GAME/encoder.json``).
    """
    if not isinstance(d, dict):
        raise UserError(f"{source} must be a JSON object with the encoder's fields")
    for name in CONFIG_FIELDS:
        want = bool if name == "shuffle" else int
        if name not in d:
            raise UserError(f"{source} lacks the field {name!r}")
        if type(d[name]) is not want:  # bool is an int: exact types, so 2.5, "64" and true are refused
            raise UserError(f"{source}: {name!r} must be {'true or false' if want is bool else 'an integer'}, "
                            f"got {_short(d[name])}")
    try:
        return EncoderConfig.from_json(d)
    except UserError as e:
        raise UserError(f"{source}: {e}") from None


def _short(v) -> str:
    r = repr(v)
    return r if len(r) <= 60 else r[:57] + "..."


def family_differences(a: EncoderConfig, b: EncoderConfig, fields: tuple[str, ...] = CONFIG_FIELDS) -> list[str]:
    """``["hidden 16 vs 32", ...]`` for each field where ``a`` and ``b`` differ."""
    return [f"{f} {getattr(a, f)} vs {getattr(b, f)}" for f in fields if getattr(a, f) != getattr(b, f)]
