"""The attack's stages (paper §2), one module each, registered under their names.

Importing this package registers them; ``STAGES`` is the run order and ``REGISTRY`` maps each name
to its :class:`~empirical.stages.base.Stage`. To add a stage, write a module with ``compute``,
``attach``, ``save`` and ``load``, register it with :func:`~empirical.stages.base.register`,
import it below and put its name in ``STAGES`` where it runs.
"""
from . import align, boost, extract, final, first, psim, rescore  # noqa: F401  (importing registers them)
from .base import REGISTRY, Context, Stage, StageResult, register

STAGES = ("align", "psim", "first", "boost", "extract", "final", "rescore")
assert set(STAGES) == set(REGISTRY), "every registered stage has a place in the run order"

__all__ = ["REGISTRY", "STAGES", "Context", "Stage", "StageResult", "register"]
