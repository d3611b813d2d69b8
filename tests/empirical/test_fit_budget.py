"""fit_budget: extraction's step counts per family."""
from dataclasses import replace

from empirical.encoder import preset
from empirical.extraction import ExtractConfig
from empirical.fit_budget import MAX_STEP_SCALE, fit_steps, step_scale


def test_step_scale_gives_cheaper_families_more_steps():
    nc7 = preset("neuracrypt-7")
    assert step_scale(nc7) == 1.0  # the reference: the configured steps
    nc2 = step_scale(preset("neuracrypt-2"))
    assert 1.0 < nc2 <= MAX_STEP_SCALE
    assert step_scale(preset("neuracrypt-7", hidden=512)) == 1.0  # costlier: never fewer steps
    assert step_scale(preset("linear")) == 1.0  # solved by least squares
    cfg = ExtractConfig(steps=100, refine_steps=200)
    assert fit_steps(cfg, preset("neuracrypt-2")) == (round(100 * nc2), round(200 * nc2))
    assert fit_steps(replace(cfg, adapt_steps=False), preset("neuracrypt-2")) == (100, 200)
