"""Images to attack: the bundled real images (offline, deterministic, no repeated patch) and user data."""
import socket

import numpy as np
import pytest
from PIL import Image

from empirical import data
from empirical.data import bundled_images, list_image_files, load_folder, load_images, load_npy


def all_patches(imgs, patch):
    """Every patch of every image, as rows of 16-bit integers (independent of the package)."""
    q = np.rint(np.asarray(imgs, np.float64) * 65535).astype(np.int64)  # (N, 1, S, S)
    n, _, s, _ = q.shape
    rows = []
    for a in range(n):
        for y in range(0, s, patch):
            for x in range(0, s, patch):
                rows.append(q[a, 0, y:y + patch, x:x + patch].ravel())
    return np.array(rows)


@pytest.fixture(scope="module")
def bundled():
    return bundled_images(24, size=32, seed=0, patch=8)


# --- bundled images ----------------------------------------------------------------------------

def test_bundled_shape_dtype_range(bundled):
    assert bundled.shape == (24, 1, 32, 32)
    assert bundled.dtype == np.float32
    assert bundled.min() >= 0.0 and bundled.max() <= 1.0
    # on the 16-bit grid a PNG stores, so writing them to disk loses nothing
    q = np.rint(bundled.astype(np.float64) * 65535)
    np.testing.assert_array_equal((q / 65535).astype(np.float32), bundled)
    # real pictures, not flat fields: each image has contrast
    assert (bundled.reshape(24, -1).std(axis=1) > 0.01).all()


def test_bundled_is_deterministic_from_the_seed(bundled):
    np.testing.assert_array_equal(bundled_images(24, size=32, seed=0, patch=8), bundled)
    other = bundled_images(24, size=32, seed=1, patch=8)
    assert not np.array_equal(other, bundled)
    # no image of one seed reappears under the other
    assert not any(np.array_equal(a, b) for a in other for b in bundled)


def test_bundled_has_no_repeated_patch(bundled):
    rows = all_patches(bundled, 8)
    assert rows.shape == (24 * 16, 64)
    assert len(np.unique(rows, axis=0)) == len(rows)


def test_bundled_default_patch_has_no_repeated_patch():
    imgs = bundled_images(6, size=64, seed=3)  # patch 16
    rows = all_patches(imgs, 16)
    assert len(np.unique(rows, axis=0)) == len(rows) == 6 * 16


def test_bundled_empty_and_bad_sizes():
    assert bundled_images(0, size=32, patch=8).shape == (0, 1, 32, 32)
    with pytest.raises(ValueError):
        bundled_images(2, size=30, patch=8)
    with pytest.raises(ValueError):
        bundled_images(-1, size=32, patch=8)


def test_bundled_sources_include_medical_and_photo():
    names = [name for name, _ in data.bundled_sources()]
    assert any(not n.startswith("skimage.") for n in names)  # pydicom-data radiographs
    assert any(n.startswith("skimage.") for n in names)
    for _, img in data.bundled_sources():
        assert img.ndim == 2 and img.dtype == np.float32 and 0 <= img.min() and img.max() <= 1


def test_bundled_loads_with_sockets_disabled(monkeypatch, bundled):
    calls = []

    def refuse(*args, **kwargs):
        calls.append(args)
        raise OSError("network access is disabled in this test")

    data.bundled_sources.cache_clear()
    data._source_pyramids.cache_clear()
    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket.socket, "connect_ex", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)
    with pytest.raises(OSError):  # the guard is really in place
        socket.create_connection(("example.com", 80))
    calls.clear()
    imgs = bundled_images(24, size=32, seed=0, patch=8)
    assert data.bundled_sources.cache_info().misses == 1  # the sources were re-read under the guard
    assert data._source_pyramids.cache_info().misses == 1
    assert calls == []  # nothing even tried the network
    np.testing.assert_array_equal(imgs, bundled)


# --- a user's folder ---------------------------------------------------------------------------

def _save(path, array, **kw):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(array).save(path, **kw)


