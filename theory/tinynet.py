"""A NeuraCrypt-style keyed network on a few pixels, attacked in the games of Definition 1.

The key is the network's random weights, drawn as in the NeuraCrypt code
(uniform ``+-1/sqrt(fan_in)`` weights and biases, standard normal positional
embedding); each call also shuffles the output rows with fresh coins, as §1.1
describes.  For an image ``x`` cut into ``P`` patches::

    Enc(x, K) = shuffle( ReLU( ReLU(patches(x) W0^T + b0) + pos ) W1^T + b1 )

(the paper's depth-2 encoder, no BatchNorm).  Keys are continuous, so the
advantages here are Monte Carlo estimates with confidence intervals
(:func:`theory.games.monte_carlo_advantage`; advantage as in
:mod:`theory.games`).  Two concrete adversaries:

* CIA: ask for encodings of ``x0`` and ``x1`` with one pixel nudged (allowed:
  they are other points) and answer with whichever is nearer to the challenge
  under the best row matching.  The encoder is continuous, so this wins almost
  always: the attack [CDG+21] describes for unkeyed encodings carries over.
* NIA: the encoding's energy (squared norm, blind to the shuffle), thresholded
  at a point calibrated on keys the adversary draws itself from the public key
  distribution.  A dark image gives small first-layer activations, so its
  encodings carry less energy on average than a bright one's, whatever the key;
  the random positional embedding drowns most of this, so the advantage is
  small but clearly positive.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.optimize import linear_sum_assignment

from .games import KeyedEncoding


@dataclass(frozen=True)
class TinyNetConfig:
    """Shape of the tiny encoder.

    Attributes
    ----------
    side : int
        Images are ``side x side`` grayscale in ``[0, 1]``.
    patch : int
        Patch side ``p``; ``P = (side / p)^2`` patches.
    hidden : int
        Hidden width ``D``.
    """

    side: int = 4
    patch: int = 2
    hidden: int = 8

    @property
    def patches(self) -> int:
        return (self.side // self.patch) ** 2


@dataclass(frozen=True)
class TinyNetKey:
    """Weights of one encoder: ``w0 (D, p*p)``, ``b0 (D,)``, ``pos (P, D)``, ``w1 (D, D)``, ``b1 (D,)``."""

    w0: np.ndarray
    b0: np.ndarray
    pos: np.ndarray
    w1: np.ndarray
    b1: np.ndarray


def to_patches(image: np.ndarray, patch: int) -> np.ndarray:
    """Cut an image into flattened patches in row-major grid order: ``(P, p*p)``."""
    side = image.shape[0]
    grid = side // patch
    return image.reshape(grid, patch, grid, patch).transpose(0, 2, 1, 3).reshape(grid * grid, patch * patch)


class TinyNeuraCrypt(KeyedEncoding):
    """The keyed network above; ``encode`` needs ``rng`` for its row shuffle."""

    def __init__(self, config: TinyNetConfig = TinyNetConfig()):
        self.config = config

    def sample_key(self, rng: np.random.Generator) -> TinyNetKey:
        cfg = self.config
        fan0 = cfg.patch * cfg.patch
        bound0, bound1 = 1 / np.sqrt(fan0), 1 / np.sqrt(cfg.hidden)
        return TinyNetKey(
            w0=rng.uniform(-bound0, bound0, (cfg.hidden, fan0)),
            b0=rng.uniform(-bound0, bound0, cfg.hidden),
            pos=rng.standard_normal((cfg.patches, cfg.hidden)),
            w1=rng.uniform(-bound1, bound1, (cfg.hidden, cfg.hidden)),
            b1=rng.uniform(-bound1, bound1, cfg.hidden),
        )

    def encode(self, x, key: TinyNetKey, rng: np.random.Generator | None = None) -> np.ndarray:
        if rng is None:
            raise ValueError("the row shuffle needs fresh coins")
        rows = to_patches(np.asarray(x, dtype=float), self.config.patch)  # (P, p*p)
        hidden = np.maximum(rows @ key.w0.T + key.b0, 0.0)  # (P, D)
        out = np.maximum(hidden + key.pos, 0.0) @ key.w1.T + key.b1  # (P, D)
        return out[rng.permutation(len(out))]


def mean_brightness_concept(image) -> int:
    """Label 1 iff the mean pixel exceeds 1/2."""
    return int(np.mean(image) > 0.5)


def matched_distance(a: np.ndarray, b: np.ndarray) -> float:
    """Squared distance between two encodings after the best row matching."""
    cost = ((a[:, None, :] - b[None, :, :]) ** 2).sum(axis=-1)  # (P, P)
    rows, cols = linear_sum_assignment(cost)
    return float(cost[rows, cols].sum())


def nudged(image: np.ndarray, delta: float) -> np.ndarray:
    """``image`` with its first pixel moved by ``delta`` towards the middle of ``[0, 1]``."""
    out = np.array(image, dtype=float)
    out.flat[0] += delta if out.flat[0] < 0.5 else -delta
    return out


@dataclass(frozen=True)
class NearbyQueryAdversary:
    """CIA adversary: compare the challenge with encodings of nudged copies of ``x0`` and ``x1``."""

    x0: np.ndarray
    x1: np.ndarray
    delta: float = 1e-2

    def choose(self):
        return self.x0, self.x1

    def guess(self, challenge, oracle):
        d0 = matched_distance(challenge, oracle(nudged(self.x0, self.delta)))
        d1 = matched_distance(challenge, oracle(nudged(self.x1, self.delta)))
        return int(d1 < d0)


def energy(encoding: np.ndarray) -> float:
    """Squared norm of an encoding: invariant to the row shuffle."""
    return float((np.asarray(encoding) ** 2).sum())


@dataclass(frozen=True)
class EnergyThresholdAdversary:
    """NIA adversary: threshold :func:`energy` of the challenge.

    Attributes
    ----------
    x0, x1 : numpy.ndarray
        Challenge pair.
    threshold : float
        Guess 1 iff ``sign * (energy - threshold) > 0``.
    sign : int
        ``+1`` or ``-1``.
    """

    x0: np.ndarray
    x1: np.ndarray
    threshold: float
    sign: int

    def choose(self):
        return self.x0, self.x1

    def guess(self, challenge, oracle):
        return int(self.sign * (energy(challenge) - self.threshold) > 0)


def calibrate_energy(
    encoder: TinyNeuraCrypt, x0: np.ndarray, x1: np.ndarray, samples: int, rng: np.random.Generator
) -> EnergyThresholdAdversary:
    """Pick the threshold and direction with the best advantage on self-drawn keys.

    Uses only the public key distribution and the adversary's own coins,
    never the game's key.
    """
    s0 = np.array([energy(e) for e in encoder.encode_fresh([x0] * samples, rng)])
    s1 = np.array([energy(e) for e in encoder.encode_fresh([x1] * samples, rng)])
    candidates = np.sort(np.concatenate([s0, s1]))
    # Advantage of "guess 1 iff spread > t" is P1[s > t] - P0[s > t].
    above0 = samples - np.searchsorted(np.sort(s0), candidates, side="right")
    above1 = samples - np.searchsorted(np.sort(s1), candidates, side="right")
    gains = (above1 - above0) / samples
    best = int(np.argmax(np.abs(gains)))
    return EnergyThresholdAdversary(x0, x1, float(candidates[best]), 1 if gains[best] >= 0 else -1)
