"""The --plots figures: written, readable PNGs, one per figure."""
import types

import numpy as np
from PIL import Image

from empirical.alice import game_in_memory
from empirical.data import bundled_images
from empirical.encoder import preset
from empirical.evaluate import true_matching
from empirical.plots import attack_figures


def test_attack_figures_write_two_pngs(tmp_path):
    fam = preset("neuracrypt-7", image_size=32, patch=16, hidden=8)
    imgs = bundled_images(6, 32, seed=1)
    game, secrets = game_in_memory(imgs, [f"{i}.png" for i in range(6)], fam, 6, seed=1)
    truth = true_matching(game, secrets)
    wrong = truth.copy()
    wrong[[0, 1]] = wrong[[1, 0]]
    result = types.SimpleNamespace(matching=wrong)
    rows = [("first matching", 0.5, 1.0, ""), ("model extraction", None, 2.0, ""), ("final matching", 1.0, 0.5, "")]
    paths = attack_figures(tmp_path / "plots", game, result, rows, truth)
    assert [p.name for p in paths] == ["examples.png", "stages.png"]
    for p in paths:
        with Image.open(p) as im:
            assert im.format == "PNG" and im.size[0] > 300 and im.size[1] > 200
            assert np.asarray(im.convert("L")).std() > 5  # not a blank canvas
