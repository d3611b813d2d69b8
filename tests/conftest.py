"""Shared test helpers: an independent float64 NeuraCrypt encoder (written from the encoder's definition
in ARCHITECTURE.md, not from the package), finite differences, and an import-cycle finder."""
import ast
import os
from pathlib import Path

# The tests run many small matrix products; one BLAS thread per process avoids threads fighting
# over the cores (set before NumPy is first imported).
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

import types

import numpy as np
import pytest
from hypothesis import settings

# Timing deadlines make property tests fail on a busy machine for reasons unrelated to the code.
settings.register_profile("project", deadline=None)
settings.load_profile("project")

BN_EPS = 1e-5


def _relu(a):
    return np.maximum(a, 0.0)


def reference_encode(sd: dict, cfg: dict, images, bn_batch: int) -> np.ndarray:
    """Unshuffled encodings (N, P, D) in float64, straight from state-dict arrays.

    Written without the package: a p x p stride-p convolution summed over (c, i, j), then for
    d >= 0 a ReLU, d blocks of (1x1 convolution, BatchNorm over (batch, patches) with biased
    variance and eps 1e-5, ReLU), + pos, ReLU, Linear. d = -1 is the convolution alone.
    Images are encoded in consecutive BatchNorm batches of ``bn_batch``.
    """
    x = np.asarray(images, np.float64)
    n, c, h, w = x.shape
    p, depth = int(cfg["patch"]), int(cfg["depth"])
    gh, gw = h // p, w // p
    w0 = np.asarray(sd["image_encoder.0.weight"], np.float64)  # (D, C, p, p)
    b0 = np.asarray(sd["image_encoder.0.bias"], np.float64)
    d = w0.shape[0]
    out = []
    for s in range(0, n, bn_batch):
        xb = x[s:s + bn_batch]
        grid = xb.reshape(len(xb), c, gh, p, gw, p)  # grid[b, c, y, i, x, j] = img[b, c, y*p+i, x*p+j]
        conv = np.einsum("dcij,bcyixj->byxd", w0, grid) + b0  # (B, gh, gw, D)
        hid = conv.reshape(len(xb), gh * gw, d)  # row-major patch order
        if depth == -1:
            out.append(hid)
            continue
        hid = _relu(hid)
        for i in range(depth):
            wi = np.asarray(sd[f"image_encoder.{2 + 3 * i}.weight"], np.float64)[:, :, 0, 0]
            bi = np.asarray(sd[f"image_encoder.{2 + 3 * i}.bias"], np.float64)
            gamma = np.asarray(sd[f"image_encoder.{3 + 3 * i}.weight"], np.float64)
            beta = np.asarray(sd[f"image_encoder.{3 + 3 * i}.bias"], np.float64)
            hid = np.einsum("oi,bpi->bpo", wi, hid) + bi
            mean = hid.mean(axis=(0, 1))
            var = ((hid - mean) ** 2).mean(axis=(0, 1))  # biased
            hid = _relu((hid - mean) / np.sqrt(var + BN_EPS) * gamma + beta)
        hid = _relu(hid + np.asarray(sd["pos_embedding"], np.float64)[0])
        hid = np.einsum("oi,bpi->bpo", np.asarray(sd["mixer.1.weight"], np.float64), hid)
        out.append(hid + np.asarray(sd["mixer.1.bias"], np.float64))
    return np.concatenate(out) if out else np.zeros((0, gh * gw, d))


def unshuffle(enc, perms) -> np.ndarray:
    """Undo ``enc[a, r] = unshuffled[a, perms[a, r]]``."""
    enc = np.asarray(enc)
    out = np.empty_like(enc)
    for a in range(len(enc)):
        out[a, perms[a]] = enc[a]
    return out


def assert_close_f32(actual, expected):
    """Float32 agreement with a float64 reference, relative to the scale of the values."""
    actual, expected = np.asarray(actual, np.float64), np.asarray(expected, np.float64)
    assert actual.shape == expected.shape
    scale = max(1.0, float(np.abs(expected).max()))
    np.testing.assert_allclose(actual, expected, rtol=1e-4, atol=2e-5 * scale)


@pytest.fixture
def helpers():
    """The helpers above, for tests that compare against the independent reference."""
    return types.SimpleNamespace(reference_encode=reference_encode, unshuffle=unshuffle,
                                 assert_close_f32=assert_close_f32)


def _small_pairs(n: int = 96, depth: int = 1):
    """``(family, images, targets, groups)``: ``n`` bundled 32-px images encoded without shuffle by a
    small NeuraCrypt-7-style key in two BatchNorm batches, for tests of fitting T' to matched pairs."""
    from empirical.data import bundled_images
    from empirical.encoder import encode, preset, random_key

    fam = preset("neuracrypt-7", image_size=32, patch=8, hidden=16, bn_batch=n // 2, depth=depth)
    imgs = bundled_images(n, 32, seed=8, patch=8)
    targets, _ = encode(imgs, random_key(fam, 9), np, shuffle=False)
    return fam, imgs, targets, np.arange(n) // (n // 2)


@pytest.fixture
def small_pairs():
    """:func:`_small_pairs`, for the extraction and hold-out tests."""
    return _small_pairs


def _central_fd(f, arrays: dict, eps: float = 1e-6) -> dict:
    """Central finite differences of the scalar ``f()`` for every entry of every array in ``arrays``
    (changed in place and restored)."""
    out = {}
    for name, a in arrays.items():
        g = np.zeros_like(a)
        for i in np.ndindex(a.shape):
            old = a[i]
            a[i] = old + eps
            up = f()
            a[i] = old - eps
            down = f()
            a[i] = old
            g[i] = (up - down) / (2 * eps)
        out[name] = g
    return out


@pytest.fixture(scope="session")
def central_fd():
    """:func:`_central_fd`, for the gradient checks (session-scoped, so property tests can use it)."""
    return _central_fd



REPO = Path(__file__).resolve().parent.parent


def _import_cycles(*packages: str) -> list:
    """Import cycles among the modules of ``packages`` (sorted module names per cycle).

    Every import counts, at module level or inside a function: a cycle hidden in a function body
    still ties the two modules together. Read from the source (no module is imported).
    """
    modules = {}
    for pkg in packages:
        for p in sorted((REPO / pkg).rglob("*.py")):
            parts = p.relative_to(REPO).with_suffix("").parts
            modules[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = p
    graph = {}
    for name, p in modules.items():
        base = name.split(".") if p.name == "__init__.py" else name.split(".")[:-1]
        deps = set()
        for node in ast.walk(ast.parse(p.read_text())):
            if isinstance(node, ast.Import):
                deps.update(a.name for a in node.names)
            elif isinstance(node, ast.ImportFrom):
                if node.level:  # relative: up from the importing module's package
                    up = base[:len(base) - node.level + 1]
                    mod = ".".join([*up, node.module] if node.module else up)
                else:
                    mod = node.module
                deps.add(mod)
                deps.update(f"{mod}.{a.name}" for a in node.names)
        graph[name] = {d for d in deps if d in modules and d != name}
    # strongly connected components (Tarjan) with more than one module are the cycles
    index, low, stack, on_stack, cycles = {}, {}, [], set(), []

    def visit(v):
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in graph[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                cycles.append(sorted(comp))

    for v in graph:
        if v not in index:
            visit(v)
    return cycles


@pytest.fixture(scope="session")
def import_cycles():
    """:func:`_import_cycles`, for the tests that keep a package free of import cycles."""
    return _import_cycles
