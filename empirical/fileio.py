"""Reading what a user hands over, writing the project's files, and checking output paths.

* reading input that may be damaged, truncated, of the wrong type, huge, or not a regular file
  at all: :func:`read_json_file`, :func:`read_npy`, :func:`read_gray`, each refusing with one line
  that names the file (:class:`~empirical.errors.UserError`);
* writing JSON, ``.npy`` and 16-bit PNG files atomically (through :mod:`empirical.staging`), and
  arrays with a JSON record in one ``.npz`` (:func:`write_record`, :func:`read_record`: the attack's saved
  stages and their parts);
* the paths a command writes: :func:`check_output` refuses what cannot or must not be written.
"""
from __future__ import annotations

import json
import os
import stat
import warnings
import zipfile
from pathlib import Path
from typing import Any, BinaryIO

import numpy as np

from .errors import PathLike, UserError, one_line
from .memory import check_memory, format_bytes
from .staging import atomic_path

MAX_IMAGE_PIXELS = 8192 * 8192  # the largest image (width x height) the project reads
MAX_JSON_BYTES = 256 * 2**20  # the largest JSON file (answer key, submission, path list) read


# --- reading what a user hands over ------------------------------------------------------------

def regular_file(path: PathLike, what: str, err: type[UserError] = UserError) -> Path:
    """``path`` as a Path if it is an existing regular file (symlinks followed); otherwise refuse.

    A folder, a fifo or a device where a file is due is refused before anything opens it (opening
    a fifo would wait forever).
    """
    path = Path(path)
    try:
        st = path.stat()
    except FileNotFoundError:
        raise err(f"missing {what}: {path}") from None
    except OSError as e:
        raise err(f"cannot read {what} {path}: {e.strerror or e}") from None
    if stat.S_ISDIR(st.st_mode):
        raise err(f"missing {what}: {path} is a folder, not a file")
    if not stat.S_ISREG(st.st_mode):
        raise err(f"{what} {path} is not a regular file")
    return path


def read_json_file(path: PathLike, what: str, max_bytes: int = MAX_JSON_BYTES, err: type[UserError] = UserError) -> Any:
    """Parse a JSON file, refusing a missing, non-regular, oversized, binary, invalid or too deeply nested one."""
    path = regular_file(path, what, err)
    size = path.stat().st_size
    if size > max_bytes:
        raise err(f"{path} is {format_bytes(size)}; more than {format_bytes(max_bytes)} is refused for the {what}")
    try:
        text = path.read_bytes().decode("utf-8")
    except UnicodeDecodeError:
        raise err(f"{path} is not a text (JSON) file") from None
    try:
        return json.loads(text)
    except json.JSONDecodeError as e:
        raise err(f"{path} is not valid JSON ({e.msg} at line {e.lineno})") from None
    except RecursionError:
        raise err(f"{path} is nested too deeply for the {what}") from None


_ZIP_MAGIC = b"PK\x03\x04"


def read_npy_header(f: BinaryIO, name: str, err: type[UserError] = UserError) -> tuple[tuple, np.dtype, bool]:
    """``(shape, dtype, fortran_order)`` from an open ``.npy`` stream, which is left at the data."""
    head = f.read(8)
    if head[:4] == _ZIP_MAGIC:
        raise err(f"cannot read {name}: it is a zip archive (.npz), not a .npy array")
    if len(head) < 8 or head[:6] != b"\x93NUMPY":
        raise err(f"cannot read {name}: not a .npy file" + (" (it is empty)" if not head else ""))
    version = (head[6], head[7])
    try:
        if version == (1, 0):
            shape, fortran, dtype = np.lib.format.read_array_header_1_0(f)
        elif version == (2, 0):
            shape, fortran, dtype = np.lib.format.read_array_header_2_0(f)
        else:
            raise err(f"cannot read {name}: .npy format version {version[0]}.{version[1]} is not supported")
    except UserError:
        raise
    except (ValueError, EOFError, SyntaxError, TypeError, OSError, RecursionError) as e:
        raise err(f"cannot read {name}: not a .npy file ({one_line(e) or type(e).__name__})") from None
    if not all(isinstance(s, int) and s >= 0 for s in shape):
        raise err(f"cannot read {name}: its header gives the shape {shape}")
    return tuple(int(s) for s in shape), dtype, bool(fortran)


def check_numeric_dtype(dtype: np.dtype, name: str, kinds: str = "biuf", err: type[UserError] = UserError) -> None:
    if dtype.hasobject:
        raise err(f"cannot read {name}: it holds Python objects (pickled), not numbers")
    if dtype.kind not in kinds or dtype.fields is not None or dtype.subdtype is not None:
        raise err(f"{name} has dtype {dtype}, not real numbers")


