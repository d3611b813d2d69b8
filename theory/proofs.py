"""``python -m theory.proofs``: every exact claim of §3 and Appendices A-B as a named check.

Each check computes its claim from scratch (exact rationals wherever the claim
is an equality or an inequality between exact quantities) and prints ``PASS``
or ``FAIL`` with its numbers; the exit status is 1 if any check fails.  The
checks live in :mod:`theory.checks_privacy` (§3, Definitions 1-2),
:mod:`theory.checks_extraction` (Theorem 1, Appendix B) and
:mod:`theory.checks_appendix` (Appendix A).

The encoder under test is injected (:func:`run_checks` takes an
``encoder_factory``: labels in, finite keyed encoding out), so a broken encoder
makes the checks that depend on it fail.  Advantage is
``Pr[b'=1|b=1] - Pr[b'=1|b=0]`` throughout (see :mod:`theory.games`).
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable, Sequence

from .checking import CheckResult, ProofConfig
from .checks_appendix import (
    check_berry_esseen,
    check_bound_dominates_scores,
    check_chance_ceiling,
    check_pairwise_closed_form,
    check_reveals_all_near_chance,
)
from .checks_extraction import (
    check_exp_enclosure,
    check_hoeffding,
    check_predictor_exact,
    check_training_set_law,
    check_votes_match_balanced_error,
)
from .checks_privacy import (
    check_affine_contrast,
    check_best_rule_is_tv,
    check_cia_exhaustive,
    check_condition2_needs_uniform,
    check_cyclic_contrast,
    check_definition2_condition1,
    check_definition2_condition2,
    check_label_preservation,
    check_linear_leak,
    check_queries_monotone,
)
from .ideal import EncoderFactory, IdealEncoder

__all__ = ["CHECKS", "CheckResult", "ProofConfig", "main", "run_checks"]


#: Every check, in the order printed.
CHECKS: tuple[Callable[[EncoderFactory, ProofConfig], CheckResult], ...] = (
    check_label_preservation,
    check_cia_exhaustive,
    check_definition2_condition1,
    check_definition2_condition2,
    check_condition2_needs_uniform,
    check_best_rule_is_tv,
    check_queries_monotone,
    check_affine_contrast,
    check_linear_leak,
    check_cyclic_contrast,
    check_training_set_law,
    check_votes_match_balanced_error,
    check_predictor_exact,
    check_hoeffding,
    check_exp_enclosure,
    check_pairwise_closed_form,
    check_bound_dominates_scores,
    check_berry_esseen,
    check_chance_ceiling,
    check_reveals_all_near_chance,
)


def run_checks(
    encoder_factory: EncoderFactory = IdealEncoder,
    config: ProofConfig | None = None,
    checks: Sequence[Callable] = CHECKS,
) -> list[CheckResult]:
    """Run ``checks`` against the encoder built by ``encoder_factory``.

    Parameters
    ----------
    encoder_factory : callable
        Labels (a 0/1 tuple) to a :class:`theory.games.FiniteKeyedEncoding`
        whose codes are domain points; the ideal encoder by default.
    config : ProofConfig, optional
        Sizes and seed.
    checks : sequence of callable
        Subset of :data:`CHECKS`.

    Returns
    -------
    list of CheckResult
    """
    config = ProofConfig() if config is None else config
    return [check(encoder_factory, config) for check in checks]


def main(argv: Sequence[str] | None = None, encoder_factory: EncoderFactory = IdealEncoder) -> int:
    """Print every check as PASS/FAIL; return 1 if any failed."""
    parser = argparse.ArgumentParser(prog="python -m theory.proofs", description=__doc__.splitlines()[0])
    parser.add_argument(
        "--max-domain",
        type=int,
        default=ProofConfig.max_domain,
        help="largest domain of the exhaustive checks (default %(default)s)",
    )
    args = parser.parse_args(argv)
    config = ProofConfig(max_domain=args.max_domain)
    start = time.perf_counter()
    failed = 0
    for check in CHECKS:
        t0 = time.perf_counter()
        result = check(encoder_factory, config)
        failed += not result.passed
        verdict = "PASS" if result.passed else "FAIL"
        print(
            f"{verdict}  {result.name} ({time.perf_counter() - t0:.1f} s): {result.detail}",
            flush=True,
        )
    print(f"{len(CHECKS) - failed}/{len(CHECKS)} checks passed in {time.perf_counter() - start:.1f} s")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
