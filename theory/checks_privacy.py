"""Checks for §3: Definition 1's games, the ideal encoder and Definition 2.

* the encoder under test preserves labels, has advantage exactly 0 for every
  CIA adversary on every small domain and concept (best guessing rule over
  every query set), and meets both conditions of Definition 2 for a
  class-uniform ``D`` (and the ideal encoder fails condition (2) for a skewed
  ``D``: the reading of Definition 2 implemented here);
* lemmas: the best guessing rule's advantage is the total variation distance
  (all rules enumerated), and more queries never lower it;
* contrasts: keyed GF(2) linear and affine maps leak (exact advantages), and a
  weakly-ideal encoder need not be CIA private.
"""

from __future__ import annotations

from fractions import Fraction

from .checking import CheckResult, ProofConfig, labelings
from .games import (
    exact_advantage,
    optimal_advantage,
    query_sets,
    rule_advantages_bruteforce,
    same_label_pairs,
)
from .ideal import (
    CyclicShiftEncoder,
    EncoderFactory,
    IdealEncoder,
    definition2_condition1,
    definition2_condition2,
    exhaustive_cia,
    label_preservation,
)
from .leaky import (
    AffineRelationAdversary,
    GF2AffineEncoder,
    GF2LinearEncoder,
    WeightRuleAdversary,
    ZeroTestAdversary,
    weight_concept,
)


def check_label_preservation(factory: EncoderFactory, cfg: ProofConfig) -> CheckResult:
    worst, count = Fraction(1), 0
    for labels in labelings(cfg):
        count += 1
        worst = min(worst, label_preservation(factory(labels).code_table, labels))
    return CheckResult(
        "encoder_preserves_labels",
        worst == 1,
        f"{count} concepts on 1..{cfg.max_domain} points; "
        f"least fraction of (key, x) with c(Enc(x,K)) = c(x): {worst}",
    )


def check_cia_exhaustive(factory: EncoderFactory, cfg: ProofConfig) -> CheckResult:
    result = exhaustive_cia(factory, range(2, cfg.max_domain + 1))
    where = "" if result.worst is None else f"; attained at (c, x0, x1, Q) = {result.worst}"
    return CheckResult(
        "cia_every_adversary_zero_advantage",
        result.max_advantage == 0,
        f"{result.concepts} concepts, {result.games} (c, x0, x1, Q) games on 2..{cfg.max_domain} points; "
        f"largest advantage of any guessing rule = {result.max_advantage}{where}",
    )


def check_definition2_condition1(factory: EncoderFactory, cfg: ProofConfig) -> CheckResult:
    worst, count = Fraction(0), 0
    for labels in labelings(cfg):
        count += 1
        worst = max(worst, definition2_condition1(factory(labels).code_table, labels))
    return CheckResult(
        "definition2_condition1",
        worst == 0,
        f"{count} concepts; largest TV(Enc(x,K), Enc(x',K)) over c(x) = c(x'): {worst}",
    )


def check_definition2_condition2(factory: EncoderFactory, cfg: ProofConfig) -> CheckResult:
    worst, count = Fraction(0), 0
    for labels in labelings(cfg):
        count += 1
        worst = max(worst, definition2_condition2(factory(labels).code_table, labels, [1] * len(labels)))
    return CheckResult(
        "definition2_condition2_class_uniform_D",
        worst == 0,
        f"{count} concepts, D uniform; largest TV(Enc(D|y,K), Enc(D|y,K')) over keys and y: {worst}",
    )


def check_condition2_needs_uniform(factory: EncoderFactory, cfg: ProofConfig) -> CheckResult:
    """The ideal encoder meets Definition 2 (2) only for class-uniform D (the reading we implement)."""
    failures, count = 0, 0
    for labels in labelings(cfg, high=min(cfg.max_domain, 5)):
        biggest = max((0, 1), key=lambda y: labels.count(y))
        members = [x for x, y in enumerate(labels) if y == biggest]
        if len(members) < 2:
            continue
        count += 1
        skewed = [1] * len(labels)
        skewed[members[0]] = 2
        if definition2_condition2(IdealEncoder(labels).code_table, labels, skewed) > 0:
            failures += 1
    return CheckResult(
        "ideal_condition2_fails_for_skewed_D",
        count > 0 and failures == count,
        f"ideal encoder, D doubled on one point of a class of >= 2 points: "
        f"condition (2) broken in {failures}/{count} concepts",
    )


def _rule_instances(factory: EncoderFactory, cfg: ProofConfig):
    for labels in labelings(cfg, low=2, high=cfg.rule_domain):
        yield factory(labels).code_table, labels
        yield CyclicShiftEncoder(labels).code_table, labels
    concept = weight_concept(2)
    yield GF2LinearEncoder(2).code_table, tuple(concept(x) for x in range(4))
    yield GF2AffineEncoder(2).code_table, tuple(concept(x) for x in range(4))


