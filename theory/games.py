"""Keyed encodings and the NIA / CIA games of Definition 1 (paper §3).

Statement implemented
---------------------
A keyed encoding maps a point ``x`` and a key ``K`` to ``Enc(x, K)``; keys are
drawn from a public distribution (uniform over an explicit finite list for the
exact computations here).  A concept ``c`` labels points with 0 or 1.

* NIA game: the adversary names ``x0, x1`` with ``c(x0) = c(x1)``; a bit ``b``
  and a key ``K`` are drawn uniformly and independently; the adversary sees
  ``Enc(x_b, K)`` and outputs ``b'``.
* CIA game: as NIA, and the adversary may also ask ``Enc(., K)`` under the same
  key on any point other than ``x0, x1``, adaptively and as often as it likes.

Advantage, the one definition used in this package::

    Adv = Pr[b' = 1 | b = 1] - Pr[b' = 1 | b = 0] = 2 Pr[b' = b] - 1,

kept signed; an encoding is eps-private when ``|Adv| <= eps`` for every
adversary.  The paper's ``|Pr[b' = b] - 1/2|`` is ``|Adv| / 2``; the two vanish
together, so "0-private" means the same under both.

Exact computation enumerates every key.  For a fixed query set ``Q`` the
adversary's view is ``(Enc(x_b, K), Enc(q, K) for q in Q)``; with a uniform bit
the best guessing rule's advantage is the total variation distance between the
two view laws and every rule's advantage lies in ``[-TV, TV]`` (checked against
all deterministic rules by :func:`rule_advantages_bruteforce`; randomised rules
are mixtures of deterministic ones).  An adaptive adversary's whole view is a
function of the challenge and the answers on ``X \\ {x0, x1}``, so the full
query set dominates every adaptive strategy.

Encodings in the enumerated case must be deterministic given the key; the
Monte Carlo game also accepts randomised encoders (fresh coins per call).
"""

from __future__ import annotations

import abc
import itertools
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from functools import cached_property
from typing import Any, Protocol

import numpy as np
import sympy
from scipy.stats import binomtest


class ForbiddenQuery(ValueError):
    """The CIA oracle was asked for a challenge point, or the NIA game for anything."""


class KeyedEncoding(abc.ABC):
    """``Enc(x, K)`` with a public key distribution.

    Subclasses draw keys with :meth:`sample_key` and encode with :meth:`encode`;
    ``rng`` supplies the encoder's own coins for randomised encodings.
    """

    @abc.abstractmethod
    def sample_key(self, rng: np.random.Generator) -> Any:
        """Draw a key from the key distribution."""

    @abc.abstractmethod
    def encode(self, x: Any, key: Any, rng: np.random.Generator | None = None) -> Any:
        """Encode one point under ``key``."""

    def encode_fresh(self, xs: Sequence[Any], rng: np.random.Generator) -> list[Any]:
        """Encode each point of ``xs`` under its own independently drawn key."""
        return [self.encode(x, self.sample_key(rng), rng) for x in xs]


class FiniteKeyedEncoding(KeyedEncoding):
    """A deterministic keyed encoding of ``{0, ..., N-1}`` with a finite uniform key list.

    Attributes
    ----------
    domain_size : int
        ``N``.
    """

    domain_size: int

    @abc.abstractmethod
    def keys(self) -> Sequence[Any]:
        """Every key; the key distribution is uniform over this sequence."""

    def sample_key(self, rng: np.random.Generator) -> Any:
        keys = self.keys()
        return keys[int(rng.integers(len(keys)))]

    @cached_property
    def code_table(self) -> np.ndarray:
        """``(n_keys, N)`` integer codes: equal codes mean equal encodings.

        When every encoding is a domain point the codes are those points, so a
        classifier indexed by domain point applies to codes directly; other
        encodings are numbered in order of first appearance.
        """
        encodings = [[self.encode(x, key) for x in range(self.domain_size)] for key in self.keys()]
        flat = [e for row in encodings for e in row]
        if all(isinstance(e, (int, np.integer)) and 0 <= e < self.domain_size for e in flat):
            return np.asarray(encodings, dtype=np.int64)  # (n_keys, N)
        codes: dict[Any, int] = {}
        return np.asarray(
            [[codes.setdefault(e, len(codes)) for e in row] for row in encodings], dtype=np.int64
        )


class Adversary(Protocol):
    """An adversary of Definition 1: it names the pair, then guesses the bit."""

    def choose(self) -> tuple[Any, Any]:
        """Return the challenge pair ``(x0, x1)``."""

    def guess(self, challenge: Any, oracle: Callable[[Any], Any]) -> int:
        """Return ``b'`` from the challenge encoding and the (CIA) oracle."""