def read_npy_stream(f: BinaryIO, name: str, *, shape: tuple | None = None, dtype: np.dtype | None = None,
                    size: int | None = None, kinds: str = "biuf", max_bytes: int | None = None,
                    err: type[UserError] = UserError) -> np.ndarray:
    """Read one ``.npy`` array from an open binary stream, checking its header before any data.

    ``shape``/``dtype`` must match exactly when given; ``size`` (bytes of the whole stream, when
    known) must equal header plus data, so a truncated or padded file is refused; ``max_bytes``
    refuses an array larger than that before reading it.
    """
    got_shape, got_dtype, fortran = read_npy_header(f, name, err)
    if got_dtype.hasobject:
        check_numeric_dtype(got_dtype, name, kinds, err)
    if shape is not None and got_shape != tuple(shape):
        raise err(f"{name} has shape {got_shape}, expected {tuple(shape)}")
    if dtype is not None and got_dtype != np.dtype(dtype):
        raise err(f"{name} has dtype {got_dtype}, expected {np.dtype(dtype)}")
    check_numeric_dtype(got_dtype, name, kinds, err)
    nbytes = int(np.prod(got_shape, dtype=object)) * got_dtype.itemsize
    if max_bytes is not None and nbytes > max_bytes:
        raise err(f"{name} holds {format_bytes(nbytes)} of data; at most {format_bytes(max_bytes)} is expected")
    if size is not None:
        expected = f.tell() + nbytes
        if size < expected:
            raise err(f"cannot read {name}: the file is truncated ({size} of {expected} bytes)")
        if size > expected:
            raise err(f"cannot read {name}: {size - expected} unexpected bytes after the array")
    if shape is None and max_bytes is None:  # otherwise its size is already bounded by the caller
        check_memory(nbytes, f"reading {name}")
    buf = bytearray(nbytes)
    view, got = memoryview(buf), 0
    try:
        while got < nbytes:
            k = f.readinto(view[got:])
            if not k:
                break
            got += k
    except (ValueError, EOFError, OSError) as e:
        raise err(f"cannot read {name}: {one_line(e) or type(e).__name__}") from None
    if got < nbytes:
        raise err(f"cannot read {name}: the data is truncated ({got} of {nbytes} bytes)")
    a = np.frombuffer(buf, dtype=got_dtype).reshape(got_shape, order="F" if fortran else "C")
    return np.ascontiguousarray(a) if fortran else a


def read_npy(path: PathLike, what: str = "array", **kw: Any) -> np.ndarray:
    """Read a ``.npy`` file checked as :func:`read_npy_stream` does (a regular file, whole, no pickles)."""
    err = kw.get("err", UserError)
    path = regular_file(path, what, err)
    try:
        with open(path, "rb") as f:
            return read_npy_stream(f, str(path), size=os.fstat(f.fileno()).st_size, **kw)
    except OSError as e:
        raise err(f"cannot read {path}: {e.strerror or e}") from None


def read_gray(path: PathLike, err: type[UserError] = UserError) -> np.ndarray:
    """Read a PNG or JPEG as a 2-D float32 grayscale image in [0, 1].

    An n-bit image's value v becomes v / (2^n - 1); colour images are converted to luminance. A
    file that is not a regular file, not an image, larger than :data:`MAX_IMAGE_PIXELS`, or whose
    values are not finite and within the range of its kind (a float image outside [0, 1], a 32-bit
    integer image outside 0..65535) is refused with one line naming it.
    """
    from PIL import Image

    path = regular_file(path, "image", err)
    limit = Image.MAX_IMAGE_PIXELS
    try:
        with warnings.catch_warnings():
            # Pillow warns above its limit and refuses above twice it; here both refuse, at this project's limit
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            Image.MAX_IMAGE_PIXELS = MAX_IMAGE_PIXELS
            with Image.open(path) as im:
                w, h = im.size
                if w < 1 or h < 1:
                    raise err(f"image {path} declares {w} x {h} pixels")
                im.load()
                mode = im.mode
                if mode in ("I;16", "I;16B", "I;16L", "I", "F"):
                    a = np.asarray(im, dtype=np.float64)
                else:
                    if mode not in ("L", "RGB"):
                        im = im.convert("RGB")
                    if im.mode == "RGB":
                        im = im.convert("L")
                    a = np.asarray(im, dtype=np.float64) / 255.0
    except UserError:
        raise
    except MemoryError:
        raise
    except (Image.DecompressionBombError, Image.DecompressionBombWarning):
        raise err(f"image {path} declares more than {MAX_IMAGE_PIXELS:,} pixels (a decompression bomb?); "
                  f"refused") from None
    except Exception as e:  # Pillow raises many kinds on a damaged file; each is a bad input here
        raise err(f"cannot read image {path}: {one_line(e) or type(e).__name__}") from None
    finally:
        Image.MAX_IMAGE_PIXELS = limit
    if a.ndim != 2:
        raise err(f"image {path} is not a single-plane image (shape {a.shape})")
    if not np.isfinite(a).all():
        raise err(f"image {path} contains NaN or inf")
    if mode == "F":
        lo, hi = 0.0, 1.0
    elif mode.startswith("I"):
        # PIL reports 16-bit PNGs as I;16 (or I for some encoders); they use the 16-bit range.
        lo, hi = 0.0, 65535.0
        a = a / 65535.0
    else:
        lo, hi = 0.0, 1.0
    if a.size and (a.min() < 0.0 or a.max() > 1.0):
        raise err(f"image {path} has values outside its range ({a.min() * (hi - lo) + lo:g} to "
                  f"{a.max() * (hi - lo) + lo:g}; mode {mode} allows {lo:g} to {hi:g})")
    return a.astype(np.float32)