@pytest.fixture
def folder(tmp_path):
    rng = np.random.default_rng(0)
    root = tmp_path / "imgs"
    g8 = rng.integers(0, 256, (32, 32), dtype=np.uint8)
    g16 = rng.integers(0, 65536, (32, 32), dtype=np.uint16)
    _save(root / "a" / "gray8.png", g8)
    _save(root / "a" / "b" / "gray16.png", g16)
    _save(root / "photo.jpg", np.full((32, 32), 128, np.uint8), quality=95)
    _save(root / "upper.JPEG", np.full((48, 48), 64, np.uint8), quality=95)
    rgb = np.zeros((32, 32, 3), np.uint8)
    rgb[..., 0] = 255  # pure red: luminance 0.299
    _save(root / "rgb.png", rgb)
    wide = np.tile(np.linspace(0, 255, 80), (40, 1)).round().astype(np.uint8)  # (H 40, W 80): value ~ column
    _save(root / "wide.png", wide)
    tall = np.tile(np.linspace(0, 255, 40), (80, 1)).round().astype(np.uint8)  # (H 80, W 40): value ~ column
    _save(root / "tall.png", tall)
    (root / "notes.txt").write_text("not an image")
    (root / "a" / "b" / "fake.png.txt").write_text("not an image either")
    return root, dict(g8=g8, g16=g16)


def test_folder_lists_images_recursively(folder):
    root, _ = folder
    expected = ["a/b/gray16.png", "a/gray8.png", "photo.jpg", "rgb.png", "tall.png", "upper.JPEG", "wide.png"]
    assert list_image_files(root) == expected
    ids, imgs = load_folder(root, 32)
    assert ids == expected
    assert imgs.shape == (7, 1, 32, 32) and imgs.dtype == np.float32
    assert imgs.min() >= 0 and imgs.max() <= 1
    ids2, imgs2 = load_folder(root, 32, limit=2)
    assert ids2 == expected[:2]
    np.testing.assert_array_equal(imgs2, imgs[:2])


def test_folder_pixel_values(folder):
    root, px = folder
    ids, imgs = load_folder(root, 32)
    im = dict(zip(ids, imgs[:, 0], strict=True))
    np.testing.assert_allclose(im["a/gray8.png"], px["g8"] / 255.0, rtol=0, atol=1e-7)  # 8-bit: v / 255
    np.testing.assert_allclose(im["a/b/gray16.png"], px["g16"] / 65535.0, rtol=0, atol=1e-7)  # 16-bit: v / 65535
    np.testing.assert_allclose(im["photo.jpg"], 128 / 255, atol=2 / 255)
    np.testing.assert_allclose(im["upper.JPEG"], 64 / 255, atol=2 / 255)  # resized 48 -> 32
    np.testing.assert_allclose(im["rgb.png"], 0.299, atol=1.5 / 255)


def test_non_square_is_resized_on_the_short_side_then_centre_cropped(folder):
    root, _ = folder
    ids, imgs = load_folder(root, 32)
    im = dict(zip(ids, imgs[:, 0], strict=True))
    wide, tall = im["wide.png"], im["tall.png"]
    for a in (wide, tall):
        np.testing.assert_allclose(a, np.tile(a[:1], (32, 1)), atol=1e-6)  # value still depends on column only
        assert (np.diff(a[0]) >= -1e-6).all()
    # wide (40 x 80) -> 32 x 64, the middle 32 columns kept: original columns ~20..60 of 80
    assert abs(wide[0, 0] - 20.125 / 79) < 0.02 and abs(wide[0, -1] - 58.875 / 79) < 0.02
    # tall (80 x 40) -> 64 x 32: the short side (columns) is kept whole
    assert wide[0, -1] - wide[0, 0] < 0.6
    assert tall[0, 0] < 0.03 and tall[0, -1] > 0.97


def test_folder_errors(tmp_path):
    with pytest.raises(FileNotFoundError):
        load_folder(tmp_path / "nope", 32)
    (tmp_path / "empty").mkdir()
    (tmp_path / "empty" / "readme.txt").write_text("x")
    with pytest.raises(ValueError, match="no PNG or JPEG"):
        load_folder(tmp_path / "empty", 32)


# --- a user's .npy stack -----------------------------------------------------------------------