def _same_point(a: Any, b: Any) -> bool:
    if isinstance(a, (int, np.integer)) and isinstance(b, (int, np.integer)):
        return int(a) == int(b)
    return bool(np.array_equal(np.asarray(a), np.asarray(b)))


@dataclass(frozen=True)
class Oracle:
    """``Enc(., K)`` under the game's key, refusing the challenge points.

    Parameters
    ----------
    encoding : KeyedEncoding
        The encoding under attack.
    key : object
        The game's key.
    forbidden : tuple
        Points the oracle refuses; ``None`` refuses every query (NIA game).
    rng : numpy.random.Generator or None
        Coins for randomised encoders.
    """

    encoding: KeyedEncoding
    key: Any
    forbidden: tuple[Any, ...] | None
    rng: np.random.Generator | None = None

    def __call__(self, x: Any) -> Any:
        if self.forbidden is None:
            raise ForbiddenQuery("the NIA game has no encoding oracle")
        if any(_same_point(x, f) for f in self.forbidden):
            raise ForbiddenQuery("the CIA oracle refuses the challenge points")
        return self.encoding.encode(x, self.key, self.rng)


def _checked_pair(adversary: Adversary, concept: Callable[[Any], int]) -> tuple[Any, Any]:
    x0, x1 = adversary.choose()
    if concept(x0) != concept(x1):
        raise ValueError("Definition 1 requires c(x0) = c(x1)")
    return x0, x1


def play(
    encoding: KeyedEncoding,
    adversary: Adversary,
    concept: Callable[[Any], int],
    game: str,
    rng: np.random.Generator,
) -> tuple[int, int]:
    """Play one NIA or CIA game.

    Parameters
    ----------
    encoding : KeyedEncoding
        The encoding under attack.
    adversary : Adversary
        The adversary.
    concept : callable
        The concept ``c``; the pair must be label-equal.
    game : {"nia", "cia"}
        Which game of Definition 1.
    rng : numpy.random.Generator
        Source of ``b``, the key and the encoder's coins.

    Returns
    -------
    tuple of int
        ``(b, b')``.
    """
    x0, x1 = _checked_pair(adversary, concept)
    b = int(rng.integers(2))
    key = encoding.sample_key(rng)
    challenge = encoding.encode((x0, x1)[b], key, rng)
    oracle = Oracle(encoding, key, (x0, x1) if game == "cia" else None, rng)
    return b, int(adversary.guess(challenge, oracle))


@dataclass(frozen=True)
class AdvantageEstimate:
    """Monte Carlo advantage with a Clopper-Pearson interval.

    Attributes
    ----------
    advantage : float
        ``2 * wins / trials - 1``.
    low, high : float
        Interval for the advantage at level ``confidence``.
    trials : int
        Games played.
    confidence : float
        Coverage of the interval.
    """

    advantage: float
    low: float
    high: float
    trials: int
    confidence: float

    def contains(self, value: float) -> bool:
        """Whether ``value`` lies in the interval."""
        return self.low <= float(value) <= self.high


def monte_carlo_advantage(
    encoding: KeyedEncoding,
    adversary: Adversary,
    concept: Callable[[Any], int],
    game: str,
    trials: int,
    rng: np.random.Generator,
    confidence: float = 0.99,
) -> AdvantageEstimate:
    """Estimate the advantage by playing ``trials`` independent games.

    The number of wins is ``Binomial(trials, (1 + Adv) / 2)``; its exact
    Clopper-Pearson interval maps to an interval for ``Adv``.
    """
    wins = sum(b == g for b, g in (play(encoding, adversary, concept, game, rng) for _ in range(trials)))
    ci = binomtest(wins, trials).proportion_ci(confidence_level=confidence, method="exact")
    return AdvantageEstimate(2 * wins / trials - 1, 2 * ci.low - 1, 2 * ci.high - 1, trials, confidence)


def exact_advantage(
    encoding: FiniteKeyedEncoding,
    adversary: Adversary,
    concept: Callable[[Any], int],
    game: str,
) -> sympy.Rational:
    """Exact advantage of a deterministic adversary, enumerating every key.

    Returns
    -------
    sympy.Rational
        ``Pr[b'=1 | b=1] - Pr[b'=1 | b=0]``.
    """
    x0, x1 = _checked_pair(adversary, concept)
    keys = encoding.keys()
    says_one = [0, 0]
    for key in keys:
        oracle = Oracle(encoding, key, (x0, x1) if game == "cia" else None)
        for b, xb in enumerate((x0, x1)):
            says_one[b] += int(adversary.guess(encoding.encode(xb, key), oracle)) == 1
    return sympy.Rational(says_one[1] - says_one[0], len(keys))


