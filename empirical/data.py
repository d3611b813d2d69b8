"""Images to attack: the bundled real images, and a user's own folder or ``.npy`` stack.

The bundled set needs no network. Its sources are pictures that PyPI wheels ship inside them:

* pydicom-data's radiographs and MR/CT slices, read with pydicom: ``RG1_UNCR`` (a chest X-ray,
  stored MONOCHROME1, so inverted), ``RG3_UNCR`` (a radiograph, MONOCHROME1), ``MR2_UNCR`` (an MR
  slice), ``693_UNCR`` (a CT slice);
* scikit-image's bundled sample photographs and micrographs that its loader reads from the wheel
  (those it would download are skipped).

A medical source is drawn three times as often as a scikit-image one (about 40% of images).

Each generated image is a crop of one source at a random position, scale (zoom) and small
rotation, possibly flipped, with a random contrast (gamma) change and faint Gaussian noise
(sigma 0.004) so that flat regions such as a black MR background never produce two identical
patches. The result is deterministic from the seed, and :func:`bundled_images` re-draws any image
that would share an identical (16-bit quantised) patch with another.
"""
from __future__ import annotations

import functools
import hashlib
import os
import warnings
from collections.abc import Callable
from pathlib import Path

import numpy as np

from .errors import PathLike, UserError
from .fileio import check_numeric_dtype, quantize16, read_gray, read_npy_header, read_npy_stream, regular_file
from .memory import check_memory

DICOM_SOURCES = (("RG1_UNCR.dcm", True), ("RG3_UNCR.dcm", True), ("MR2_UNCR.dcm", False), ("693_UNCR.dcm", False))
SKIMAGE_SOURCES = (
    "astronaut", "brick", "camera", "cat", "cell", "chelsea", "clock", "coffee", "coins", "grass",
    "gravel", "hubble_deep_field", "immunohistochemistry", "moon", "retina", "rocket",
    "stereo_motorcycle", "page", "text", "shepp_logan_phantom",
)
IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg")


def _normalise(a: np.ndarray) -> np.ndarray:
    a = np.asarray(a, dtype=np.float64)
    lo, hi = np.percentile(a, 0.5), np.percentile(a, 99.5)
    return np.clip((a - lo) / max(hi - lo, 1e-12), 0.0, 1.0).astype(np.float32)


def _to_gray(a: np.ndarray) -> np.ndarray:
    a = np.asarray(a)
    if a.ndim == 3:
        a = a[..., :3].astype(np.float64) @ np.array([0.299, 0.587, 0.114])
    return a


@functools.lru_cache(maxsize=1)
def bundled_sources() -> tuple:
    """The source pictures as ``(name, float32 2-D array in [0, 1])``, read once per process."""
    out = []
    try:
        import pydicom
        from pydicom.data import get_testdata_file
    except ImportError as e:  # pragma: no cover - a declared dependency
        raise RuntimeError("pydicom and pydicom-data are needed for the bundled images") from e
    for name, invert in DICOM_SOURCES:
        path = get_testdata_file(name, download=False)
        if path is None:
            continue
        px = pydicom.dcmread(path).pixel_array.astype(np.float64)
        img = _normalise(px)
        out.append((name.split(".")[0], 1.0 - img if invert else img))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        import skimage.data as skd

        for name in SKIMAGE_SOURCES:
            try:
                a = getattr(skd, name)()
            except Exception:  # a sample this version would download, or does not have
                continue
            if isinstance(a, tuple):  # stereo pairs and the like: take the first picture
                a = a[0]
            out.append((f"skimage.{name}", _normalise(_to_gray(a))))
    if len(out) < 4:
        raise RuntimeError("too few bundled source images could be read; is pydicom-data installed?")
    return tuple(out)


