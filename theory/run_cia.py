"""Experiment ``theory_cia.json``: exact and Monte Carlo advantages (§3, Definitions 1-2).

For the ideal encoder and two contrasts (a weakly-ideal cyclic shift, and a
uniformly random permutation that ignores labels) on every domain of
``2..max_domain`` points and every concept: the best CIA advantage of any
adversary (every pair, every query set, every guessing rule), the Definition 2
distances and label preservation.  Then concrete adversaries against leaky
encoders, exact (GF(2) linear and affine maps) and Monte Carlo with intervals
(the same maps, the ideal encoder on a domain too large to enumerate, a tiny
NeuraCrypt-style network).  Advantage is ``Pr[b'=1|b=1] - Pr[b'=1|b=0]``.
"""

from __future__ import annotations

import dataclasses
import time
from dataclasses import dataclass

import numpy as np

from .games import all_labelings, exact_advantage, monte_carlo_advantage, optimal_advantage, same_label_pairs
from .ideal import (
    CyclicShiftEncoder,
    FullQueryAdversary,
    IdealEncoder,
    RandomPermutationEncoder,
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
from .tinynet import NearbyQueryAdversary, TinyNeuraCrypt, calibrate_energy, mean_brightness_concept


@dataclass(frozen=True)
class CiaExperimentConfig:
    """Sizes of the CIA experiment."""

    max_domain: int = 7
    gf2_bits: tuple[int, ...] = (3, 4)  # 3..4: the affine attack's points share labels there
    mc_trials: int = 4000
    mc_domain: int = 40
    calibration_samples: int = 4000


def estimate_dict(est) -> dict:
    """A :class:`theory.games.AdvantageEstimate` as plain JSON fields."""
    return {
        "advantage": est.advantage,
        "low": est.low,
        "high": est.high,
        "trials": est.trials,
        "confidence": est.confidence,
    }


def exhaustive_rows(cfg: CiaExperimentConfig) -> list[dict]:
    """Best CIA advantage, Definition 2 distances and label preservation per encoder and domain size."""
    exhaustive = []
    for name, factory in (
        ("ideal", IdealEncoder),
        ("cyclic_shift", CyclicShiftEncoder),
        ("random_permutation", RandomPermutationEncoder),
    ):
        for size in range(2, cfg.max_domain + 1):
            start = time.perf_counter()
            res = exhaustive_cia(factory, [size])
            tables = [(labels, factory(labels).code_table) for labels in all_labelings(size)]
            exhaustive.append(
                {
                    "encoder": name,
                    "domain_size": size,
                    "concepts": res.concepts,
                    "games": res.games,
                    "max_cia_advantage": str(res.max_advantage),
                    "definition2_condition1_max_tv": str(
                        max(definition2_condition1(t, lab) for lab, t in tables)
                    ),
                    "definition2_condition2_max_tv_uniform_D": str(
                        max(definition2_condition2(t, lab, [1] * size) for lab, t in tables)
                    ),
                    "min_label_preservation": str(min(label_preservation(t, lab) for lab, t in tables)),
                    "seconds": time.perf_counter() - start,
                }
            )
    return exhaustive


def gf2_rows(cfg: CiaExperimentConfig, rng: np.random.Generator) -> list[dict]:
    """Exact (and Monte Carlo) advantages of concrete adversaries against GF(2) linear and affine maps."""
    leaky = []
    for bits in cfg.gf2_bits:
        concept = weight_concept(bits)
        labels = tuple(concept(x) for x in range(2**bits))
        lin, aff = GF2LinearEncoder(bits), GF2AffineEncoder(bits)
        # 0 and 1 share a label, and 3 = 0 ^ 1 ^ 2 and 5 share one, for every n in 3..4.
        attack = AffineRelationAdversary(0b011, 0b101, (0, 1, 2))
        x0 = 1
        leaky.append(
            {
                "encoder": f"gf2_linear_{bits}",
                "keys": len(lin.keys()),
                "adversary": "zero_test_nia",
                "exact_advantage": str(exact_advantage(lin, ZeroTestAdversary(x0), concept, "nia")),
            }
        )
        rule = WeightRuleAdversary(x0)
        leaky.append(
            {
                "encoder": f"gf2_linear_{bits}",
                "keys": len(lin.keys()),
                "adversary": "weight_rule_nia",
                "exact_advantage": str(exact_advantage(lin, rule, concept, "nia")),
                "monte_carlo": estimate_dict(
                    monte_carlo_advantage(lin, rule, concept, "nia", cfg.mc_trials, rng)
                ),
            }
        )
        leaky.append(
            {
                "encoder": f"gf2_affine_{bits}",
                "keys": len(aff.keys()),
                "adversary": "best_nia_any_pair",
                "exact_advantage": str(
                    max(optimal_advantage(aff.code_table, a, b, ()) for a, b in same_label_pairs(labels))
                ),
            }
        )
        leaky.append(
            {
                "encoder": f"gf2_affine_{bits}",
                "keys": len(aff.keys()),
                "adversary": "affine_relation_cia",
                "exact_advantage": str(exact_advantage(aff, attack, concept, "cia")),
                "monte_carlo": estimate_dict(
                    monte_carlo_advantage(aff, attack, concept, "cia", cfg.mc_trials, rng)
                ),
            }
        )
    return leaky


def run_cia(cfg: CiaExperimentConfig, rng: np.random.Generator) -> dict:
    """Exact and Monte Carlo advantages for the ideal encoder and its contrasts."""
    exhaustive = exhaustive_rows(cfg)
    leaky = gf2_rows(cfg, rng)
    # A domain far beyond enumeration: the ideal encoder against the full-query adversary.
    labels = tuple(int(v) for v in rng.permutation(np.arange(cfg.mc_domain) % 2))
    pair = next(same_label_pairs(labels))
    ideal_mc = monte_carlo_advantage(
        IdealEncoder(labels),
        FullQueryAdversary(*pair, cfg.mc_domain),
        lambda x: labels[x],
        "cia",
        cfg.mc_trials,
        rng,
    )
    net = TinyNeuraCrypt()
    dark = np.zeros((4, 4))
    checker = (np.indices((4, 4)).sum(axis=0) % 2).astype(float)
    nia_adv = calibrate_energy(net, dark, checker, cfg.calibration_samples, rng)
    tiny = {
        "config": dataclasses.asdict(net.config),
        "concept": "mean pixel > 1/2",
        "x0": "all-zero image",
        "x1": "checkerboard of 0 and 1",
        "nia_energy_threshold": estimate_dict(
            monte_carlo_advantage(net, nia_adv, mean_brightness_concept, "nia", cfg.mc_trials, rng)
        ),
        "cia_nearby_query": estimate_dict(
            monte_carlo_advantage(
                net, NearbyQueryAdversary(dark, checker), mean_brightness_concept, "cia", cfg.mc_trials, rng
            )
        ),
    }
    return {
        "advantage_definition": "Pr[b'=1|b=1] - Pr[b'=1|b=0] = 2 Pr[b'=b] - 1",
        "exhaustive": exhaustive,
        "leaky_exact": leaky,
        "ideal_monte_carlo": {
            "domain_size": cfg.mc_domain,
            "labels": labels,
            "pair": pair,
            "adversary": "full_query",
            **estimate_dict(ideal_mc),
        },
        "tiny_neuracrypt": tiny,
    }
