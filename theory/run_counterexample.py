"""Experiment ``theory_counterexample.json``: Appendix A's ``T(x) = x || f(x)``.

Swept over ``m/n`` and ``|A|``: every strategy's Challenge 2 score by Monte
Carlo (fresh ``f`` per trial on fixed point sets), exactly from the binomial
laws and by the normal approximation; the strategy-free bound, its normal
approximation, the Berry-Esseen margin and the chance ceiling; and beside them
the reconstruction rate of reading ``x`` off ``T(x)``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from . import counterexample as cx


@dataclass(frozen=True)
class CounterexampleExperimentConfig:
    """Sweep of the Appendix A experiment."""

    n: int = 8
    m_over_n: tuple[int, ...] = (1, 4, 16, 64, 256, 1024, 2048)
    targets: tuple[int, ...] = (2, 8, 32, 128)
    released: int = 64
    trials: int = 100


def run_counterexample(cfg: CounterexampleExperimentConfig, rng: np.random.Generator) -> dict:
    """Challenge 2 scores of ``T(x) = x || f(x)`` beside its reconstruction rate."""
    rows = []
    n = cfg.n
    for ratio in cfg.m_over_n:
        m = ratio * n
        for targets in cfg.targets:
            ccfg = cx.CounterexampleConfig(n=n, m=m, released=cfg.released, targets=targets)
            released, target_pts = cx.sample_points(ccfg, rng)
            values = rng.integers(0, 2, (cfg.released + targets, m), dtype=np.uint8)
            everything = np.concatenate([released, target_pts])
            reconstruction = float(np.mean(cx.reconstruct(cx.encode(everything, values, n), n) == everything))
            bound = cx.bound_float(n, m, targets)
            common = {
                "n": n,
                "m": m,
                "m_over_n": ratio,
                "targets": targets,
                "chance": 1 / targets,
                "reconstruction_rate": reconstruction,
                "bound_exact": bound,
                "bound_normal": cx.bound_normal(n, m, targets),
                "berry_esseen_margin": cx.berry_esseen_margin(m, targets),
                "chance_ceiling": cx.chance_ceiling(n, m, targets),
            }
            exact_cache: dict[bytes, tuple[float, float]] = {}
            for strategy in cx.STRATEGIES:
                a = cx.clear_part_distances(ccfg, released, target_pts, strategy)
                if a.tobytes() not in exact_cache:
                    exact_cache[a.tobytes()] = (cx.exact_score(a, m), cx.normal_score(a, m))
                exact, normal = exact_cache[a.tobytes()]
                scores = cx.monte_carlo_scores(ccfg, released, target_pts, strategy, cfg.trials, rng)
                half = 2.576 * scores.std(ddof=1) / np.sqrt(len(scores)) if len(scores) > 1 else float("nan")
                rows.append(
                    {
                        **common,
                        "strategy": strategy,
                        "mc_score": float(scores.mean()),
                        "mc_ci99": [float(scores.mean() - half), float(scores.mean() + half)],
                        "exact_score": exact,
                        "normal_score": normal,
                    }
                )
    return {
        "rows": rows,
        "score": "fraction of A whose T(x) is the Hamming-nearest neighbour of T'(x) among T(A); "
        "ties at random",
        "mc_ci99": "mean +- 2.576 sd / sqrt(trials) over trials with fresh f on fixed point sets",
        "exact": "given the point sets, from the Binomial(m, 1/2) laws; bound = P[B0 <= n + min_j B_j]",
        "strategies": {
            "leak_constant": "x || 0^m",
            "leak_random": "x || r(x), r Bob's own random function",
            "leak_nearest_fit": "x || f(s) for the released s nearest to x",
            "leak_majority_fit": "x || bitwise majority of the released f-parts",
            "blind_constant": "0^(n+m)",
        },
    }