def _jsonable(o):
    """JSON for what ``json`` does not know: NumPy scalars and arrays, paths."""
    if isinstance(o, np.generic):
        return o.item()
    if isinstance(o, np.ndarray):
        return o.tolist()
    if isinstance(o, Path):
        return str(o)
    raise TypeError(f"not JSON serialisable: {type(o).__name__}")


def as_json(obj: Any) -> Any:
    """``obj`` as it comes back from JSON (NumPy values as plain numbers and lists, tuples as lists)."""
    return json.loads(json.dumps(obj, default=_jsonable))


def write_json(path: PathLike, obj: Any, sort_keys: bool = True) -> None:
    """Write ``obj`` as indented JSON, atomically; NumPy values become plain numbers and lists."""
    with atomic_path(path) as tmp:
        with open(tmp, "w") as f:
            json.dump(obj, f, indent=1, sort_keys=sort_keys, default=_jsonable)
            f.write("\n")


RECORD_ERRORS = (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile)  # what reading a damaged record raises


def write_record(path: PathLike, arrays: dict, record: dict) -> None:
    """Host arrays and a JSON ``record`` in one ``.npz`` (the record under ``_meta``), through a temporary
    flushed to disk and renamed into place: the file is whole or absent, even after a crash."""
    with atomic_path(path) as tmp, open(tmp, "wb") as f:
        np.savez(f, _meta=np.array(json.dumps(record, default=_jsonable)), **arrays)
        f.flush()
        os.fsync(f.fileno())


def read_record(path: PathLike) -> tuple[dict, dict]:
    """``(arrays, record)`` of a :func:`write_record` file; one of :data:`RECORD_ERRORS` when it is damaged."""
    with np.load(path, allow_pickle=False) as z:
        arrays = {k: z[k] for k in z.files if k != "_meta"}
        record = json.loads(str(z["_meta"]))
    if not isinstance(record, dict):
        raise ValueError("no record inside")
    return arrays, record


def write_npy(path: PathLike, array: np.ndarray) -> None:
    with atomic_path(path) as tmp:
        with open(tmp, "wb") as f:
            np.save(f, array)


def write_png16(path: PathLike, image: np.ndarray) -> None:
    """Write a 2-D float image in [0, 1] as a 16-bit grayscale PNG (value v -> round(v * 65535))."""
    from PIL import Image

    q = np.clip(np.rint(np.asarray(image, np.float64) * 65535.0), 0, 65535).astype(np.uint16)
    with atomic_path(path) as tmp:
        Image.fromarray(q).save(tmp, format="PNG")


QUANTIZE_CHUNK = 2**22  # values quantize16 rounds at a time (32 MiB of float64 temporaries)


def quantize16(images: np.ndarray, chunk: int = QUANTIZE_CHUNK) -> np.ndarray:
    """Round float images in [0, 1] to the 16-bit grid a PNG stores, as float32.

    Rounded ``chunk`` values at a time, so the float64 temporaries stay small beside the images:
    one float32 result is all the call adds (2 x 7.7 GB of float64 at the challenge's size if done
    in one go).
    """
    x = np.asarray(images)
    out = np.empty(x.shape, np.float32)
    src, dst = x.reshape(-1), out.reshape(-1)  # dst is a view of out (fresh, contiguous)
    for s in range(0, src.size, chunk):
        v = src[s:s + chunk].astype(np.float64)
        dst[s:s + chunk] = np.clip(np.rint(v * 65535.0), 0, 65535) / 65535.0
    return out



# --- paths a command writes --------------------------------------------------------------------

def resolved(path: PathLike) -> Path:
    """``path`` made absolute with every symlink of its existing part followed."""
    return Path(os.path.realpath(os.path.abspath(os.fspath(path))))


def is_within(path: PathLike, folder: PathLike) -> bool:
    """Whether ``path`` is ``folder`` or lies inside it, symlinks followed."""
    p, f = resolved(path), resolved(folder)
    return p == f or f in p.parents


def check_output(path: PathLike, flag: str, kind: str = "file") -> None:
    """Refuse, before any work, an output that cannot be written: a folder where a file is due (or
    the reverse), a fifo, or a parent that is a file or not writable."""
    p = Path(path)
    if os.path.lexists(p) and p.exists():
        if kind == "file" and not p.is_file():
            raise UserError(f"{flag} {p}: is {'a folder' if p.is_dir() else 'not a regular file'}, not a file")
        if kind == "folder" and not p.is_dir():
            raise UserError(f"{flag} {p}: is a file, not a folder")
    q = Path(os.path.abspath(p)).parent
    while not q.exists() and q != q.parent:
        q = q.parent
    if not q.is_dir():
        raise UserError(f"{flag} {p}: {q} is not a folder")
    if not os.access(q, os.W_OK | os.X_OK):
        raise UserError(f"{flag} {p}: cannot write in {q}")