def test_npy_uint8_stack(tmp_path):
    a = np.random.default_rng(1).integers(0, 256, (5, 32, 32), dtype=np.uint8)
    np.save(tmp_path / "x.npy", a)
    out = load_npy(tmp_path / "x.npy", 32)
    assert out.shape == (5, 1, 32, 32) and out.dtype == np.float32
    np.testing.assert_allclose(out[:, 0], a / 255.0, rtol=0, atol=1e-7)


def test_npy_uint16_stack(tmp_path):
    a = np.random.default_rng(1).integers(0, 65536, (3, 32, 32), dtype=np.uint16)
    np.save(tmp_path / "x.npy", a)
    np.testing.assert_allclose(load_npy(tmp_path / "x.npy", 32)[:, 0], a / 65535.0, rtol=0, atol=1e-7)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_npy_float_stack(tmp_path, dtype):
    a = np.random.default_rng(2).random((4, 32, 32)).astype(dtype)
    np.save(tmp_path / "x.npy", a)
    out = load_npy(tmp_path / "x.npy", 32)
    assert out.dtype == np.float32
    np.testing.assert_allclose(out[:, 0], a, rtol=1e-6, atol=0)
    np.save(tmp_path / "y.npy", a[:, None])  # (N, 1, H, W) is accepted too
    np.testing.assert_array_equal(load_npy(tmp_path / "y.npy", 32), out)


def test_npy_values_clipped(tmp_path):
    a = np.random.default_rng(4).uniform(-1, 2, (3, 32, 32)).astype(np.float32)
    np.save(tmp_path / "x.npy", a)
    np.testing.assert_array_equal(load_npy(tmp_path / "x.npy", 32)[:, 0], np.clip(a, 0, 1))


def test_npy_values_clipped_and_resized(tmp_path):
    a = np.full((2, 48, 64), 1.5, np.float32)
    a[1] = -0.5
    np.save(tmp_path / "x.npy", a)
    out = load_npy(tmp_path / "x.npy", 32)
    assert out.shape == (2, 1, 32, 32)
    np.testing.assert_array_equal(out[0], 1.0)
    np.testing.assert_array_equal(out[1], 0.0)


@pytest.mark.parametrize("shape", [(32, 32), (3, 32, 32, 3), (3, 2, 32, 32), (3,), (2, 1, 1, 32, 32)])
def test_npy_bad_shapes(tmp_path, shape):
    np.save(tmp_path / "x.npy", np.zeros(shape, np.float32))
    with pytest.raises(ValueError, match="expected shape"):
        load_npy(tmp_path / "x.npy", 32)


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_npy_nan_or_inf(tmp_path, bad):
    a = np.zeros((2, 32, 32), np.float32)
    a[1, 3, 4] = bad
    np.save(tmp_path / "x.npy", a)
    with pytest.raises(ValueError, match="NaN or inf"):
        load_npy(tmp_path / "x.npy", 32)


def test_load_images_dispatch(tmp_path, folder, bundled):
    root, _ = folder
    np.testing.assert_array_equal(load_images("bundled", 24, 32, seed=0, patch=8), bundled)
    assert load_images(str(root), 3, 32).shape == (3, 1, 32, 32)
    a = np.random.default_rng(3).random((6, 32, 32)).astype(np.float32)
    np.save(tmp_path / "s.npy", a)
    np.testing.assert_allclose(load_images(str(tmp_path / "s.npy"), 4, 32)[:, 0], a[:4], atol=1e-7)
    with pytest.raises(ValueError, match="7 were asked for"):
        load_images(str(tmp_path / "s.npy"), 7, 32)
    with pytest.raises(FileNotFoundError):
        load_images(str(tmp_path / "missing.npy"), 1, 32)


# --- images and stacks that must be refused, by name -------------------------------------------

def _png_header_only(path, width, height):
    """A tiny PNG file whose header declares ``width`` x ``height`` pixels (a decompression bomb's shape)."""
    import struct
    import zlib

    def chunk(tag, data):
        return struct.pack(">I", len(data)) + tag + data + struct.pack(">I", zlib.crc32(tag + data))

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"")) +
                     chunk(b"IEND", b""))


