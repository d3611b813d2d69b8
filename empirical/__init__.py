"""Empirical half of the reproduction: the NeuraCrypt encoder, the privacy game, and the attack.

Paper: Carlini, Garg, Jha, Mahloujifar, Mahmoody, Tramèr, "NeuraCrypt is not private" (2021).
"""