def _pyramid(src: np.ndarray) -> list:
    """``src`` halved repeatedly by 2 x 2 averaging, so a zoomed-out crop samples an antialiased level."""
    levels = [src]
    while min(levels[-1].shape) >= 64:
        a = levels[-1]
        h, w = a.shape[0] // 2 * 2, a.shape[1] // 2 * 2
        levels.append(a[:h, :w].reshape(h // 2, 2, w // 2, 2).mean(axis=(1, 3)).astype(np.float32))
    return levels


@functools.lru_cache(maxsize=1)
def _source_pyramids() -> tuple:
    """Pyramids of the sources and the probability of drawing each: the medical ones weigh 3x."""
    srcs = bundled_sources()
    weights = np.array([1.0 if name.startswith("skimage.") else 3.0 for name, _ in srcs])
    return tuple(_pyramid(img) for _, img in srcs), weights / weights.sum()


def _sample_view(levels: list, size: int, rng: np.random.Generator) -> np.ndarray:
    """A random rotated, zoomed, shifted crop of a source resampled to ``size`` x ``size``."""
    from scipy.ndimage import map_coordinates

    h, w = levels[0].shape
    short = min(h, w)
    side = rng.uniform(0.2, 0.9) * short  # crop side in source pixels
    angle = np.deg2rad(rng.uniform(-12, 12))
    half = side / 2 * (abs(np.cos(angle)) + abs(np.sin(angle)))
    cy = rng.uniform(half, h - half) if h > 2 * half else h / 2
    cx = rng.uniform(half, w - half) if w > 2 * half else w / 2
    t = (np.arange(size) + 0.5) / size - 0.5
    gy, gx = np.meshgrid(t * side, t * side, indexing="ij")
    if rng.random() < 0.5:
        gx = -gx
    c, s = np.cos(angle), np.sin(angle)
    ys = cy + c * gy - s * gx
    xs = cx + s * gy + c * gx
    # Sample the pyramid level whose pixel is closest to (not larger than) an output pixel.
    level = int(np.clip(np.floor(np.log2(max(side / size, 1.0))), 0, len(levels) - 1))
    f = 2.0 ** level
    return map_coordinates(levels[level], [ys / f - 0.5 * (1 - 1 / f), xs / f - 0.5 * (1 - 1 / f)],
                           order=1, mode="reflect")


def _augment(view: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    gamma = np.exp(rng.uniform(-0.4, 0.4))
    lo, hi = rng.uniform(0.0, 0.1), rng.uniform(0.9, 1.0)
    out = lo + (hi - lo) * np.clip(view, 0, 1) ** gamma
    out = out + rng.normal(0.0, 0.004, size=out.shape)
    return np.clip(out, 0.0, 1.0)


def _patch_hashes(img: np.ndarray, patch: int) -> list:
    q = np.rint(img * 65535).astype(np.uint16)
    g = img.shape[0] // patch
    blocks = q.reshape(g, patch, g, patch).transpose(0, 2, 1, 3).reshape(g * g, -1)
    return [hashlib.blake2b(b.tobytes(), digest_size=12).digest() for b in blocks]


def bundled_images(n: int, size: int = 128, seed: int = 0, patch: int = 16,
                   progress: Callable[[int], object] | None = None) -> np.ndarray:
    """Draw ``n`` distinct grayscale images from the bundled sources.

    Parameters
    ----------
    n : number of images
    size : side in pixels (a multiple of ``patch``)
    seed : the draw is a deterministic function of ``(n, size, seed, patch)``
    patch : patch side used to guarantee that no two images share an identical patch

    Returns
    -------
    float32 array (n, 1, size, size) on the 16-bit grid, values in [0, 1]
    """
    if n < 0 or size < 1 or patch < 1 or size % patch:
        raise UserError(f"need n >= 0 and a size that is a multiple of the patch ({patch}); got {n}, {size}")
    check_memory(4 * n * size * size * 2, f"drawing {n:,} bundled images of {size} px")
    sources, weights = _source_pyramids()
    rng = np.random.default_rng([seed, size, 0x6E43])
    out = np.empty((n, 1, size, size), np.float32)
    seen: set = set()
    i = 0
    while i < n:
        levels = sources[rng.choice(len(sources), p=weights)]
        img = quantize16(_augment(_sample_view(levels, size, rng), rng))
        hashes = _patch_hashes(img, patch)
        if len(set(hashes)) < len(hashes) or any(h in seen for h in hashes):
            continue  # would repeat a patch: draw again
        seen.update(hashes)
        out[i, 0] = img
        i += 1
        if progress is not None:
            progress(1)
    return out


def resize_center_crop(img: np.ndarray, size: int) -> np.ndarray:
    """Resize so the shorter side is ``size`` (bilinear, antialiased), then centre-crop to a square."""
    from PIL import Image

    h, w = img.shape
    scale = size / min(h, w)
    nh, nw = max(size, round(h * scale)), max(size, round(w * scale))
    pil = Image.fromarray(np.asarray(img, np.float32), mode="F").resize((nw, nh), Image.BILINEAR)
    a = np.asarray(pil, np.float32)
    top, left = (nh - size) // 2, (nw - size) // 2
    return np.clip(a[top:top + size, left:left + size], 0.0, 1.0)


def list_image_files(folder: PathLike) -> list[str]:
    """Image files under ``folder`` (recursive), sorted, as paths relative to it.

    An entry with an image's name that is neither a file nor a folder (a fifo, a socket, a link
    that leads nowhere) is refused: reading it could block or fail later.
    """
    folder = Path(folder)
    out = []
    for p in folder.rglob("*"):
        if p.suffix.lower() not in IMAGE_EXTENSIONS:
            continue
        if p.is_file():
            out.append(p.relative_to(folder).as_posix())
        elif not p.is_dir():
            raise UserError(f"image {p} is not a regular file")
    return sorted(out)


def load_folder(folder: PathLike, size: int, limit: int | None = None) -> tuple[list[str], np.ndarray]:
    """Read a folder of PNG/JPEG images (recursive) prepared as the original attack did.

    Returns ``(ids, images)`` with images float32 (N, 1, size, size). An image that cannot be read,
    is too large, or holds values outside its range is refused with one line naming it.
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise FileNotFoundError(f"no such folder: {folder}")
    ids = list_image_files(folder)
    if limit is not None:
        ids = ids[:limit]
    if not ids:
        raise UserError(f"no PNG or JPEG images under {folder}")
    check_memory(4 * len(ids) * size * size, f"{len(ids):,} images of {size} px from {folder}")
    imgs = np.empty((len(ids), 1, size, size), np.float32)
    for k, i in enumerate(ids):
        imgs[k, 0] = resize_center_crop(read_gray(folder / i), size)
    return ids, imgs


def load_npy(path: PathLike, size: int) -> np.ndarray:
    """Read a stack (N, H, W) or (N, 1, H, W) of grayscale images; integer types are scaled to [0, 1].

    Float values are clipped to [0, 1]; NaN or inf, a wrong shape or a non-numeric type is refused
    with one line naming the file, before the data is read.
    """
    path = regular_file(path, "image stack")
    with open(path, "rb") as f:
        shape, dtype, _ = read_npy_header(f, str(path))
        check_numeric_dtype(dtype, str(path))
        if len(shape) == 4 and shape[1] == 1:
            shape = (shape[0], *shape[2:])
        if len(shape) != 3:
            raise UserError(f"{path}: expected shape (N, H, W) or (N, 1, H, W), got {tuple(shape)}")
        if min(shape[1:]) < 1:
            raise UserError(f"{path}: images of {shape[1]} x {shape[2]} pixels are empty")
        check_memory(int(np.prod(shape, dtype=object)) * (dtype.itemsize + 12) + 4 * shape[0] * size * size,
                     f"the image stack {path} ({' x '.join(map(str, shape))}, {dtype})")
        f.seek(0)
        a = read_npy_stream(f, str(path), size=os.fstat(f.fileno()).st_size)
    if a.ndim == 4:
        a = a[:, 0]
    if np.issubdtype(a.dtype, np.integer):
        a = a.astype(np.float64) / np.iinfo(a.dtype).max
    a = np.asarray(a, np.float32)
    if not np.isfinite(a).all():
        raise UserError(f"{path}: contains NaN or inf")
    if a.shape[1:] != (size, size):
        a = np.stack([resize_center_crop(im, size) for im in a]) if len(a) else np.zeros((0, size, size), np.float32)
    return np.clip(a, 0.0, 1.0)[:, None]


def load_images(source: str, n: int, size: int, seed: int = 0, patch: int = 16) -> np.ndarray:
    """Images from ``bundled``, a folder, or a ``.npy`` file: the first ``n`` (bundled: ``n`` drawn)."""
    if source == "bundled":
        return bundled_images(n, size, seed, patch)
    p = Path(source)
    if p.suffix == ".npy":
        if not p.exists():
            raise FileNotFoundError(f"no such file: {p}")
        imgs = load_npy(p, size)
    else:
        imgs = load_folder(p, size)[1]
    if len(imgs) < n:
        raise UserError(f"{source} holds {len(imgs)} images, {n} were asked for")
    return imgs[:n]
