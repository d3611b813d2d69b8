"""Checks for Appendix A: ``T(x) = x || f(x)`` passes Challenge 2 while revealing ``x``.

* the ``|A| = 2`` bound is the ``Binomial(2m, 1/2)`` tail;
* every guessing strategy's exact score is at most the bound (exact rationals);
* the normal approximation of the bound is within the Berry-Esseen margin;
* the bound is below ``1/|A| + (|A|-1) n / sqrt(pi m) + |A| C / sqrt(m)``;
* side by side: reconstruction 100%, score near chance.
"""

from __future__ import annotations

import numpy as np

from . import counterexample as cx
from .checking import CheckResult, ProofConfig
from .ideal import EncoderFactory


def check_pairwise_closed_form(factory: EncoderFactory, cfg: ProofConfig) -> CheckResult:
    points = bad = 0
    for n in cfg.appendix_n:
        for m in (*range(1, 33), *cfg.appendix_m):
            points += 1
            bad += cx.bound_exact(n, m, 2) != cx.pairwise_closed_form(n, m)
    return CheckResult(
        "appendixA_pairwise_bound_is_binomial_2m",
        bad == 0,
        f"{points} (n, m): P[B0 <= n + B1] != P[Bin(2m,1/2) <= m+n] at {bad}",
    )


def check_bound_dominates_scores(factory: EncoderFactory, cfg: ProofConfig) -> CheckResult:
    rng = np.random.default_rng(cfg.seed)
    cases = bad = disagree = 0
    tightest = 0.0
    for m in (2, 4, 8, 16):
        for targets in (2, 3, 4):
            ccfg = cx.CounterexampleConfig(n=3, m=m, released=2, targets=targets)
            released, targets_pts = cx.sample_points(ccfg, rng)
            bound = cx.bound_exact(3, m, targets)
            for strategy in cx.STRATEGIES:
                a = cx.clear_part_distances(ccfg, released, targets_pts, strategy)
                score = cx.exact_score_rational(a, m)
                cases += 1
                bad += score > bound
                disagree += abs(float(score) - cx.exact_score(a, m)) > 1e-12
                tightest = max(tightest, float(score / bound))
        # The adversary the |A| = 2 bound is nearly tight for: x' at distance n from g1(x) = x.
        extreme = cx.exact_score_rational(np.array([[0, 3], [3, 0]]), m)
        cases += 1
        bad += extreme > cx.bound_exact(3, m, 2)
        tightest = max(tightest, float(extreme / cx.bound_exact(3, m, 2)))
    return CheckResult(
        "appendixA_bound_dominates_every_strategy",
        bad == 0 and disagree == 0,
        f"{cases} exact rational scores (n=3, m in 2..16, |A| in 2..4, {len(cx.STRATEGIES)} strategies): "
        f"score > bound in {bad}; float vs rational disagree in {disagree}; "
        f"largest score/bound = {tightest:.3f}",
    )


def check_berry_esseen(factory: EncoderFactory, cfg: ProofConfig) -> CheckResult:
    points = bad = float_off = 0
    worst = 0.0
    for n in cfg.appendix_n:
        for m in cfg.appendix_m:
            for targets in cfg.appendix_targets:
                exact = float(cx.bound_exact(n, m, targets))
                gap = abs(exact - cx.bound_normal(n, m, targets))
                margin = cx.berry_esseen_margin(m, targets)
                points += 1
                bad += gap > margin
                float_off += abs(exact - cx.bound_float(n, m, targets)) > 1e-12
                worst = max(worst, gap / margin)
    return CheckResult(
        "appendixA_normal_error_within_berry_esseen",
        bad == 0 and float_off == 0,
        f"{points} (n, m, |A|): |exact bound - normal approximation| > |A| C / sqrt(m) at {bad}; "
        f"largest gap/margin = {worst:.3f}; floating-point bound off the exact one by > 1e-12 at {float_off}",
    )


def check_chance_ceiling(factory: EncoderFactory, cfg: ProofConfig) -> CheckResult:
    points = bad = informative = 0
    for n in cfg.appendix_n:
        for m in cfg.appendix_m:
            for targets in cfg.appendix_targets:
                ceiling = cx.chance_ceiling(n, m, targets)
                points += 1
                informative += ceiling < 1
                bad += float(cx.bound_exact(n, m, targets)) > ceiling
    return CheckResult(
        "appendixA_every_score_tends_to_chance",
        bad == 0 and informative > 0,
        f"{points} (n, m, |A|) ({informative} with ceiling < 1): exact bound > "
        f"1/|A| + (|A|-1) n / sqrt(pi m) + |A| C / sqrt(m) at {bad}",
    )


def check_reveals_all_near_chance(factory: EncoderFactory, cfg: ProofConfig) -> CheckResult:
    rng = np.random.default_rng(cfg.seed)
    n, m = 8, 16384
    rows = []
    ok = True
    for targets in (2, 16):
        ccfg = cx.CounterexampleConfig(n=n, m=m, released=32, targets=targets)
        released, target_pts = cx.sample_points(ccfg, rng)
        encodings = cx.encode(target_pts, rng.integers(0, 2, (targets, m), dtype=np.uint8), n)
        recovered = float(np.mean(cx.reconstruct(encodings, n) == target_pts))
        best = max(
            cx.exact_score(cx.clear_part_distances(ccfg, released, target_pts, s), m) for s in cx.STRATEGIES
        )
        bound = cx.bound_float(n, m, targets)
        ok &= recovered == 1.0 and best <= bound and bound - 1 / targets <= 0.05
        rows.append(
            f"|A|={targets}: reconstruction {recovered:.0%}, best exact score {best:.4f}, "
            f"bound {bound:.4f}, chance {1 / targets:.4f}"
        )
    return CheckResult(
        "appendixA_reveals_every_x_yet_scores_near_chance",
        ok,
        f"n={n}, m={m}: " + "; ".join(rows) + " (need bound - chance <= 0.05)",
    )
