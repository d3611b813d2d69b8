"""fit_budget: extraction's step counts per family."""
import math
from dataclasses import replace

import numpy as np

from empirical.encoder import preset
from empirical.extraction import ExtractConfig
from empirical.fit_budget import MAX_STEP_SCALE, MIN_REFINE_PASSES, STEP_ROWS, fit_steps, images_per_step, step_scale


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


def test_the_refit_gets_enough_passes_over_many_large_images():
    nc7_256 = preset("neuracrypt-7", image_size=256)  # 256 patches: 16 images a step
    cfg = ExtractConfig()
    assert images_per_step(cfg.refine_images_per_step, nc7_256) == STEP_ROWS // 256 == 16
    # about the challenge's geometry: 13,179 fitted pairs need ceil(2 * 13,179 / 16) steps for two passes
    assert fit_steps(cfg, nc7_256, 13_179) == (cfg.steps, math.ceil(MIN_REFINE_PASSES * 13_179 / 16))
    # more pairs: capped at MAX_STEP_SCALE times the configured steps
    assert fit_steps(cfg, nc7_256, 10**6)[1] == round(MAX_STEP_SCALE * cfg.refine_steps)
    # the default size: 900 fitted pairs, 64 a step, are many passes already; nothing changes
    nc7 = preset("neuracrypt-7")
    assert fit_steps(cfg, nc7, 900) == fit_steps(cfg, nc7) == (cfg.steps, cfg.refine_steps)
    # never fewer than the family's scaled steps, and not without adapt_steps or for a refit of none
    nc2 = preset("neuracrypt-2")
    assert fit_steps(cfg, nc2, 900) == fit_steps(cfg, nc2)
    assert fit_steps(replace(cfg, adapt_steps=False), nc7_256, 13_179) == (cfg.steps, cfg.refine_steps)
    assert fit_steps(replace(cfg, refine_steps=0), nc7_256, 13_179)[1] == 0


def test_refine_encoder_runs_the_steps_its_pairs_need():
    from empirical.data import bundled_images
    from empirical.encoder import encode, random_key
    from empirical.extraction import refine_encoder
    from empirical.tprime import params_from_key

    fam = preset("neuracrypt-7", image_size=64, patch=16, hidden=16, bn_batch=16, depth=1)
    imgs = bundled_images(32, 64, seed=4, patch=16)
    groups = np.arange(32) // 16
    targets, _ = encode(imgs, random_key(fam, 8), np, shuffle=False)
    cfg = ExtractConfig(refine_steps=2, refine_images_per_step=8)  # 32 pairs (no hold-out), 8 a step: 8 steps
    want = fit_steps(cfg, fam, 32)[1]
    assert want == 8
    losses = refine_encoder(params_from_key(random_key(fam, 9), np), imgs, targets, groups, fam, cfg, np).losses
    assert len(losses) == want
