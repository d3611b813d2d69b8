"""Small file helpers shared by the game, the attack and the referee: atomic writes, images, JSON."""
from __future__ import annotations

import contextlib
import json
import os
import tempfile
from pathlib import Path

import numpy as np


@contextlib.contextmanager
def atomic_path(path):
    """Yield a temporary path beside ``path``; rename it onto ``path`` only if the block succeeds.

    An interrupted write therefore never leaves a half-written file under the final name.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        yield tmp
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def _jsonable(o):
    """JSON for what ``json`` does not know: NumPy scalars and arrays, paths."""
    if isinstance(o, np.generic):
        return o.item()
    if isinstance(o, np.ndarray):
        return o.tolist()
    if isinstance(o, Path):
        return str(o)
    raise TypeError(f"not JSON serialisable: {type(o).__name__}")


def write_json(path, obj, sort_keys: bool = True) -> None:
    """Write ``obj`` as indented JSON, atomically; NumPy values become plain numbers and lists."""
    with atomic_path(path) as tmp:
        with open(tmp, "w") as f:
            json.dump(obj, f, indent=1, sort_keys=sort_keys, default=_jsonable)
            f.write("\n")


def write_npy(path, array) -> None:
    with atomic_path(path) as tmp:
        with open(tmp, "wb") as f:
            np.save(f, array)


def write_png16(path, image) -> None:
    """Write a 2-D float image in [0, 1] as a 16-bit grayscale PNG (value v -> round(v * 65535))."""
    from PIL import Image

    q = np.clip(np.rint(np.asarray(image, np.float64) * 65535.0), 0, 65535).astype(np.uint16)
    with atomic_path(path) as tmp:
        Image.fromarray(q).save(tmp, format="PNG")


def quantize16(images):
    """Round float images in [0, 1] to the 16-bit grid a PNG stores, as float32."""
    return (np.clip(np.rint(np.asarray(images, np.float64) * 65535.0), 0, 65535) / 65535.0).astype(np.float32)


def read_gray(path) -> np.ndarray:
    """Read a PNG or JPEG as a 2-D float32 grayscale image in [0, 1].

    An n-bit image's value v becomes v / (2^n - 1); colour images are converted to luminance.
    """
    from PIL import Image

    with Image.open(path) as im:
        im.load()
        if im.mode in ("I;16", "I;16B", "I;16L", "I"):
            a = np.asarray(im, dtype=np.float64)
            # PIL reports 16-bit PNGs as I;16 (or I for some encoders); they use the 16-bit range.
            return (a / 65535.0).astype(np.float32)
        if im.mode == "F":
            return np.asarray(im, dtype=np.float32)
        if im.mode not in ("L", "RGB"):
            im = im.convert("RGB")
        if im.mode == "RGB":
            im = im.convert("L")
        return (np.asarray(im, dtype=np.float64) / 255.0).astype(np.float32)