def view_counts(table: np.ndarray, x0: int, x1: int, query: Sequence[int]) -> tuple[np.ndarray, np.ndarray]:
    """Counts of each possible view under ``b = 0`` and ``b = 1``.

    Parameters
    ----------
    table : numpy.ndarray
        ``(n_keys, N)`` code table of a finite encoding.
    x0, x1 : int
        Challenge points.
    query : sequence of int
        The points whose encodings the adversary learns.

    Returns
    -------
    tuple of numpy.ndarray
        Aligned integer counts over the union of views seen under either bit.
    """
    columns = [x0, *query]
    radix = int(table.max()) + 1
    n = len(table)
    if radix ** len(columns) < 2**62:
        # One integer per view: a mixed-radix number, faster than row-wise unique.
        weights = radix ** np.arange(len(columns), dtype=np.int64)
        view0 = table[:, columns] @ weights  # (n_keys,)
        view1 = table[:, [x1, *query]] @ weights
        _, inverse = np.unique(np.concatenate([view0, view1]), return_inverse=True)
    else:
        views = np.concatenate([table[:, columns], table[:, [x1, *query]]])  # (2 n_keys, 1 + |Q|)
        _, inverse = np.unique(views, axis=0, return_inverse=True)
    inverse = inverse.reshape(-1)
    n_views = int(inverse.max()) + 1
    return np.bincount(inverse[:n], minlength=n_views), np.bincount(inverse[n:], minlength=n_views)


def optimal_advantage(table: np.ndarray, x0: int, x1: int, query: Sequence[int]) -> sympy.Rational:
    """Best advantage over all guessing rules with query set ``query``: the TV distance."""
    c0, c1 = view_counts(table, x0, x1, query)
    return sympy.Rational(int(np.abs(c1 - c0).sum()), 2 * len(table))


def rule_advantages_bruteforce(
    table: np.ndarray, x0: int, x1: int, query: Sequence[int], max_views: int = 16
) -> tuple[sympy.Rational, sympy.Rational, int]:
    """Largest and smallest advantage over every deterministic guessing rule.

    A deterministic rule is any map from views to ``{0, 1}``; all
    ``2^V`` of them are enumerated.

    Returns
    -------
    tuple
        ``(max advantage, min advantage, number of views V)``.
    """
    c0, c1 = view_counts(table, x0, x1, query)
    n_views = len(c0)
    if n_views > max_views:
        raise ValueError(f"{n_views} views exceed max_views={max_views}")
    rules = (np.arange(2**n_views)[:, None] >> np.arange(n_views)) & 1  # (2^V, V)
    says_one_diff = rules @ (c1 - c0)  # (2^V,)
    n = len(table)
    return sympy.Rational(int(says_one_diff.max()), n), sympy.Rational(int(says_one_diff.min()), n), n_views


def all_labelings(size: int) -> Iterator[tuple[int, ...]]:
    """Every concept on a domain of ``size`` points, as a label tuple."""
    return itertools.product((0, 1), repeat=size)


def same_label_pairs(labels: Sequence[int]) -> Iterator[tuple[int, int]]:
    """Every challenge pair ``x0 < x1`` allowed by Definition 1 (swapping is symmetric)."""
    return ((a, b) for a, b in itertools.combinations(range(len(labels)), 2) if labels[a] == labels[b])


def query_sets(size: int, x0: int, x1: int) -> Iterator[tuple[int, ...]]:
    """Every subset of ``{0..size-1} \\ {x0, x1}`` (``()`` is the NIA game)."""
    rest = [x for x in range(size) if x not in (x0, x1)]
    return itertools.chain.from_iterable(itertools.combinations(rest, r) for r in range(len(rest) + 1))


class TabulatedEncoding(FiniteKeyedEncoding):
    """Any finite deterministic encoding, given by its table of encodings.

    Parameters
    ----------
    table : array_like
        ``(n_keys, N)``: ``table[k, x]`` is the encoding of ``x`` under key ``k``;
        keys are uniform over the rows (repeat a row to weight it).
    """

    def __init__(self, table):
        self._table = np.asarray(table, dtype=np.int64)
        self.domain_size = self._table.shape[1]

    def keys(self):
        return range(len(self._table))

    def encode(self, x, key, rng=None):
        return int(self._table[key, x])