@pytest.mark.parametrize("case,pattern", [
    ("float nan", "contains NaN or inf"),
    ("float out of range", "values outside its range"),
    ("int32 huge", "values outside its range"),
    ("int32 negative", "values outside its range"),
    ("bomb", "declares more than"),
    ("not an image", "cannot read image"),
    ("truncated", "cannot read image"),
])
def test_read_gray_refuses_bad_images_by_name(tmp_path, case, pattern):
    from empirical.errors import UserError
    from empirical.fileio import read_gray

    p = tmp_path / "x.png"
    if case.startswith("float"):
        a = np.full((8, 8), np.nan if case == "float nan" else 3.5, np.float32)
        Image.fromarray(a, mode="F").save(p, format="TIFF")  # a float TIFF named .png
    elif case.startswith("int32"):
        a = np.full((8, 8), 1_544_000_000 if case == "int32 huge" else -5, np.int32)
        Image.fromarray(a).save(p, format="TIFF")
    elif case == "bomb":
        _png_header_only(p, 20000, 20000)
    elif case == "not an image":
        p.write_bytes(b"hello")
    elif case == "truncated":
        _save(p, np.random.default_rng(0).integers(0, 256, (64, 64), dtype=np.uint8))
        p.write_bytes(p.read_bytes()[:200])
    with pytest.raises(UserError, match=pattern) as e:
        read_gray(p)
    assert str(p) in str(e.value) and "\n" not in str(e.value)


def test_read_gray_keeps_valid_float_and_16_bit_images(tmp_path):
    from empirical.fileio import read_gray

    a = np.linspace(0, 1, 64, dtype=np.float32).reshape(8, 8)
    Image.fromarray(a, mode="F").save(tmp_path / "f.tiff", format="TIFF")
    np.testing.assert_array_equal(read_gray(tmp_path / "f.tiff"), a)
    q = np.arange(64, dtype=np.uint16).reshape(8, 8) * 1000
    _save(tmp_path / "q.png", q)
    np.testing.assert_allclose(read_gray(tmp_path / "q.png"), q / 65535.0, atol=1e-7)


def test_read_gray_refuses_a_fifo_without_blocking(tmp_path):
    import os

    from empirical.errors import UserError
    from empirical.fileio import read_gray

    os.mkfifo(tmp_path / "x.png")
    with pytest.raises(UserError, match="not a regular file"):
        read_gray(tmp_path / "x.png")


def test_a_bad_image_in_a_folder_is_named(folder):
    root, _ = folder
    a = np.full((8, 8), np.nan, np.float32)
    Image.fromarray(a, mode="F").save(root / "a" / "nan.png", format="TIFF")
    with pytest.raises(ValueError, match=r"nan\.png contains NaN"):
        load_folder(root, 32)


@pytest.mark.parametrize("case,pattern", [
    ("empty", "not a .npy file"),
    ("zip", "zip archive"),
    ("truncated", "truncated"),
    ("object", "Python objects"),
    ("complex", "not real numbers"),
    ("strings", "not real numbers"),
    ("zero pixels", "are empty"),
])
def test_load_npy_refuses_damaged_stacks_with_one_line(tmp_path, case, pattern):
    from empirical.errors import UserError

    p = tmp_path / "x.npy"
    if case == "empty":
        p.write_bytes(b"")
    elif case == "zip":
        with open(p, "wb") as f:
            np.savez(f, a=np.zeros((2, 32, 32)))
    elif case == "truncated":
        np.save(p, np.zeros((4, 32, 32), np.float32))
        p.write_bytes(p.read_bytes()[:-100])
    elif case == "object":
        np.save(p, np.array([None, 1], dtype=object))
    elif case == "complex":
        np.save(p, np.zeros((2, 32, 32), np.complex64))
    elif case == "strings":
        np.save(p, np.array([["a"] * 32] * 32)[None])
    elif case == "zero pixels":
        np.save(p, np.zeros((2, 0, 5), np.float32))
    with pytest.raises(UserError, match=pattern) as e:
        load_npy(p, 32)
    assert str(p) in str(e.value)


def test_bundled_images_check_memory_first(monkeypatch):
    import empirical.memory as memory

    monkeypatch.setattr(memory, "available_memory", lambda: 2**20)
    with pytest.raises(ValueError, match=r"drawing 1,000,000 bundled images of 32 px needs .* of memory"):
        bundled_images(10**6, size=32, patch=8)
