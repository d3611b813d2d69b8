"""A small multilayer perceptron with hand-written gradients, and Adam with a weight average.

Used for p-sim's two towers (paper §2.1.1). No autodiff framework: forward passes keep what the
backward pass needs, and the tests check every gradient against central finite differences.
"""
from __future__ import annotations

import itertools
from collections.abc import Sequence
from typing import NamedTuple

import numpy as np

from .backend import Array, Namespace

Params = dict[str, Array]  # named weights (``W0``, ``b0``, ...) on the run's namespace

NORM_EPS = 1e-8  # added to the output's norm so an all-zero output does not divide by zero


class MlpCache(NamedTuple):
    """What the backward pass needs from the forward pass."""

    acts: list[Array]  # the input, then each layer's output (after its ReLU, if any)
    norm: Array  # (n, 1) the last layer's output norm (plus NORM_EPS)


class MlpOutput(NamedTuple):
    embedding: Array  # (n, E) unit-length rows
    cache: MlpCache


def init_mlp(sizes: Sequence[int], rng: np.random.Generator, xp: Namespace = np) -> Params:
    """Weights of Linear-ReLU-...-Linear with layer sizes ``sizes``; He-uniform initialisation."""
    params = {}
    for i, (fan_in, fan_out) in enumerate(itertools.pairwise(sizes)):
        bound = np.sqrt(6.0 / fan_in)
        params[f"W{i}"] = xp.asarray(rng.uniform(-bound, bound, (fan_in, fan_out)).astype(np.float32))
        params[f"b{i}"] = xp.zeros(fan_out, dtype=xp.float32)
    return params


def n_layers(params: Params) -> int:
    return sum(1 for k in params if k.startswith("W"))


def mlp_forward(params: Params, x: Array, xp: Namespace) -> MlpOutput:
    """Forward pass ending in an L2-normalised embedding: ``(embedding, cache)``."""
    acts = [x]
    h = x
    L = n_layers(params)
    for i in range(L):
        h = h @ params[f"W{i}"]  # a new (n, width), then updated in place
        h += params[f"b{i}"]
        if i < L - 1:
            h = xp.maximum(h, 0, out=h)
        acts.append(h)
    norm = xp.sqrt((h * h).sum(axis=-1, keepdims=True)) + NORM_EPS
    return MlpOutput(h / norm, MlpCache(acts, norm))


def mlp_backward(params: Params, cache: MlpCache, d_emb: Array, xp: Namespace) -> Params:
    """Gradients of the loss with respect to every weight, given d loss / d embedding."""
    acts, norm = cache
    y = acts[-1] / norm  # the embedding h / (|h| + NORM_EPS)
    # Through the normalisation: d(h / (r + e)) = dh / (r + e) - h (h . dh) / (r (r + e)^2), r = |h|.
    # The second term's r (not r + e) matters where |h| is small; where h = 0 the term is 0 (y = 0).
    r_over_n = xp.maximum(norm - NORM_EPS, NORM_EPS) / norm  # (n, 1) r / (r + e)
    d = (d_emb - y * (y * d_emb).sum(axis=-1, keepdims=True) / r_over_n) / norm
    grads = {}
    for i in reversed(range(n_layers(params))):
        grads[f"W{i}"] = acts[i].T @ d
        grads[f"b{i}"] = d.sum(axis=0)
        if i > 0:
            d = d @ params[f"W{i}"].T
            d *= acts[i] > 0
    return grads


class Adam:
    """Adam (Kingma & Ba) on a dict of arrays, keeping an exponential moving average of the weights.

    ``weight_average`` starts at the initial weights and after each step moves to
    ``average_decay * average + (1 - average_decay) * weights``; ``average_decay = 0`` makes it
    follow the weights exactly.
    """

    def __init__(self, params: Params, xp: Namespace, lr: float = 1e-3, beta1: float = 0.9, beta2: float = 0.999,
                 eps: float = 1e-8, average_decay: float = 0.99) -> None:
        self.xp, self.lr, self.b1, self.b2, self.eps = xp, lr, beta1, beta2, eps
        self.average_decay = average_decay
        self.m = {k: xp.zeros_like(v) for k, v in params.items()}
        self.v = {k: xp.zeros_like(v) for k, v in params.items()}
        self.weight_average = {k: v.copy() for k, v in params.items()}
        self.t = 0

    def step(self, params: Params, grads: Params, lr: float | None = None) -> None:
        """Update ``params`` in place, then the weight average."""
        lr = self.lr if lr is None else lr
        self.t += 1
        c1, c2 = 1 - self.b1 ** self.t, 1 - self.b2 ** self.t
        decay = self.average_decay
        for k, g in grads.items():
            m, v = self.m[k], self.v[k]  # updated in place: the same values as b1 * m + (1 - b1) * g, ...
            m *= self.b1
            m += (1 - self.b1) * g
            v *= self.b2
            v += (1 - self.b2) * g * g
            params[k] -= lr * (m / c1) / (self.xp.sqrt(v / c2) + self.eps)
            if decay == 0:  # the average is the weights themselves
                self.weight_average[k] = params[k]
            else:
                self.weight_average[k] = decay * self.weight_average[k] + (1 - decay) * params[k]
