"""The global permutation with no matching (empirical.graph_perm) on problems whose answer is planted.

Synthetic set-up for the whole search: every image is a smooth random field over a small square
grid of positions (neighbours alike), its p-sim embeddings are noisy functions of that field, and
each encoding stores position j at slot ``pi[j]`` of one hidden global permutation.
"""
import itertools

import numpy as np
import pytest
from scipy.ndimage import gaussian_filter

from empirical.graph_perm import (
    anneal,
    correlation_graph,
    graph_start,
    grid_symmetries,
    objective,
    recover_perm,
    two_swap,
)


def sym(rng, p):
    a = rng.standard_normal((p, p))
    a = a + a.T
    np.fill_diagonal(a, 0.0)
    return a


def fields(seed, n=300, side=4, e=4, noise=0.3):
    """``(patch_emb (n, P, E), row_emb (n, P, E), pi)``: row_emb[k, pi[j]] is patch_emb[k, j] plus noise."""
    rng = np.random.default_rng(seed)
    f = gaussian_filter(rng.standard_normal((n, side, side, e)), sigma=(0, 1.0, 1.0, 0))
    patch = f.reshape(n, side * side, e).astype(np.float32)
    pi = rng.permutation(side * side)
    rows = np.empty_like(patch)
    rows[:, pi] = patch + noise * patch.std() * rng.standard_normal(patch.shape).astype(np.float32)
    return patch, rows, pi


def test_correlation_graph_is_symmetric_with_zero_diagonal_and_sees_neighbours():
    patch, _, _ = fields(0)
    c = correlation_graph(patch)
    assert c.shape == (16, 16) and np.allclose(c, c.T) and np.all(np.diag(c) == 0)
    g = np.arange(16).reshape(4, 4)
    near = [c[g[r, k], g[r, k + 1]] for r in range(4) for k in range(3)]
    far = [c[g[r, 0], g[(r + 2) % 4, 2]] for r in range(4)]
    assert min(near) > max(far)  # neighbours correlate more than positions two steps apart


def test_correlation_graph_ignores_each_images_level_and_each_dimensions_scale():
    patch, _, _ = fields(1)
    rng = np.random.default_rng(0)
    shifted = patch + rng.standard_normal((patch.shape[0], 1, patch.shape[2])).astype(np.float32) * 5
    scaled = shifted * rng.uniform(0.5, 2.0, (1, 1, patch.shape[2])).astype(np.float32)
    np.testing.assert_allclose(correlation_graph(scaled), correlation_graph(patch), atol=1e-4)


def test_grid_symmetries():
    maps = grid_symmetries(16)
    assert len(maps) == 8 and len({m.tobytes() for m in maps}) == 8
    assert all(sorted(m) == list(range(16)) for m in maps)
    assert np.array_equal(maps[0], np.arange(16))
    g = np.arange(16).reshape(4, 4)
    nbrs = {frozenset((int(g[r, k]), int(g[r, k + 1]))) for r in range(4) for k in range(3)}
    nbrs |= {frozenset((int(g[r, k]), int(g[r + 1, k]))) for r in range(3) for k in range(4)}
    for m in maps:  # a symmetry maps grid neighbours to grid neighbours
        assert {frozenset((int(m[a]), int(m[b]))) for a, b in map(tuple, nbrs)} == nbrs
    assert len(grid_symmetries(12)) == 1  # not a square: only the identity


def test_two_swap_ends_where_no_exchange_helps_and_its_deltas_are_exact():
    rng = np.random.default_rng(2)
    a, b = sym(rng, 9), sym(rng, 9)
    start = rng.permutation(9)
    out = two_swap(a, b, start)
    assert sorted(out) == list(range(9)) and objective(a, b, out) >= objective(a, b, start)
    best = objective(a, b, out)
    for u, v in itertools.combinations(range(9), 2):  # brute force: no single exchange raises the objective
        p = out.copy()
        p[u], p[v] = p[v], p[u]
        assert objective(a, b, p) <= best + 1e-9


