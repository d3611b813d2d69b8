"""Checks for Theorem 1 and the Hoeffding step of its proof (Appendix B).

* lemma: for the encoder under test, the predictor's training set
  ``{(Enc(x_b, fresh K), b)}`` has exactly the law of one-key samples from ``D``;
* lemma: every classifier's vote on ``x`` errs with its balanced error on
  ``x``'s class, under every key;
* end to end: fitted from ``x0, x1`` alone, the majority vote errs on every
  ``x`` with probability at most ``exp(-2k(1/2 - eps)^2)`` (exact rationals);
* the Hoeffding bound dominates the exact binomial tail on a grid, with
  ``exp`` enclosed between rationals (itself checked).
"""

from __future__ import annotations

import math
from fractions import Fraction

import numpy as np

from .bounds import exp_neg_bounds, hoeffding_exponent, majority_error_exact, majority_tail_exact
from .checking import CheckResult, ProofConfig, labelings
from .ideal import EncoderFactory
from .learners import ThresholdClass, ThresholdERM
from .predictor import PredictorConfig, class_errors, fit_extracting_predictor, per_vote_errors_from_table


def check_training_set_law(factory: EncoderFactory, cfg: ProofConfig) -> CheckResult:
    """Theorem 1's key step: fresh-key encodings of x0/x1 have the law of one-key samples from D."""
    cases = bad = 0
    for labels in labelings(cfg, low=2, both_classes=True):
        table = factory(labels).code_table
        lab = np.asarray(labels)
        n_keys, n_codes = len(table), int(table.max()) + 1
        for x0 in np.flatnonzero(lab == 0):
            for x1 in np.flatnonzero(lab == 1):
                cases += 1
                for y, xy in ((0, x0), (1, x1)):
                    members = np.flatnonzero(lab == y)
                    # Both laws scaled by N * n_keys, so the comparison is in integers.
                    fresh = len(members) * np.bincount(table[:, xy], minlength=n_codes)
                    single = np.zeros((n_keys, n_codes), dtype=np.int64)
                    np.add.at(single, (np.arange(n_keys)[:, None], table[:, members]), 1)
                    if np.any(single * n_keys != fresh[None, :]):
                        bad += 1
                        break
    return CheckResult(
        "theorem1_training_set_has_one_key_law",
        cases > 0 and bad == 0,
        f"{cases} (c, x0, x1) on 2..{cfg.max_domain} points, D uniform: "
        f"law of (Enc(x_b, fresh K), b) != law of (Enc(x, K0), c(x)) for some K0 in {bad}",
    )


def check_votes_match_balanced_error(factory: EncoderFactory, cfg: ProofConfig) -> CheckResult:
    """Every classifier's vote on x errs with its balanced error on x's class, under every key."""
    cases = bad = 0
    for labels in labelings(cfg, low=2, high=cfg.classifier_domain, both_classes=True):
        table = factory(labels).code_table
        lab = np.asarray(labels)
        n_codes = int(table.max()) + 1
        hs = (np.arange(2**n_codes)[:, None] >> np.arange(n_codes)) & 1  # (H, n_codes): every classifier
        wrong = hs[:, table] != lab[None, None, :]  # (H, n_keys, N)
        per_x = wrong.sum(axis=1)  # (H, N): n_keys * Pr_K[wrong on x]
        for y in (0, 1):
            members = np.flatnonzero(lab == y)
            per_key = wrong[:, :, members].sum(axis=2)  # (H, n_keys): |class| * one-key error
            balanced = per_x[:, members].sum(axis=1)  # (H,): n_keys * |class| * eps_y
            cases += len(hs)
            same_x = np.all(per_x[:, members] * len(members) == balanced[:, None], axis=1)
            same_key = np.all(per_key * len(table) == balanced[:, None], axis=1)
            bad += int(np.sum(~(same_x & same_key)))
    return CheckResult(
        "theorem1_each_vote_errs_with_balanced_error",
        cases > 0 and bad == 0,
        f"{cases} (c, classifier h, class y) on 2..{cfg.classifier_domain} points: "
        f"Pr_K[h(Enc(x,K)) != y] or a one-key class error differs from eps_y in {bad}",
    )


