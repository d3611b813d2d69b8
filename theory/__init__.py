"""Theory of "NeuraCrypt is not private" (Carlini et al., 2021), §3 and Appendices A-B, made executable.

Modules
-------
games
    Keyed encodings, Definition 1's NIA / CIA games, exact and Monte Carlo advantage.
ideal
    The ideal (label-preserving random permutation) encoder, its contrasts, Definition 2.
leaky
    Keyed GF(2) linear and affine maps with concrete adversaries.
tinynet
    A NeuraCrypt-style keyed network on a few pixels with concrete adversaries.
learners
    Concept classes (thresholds, conjunctions) and learners for Theorem 1.
predictor
    Theorem 1's extracting predictor (Appendix B).
counterexample
    Appendix A's ``T(x) = x || f(x)`` and Challenge 2's score.
bounds
    Exact binomial tails, Hoeffding, rational bounds on ``exp``, Berry-Esseen.
proofs
    ``python -m theory.proofs``: every exact claim as a PASS/FAIL check.
experiments
    ``python -m theory.experiments``: the three experiments as JSON under ``paper/data``.

Advantage in the games is ``Pr[b'=1 | b=1] - Pr[b'=1 | b=0]`` throughout.
"""