@pytest.mark.parametrize("seed", [0, 1])
def test_recover_perm_finds_a_planted_relabelling(seed):
    rng = np.random.default_rng(seed)
    a = sym(rng, 12)
    pi = rng.permutation(12)
    b = np.empty_like(a)
    b[np.ix_(pi, pi)] = a  # b read through pi is a: pi is the best relabelling
    found = recover_perm(a, b, seed, chains=4, steps=20_000)
    assert np.array_equal(found.pi, pi)
    assert found.objective == pytest.approx(objective(a, b, pi)) and len(found.chain_objectives) == 4


def test_anneal_returns_permutations_and_is_reproducible():
    rng = np.random.default_rng(3)
    a, b = sym(rng, 10), sym(rng, 10)
    one = anneal(a, b, 3, 2000, np.random.default_rng(5))
    assert one.shape == (3, 10) and all(sorted(p) == list(range(10)) for p in one)
    np.testing.assert_array_equal(one, anneal(a, b, 3, 2000, np.random.default_rng(5)))


@pytest.mark.parametrize("seed", [0, 1])
def test_graph_start_finds_the_global_permutation_and_its_symmetry(seed):
    patch, rows, pi = fields(seed)
    gs = graph_start(patch, rows, seed, np, chains=8, steps=30_000)
    assert np.array_equal(gs.pi, pi)  # the right one of the 8 symmetries, chosen by the margins alone
    assert np.mean(gs.matching == np.arange(len(patch))) > 0.9
    margins = gs.info["symmetry_margins"]
    assert len(margins) == 8 and int(np.argmax(margins)) == gs.info["symmetry_chosen"]


# --- the boost stage's rule: when the graph start is tried, and which start is kept ----------------

def stage_context(patch, rows, first, mode):
    from types import SimpleNamespace

    from empirical.pipeline import AttackConfig
    from empirical.stages.base import Context

    game = SimpleNamespace(config=SimpleNamespace(shuffle=True, n_patches=patch.shape[1]))
    return Context(game, AttackConfig(graph_search=mode), np, patch_emb=patch, row_emb=rows, first=first)


@pytest.fixture
def quick_graph(monkeypatch):
    import empirical.graph_perm as gp

    monkeypatch.setattr(gp, "CHAINS", 8)
    monkeypatch.setattr(gp, "STEPS", 30_000)


def test_boost_stage_tries_the_graph_when_boosting_ends_unsure(quick_graph, monkeypatch):
    """A boosting that cannot leave a random first matching (median margin <= 0) makes the stage try
    the correlation graph, whose start it keeps because its margins are larger."""
    from empirical.boosting import BoostResult, estimate_global_perm
    from empirical.stages import boost as stage

    patch, rows, _ = fields(0)
    first = np.random.default_rng(0).permutation(len(patch))
    stuck = lambda pe, re, m, xp, *a, **k: BoostResult(m, estimate_global_perm(pe, re, m, xp), 1)  # noqa: E731
    monkeypatch.setattr(stage, "boost", stuck)
    (m, _), res = stage.compute(stage_context(patch, rows, first, "auto"))
    assert res.info["median_margin_from_first"] <= stage.GRAPH_MARGIN
    assert res.info["start"] == "correlation graph" and "graph" in res.info
    assert res.info["median_margin"] == res.info["graph"]["median_margin"] > res.info["median_margin_from_first"]
    assert np.mean(m == np.arange(len(patch))) > 0.9


def test_boost_stage_skips_the_graph_when_boosting_is_sure_or_told_to(quick_graph):
    from empirical.stages import boost as stage

    patch, rows, pi = fields(1)
    right = np.arange(len(patch))
    (m, got), res = stage.compute(stage_context(patch, rows, right, "auto"))
    assert res.info["median_margin_from_first"] > stage.GRAPH_MARGIN and "graph" not in res.info
    assert res.info["start"] == "first matching" and "no graph search" in res.info["start_reason"]
    assert np.array_equal(got, pi) and np.array_equal(m, right)
    first = np.random.default_rng(1).permutation(len(patch))
    _, never = stage.compute(stage_context(patch, rows, first, "never"))
    assert "graph" not in never.info and never.info["start_reason"] == "graph search off"
    _, always = stage.compute(stage_context(patch, rows, right, "always"))
    kept = always.info["median_margin"]
    assert "graph" in always.info and kept == max(always.info["median_margin_from_first"],
                                                  always.info["graph"]["median_margin"])
    with pytest.raises(ValueError, match="graph_search"):
        stage.compute(stage_context(patch, rows, right, "sometimes"))