def check_predictor_exact(factory: EncoderFactory, cfg: ProofConfig) -> CheckResult:
    """End-to-end: fitted from x0, x1 only, the vote errs on every x within Hoeffding's bound."""
    size = cfg.predictor_domain
    cls = ThresholdClass(size)
    learner = ThresholdERM(size)
    rng = np.random.default_rng(cfg.seed)
    fits = violations = rejected = baseline_wrong = 0
    worst_ratio = 0.0
    bounds = {}
    for t in cls.thresholds():
        labels = cls.concept(t)
        encoder = factory(labels)
        table = encoder.code_table
        pcfg = PredictorConfig(
            train_size=30,
            positive_fraction=float(labels.mean()),
            validation_size=200,
            accept_error=0.3,
            max_rounds=10,
        )
        for x0 in np.flatnonzero(labels == 0):
            for x1 in np.flatnonzero(labels == 1):
                fits += 1
                fitted = fit_extracting_predictor(encoder, learner, int(x0), int(x1), pcfg, rng)
                per_vote = per_vote_errors_from_table(table, fitted.classifier, labels)
                eps = max(class_errors(per_vote, labels, [1] * size))
                two_example = learner.fit(np.array([x0, x1]), np.array([0, 1]))
                baseline_wrong += int(np.sum(two_example != labels))
                if not fitted.accepted or eps >= Fraction(1, 2):
                    rejected += 1
                    continue
                for k in cfg.votes:
                    key = (k, eps)
                    if key not in bounds:
                        bounds[key] = exp_neg_bounds(hoeffding_exponent(k, eps))[0]
                    for e in set(per_vote):
                        err = majority_error_exact(k, e)
                        worst_ratio = max(worst_ratio, float(err / bounds[key]))
                        violations += err > bounds[key]
    return CheckResult(
        "theorem1_extracting_predictor_within_hoeffding",
        fits > 0 and violations == 0 and rejected == 0,
        f"{fits} fits (every threshold on {size} points, every x0, x1), k in {list(cfg.votes)}: "
        f"learner precondition failed in {rejected}; "
        f"vote error > exp(-2k(1/2-eps)^2) at {violations} (x, k); worst error/bound = {worst_ratio:.3g}; "
        f"two-example ERM baseline misclassifies {baseline_wrong} points in total",
    )


def check_hoeffding(factory: EncoderFactory, cfg: ProofConfig) -> CheckResult:
    points = violations = 0
    worst = 0.0
    for k in range(1, cfg.hoeffding_max_k + 1):
        for j in range(cfg.hoeffding_eps_den // 2):
            eps = Fraction(j, cfg.hoeffding_eps_den)
            tail = majority_tail_exact(k, eps)
            lower = exp_neg_bounds(hoeffding_exponent(k, eps))[0]
            points += 1
            violations += tail > lower
            worst = max(worst, float(tail / lower))
    return CheckResult(
        "hoeffding_dominates_exact_binomial_tail",
        violations == 0,
        f"{points} (k, eps), k = 1..{cfg.hoeffding_max_k}, eps = j/{cfg.hoeffding_eps_den} < 1/2: "
        f"P[Bin(k,1-eps) <= k/2] > exp(-2k(1/2-eps)^2) at {violations}; largest tail/bound = {worst:.4f}",
    )


def check_exp_enclosure(factory: EncoderFactory, cfg: ProofConfig) -> CheckResult:
    points = bad = 0
    widest = 0.0
    for k in range(1, cfg.hoeffding_max_k + 1, 7):
        for j in range(0, cfg.hoeffding_eps_den // 2, 3):
            r = hoeffding_exponent(k, Fraction(j, cfg.hoeffding_eps_den))
            lo, hi = exp_neg_bounds(r)
            value = math.exp(-float(r))
            points += 1
            width = float((hi - lo) / hi)
            widest = max(widest, width)
            bad += not (
                lo <= hi
                and float(lo) <= value * (1 + 1e-12)
                and value <= float(hi) * (1 + 1e-12)
                and width < 1e-12
            )
    return CheckResult(
        "lemma_rational_enclosure_of_exp",
        bad == 0,
        f"{points} exponents: lo <= exp(-r) <= hi with relative width < 1e-12 failed at {bad}; "
        f"widest {widest:.2e}",
    )
