"""The global permutation with no matching: the slots' correlation graph relabelled onto the grid's.

Boosting (:mod:`empirical.boosting`) estimates the global permutation ``pi`` (original position
j -> aligned slot ``pi[j]``) from matched pairs, so it needs a first matching that is better than
chance. Where the encoder is deep (NeuraCrypt-47) the first matching is near chance and boosting
stalls. This module finds ``pi`` from dataset-level statistics, which need no matching at all.

Neighbouring patches of an image are alike, so across the images the p-sim embeddings of two
nearby positions are correlated. If the encoder keeps even a faint trace of each patch, the two
slots those positions went to are correlated across the encodings too; averaged over N images a
faint trace becomes a clear correlation. :func:`correlation_graph` makes the (P, P) graph of
either side. Relabelling the slots' graph onto the positions' graph is a quadratic assignment
(maximise ``sum C_pos[j, j'] C_slot[pi j, pi j']``), solved by simulated annealing in many
independent chains (:func:`anneal`), each finished by an exchange search (:func:`two_swap`), the
highest objective kept (:func:`recover_perm`). Where images look alike everywhere the graph is
defined only up to the 8 symmetries of the square grid (:func:`grid_symmetries`); the caller tells
them apart by re-matching with each.

Everything here is small (P x P) and runs on the host in float64 whatever the array backend.
"""
from __future__ import annotations

from typing import NamedTuple

import numpy as np

from .assignment import match_encodings, match_margins
from .backend import Array, Namespace, to_numpy
from .boosting import known_perm_scores

GRAPH_STREAM = 0x9E77  # tag mixed into the seed: the annealing draws independently of other stages
CHAINS = 32  # independent annealing runs; the one with the highest objective is kept
STEPS = 1_000_000  # proposed exchanges per run at REFERENCE_PLACES places (all chains step together)
REFERENCE_PLACES = 64  # STEPS is for this many places; steps_for scales it by the square of the ratio
DRAW_BLOCK = 4096  # annealing steps whose random numbers are drawn together
T_START, T_END = 0.5, 0.01  # the temperature's range, in units of one entry's typical contribution
MAX_SWAPS = 5000  # at most this many exchanges in two_swap's local search


class GraphSearch(NamedTuple):
    pi: np.ndarray  # (P,) host: position j -> slot pi[j], the best chain's (before any grid symmetry)
    objective: float  # its objective
    chain_objectives: list[float]  # every chain's objective after its exchange search


class GraphStart(NamedTuple):
    matching: np.ndarray  # (N,) host: the re-matching under the chosen symmetry's permutation
    pi: np.ndarray  # (P,) host: that permutation, position j -> slot pi[j]
    info: dict  # JSON-friendly figures: objectives, each symmetry's median margin, the one chosen
    symmetry_pis: list[np.ndarray]  # the search's permutation under each grid symmetry (pi is one of them)


def correlation_graph(emb: Array) -> np.ndarray:
    """(n, P, E) embeddings -> (P, P): the mean over dimensions of the across-image correlation of two places.

    Each image's mean over places is removed first (what is left is local), then each (place,
    dimension) is standardised over the images. The diagonal is zero.
    """
    a = to_numpy(emb).astype(np.float64)  # (n, P, E)
    a = a - a.mean(axis=1, keepdims=True)
    a = (a - a.mean(axis=0)) / (a.std(axis=0) + 1e-12)
    c = np.einsum("kse,kte->st", a, a) / (a.shape[0] * a.shape[2])  # (P, P)
    np.fill_diagonal(c, 0.0)
    return c


def grid_symmetries(n_places: int) -> list[np.ndarray]:
    """The symmetries of a square grid of ``n_places`` row-major places, each an index map over them.

    Eight (four rotations, each with and without transposition) for a square grid; only the
    identity when ``n_places`` is not a square.
    """
    side = round(np.sqrt(n_places))
    if side * side != n_places:
        return [np.arange(n_places)]
    g = np.arange(n_places).reshape(side, side)
    out = []
    for k in range(4):
        r = np.rot90(g, k)
        out += [r.ravel(), r.T.ravel()]
    return out


def objective(a: np.ndarray, b: np.ndarray, pi: np.ndarray) -> float:
    """sum over j, j' of a[j, j'] b[pi j, pi j']."""
    return float((a * b[np.ix_(pi, pi)]).sum())


def two_swap(a: np.ndarray, b: np.ndarray, pi: np.ndarray, max_swaps: int = MAX_SWAPS) -> np.ndarray:
    """Local search: exchange the slots of the two positions that raise the objective most, while one does.

    For symmetric ``a`` and ``b`` with zero diagonals, exchanging positions u and v changes the
    objective by 2 (G[u, v] + G[v, u] - G[u, u] - G[v, v] + 2 a[u, v] m[u, v]), where m is b read
    through pi and G = a m.
    """
    pi = pi.copy()
    for _ in range(max_swaps):
        m = b[np.ix_(pi, pi)]  # (P, P)
        g = a @ m
        d = g.diagonal()
        delta = 2 * (g + g.T - d[:, None] - d[None, :] + 2 * a * m)  # (P, P) change of each exchange
        np.fill_diagonal(delta, 0.0)
        u, v = np.unravel_index(np.argmax(delta), delta.shape)
        if delta[u, v] <= 1e-12:
            break
        pi[u], pi[v] = pi[v], pi[u]
    return pi


