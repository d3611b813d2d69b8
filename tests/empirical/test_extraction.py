"""Model extraction (paper §2.3.1): T' forward/backward against finite differences, and fitting."""
from dataclasses import replace

import numpy as np
import pytest

from empirical.data import bundled_images
from empirical.encoder import encode, encode_batch, patchify, preset, random_key
from empirical.extraction import ExtractConfig, fit_encoder, huber_loss, refine_encoder
from empirical.fit_loop import train
from empirical.tprime import (
    backward,
    batch_stats,
    encode_each,
    forward,
    key_from_params,
    mean_batch_stats,
    params_from_key,
)

DEPTHS = [-1, 0, 1, 2]


def family(depth, **kw):
    return preset("neuracrypt-7", **{**dict(image_size=8, patch=4, hidden=5, depth=depth), **kw})


def rel_err(a, b) -> float:
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    return float(np.linalg.norm(a - b) / max(np.linalg.norm(a) + np.linalg.norm(b), 1e-12))


def close(g, fd) -> bool:
    """Relative error below 1e-5, or both zero to rounding (a pre-BatchNorm bias has no gradient)."""
    return rel_err(g, fd) < 1e-5 or float(np.abs(g - fd).max()) < 1e-8


def f64_params(fam, seed):
    return {k: v.astype(np.float64) for k, v in params_from_key(random_key(fam, seed), np).items()}


def ref_huber(r, delta) -> float:
    """Mean Huber loss written out: quadratic (scaled by 1/delta) inside |r| <= delta, linear outside."""
    a = np.abs(r)
    return float(np.mean(np.where(a <= delta, 0.5 * r * r / delta, a - 0.5 * delta)))


@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize("depth", DEPTHS)
def test_backward_matches_finite_differences(depth, seed, central_fd):
    """Huber loss on T' with BatchNorm on batch statistics, everything in float64."""
    fam = family(depth)
    params = f64_params(fam, seed)
    rng = np.random.default_rng([seed, 7])
    rows = patchify(rng.random((3, 1, 8, 8)), 4)  # (3, 4, 16) float64
    y0, _ = forward(params, rows, fam, np)
    target = y0 + rng.standard_normal(y0.shape) * y0.std()
    delta = 0.3 * float(y0.std())  # some residuals in each regime of the Huber loss

    def loss():
        return ref_huber(forward(params, rows, fam, np)[0] - target, delta)

    y, cache = forward(params, rows, fam, np)
    assert y.dtype == np.float64 and y.shape == (3, 4, 5)
    value, dy = huber_loss(y, target, delta, np)
    r = np.abs(y - target)
    assert (r < delta).any() and (r > delta).any()
    assert value == pytest.approx(loss(), rel=1e-12)
    grads = backward(params, cache, dy, fam, np)
    assert set(grads) == set(params)
    fd = central_fd(loss, params)
    for k in params:
        assert grads[k].shape == params[k].shape, k
        assert close(grads[k], fd[k]), (k, rel_err(grads[k], fd[k]))
    for i in range(max(depth, 0)):  # a bias right before BatchNorm is cancelled by the mean
        assert np.abs(grads[f"b{i + 1}"]).max() < 1e-9
    assert np.abs(grads["W0"]).max() > 1e-4


@pytest.mark.parametrize("depth", DEPTHS)
def test_backward_for_a_linear_loss(depth, central_fd):
    """A second loss, sum(w * y): backward is checked without going through huber_loss."""
    fam = family(depth)
    params = f64_params(fam, 3)
    rng = np.random.default_rng(11)
    rows = patchify(rng.random((4, 1, 8, 8)), 4)
    w = rng.standard_normal((4, 4, 5))
    _, cache = forward(params, rows, fam, np)
    grads = backward(params, cache, w, fam, np)
    fd = central_fd(lambda: float((w * forward(params, rows, fam, np)[0]).sum()), params)
    for k in params:
        assert close(grads[k], fd[k]), k
    if depth >= 1:  # BatchNorm on batch statistics: image 0's output depends on image 1's pixels
        other = rows.copy()
        other[1] += 0.5
        assert not np.allclose(forward(params, rows, fam, np)[0][0], forward(params, other, fam, np)[0][0])


@pytest.mark.parametrize("depth", [1, 2])
def test_backward_with_frozen_batchnorm_statistics(depth, central_fd):
    """With ``bn_stats`` given, BatchNorm is a fixed affine map; the gradient must treat it so."""
    fam = family(depth)
    params = f64_params(fam, 4)
    rng = np.random.default_rng(12)
    rows = patchify(rng.random((3, 1, 8, 8)), 4)
    other = patchify(rng.random((5, 1, 8, 8)), 4)
    stats = [(m.copy(), v.copy()) for m, v in batch_stats(params, other, fam, np)]  # constants under FD
    w = rng.standard_normal((3, 4, 5))
    _, cache = forward(params, rows, fam, np, bn_stats=stats)
    grads = backward(params, cache, w, fam, np)
    fd = central_fd(lambda: float((w * forward(params, rows, fam, np, bn_stats=stats)[0]).sum()), params)
    for k in params:
        assert close(grads[k], fd[k]), (k, rel_err(grads[k], fd[k]))
    assert np.abs(grads["b1"]).max() > 1e-6  # frozen statistics do not cancel the bias


