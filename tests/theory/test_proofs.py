"""theory.proofs: the ideal encoder passes every check; broken encoders FAIL the relevant ones."""

from functools import cached_property

import numpy as np
import pytest

from theory import proofs
from theory.ideal import CyclicShiftEncoder, IdealEncoder, RandomPermutationEncoder, _PermutationEncoder

SMALL = proofs.ProofConfig(
    max_domain=4,
    classifier_domain=4,
    predictor_domain=6,
    hoeffding_max_k=12,
    appendix_m=(16, 64),
    appendix_targets=(2, 3),
)
ENCODER_CHECKS = (
    proofs.check_label_preservation,
    proofs.check_cia_exhaustive,
    proofs.check_definition2_condition1,
    proofs.check_definition2_condition2,
    proofs.check_training_set_law,
    proofs.check_votes_match_balanced_error,
    proofs.check_predictor_exact,
)


class IdentityEncoder(_PermutationEncoder):
    """Broken: one key, the identity; the encoding is the point itself."""

    @cached_property
    def _permutations(self):
        return np.arange(self.domain_size)[None, :]

    def sample_key(self, rng):
        return self._permutations[0]


class BiasedIdealEncoder(IdealEncoder):
    """Broken, slightly: the ideal key list with the identity listed once more."""

    @cached_property
    def code_table(self):
        return np.concatenate([self._permutations, np.arange(self.domain_size)[None, :]])

    def keys(self):
        return self.code_table

    def sample_key(self, rng):
        return self.code_table[int(rng.integers(len(self.code_table)))]

    def encode_fresh(self, xs, rng):
        return [self.encode(x, self.sample_key(rng)) for x in xs]


def failures(factory):
    return {r.name for r in proofs.run_checks(factory, SMALL, ENCODER_CHECKS) if not r.passed}


def test_ideal_encoder_passes_every_check():
    results = proofs.run_checks(IdealEncoder, SMALL)
    assert len(results) == len(proofs.CHECKS)
    assert [r.name for r in results if not r.passed] == []


@pytest.mark.parametrize(
    "factory, expected",
    [
        (
            IdentityEncoder,
            {
                "cia_every_adversary_zero_advantage",
                "definition2_condition1",
                "theorem1_training_set_has_one_key_law",
                "theorem1_each_vote_errs_with_balanced_error",
                "theorem1_extracting_predictor_within_hoeffding",
            },
        ),
        (
            RandomPermutationEncoder,
            {
                "encoder_preserves_labels",
                "definition2_condition2_class_uniform_D",
                "theorem1_training_set_has_one_key_law",
                "theorem1_each_vote_errs_with_balanced_error",
                "theorem1_extracting_predictor_within_hoeffding",
            },
        ),
        (CyclicShiftEncoder, {"cia_every_adversary_zero_advantage"}),
        (
            BiasedIdealEncoder,
            {
                "cia_every_adversary_zero_advantage",
                "definition2_condition1",
                "theorem1_training_set_has_one_key_law",
                "theorem1_each_vote_errs_with_balanced_error",
            },
        ),
    ],
)
def test_broken_encoders_fail_the_relevant_checks(factory, expected):
    assert failures(factory) == expected


def test_cli_prints_fail_and_exits_1_for_a_broken_encoder(capsys):
    assert proofs.main(["--max-domain", "3"], encoder_factory=IdentityEncoder) == 1
    out = capsys.readouterr().out
    assert "FAIL  cia_every_adversary_zero_advantage" in out
    assert "PASS  hoeffding_dominates_exact_binomial_tail" in out
