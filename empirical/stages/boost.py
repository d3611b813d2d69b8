"""Stage ``boost``: the global permutation and re-matching, iterated (paper §2.2.2-§2.2.3).

The global permutation (which slot holds which patch position) is the best assignment of
positions to slots under p-sim summed over the matched pairs; with it, re-matching is one dense
product. Rounds are cross-fitted over two halves of the positions so that a wrong permutation
cannot vote for itself, and repeat until the matching is stable.

Boosting needs a first matching better than chance. When the matching it ends with has a median
margin of at most :data:`GRAPH_MARGIN` (most encodings are not matched to the original that scores
them highest: boosting found no permutation it can trust), or when ``graph_search`` says
``"always"``, a second start is made from the global permutation found with no matching at all
(:mod:`empirical.graph_perm`), boosted the same way, and the run whose matching has the larger
median margin is kept. The stage reports which start it kept and why.
"""
from __future__ import annotations

import sys
from collections import Counter

import numpy as np

from .. import assignment, boosting, candidate_graph, graph_perm
from ..boosting import boost, median_margin, rematch
from ..graph_perm import graph_start
from .base import Context, Stage, StageResult, register

GRAPH_MARGIN = 0.0  # boosting's median margin at or below which the graph start is tried ("auto")
GRAPH_SEARCH = ("auto", "always", "never")  # the values of AttackConfig.graph_search


def _boost_from(ctx: Context, start: np.ndarray, solves: Counter
                ) -> tuple[boosting.BoostResult, list[np.ndarray], float]:
    """Boost from the matching ``start``: ``(result, each round's matching, the result's median margin)``."""
    history: list[np.ndarray] = []
    res = boost(ctx.patch_emb, ctx.row_emb, start, ctx.xp, ctx.cfg.boost_rounds, ctx.cfg.seed,
                on_round=lambda i, mm, p: history.append(mm), solves=solves)
    return res, history, median_margin(ctx.patch_emb, ctx.row_emb, res.pi, res.matching, ctx.xp)


def compute(ctx: Context) -> tuple[tuple[np.ndarray, np.ndarray], StageResult]:
    if not ctx.game.config.shuffle:  # public: positions are not permuted, pi is the identity
        pi = np.arange(ctx.game.config.n_patches)
        solves = Counter()
        m = rematch(ctx.patch_emb, ctx.row_emb, pi, ctx.xp, solves=solves)
        return (m, pi), StageResult("boost", matching=m, info={"rounds": 1, "solves": dict(solves)},
                                    arrays={"history": np.array([m])})
    mode = ctx.cfg.graph_search
    if mode not in GRAPH_SEARCH:
        raise ValueError(f"graph_search must be one of {GRAPH_SEARCH}, not {mode!r}")
    solves = Counter()  # how each re-matching was solved: densely or on the candidate graph
    res, history, margin = _boost_from(ctx, ctx.first, solves)
    info = {"rounds": res.rounds, "median_margin": margin, "start": "first matching",
            "median_margin_from_first": margin}
    if mode == "always" or (mode == "auto" and margin <= GRAPH_MARGIN):
        gs = graph_start(ctx.patch_emb, ctx.row_emb, ctx.cfg.seed, ctx.xp)
        res_g, history_g, margin_g = _boost_from(ctx, gs.matching, solves)
        info["graph"] = {**gs.info, "median_margin": margin_g, "rounds": res_g.rounds}
        if margin_g > margin:
            res, history = res_g, history_g
            info.update(rounds=res_g.rounds, median_margin=margin_g, start="correlation graph")
        info["start_reason"] = (f"median margin from the first matching {margin:.3f}, from the correlation "
                                f"graph {margin_g:.3f}: the larger kept")
    elif mode == "never":
        info["start_reason"] = "graph search off"
    else:
        info["start_reason"] = (f"median margin from the first matching {margin:.3f} > {GRAPH_MARGIN}: "
                                "no graph search")
    info["solves"] = dict(solves)
    return (res.matching, res.pi), StageResult("boost", matching=res.matching, info=info,
                                               arrays={"history": np.array(history)})


def attach(ctx: Context, value: tuple[np.ndarray, np.ndarray]) -> None:
    ctx.boosted, ctx.pi = value


STAGE = register(Stage(
    name="boost", fields=("boost_rounds", "graph_search"),
    sources=(sys.modules[__name__], boosting, assignment, candidate_graph, graph_perm),
    compute=compute, attach=attach,
    save=lambda value: ({"pi": value[1]}, {}),
    load=lambda arrays, meta, ctx: (arrays["matching"], arrays["pi"]),
))