def test_huber_gradient_matches_finite_differences(central_fd):
    rng = np.random.default_rng(0)
    y, t = rng.standard_normal((3, 4, 5)), rng.standard_normal((3, 4, 5))
    delta = 0.5
    value, grad = huber_loss(y, t, delta, np)
    assert value == pytest.approx(ref_huber(y - t, delta), rel=1e-12)
    fd = central_fd(lambda: ref_huber(y - t, delta), {"y": y})["y"]
    assert rel_err(grad, fd) < 1e-6
    # L1-like far from zero: the gradient is bounded by 1 / size whatever the residual
    _, g = huber_loss(np.array([100.0, -100.0, 0.0, 0.01]), np.zeros(4), 0.1, np)
    np.testing.assert_allclose(g, [0.25, -0.25, 0.0, 0.025])


@pytest.mark.parametrize("depth", DEPTHS)
def test_forward_is_the_encoder(depth):
    """T' with Alice's weights is Alice's encoder (batch statistics of the batch encoded)."""
    fam = family(depth, image_size=16, hidden=8)
    key = random_key(fam, 5)
    x = np.random.default_rng(1).random((6, 1, 16, 16)).astype(np.float32)
    y, _ = forward(params_from_key(key, np), patchify(x, 4), fam, np)
    np.testing.assert_allclose(y, encode_batch(x, key, np), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("depth", DEPTHS)
def test_key_params_round_trip(depth):
    fam = family(depth, image_size=16, hidden=8)
    key = random_key(fam, 9)
    params = params_from_key(key, np)
    expected = {"W0", "b0"} | {f"{w}{i + 1}" for i in range(max(depth, 0)) for w in "Wb"}
    if depth >= 0:
        expected |= {"pos", "Wm", "bm"}
    assert set(params) == expected and all(v.dtype == np.float32 for v in params.values())
    back = key_from_params(params, fam)
    assert back.config == fam
    np.testing.assert_array_equal(back.conv_w, key.conv_w)
    np.testing.assert_array_equal(back.conv_b, key.conv_b)
    assert len(back.block_w) == len(key.block_w) == max(depth, 0)
    for a, b in zip(back.block_w + back.block_b, key.block_w + key.block_b, strict=True):
        np.testing.assert_array_equal(a, b)
    for g, beta in zip(back.bn_w, back.bn_b, strict=True):  # the family's BatchNorm affine: weight 1, bias 0
        np.testing.assert_array_equal(g, 1)
        np.testing.assert_array_equal(beta, 0)
    if depth >= 0:
        for a, b in [(back.pos, key.pos), (back.mix_w, key.mix_w), (back.mix_b, key.mix_b)]:
            np.testing.assert_array_equal(a, b)
    else:
        assert back.pos is None and back.mix_w is None
    again = params_from_key(back, np)
    assert set(again) == set(params)
    for k in params:
        np.testing.assert_array_equal(again[k], params[k])
    # params_from_key copies: training T' must not write into the key it started from
    params["W0"] += 1
    assert not np.array_equal(params["W0"].reshape(key.conv_w.shape), key.conv_w)


# --- BatchNorm statistics and encoding one by one ----------------------------------------------

def test_bn_stats_reproduce_batch_mode():
    fam = family(2, image_size=16, hidden=8)
    params = params_from_key(random_key(fam, 2), np)
    rows = patchify(np.random.default_rng(3).random((10, 1, 16, 16)).astype(np.float32), 4)
    stats = batch_stats(params, rows, fam, np)
    assert len(stats) == 2 and stats[0][0].shape == (8,)
    batch, _ = forward(params, rows, fam, np)
    frozen, _ = forward(params, rows, fam, np, bn_stats=stats)
    np.testing.assert_allclose(frozen, batch, rtol=1e-5, atol=1e-5)
    # frozen statistics make each image's output its own business
    alone, _ = forward(params, rows[:1], fam, np, bn_stats=stats)
    np.testing.assert_allclose(alone[0], batch[0], rtol=1e-5, atol=1e-5)


def test_encode_each_with_mean_batch_stats_approximates_batch_mode():
    fam = family(2, image_size=32, patch=8, hidden=16, bn_batch=40)
    key = random_key(fam, 4)
    imgs = bundled_images(120, 32, seed=1, patch=8)
    groups = np.arange(120) // 40
    params = params_from_key(key, np)
    batch_mode, _ = encode(imgs, key, np, shuffle=False)  # Alice's way: three BatchNorm batches
    # one group: the mean statistics are that group's own, so encoding one by one is exact
    stats = mean_batch_stats(params, imgs[:40], groups[:40], fam, np)
    one = encode_each(params, imgs[:40], fam, stats, np, chunk=7 * 16)  # chunks of 7 images of 16 patches
    np.testing.assert_allclose(one, batch_mode[:40], rtol=1e-4, atol=1e-4)
    # three groups: close, though not equal, to each group's own statistics
    each = encode_each(params, imgs, fam, mean_batch_stats(params, imgs, groups, fam, np), np)
    assert each.shape == batch_mode.shape
    err = np.abs(each - batch_mode).mean() / np.abs(batch_mode).mean()
    assert 0 < err < 0.15  # measured 0.064
    # statistics of one image alone would be far off: the averaging matters
    solo = encode_each(params, imgs, fam, batch_stats(params, patchify(imgs[:1], 8), fam, np), np)
    assert np.abs(solo - batch_mode).mean() / np.abs(batch_mode).mean() > 5 * err


def test_mean_batch_stats_average_the_drawn_batches(monkeypatch):
    """Past SAMPLE_ROWS patch rows, the average is over whole batches drawn by whole_batches."""
    from empirical import batch_sample

    fam = family(2, image_size=32, patch=8, hidden=16, bn_batch=40)
    imgs = bundled_images(120, 32, seed=1, patch=8)
    groups = np.arange(120) // 40
    params = params_from_key(random_key(fam, 4), np)
    monkeypatch.setattr(batch_sample, "SAMPLE_ROWS", 80 * fam.n_patches)  # two batches of the three
    drawn = np.unique(groups[batch_sample.whole_batches(groups, fam.n_patches)])
    assert len(drawn) == 2
    got = mean_batch_stats(params, imgs, groups, fam, np)
    each = [batch_stats(params, patchify(imgs[groups == g], 8), fam, np) for g in drawn]
    for i, (m, v) in enumerate(got):
        np.testing.assert_allclose(m, (each[0][i][0] + each[1][i][0]) / 2, rtol=1e-5, atol=1e-6)
        np.testing.assert_allclose(v, (each[0][i][1] + each[1][i][1]) / 2, rtol=1e-5, atol=1e-6)


def test_mean_batch_stats_is_none_without_batchnorm():
    for depth in (-1, 0):
        fam = family(depth, image_size=16, hidden=8)
        params = params_from_key(random_key(fam, 0), np)
        imgs = np.random.default_rng(0).random((5, 1, 16, 16)).astype(np.float32)
        assert mean_batch_stats(params, imgs, np.zeros(5, int), fam, np) is None
        np.testing.assert_allclose(encode_each(params, imgs, fam, None, np),
                                   forward(params, patchify(imgs, 4), fam, np)[0], rtol=1e-6)


# --- fitting T' to pairs from a known encoder ---------------------------------------------------

N_FIT = 128


@pytest.fixture(scope="module")
def fits():
    """fit_encoder on pairs from a known encoder at 128 px (64 patches), hidden 64; one fit per depth."""
    imgs = bundled_images(N_FIT, 128, seed=0, patch=16)
    groups = np.arange(N_FIT) // (N_FIT // 2)  # two BatchNorm batches
    done = {}

    def fit(depth):
        if depth not in done:
            fam = preset("neuracrypt-7", image_size=128, patch=16, hidden=64, bn_batch=N_FIT // 2, depth=depth)
            key = random_key(fam, 101)
            targets, _ = encode(imgs, key, np, shuffle=False)
            calls = []
            params, losses = fit_encoder(imgs, targets, groups, fam,
                                         ExtractConfig(steps=60, images_per_step=16, adapt_steps=False),
                                         np, progress=calls.append)[:2]
            assert len(losses) == 60 and sum(calls) == 60
            pred = encode_each(params, imgs, fam, mean_batch_stats(params, imgs, groups, fam, np), np)
            a, b = pred.reshape(N_FIT, -1).astype(np.float64), targets.reshape(N_FIT, -1).astype(np.float64)
            d2 = (a * a).sum(1)[:, None] - 2 * a @ b.T + (b * b).sum(1)[None, :]  # T'(x_i) vs T(x_j)
            done[depth] = losses, float(np.mean(d2.argmin(axis=0) == np.arange(N_FIT)))
        return done[depth]

    return fit


@pytest.mark.parametrize("depth", [0, 1])
def test_fit_encoder_drives_the_loss_down(fits, depth):
    losses, _ = fits(depth)
    assert np.isfinite(losses).all()
    assert np.mean(losses[-20:]) < 0.7 * np.mean(losses[:5])  # measured 0.49 -> 0.29 (depth 0), 0.65 -> 0.40 (1)


def test_fitted_encoder_tells_images_apart_depth_1(fits):
    """T'(x) is nearest to T(x) among all T(x'): what the final matching relies on."""
    _, nn_share = fits(1)
    assert nn_share >= 0.5  # measured 0.71 (chance 1/128)


@pytest.mark.xfail(strict=True, reason=(
    "known limitation: at depth 0 (neuracrypt-2) the image content is a small part of each output "
    "next to the positional embedding, and a short fit of T' does not separate images (measured "
    "0.02; 0.00 to 0.03 with other keys, images and seeds); the final stage's margins rule then "
    "keeps boosting's matching (empirical.stages.final)"))
def test_fitted_encoder_tells_images_apart_depth_0(fits):
    _, nn_share = fits(0)
    assert nn_share >= 0.5


# --- patch whitening and the squared-loss refinement ------------------------------------------

@pytest.mark.parametrize("eps", [0.0, 1e-3, 3e-2])
def test_whitened_parameters_compute_the_same_function(eps):
    """T' on whitened patches with mapped weights equals T' on raw pixels; and back again."""
    from empirical.whitening import from_white as _from_white
    from empirical.whitening import to_white as _to_white
    from empirical.whitening import whitened_patches as _whitened_patches

    fam = family(2, image_size=32, patch=8, hidden=16)
    imgs = bundled_images(12, 32, seed=2, patch=8)
    params = params_from_key(random_key(fam, 6), np)
    raw = patchify(imgs, 8)
    white, mu, z = _whitened_patches(imgs, fam, eps, np)
    if eps > 0:  # unit variance along the directions above the floor
        cov = np.cov(white.reshape(-1, white.shape[2]).T)
        assert np.abs(np.diag(cov)).max() < 1.05
    y_raw, _ = forward(params, raw, fam, np)
    y_white, _ = forward(_to_white(params, mu, z, np), white, fam, np)
    np.testing.assert_allclose(y_white, y_raw, rtol=1e-3, atol=1e-3)
    back = _from_white(_to_white(params, mu, z, np), mu, z, np)
    np.testing.assert_allclose(forward(back, raw, fam, np)[0], y_raw, rtol=1e-3, atol=1e-3)


def test_refine_encoder_lowers_the_squared_error():


    from empirical.extraction import refine_encoder

    fam = preset("neuracrypt-7", image_size=64, patch=16, hidden=32, bn_batch=32, depth=1)
    imgs = bundled_images(64, 64, seed=3, patch=16)
    groups = np.arange(64) // 32
    targets, _ = encode(imgs, random_key(fam, 7), np, shuffle=False)
    cfg = ExtractConfig(steps=30, images_per_step=16, refine_steps=30, adapt_steps=False)
    params = fit_encoder(imgs, targets, groups, fam, cfg, np).params

    def mse(p):
        return float(np.mean([((forward(p, patchify(imgs[groups == g], 16), fam, np)[0] - targets[groups == g]) ** 2)
                              .mean() for g in (0, 1)]))

    refined, losses = refine_encoder(params, imgs, targets, groups, fam, cfg, np)[:2]
    assert len(losses) == 30 and np.isfinite(losses).all()
    assert mse(refined) < mse(params)
    none = refine_encoder(params, imgs, targets, groups, fam, replace(cfg, refine_steps=0), np).losses
    assert none == []  # no steps: only the last layer's least-squares refit


# --- the held-back pairs in the training loop ----------------------------------------------------

def test_training_stops_when_the_held_out_error_stops_falling(small_pairs):
    """With a learning rate of 0 the held-out error never falls below its first value: the fit keeps the
    parameters of the first check, and stops at the first check that is both PATIENCE checks later and
    past STOP_FROM of its steps (not while the learning rate is still high)."""
    from empirical.fit_loop import EVAL_EVERY, PATIENCE, STOP_FROM
    from empirical.holdout import held_out_plan, holdout_split
    from empirical.whitening import whitened_patches as _whitened_patches

    fam, imgs, targets, groups = small_pairs()
    split = holdout_split(groups, ExtractConfig(holdout=0.4))
    rows = _whitened_patches(imgs, fam, 1e-3, np).rows
    params = params_from_key(random_key(fam, 1), np)
    held = held_out_plan(targets, groups, split, np)
    no_step = lambda y, t: (0.0, np.zeros_like(y))  # noqa: E731
    ran = {}
    for steps in (1000, 100):
        calls = []
        log = train(params, rows, targets, groups, split.fit, fam, steps, 0.0, 8, no_step,
                    np.random.default_rng(0), np, False, calls.append, held=held)
        first_allowed = max(EVAL_EVERY * (PATIENCE + 1), int(np.ceil(STOP_FROM * steps / EVAL_EVERY)) * EVAL_EVERY)
        assert len(log.losses) == min(first_allowed, steps)
        assert sum(calls) == steps  # the progress bar still reaches its end
        assert log.best_step == EVAL_EVERY and log.held_out[-1][0] == len(log.losses)
        ran[steps] = len(log.losses)
    assert ran[1000] == 500  # STOP_FROM 0.5
    full = train(params, rows, targets, groups, split.fit, fam, 60, 0.0, 8, no_step,
                 np.random.default_rng(0), np, False, None)
    assert len(full.losses) == 60 and full.held_out == []  # no hold-out: every step runs


def test_fits_never_train_on_held_back_pairs(small_pairs):
    """Poison every held-back target: a fit that never reads them is unchanged."""
    from empirical.holdout import holdout_split

    fam, imgs, targets, groups = small_pairs()
    cfg = ExtractConfig(steps=30, refine_steps=30, images_per_step=16, holdout=0.4, adapt_steps=False)
    split = holdout_split(groups, cfg)
    poisoned = targets.copy()
    poisoned[split.held] = 1e3
    held_none = split._replace(held=np.arange(0))  # no measurement either: only the fitted pairs are read
    a = fit_encoder(imgs, targets, groups, fam, cfg, np, split=held_none)
    b = fit_encoder(imgs, poisoned, groups, fam, cfg, np, split=held_none)
    assert len(split.held) > 0
    for k in a.params:
        np.testing.assert_array_equal(a.params[k], b.params[k])


def test_fit_keeps_the_parameters_with_the_lowest_held_out_error(small_pairs):
    fam, imgs, targets, groups = small_pairs()  # learns slowly: the probe (tested below) is off here
    cfg = ExtractConfig(steps=100, images_per_step=16, holdout=0.4, adapt_steps=False, probe_alpha=0.0)
    fit = fit_encoder(imgs, targets, groups, fam, cfg, np)
    errs = [e for _, e in fit.held_out]
    assert len(errs) >= 2 and fit.best_step == fit.held_out[int(np.argmin(errs))][0]
    assert errs[-1] < errs[0]  # the fit generalises to pairs it never saw


# --- the early probe: a fit that cannot learn gives up ----------------------------------------------

def test_fit_gives_up_early_on_pairs_that_carry_no_encoder(small_pairs):
    """Targets of other images (every pair wrong): the probe finds T' no better than chance on the
    held-back pairs and the fit stops at its first look; on the right pairs it passes every look."""
    from empirical.extraction import PROBE_AT

    fam, imgs, targets, groups = small_pairs()
    cfg = ExtractConfig(steps=200, lr=2e-2, images_per_step=16, holdout=0.4, adapt_steps=False)
    wrong = targets[np.random.default_rng(0).permutation(len(targets))]
    bad = fit_encoder(imgs, wrong, groups, fam, cfg, np)
    assert bad.gave_up and len(bad.losses) == round(PROBE_AT[0] * cfg.steps)
    assert bad.probe["right"] < bad.probe["bar"] and bad.probe["n"] > 0 and bad.probes == (bad.probe,)
    good = fit_encoder(imgs, targets, groups, fam, cfg, np)
    assert not good.gave_up and len(good.losses) > len(bad.losses)
    assert all(p["right"] >= p["bar"] for p in good.probes) and good.probe["after_fit"]
    assert [p["step"] for p in good.probes[:-1]] == [round(a * cfg.steps) for a in PROBE_AT]
    off = fit_encoder(imgs, wrong, groups, fam, replace(cfg, probe_alpha=0.0), np)
    assert off.probe is None and not off.gave_up and off.probes == ()


@pytest.mark.parametrize("fail_at", [1, 2])
def test_fit_gives_up_at_a_later_look_after_passing_an_earlier_one(small_pairs, monkeypatch, fail_at):
    """A fit that passes its first look and ends up at chance level is stopped at its second look
    (``fail_at`` 1: no more steps run) or, when fitted, refused a refit (``fail_at`` 2: every step run).
    The held-back matching is scripted: every look before ``fail_at`` right on all pairs, then none."""
    import empirical.extraction as ex

    looks = []

    def scripted(params, images, targets, groups, held, family, xp):
        looks.append(len(held))
        right = 1.0 if len(looks) <= fail_at else 0.0
        return {"rows": right, "patch_means": right, "n": len(held)}

    monkeypatch.setattr(ex, "held_out_matching", scripted)
    fam, imgs, targets, groups = small_pairs()
    cfg = ExtractConfig(steps=40, images_per_step=16, holdout=0.4, adapt_steps=False)
    fit = fit_encoder(imgs, targets, groups, fam, cfg, np)
    assert fit.gave_up and len(fit.probes) == fail_at + 1 == len(looks)
    assert [p["right"] >= p["bar"] for p in fit.probes] == [True] * fail_at + [False]
    if fail_at == 1:
        assert len(fit.losses) == fit.probe["step"] == round(ex.PROBE_AT[1] * cfg.steps)
    else:
        assert fit.probe["after_fit"] and len(fit.losses) == fit.probe["step"] == cfg.steps


@pytest.mark.parametrize("n", [32, 101, 1000])
@pytest.mark.parametrize("alpha", [0.05, 0.01, 0.001])
def test_chance_bar_is_the_fewest_right_picks_chance_rarely_reaches(n, alpha):
    from scipy.stats import binom

    from empirical.extraction import chance_bar

    k = chance_bar(n, alpha)
    assert binom.sf(k - 1, n, 1 / n) <= alpha < binom.sf(k - 2, n, 1 / n)
    picks = np.random.default_rng(0).integers(0, n, (20000, n)) == np.arange(n)  # T' guessing blindly
    assert np.mean(picks.sum(axis=1) >= k) < 2 * alpha + 0.002


# --- whitened rows computed on read, when they would not fit the memory budget ---------------------

def test_whitened_rows_on_read_equal_the_whole_array(small_pairs):
    """Over the budget, the rows are whitened a batch at a time from the same whitening; the values
    equal those of the whole array."""
    from empirical.matched import MatchedImages
    from empirical.whitening import WhiteRows
    from empirical.whitening import whitened_patches as _whitened_patches

    fam, imgs, _, _ = small_pairs()
    whole = _whitened_patches(imgs, fam, 1e-3, np)
    m = np.random.default_rng(0).permutation(len(imgs))
    lazy = _whitened_patches(MatchedImages(imgs[np.argsort(m)], m, np), fam, 1e-3, np, memory_budget=1)
    assert isinstance(lazy.rows, WhiteRows) and lazy.rows.shape == whole.rows.shape
    np.testing.assert_array_equal(lazy.mean, whole.mean)
    np.testing.assert_array_equal(lazy.transform, whole.transform)
    idx = np.array([5, 0, 3])
    np.testing.assert_allclose(lazy.rows[idx], whole.rows[idx], rtol=1e-6, atol=1e-6)
    within = _whitened_patches(imgs, fam, 1e-3, np, memory_budget=2**40)  # fits: the whole array, as before
    np.testing.assert_array_equal(within.rows, whole.rows)


def test_whitening_from_a_sample_whatever_the_budget(small_pairs, monkeypatch):
    """Beyond WHITEN_IMAGES images the whitening is estimated from every k-th image only, with the rows
    whitened at once or on read alike."""
    from empirical import whitening

    fam, imgs, _, _ = small_pairs()
    monkeypatch.setattr(whitening, "WHITEN_IMAGES", 4)
    k = -(-len(imgs) // 4)
    sample = whitening.patch_whitening(patchify(imgs[::k], fam.patch), 1e-3, np)
    lazy = whitening.whitened_patches(imgs, fam, 1e-3, np, memory_budget=1)
    whole = whitening.whitened_patches(imgs, fam, 1e-3, np)
    for got in (lazy, whole):
        np.testing.assert_array_equal(got.mean, sample.mean)
        np.testing.assert_array_equal(got.transform, sample.transform)
    assert whole.rows.shape == (len(imgs), fam.n_patches, fam.patch_dim)
    np.testing.assert_allclose(lazy.rows[np.arange(len(imgs))], whole.rows, rtol=1e-6, atol=1e-6)


# --- the passes over matched pairs at a large game's size ------------------------------------------

def test_refit_mixer_in_chunks_equals_it_at_once(small_pairs, monkeypatch):
    """A batch with more patch rows than MIXER_CHUNK_ROWS runs through T' in chunks with its own
    statistics frozen: the same least-squares solution. With the true layers below the mixer, it is
    the true mixer."""
    from empirical import extraction
    from empirical.extraction import refit_mixer

    fam, imgs, targets, groups = small_pairs(depth=2)
    true = params_from_key(random_key(fam, 9), np)
    start = {**true, "Wm": np.zeros_like(true["Wm"]), "bm": np.zeros_like(true["bm"])}
    whole = refit_mixer(start, imgs, targets, groups, fam, np, ridge=0.0)
    monkeypatch.setattr(extraction, "MIXER_CHUNK_ROWS", 5 * fam.n_patches)  # 48 images a batch: 10 chunks
    chunked = refit_mixer(start, imgs, targets, groups, fam, np, ridge=0.0)
    for k in ("Wm", "bm"):
        np.testing.assert_allclose(chunked[k], whole[k], rtol=1e-3, atol=1e-4)
        np.testing.assert_allclose(whole[k], true[k], rtol=1e-2, atol=1e-3)


def test_refit_mixer_reads_whole_batches_up_to_the_cap(small_pairs, monkeypatch):
    """Past SAMPLE_ROWS patch rows, the mixer is fitted on whole batches only: poisoning the targets of
    the batch left out changes nothing, and poisoning one that is read does."""
    from empirical import batch_sample
    from empirical.extraction import refit_mixer

    fam, imgs, targets, groups = small_pairs(depth=1)
    params = params_from_key(random_key(fam, 2), np)
    monkeypatch.setattr(batch_sample, "SAMPLE_ROWS", 48 * fam.n_patches)  # one batch of the two
    used = np.unique(groups[batch_sample.whole_batches(groups, fam.n_patches)])
    assert len(used) == 1
    base = refit_mixer(params, imgs, targets, groups, fam, np)
    for g, changes in ((1 - used[0], False), (used[0], True)):
        poisoned = targets.copy()
        poisoned[groups == g] += 10.0
        got = refit_mixer(params, imgs, poisoned, groups, fam, np)
        assert (not np.array_equal(got["bm"], base["bm"])) == changes


def test_a_step_reads_at_most_step_rows_patch_rows(small_pairs, monkeypatch):
    """Images with many patches: fewer images per step, so a step's patch rows stay at STEP_ROWS."""
    from empirical import fit_loop
    from empirical.holdout import holdout_split

    fam, imgs, targets, groups = small_pairs()
    rows = patchify(imgs, fam.patch)
    split = holdout_split(groups, ExtractConfig(holdout=0.0))
    seen = []

    def loss(y, t):
        seen.append(y.shape[0])
        return 0.0, np.zeros_like(y)

    monkeypatch.setattr(fit_loop, "STEP_ROWS", 3 * fam.n_patches + 1)
    train(params_from_key(random_key(fam, 1), np), rows, targets, groups, split.fit, fam, 4, 0.0, 16, loss,
          np.random.default_rng(0), np, False, None)
    assert seen == [3] * 4


def test_a_wider_t_prime_is_fitted_saved_as_a_key_and_encodes_as_its_parameters(small_pairs):
    """ExtractConfig.widths makes T' that wide inside (its output the family's width); the least-squares
    refit of its last layer uses every unit of its last block, and its key encodes as its parameters do."""
    fam, imgs, targets, groups = small_pairs()
    cfg = ExtractConfig(steps=20, refine_steps=10, images_per_step=16, adapt_steps=False, probe_alpha=0,
                        widths=(32,))
    fit = fit_encoder(imgs, targets, groups, fam, cfg, np)
    assert fit.params["W0"].shape == (32, fam.patch_dim) and fit.params["W1"].shape == (32, 32)
    assert fit.params["Wm"].shape == (fam.hidden, 32)
    params = refine_encoder(fit.params, imgs, targets, groups, fam, cfg, np).params
    key = key_from_params(params, fam)
    assert key.widths == (32, 32)
    y, _ = forward(params, patchify(imgs[groups == 0], 8), fam, np)
    np.testing.assert_allclose(encode_batch(imgs[groups == 0], key, np), y, rtol=1e-5, atol=1e-5)
    with pytest.raises(ValueError, match="has 2 layer widths"):
        fit_encoder(imgs, targets, groups, fam, replace(cfg, widths=(32, 32, 32)), np)


# --- decay of the first layer along the directions the patches hardly use --------------------------

@pytest.mark.parametrize("eps", [1e-3, 3e-2])
def test_floor_shares_are_one_at_the_floor_and_small_along_the_main_direction(eps):
    """``floor_shares``: (s_min + f s_max) / (s_k + f s_max) per whitened direction, read off the transform."""
    from empirical.whitening import WHITEN_ROWS, floor_shares, patch_whitening

    rows = patchify(bundled_images(16, 32, seed=1, patch=8), 8)
    mu, z = patch_whitening(rows, eps, np)
    flat = rows.reshape(-1, rows.shape[2]).astype(np.float64) - mu
    sub = flat[:: max(1, len(flat) // WHITEN_ROWS)]  # the rows the whitening was estimated from
    s = np.maximum(np.linalg.eigvalsh(sub.T @ sub / len(sub)), 0)  # ascending, as z's columns
    want = (s.min() + eps * s.max()) / (s + eps * s.max())
    got = floor_shares(z, np)
    np.testing.assert_allclose(got, want, rtol=1e-6)
    assert got.max() == 1.0 and got[-1] < 1.1 * eps + s.min() / s.max()  # the main direction: about f


def test_decay_shrinks_each_first_layer_direction_by_its_share(small_pairs):
    """With no gradient (Adam's step is then zero), the decay alone scales the first layer's column k
    by the product over steps of (1 - lr_t * decay * share_k); every other parameter is unchanged."""
    from empirical.extraction import _shrink
    from empirical.fit_loop import WARMUP_STEPS
    from empirical.whitening import whitened_patches as _whitened_patches

    fam, imgs, targets, groups = small_pairs()
    rows, _, z = _whitened_patches(imgs, fam, 1e-3, np)
    assert _shrink(z, ExtractConfig(decay=0.0), np) is None  # 0: off
    shrink = _shrink(z, ExtractConfig(decay=10.0), np)
    params = params_from_key(random_key(fam, 1), np)
    before = {k: v.copy() for k, v in params.items()}
    steps, lr = 40, 2e-3
    no_step = lambda y, t: (0.0, np.zeros_like(y))  # noqa: E731
    train(params, rows, targets, groups, np.arange(len(imgs)), fam, steps, lr, 8, no_step,
          np.random.default_rng(0), np, False, None, shrink=shrink)
    f = [min(1.0, (i + 1) / WARMUP_STEPS) * 0.5 * (1 + np.cos(np.pi * i / steps)) for i in range(steps)]
    factor = np.prod([1 - lr * fi * shrink.astype(np.float64) for fi in f], axis=0)  # (F,)
    np.testing.assert_allclose(params["W0"], before["W0"] * factor, rtol=1e-4)
    assert factor.min() < 0.85 and factor.max() > 0.99  # the floor's directions shrink, the main one hardly
    for k in before:
        if k != "W0":
            np.testing.assert_array_equal(params[k], before[k])


def test_hidden_shrinks_are_one_along_an_input_that_never_varies(small_pairs):
    """A first-layer unit off for every patch makes block 1's input constant along its axis: the block's
    decay matrix is 1 there (and nothing else), symmetric, with shares from about the floor to 1."""
    from empirical.fit_loop import HIDDEN_FLOOR, hidden_shrinks

    fam, imgs, _, _ = small_pairs()
    params = params_from_key(random_key(fam, 2), np)
    params["b0"][3] = -1e6  # unit 3 is off everywhere
    mats = hidden_shrinks(params, patchify(imgs, fam.patch), fam, np)
    assert len(mats) == fam.depth and all(m.shape == (fam.hidden, fam.hidden) for m in mats)
    d = mats[0].astype(np.float64)
    np.testing.assert_allclose(d, d.T, atol=1e-6)
    np.testing.assert_allclose(d[3], np.eye(fam.hidden)[3], atol=1e-4)
    share = np.linalg.eigvalsh(d)
    assert share.max() <= 1 + 1e-5 and share.min() < 10 * HIDDEN_FLOOR


def test_hidden_decay_shrinks_a_block_along_the_inputs_it_never_sees(small_pairs):
    """With no gradient, ``hidden_decay`` shrinks block 1's weights on the dead unit's input, leaves their
    main directions nearly alone, and off (0) changes nothing."""
    fam, imgs, targets, groups = small_pairs()
    rows = patchify(imgs, fam.patch)
    no_step = lambda y, t: (0.0, np.zeros_like(y))  # noqa: E731
    out = {}
    for decay in (0.0, 10.0):
        params = params_from_key(random_key(fam, 2), np)
        params["b0"][3] = -1e6
        before = params["W1"].copy()
        train(params, rows, targets, groups, np.arange(len(imgs)), fam, 40, 2e-3, 8, no_step,
              np.random.default_rng(0), np, False, None, hidden_decay=decay)
        out[decay] = (before, params["W1"])
    np.testing.assert_array_equal(*out[0.0])
    before, after = out[10.0]
    kept = np.linalg.norm(after, axis=0) / np.linalg.norm(before, axis=0)  # per input unit of block 1
    assert kept[3] < 0.85 and np.median(kept) > kept[3] + 0.05


@pytest.mark.parametrize("refresh", [0, 1])
def test_a_step_takes_its_whole_batch_statistics_with_bn_refresh(small_pairs, refresh):
    """bn_refresh 0: BatchNorm over the step's own images; k > 0: over every pair of its Alice batch,
    the ones it does not fit too (here half of each batch is fitted, the step reads all of that half)."""

    fam, imgs, targets, groups = small_pairs()
    rows = patchify(imgs, fam.patch)
    fit = np.flatnonzero(np.arange(len(imgs)) % 2 == 0)  # half of each batch
    params = params_from_key(random_key(fam, 3), np)
    seen = []

    def loss(y, t):
        seen.append(y.copy())
        return 0.0, np.zeros_like(y)

    train(params, rows, targets, groups, fit, fam, 1, 0.0, len(imgs), loss, np.random.default_rng(0), np,
          False, None, bn_refresh=refresh)
    step = [fit[groups[fit] == b] for b in np.unique(groups)]  # what a step reads, batch by batch
    own = [forward(params, rows[i], fam, np).y for i in step]
    whole = [forward(params, rows[i], fam, np, bn_stats=batch_stats(params, rows[groups == b], fam, np)).y
             for b, i in zip(np.unique(groups), step, strict=True)]
    expect = whole if refresh else own
    other = own if refresh else whole
    assert any(np.allclose(seen[0], e, atol=1e-5) for e in expect)
    assert not any(np.allclose(seen[0], o, atol=1e-3) for o in other)


def test_bn_refresh_samples_large_batches_for_their_statistics(monkeypatch):
    """A batch of more than BN_STATS_ROWS patch rows stands for itself by a sorted sample of its images."""
    from empirical import fit_loop

    batch = np.arange(10, 50)
    assert np.array_equal(fit_loop._stats_images(batch, 64, np.random.default_rng(0)), batch)
    monkeypatch.setattr(fit_loop, "BN_STATS_ROWS", 64 * 8)
    got = fit_loop._stats_images(batch, 64, np.random.default_rng(0))
    assert len(got) == 8 and np.all(np.diff(got) > 0) and np.isin(got, batch).all()


# --- checkpoints: a fit stopped part-way resumes bit for bit ----------------------------------------

class _Stop(Exception):
    pass


def _stopping_after(k: int, calls: list | None = None):
    """A progress callback that stops the run once ``k`` steps have been reported (each call's count
    appended to ``calls`` when given)."""
    done = [0]

    def progress(n: int) -> None:
        if calls is not None:
            calls.append(n)
        done[0] += n
        if done[0] >= k:
            raise _Stop

    return progress


@pytest.mark.parametrize("bn_refresh", [0, 3])
def test_a_fit_stopped_part_way_resumes_from_its_checkpoint_bit_for_bit(small_pairs, tmp_path, bn_refresh):
    """A fit (probe, held-out checks, revived units, BatchNorm statistics kept across steps) killed after
    133 of 200 steps, run again from its checkpoint, killed again after 178 (past the middle: early
    stopping counts checks without a new best, a best copy is held) and run again ends exactly where
    an uninterrupted fit ends; so does a refit stopped after 41 of 70. Each run goes on from the last
    save, not from the start (its progress bar's first advance)."""
    from empirical.checkpoint import Checkpoint

    fam, imgs, targets, groups = small_pairs()
    cfg = ExtractConfig(steps=200, refine_steps=70, lr=2e-2, images_per_step=16, holdout=0.4, adapt_steps=False,
                        bn_refresh=bn_refresh)
    whole = fit_encoder(imgs, targets, groups, fam, cfg, np)
    assert not whole.gave_up and len(whole.losses) == 200
    cp = Checkpoint(tmp_path / "fit.npz", every_steps=5)
    with pytest.raises(_Stop):
        fit_encoder(imgs, targets, groups, fam, cfg, np, progress=_stopping_after(133), checkpoint=cp)
    assert cp.load()[1]["step"] == 130
    calls = []
    with pytest.raises(_Stop):
        fit_encoder(imgs, targets, groups, fam, cfg, np, progress=_stopping_after(178, calls), checkpoint=cp)
    assert calls[0] == 130
    arrays, meta = cp.load()
    errs = [e for k, e in whole.held_out if k <= 175]
    assert meta["step"] == 175 and meta["since"] == len(errs) - 1 - int(np.argmin(errs)) and "best.W0" in arrays
    calls = []
    resumed = fit_encoder(imgs, targets, groups, fam, cfg, np, progress=calls.append, checkpoint=cp)
    assert calls[0] == 175 and sum(calls) == cfg.steps  # the bar counts the steps done before the stop
    assert resumed.losses == whole.losses and resumed.held_out == whole.held_out
    assert resumed.best_step == whole.best_step and resumed.probes == whole.probes and len(whole.probes) == 3
    for k in whole.params:
        np.testing.assert_array_equal(resumed.params[k], whole.params[k])

    ref = refine_encoder(whole.params, imgs, targets, groups, fam, cfg, np)
    cp = Checkpoint(tmp_path / "refine.npz", every_steps=20)
    with pytest.raises(_Stop):
        refine_encoder(whole.params, imgs, targets, groups, fam, cfg, np, progress=_stopping_after(41), checkpoint=cp)
    calls = []
    again = refine_encoder(whole.params, imgs, targets, groups, fam, cfg, np, progress=calls.append, checkpoint=cp)
    assert calls[0] == 40 and again.losses == ref.losses and again.held_out == ref.held_out
    for k in ref.params:
        np.testing.assert_array_equal(again.params[k], ref.params[k])


def test_a_checkpoint_of_another_fit_or_a_damaged_one_is_not_resumed(small_pairs, tmp_path):
    """A save from a fit of other settings (another step count) is ignored with a warning, as is one that
    lacks part of the state; the fit then runs from its start and ends as an uninterrupted one."""
    from empirical.checkpoint import Checkpoint

    fam, imgs, targets, groups = small_pairs()
    cfg = ExtractConfig(steps=60, images_per_step=16, holdout=0.4, adapt_steps=False, probe_alpha=0.0)
    whole = fit_encoder(imgs, targets, groups, fam, cfg, np)
    path = tmp_path / "fit.npz"
    with pytest.raises(_Stop):
        fit_encoder(imgs, targets, groups, fam, replace(cfg, steps=80), np, progress=_stopping_after(33),
                    checkpoint=Checkpoint(path, every_steps=10))
    for damage in ("other settings", "no moments"):
        if damage == "no moments":
            cp = Checkpoint(path, every_steps=10)
            with pytest.raises(_Stop):
                fit_encoder(imgs, targets, groups, fam, cfg, np, progress=_stopping_after(33), checkpoint=cp)
            arrays, meta = cp.load()
            cp.save({k: v for k, v in arrays.items() if not k.startswith("m.")}, meta)
        warnings, calls = [], []
        cp = Checkpoint(path, warn=warnings.append)
        again = fit_encoder(imgs, targets, groups, fam, cfg, np, progress=calls.append, checkpoint=cp)
        assert len(warnings) == 1 and str(path) in warnings[0] and not cp.loaded and calls[0] == 1, damage
        assert again.losses == whole.losses
        for k in whole.params:
            np.testing.assert_array_equal(again.params[k], whole.params[k])
