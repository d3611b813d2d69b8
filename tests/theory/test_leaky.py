"""Keyed linear and affine maps over GF(2)^n: exact leaks."""

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from theory.games import exact_advantage, monte_carlo_advantage, optimal_advantage, same_label_pairs
from theory.leaky import (
    AffineRelationAdversary,
    GF2AffineEncoder,
    GF2LinearEncoder,
    ZeroTestAdversary,
    general_linear_group,
    gf2_apply,
    weight_concept,
)


def test_general_linear_group_orders():
    # |GL(n, 2)| = prod_{i<n} (2^n - 2^i)
    assert [len(general_linear_group(n)) for n in (1, 2, 3)] == [1, 6, 168]


@given(st.integers(0, 7), st.integers(0, 7), st.integers(0, 167))
def test_linear_maps_are_linear_bijections(x, y, k):
    cols = general_linear_group(3)[k]
    assert gf2_apply(cols, x ^ y) == gf2_apply(cols, x) ^ gf2_apply(cols, y)
    assert sorted(gf2_apply(cols, z) for z in range(8)) == list(range(8))


def test_affine_map_is_nia_private_but_cia_broken():
    concept = weight_concept(3)
    enc = GF2AffineEncoder(3)
    labels = tuple(concept(x) for x in range(8))
    assert all(optimal_advantage(enc.code_table, a, b, ()) == 0 for a, b in same_label_pairs(labels))
    attack = AffineRelationAdversary(0b011, 0b101, (0, 1, 2))
    assert exact_advantage(enc, attack, concept, "cia") == 1
    est = monte_carlo_advantage(enc, attack, concept, "cia", 300, np.random.default_rng(0))
    assert est.low > 0.9


def test_linear_map_fixes_zero():
    concept = weight_concept(3)
    assert exact_advantage(GF2LinearEncoder(3), ZeroTestAdversary(1), concept, "nia") == 1


def test_affine_adversary_refuses_bad_queries():
    with pytest.raises(ValueError):
        AffineRelationAdversary(0b011, 0b101, (0b011, 1, 2))
    with pytest.raises(ValueError):
        AffineRelationAdversary(0b011, 0b101, (0, 1, 4))