def anneal(a: np.ndarray, b: np.ndarray, chains: int, steps: int, rng: np.random.Generator) -> np.ndarray:
    """Simulated annealing of the quadratic assignment, ``chains`` independent runs stepping together.

    Each step proposes, in every chain, to exchange the slots of two random positions u and v; the
    objective changes by 2 (a[u] - a[v]) . (m[v] - m[u]) without the terms j = u, v (m: b read
    through the chain's permutation). A rise is always taken, a fall with probability
    exp(change / T); T falls geometrically from :data:`T_START` to :data:`T_END` times the typical
    size of one position's contribution. Returns (chains, P) permutations, position j -> slot.
    """
    P = len(a)
    scale = np.abs(a).mean() * np.abs(b).mean() * P
    temps = scale * T_START * (T_END / T_START) ** (np.arange(steps) / steps)  # (steps,)
    pis = np.stack([rng.permutation(P) for _ in range(chains)])  # (R, P)
    c = np.arange(chains)
    for s0 in range(0, steps, DRAW_BLOCK):
        n = min(DRAW_BLOCK, steps - s0)
        us, vs = rng.integers(0, P, (n, chains)), rng.integers(0, P, (n, chains))  # (n, R) each
        logr = np.log(rng.random((n, chains))) * temps[s0:s0 + n, None]  # (n, R): accept when change > T log r
        for u, v, lr in zip(us, vs, logr, strict=True):
            su, sv = pis[c, u], pis[c, v]  # (R,) the slots the two positions hold
            du = a[u] - a[v]  # (R, P)
            dm = b[sv[:, None], pis] - b[su[:, None], pis]  # (R, P) rows v and u of b read through each chain
            delta = 2 * ((du * dm).sum(1) - du[c, u] * dm[c, u] - du[c, v] * dm[c, v])  # (R,)
            take = np.flatnonzero((u != v) & (delta > lr))
            pis[take, u[take]], pis[take, v[take]] = sv[take], su[take]
    return pis


def steps_for(n_places: int) -> int:
    """Annealing steps for ``n_places`` places: :data:`STEPS` scaled by the number of place pairs.

    Measured at 64 places (NeuraCrypt-47, 128 px, patch 16): 1,000,000 steps bring about one chain
    in eight to the true relabelling. The scaling to other sizes is by the count of pairs to
    exchange, not measured.
    """
    return max(1, round(STEPS * (n_places / REFERENCE_PLACES) ** 2))


def recover_perm(c_pos: np.ndarray, c_slot: np.ndarray, seed: int, *, chains: int = CHAINS,
                 steps: int = STEPS) -> GraphSearch:
    """Position j -> slot maximising ``sum C_pos[j, j'] C_slot[pi j, pi j']``.

    :func:`anneal` with ``chains`` chains of ``steps`` proposals from random starts, each finished
    by :func:`two_swap`; the highest objective wins.
    """
    rng = np.random.default_rng([seed, GRAPH_STREAM])
    found = [two_swap(c_pos, c_slot, p) for p in anneal(c_pos, c_slot, chains, steps, rng)]
    objs = [objective(c_pos, c_slot, p) for p in found]
    best = int(np.argmax(objs))
    return GraphSearch(found[best], objs[best], objs)


def graph_start(patch_emb: Array, row_emb: Array, seed: int, xp: Namespace, *, chains: int | None = None,
                steps: int | None = None) -> GraphStart:
    """A global permutation and its re-matching, from the two correlation graphs alone (no matching used).

    ``patch_emb`` (N_o, P, E) and ``row_emb`` (N, P, E) aligned: the p-sim embeddings. The graphs'
    relabelling (:func:`recover_perm`) is tried under each grid symmetry; each gives one p-sim
    re-matching, and the one with the largest median margin is kept (the attacker's own choice).
    ``chains`` and ``steps`` default to :data:`CHAINS` and :func:`steps_for` the number of places.
    """
    c_pos, c_slot = correlation_graph(patch_emb), correlation_graph(row_emb)  # (P, P) each
    chains = CHAINS if chains is None else chains
    steps = steps_for(len(c_pos)) if steps is None else steps
    found = recover_perm(c_pos, c_slot, seed, chains=chains, steps=steps)
    tried = []
    for g in grid_symmetries(len(c_pos)):
        pi = found.pi[g]  # position j takes the slot found for position g[j]
        score = known_perm_scores(patch_emb, row_emb, pi, xp)  # (N_o, N)
        m = match_encodings(score)
        tried.append((pi, m, float(np.median(match_margins(score, m, xp)))))
    chosen = int(np.argmax([t[2] for t in tried]))
    objs = np.array(found.chain_objectives)
    info = {"objective": found.objective, "chains": len(objs), "steps": steps,
            "chain_objectives": found.chain_objectives,
            "chains_at_best": int(np.sum(objs >= found.objective - 1e-9 * max(1.0, abs(found.objective)))),
            "symmetry_margins": [t[2] for t in tried], "symmetry_chosen": chosen}
    return GraphStart(tried[chosen][1], tried[chosen][0], info, [t[0] for t in tried])