def check_best_rule_is_tv(factory: EncoderFactory, cfg: ProofConfig) -> CheckResult:
    """Lemma: over all 2^V deterministic guessing rules the advantage spans exactly [-TV, TV]."""
    instances = positive = mismatches = 0
    for table, labels in _rule_instances(factory, cfg):
        for x0, x1 in same_label_pairs(labels):
            for query in query_sets(len(labels), x0, x1):
                tv = optimal_advantage(table, x0, x1, query)
                try:
                    hi, lo, _ = rule_advantages_bruteforce(table, x0, x1, query, cfg.max_views)
                except ValueError:
                    continue
                instances += 1
                positive += bool(tv > 0)
                mismatches += bool(hi != tv or lo != -tv)
    return CheckResult(
        "lemma_best_guessing_rule_equals_tv",
        mismatches == 0 and positive > 0,
        f"{instances} games (ideal-under-test, cyclic-shift, GF(2)^2 linear/affine), {positive} with TV > 0; "
        f"max/min over all rules != +-TV in {mismatches}",
    )


def check_queries_monotone(factory: EncoderFactory, cfg: ProofConfig) -> CheckResult:
    """Lemma (data processing): answering one more query never lowers the best advantage."""
    concept = weight_concept(3)
    cases = [(GF2AffineEncoder(3).code_table, tuple(concept(x) for x in range(8)))]
    cases += [(CyclicShiftEncoder(lab).code_table, lab) for lab in ((0, 0, 0, 1, 1), (0, 0, 0, 0, 1, 1))]
    cases += [(factory(lab).code_table, lab) for lab in ((0, 0, 0, 1, 1), (0, 1, 0, 1, 1, 0))]
    steps = violations = rises = 0
    for table, labels in cases:
        for x0, x1 in same_label_pairs(labels):
            for query in query_sets(len(labels), x0, x1):
                base = optimal_advantage(table, x0, x1, query)
                for q in range(len(labels)):
                    if q in (x0, x1) or q in query:
                        continue
                    more = optimal_advantage(table, x0, x1, (*query, q))
                    steps += 1
                    violations += bool(more < base)
                    rises += bool(more > base)
    return CheckResult(
        "lemma_more_queries_never_hurt",
        violations == 0 and rises > 0,
        f"{steps} (Q, Q+q) steps; TV decreased in {violations}, increased in {rises}",
    )


def check_affine_contrast(factory: EncoderFactory, cfg: ProofConfig) -> CheckResult:
    concept = weight_concept(3)
    encoder = GF2AffineEncoder(3)
    labels = tuple(concept(x) for x in range(8))
    nia = max(optimal_advantage(encoder.code_table, x0, x1, ()) for x0, x1 in same_label_pairs(labels))
    attack = exact_advantage(
        encoder, AffineRelationAdversary(0b011, 0b101, (0b000, 0b001, 0b010)), concept, "cia"
    )
    return CheckResult(
        "leaky_affine_map_nia_zero_cia_one",
        nia == 0 and attack == 1,
        f"GF(2)^3 affine, {len(encoder.keys())} keys: best NIA advantage over all pairs = {nia}; "
        f"3-query CIA adversary advantage = {attack}",
    )


def check_linear_leak(factory: EncoderFactory, cfg: ProofConfig) -> CheckResult:
    bits = 3
    concept = weight_concept(bits)
    encoder = GF2LinearEncoder(bits)
    zero = exact_advantage(encoder, ZeroTestAdversary(1), concept, "nia")
    rule = exact_advantage(encoder, WeightRuleAdversary(1), concept, "nia")
    # Closed form: A e_1 is uniform on non-zero vectors; count those of weight >= 2.
    heavy = sum(bin(z).count("1") >= 2 for z in range(1, 2**bits))
    expected = Fraction(heavy, 2**bits - 1)
    return CheckResult(
        "leaky_linear_map_nia_positive",
        zero == 1 and Fraction(int(rule.p), int(rule.q)) == expected,
        f"GF(2)^3 linear, {len(encoder.keys())} keys: x0 = 0 test advantage = {zero}; "
        f"weight rule advantage = {rule} (closed form {expected})",
    )


def check_cyclic_contrast(factory: EncoderFactory, cfg: ProofConfig) -> CheckResult:
    labels = (0, 0, 0, 1, 1, 1)
    table = CyclicShiftEncoder(labels).code_table
    c1 = definition2_condition1(table, labels)
    c2 = definition2_condition2(table, labels, [1] * 6)
    cia = optimal_advantage(table, 0, 1, (2,))
    return CheckResult(
        "contrast_weakly_ideal_is_not_cia_private",
        c1 == 0 and c2 == 0 and cia == 1,
        f"cyclic shift per class, c = {labels}: Definition 2 TVs = ({c1}, {c2}); "
        f"CIA advantage with one query = {cia}",
    )
