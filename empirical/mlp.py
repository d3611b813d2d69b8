"""A small multilayer perceptron with hand-written gradients, and Adam with a weight average.

Used for p-sim's two towers (paper §2.1.1). No autodiff framework: forward passes keep what the
backward pass needs, and the tests check every gradient against central finite differences.
"""
from __future__ import annotations

import itertools

import numpy as np


def init_mlp(sizes, rng: np.random.Generator, xp=np) -> dict:
    """Weights of Linear-ReLU-...-Linear with layer sizes ``sizes``; He-uniform initialisation."""
    params = {}
    for i, (fan_in, fan_out) in enumerate(itertools.pairwise(sizes)):
        bound = np.sqrt(6.0 / fan_in)
        params[f"W{i}"] = xp.asarray(rng.uniform(-bound, bound, (fan_in, fan_out)).astype(np.float32))
        params[f"b{i}"] = xp.zeros(fan_out, dtype=xp.float32)
    return params


def n_layers(params: dict) -> int:
    return sum(1 for k in params if k.startswith("W"))


def mlp_forward(params: dict, x, xp):
    """Forward pass ending in an L2-normalised embedding. Returns ``(embedding, cache)``."""
    acts = [x]
    h = x
    L = n_layers(params)
    for i in range(L):
        h = h @ params[f"W{i}"] + params[f"b{i}"]
        if i < L - 1:
            h = xp.maximum(h, 0)
        acts.append(h)
    norm = xp.sqrt((h * h).sum(axis=-1, keepdims=True)) + 1e-8
    return h / norm, (acts, norm)


def mlp_backward(params: dict, cache, d_emb, xp) -> dict:
    """Gradients of the loss with respect to every weight, given d loss / d embedding."""
    acts, norm = cache
    y = acts[-1] / norm
    d = (d_emb - y * (y * d_emb).sum(axis=-1, keepdims=True)) / norm  # through the L2 normalisation
    grads = {}
    for i in reversed(range(n_layers(params))):
        grads[f"W{i}"] = acts[i].T @ d
        grads[f"b{i}"] = d.sum(axis=0)
        if i > 0:
            d = (d @ params[f"W{i}"].T) * (acts[i] > 0)
    return grads


class Adam:
    """Adam (Kingma & Ba) on a dict of arrays, with an exponential moving average of the weights."""

    def __init__(self, params: dict, xp, lr=1e-3, beta1=0.9, beta2=0.999, eps=1e-8, ema=0.99):
        self.xp, self.lr, self.b1, self.b2, self.eps, self.ema_decay = xp, lr, beta1, beta2, eps, ema
        self.m = {k: xp.zeros_like(v) for k, v in params.items()}
        self.v = {k: xp.zeros_like(v) for k, v in params.items()}
        self.ema = {k: v.copy() for k, v in params.items()}
        self.t = 0

    def step(self, params: dict, grads: dict, lr=None) -> None:
        """Update ``params`` in place, then the weight average."""
        lr = self.lr if lr is None else lr
        self.t += 1
        c1, c2 = 1 - self.b1 ** self.t, 1 - self.b2 ** self.t
        for k, g in grads.items():
            self.m[k] = self.b1 * self.m[k] + (1 - self.b1) * g
            self.v[k] = self.b2 * self.v[k] + (1 - self.b2) * g * g
            params[k] -= lr * (self.m[k] / c1) / (self.xp.sqrt(self.v[k] / c2) + self.eps)
            self.ema[k] = self.ema_decay * self.ema[k] + (1 - self.ema_decay) * params[k]
