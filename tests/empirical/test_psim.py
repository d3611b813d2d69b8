"""p-sim (paper §2.1.1): the contrastive loss and its gradients, training pairs, training, evaluation."""
import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy.special import logsumexp

import empirical.psim as psim_mod
from empirical.encoder import patchify, preset
from empirical.moments import moment_features
from empirical.psim import (
    LOG_T_RANGE,
    PsimConfig,
    contrastive_loss,
    evaluate_psim,
    patch_features,
    row_features,
    train_psim,
    training_pairs,
)


def rel_err(a, b) -> float:
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    return float(np.linalg.norm(a - b) / max(np.linalg.norm(a) + np.linalg.norm(b), 1e-12))


def unit(a):
    return a / np.linalg.norm(a, axis=-1, keepdims=True)


def reference_loss(f, g, log_t) -> float:
    """Symmetric InfoNCE written from scratch with log-sum-exp: pair i is (f_i, g_i)."""
    s = np.exp(log_t) * (f @ g.T)
    d = np.diag(s)
    rows = d - logsumexp(s, axis=1)  # f_i picks g_i among all g
    cols = d - logsumexp(s, axis=0)  # g_i picks f_i among all f
    return float(-0.5 * (rows.mean() + cols.mean()))


@settings(max_examples=25, deadline=None)
@given(seed=st.integers(0, 2**31 - 1), b=st.integers(1, 7), e=st.integers(1, 5),
       log_t=st.floats(0.0, float(np.log(10.0))))
def test_contrastive_loss_value_and_gradients(central_fd, seed, b, e, log_t):
    # (up to t = 10: with t near 100 a diagonal probability can fall to ~1e-29, where the loss's
    # 1e-30 floor inside the log shifts the reported value; the gradients ignore that floor)
    rng = np.random.default_rng(seed)
    f, g = unit(rng.standard_normal((b, e))), unit(rng.standard_normal((b, e)))
    loss, d_f, d_g, d_lt = contrastive_loss(f, g, log_t, np)
    assert abs(loss - reference_loss(f, g, log_t)) < 1e-9 * max(1.0, abs(loss))
    assert d_f.shape == f.shape and d_g.shape == g.shape

    eps = 1e-6
    # the loss as a function of f and g themselves (no normalisation in between)
    fd = central_fd(lambda: reference_loss(f, g, log_t), {"f": f, "g": g}, eps)
    fd_f, fd_g = fd["f"], fd["g"]
    fd_t = (reference_loss(f, g, log_t + eps) - reference_loss(f, g, log_t - eps)) / (2 * eps)
    assert rel_err(d_f, fd_f) < 1e-5 or np.abs(d_f - fd_f).max() < 1e-8
    assert rel_err(d_g, fd_g) < 1e-5 or np.abs(d_g - fd_g).max() < 1e-8
    assert abs(d_lt - fd_t) < 1e-5 * max(1.0, abs(fd_t))


def test_contrastive_loss_is_symmetric_and_rewards_true_pairs():
    rng = np.random.default_rng(0)
    f, g = unit(rng.standard_normal((8, 4))), unit(rng.standard_normal((8, 4)))
    a = contrastive_loss(f, g, 1.0, np)
    b = contrastive_loss(g, f, 1.0, np)
    assert abs(a[0] - b[0]) < 1e-12
    np.testing.assert_allclose(a[1], b[2], atol=1e-12)  # the roles of the two towers swap
    # identical pairs at a high temperature: nearly zero loss; random pairs: about log B
    aligned = contrastive_loss(f, f, np.log(100.0), np)[0]
    assert aligned < 0.5 * a[0]
    assert abs(contrastive_loss(f, g, 0.0, np)[0] - np.log(8)) < 0.5


def test_contrastive_loss_float32_matches_float64():
    rng = np.random.default_rng(1)
    f, g = unit(rng.standard_normal((64, 16))), unit(rng.standard_normal((64, 16)))
    l64, df64, _, dt64 = contrastive_loss(f, g, 2.0, np)
    l32, df32, _, dt32 = contrastive_loss(f.astype(np.float32), g.astype(np.float32), 2.0, np)
    assert df32.dtype == np.float32
    assert abs(l32 - l64) < 1e-5 and abs(dt32 - dt64) < 1e-4
    assert rel_err(df32, df64) < 1e-4


# --- features and training pairs ---------------------------------------------------------------

FAM = preset("neuracrypt-7", image_size=32, patch=8, hidden=16, bn_batch=8, depth=2)


def _images(n, seed=0):
    return np.random.default_rng(seed).random((n, 1, 32, 32)).astype(np.float32)


def test_patch_and_row_features_are_standardised_per_position():
    imgs = _images(20)
    pf = patch_features(imgs, FAM, 6, np)
    assert pf.shape == (20, 16, 6) and pf.dtype == np.float32
    np.testing.assert_allclose(pf.mean(axis=0), 0, atol=1e-5)
    np.testing.assert_allclose(pf.std(axis=0), 1, atol=1e-3)
    raw = moment_features(patchify(imgs, 8), 6, np)  # (N, P, K)
    np.testing.assert_allclose(pf, (raw - raw.mean(0)) / (raw.std(0) + 1e-6), atol=1e-4)
    enc = np.random.default_rng(1).standard_normal((20, 16, 16)).astype(np.float32) * 3 + 5
    rf = row_features(enc, 6, np)
    assert rf.shape == (20, 16, 6)
    np.testing.assert_allclose(rf.std(axis=0), 1, atol=1e-3)


def test_training_pairs_are_aligned_patch_row_pairs(monkeypatch):
    """Row j of the attacker's own unshuffled encoding is paired with patch j of the same image."""
    seen_keys, seen_batches = [], []
    real_key, real_encode = psim_mod.random_key, psim_mod.encode_batch

    def record_key(cfg, seed):
        k = real_key(cfg, seed)
        seen_keys.append(k)
        return k

    def record_encode(x, key, xp):
        out = real_encode(x, key, xp)
        seen_batches.append((np.array(x), out))
        return out

    monkeypatch.setattr(psim_mod, "random_key", record_key)
    monkeypatch.setattr(psim_mod, "encode_batch", record_encode)
    imgs = _images(12)
    cfg = PsimConfig(moments=5, n_encoders=3, images_per_encoder=7)
    pairs = training_pairs(imgs, FAM, cfg, seed=4, xp=np)
    assert len(pairs) == 3 and len(seen_keys) == 3 and len(seen_batches) == 3
    assert len({k.conv_w.tobytes() for k in seen_keys}) == 3  # a fresh encoder each time
    pf_all = patch_features(imgs, FAM, 5, np)
    for (pf, rf), (x, enc) in zip(pairs, seen_batches, strict=True):
        assert pf.shape == rf.shape == (7 * 16, 5)
        # the encoded images are 7 distinct given images, and pf holds their patch features in order
        which = [int(np.flatnonzero((imgs == xi).all(axis=(1, 2, 3)))[0]) for xi in x]
        assert len(set(which)) == 7
        np.testing.assert_array_equal(pf, pf_all[which].reshape(-1, 5))
        np.testing.assert_allclose(rf, row_features(enc, 5, np).reshape(-1, 5), atol=1e-6)
    # deterministic from the seed
    again = training_pairs(imgs, FAM, cfg, seed=4, xp=np)
    np.testing.assert_array_equal(again[2][1], pairs[2][1])


# --- training and evaluation on a synthetic task with a known answer --------------------------

def synthetic_pairs(n_sets, m, k, seed):
    """(pf, rf) where rf is a fixed smooth function of pf plus noise: matching pairs are learnable."""
    rng = np.random.default_rng(seed)
    mix = np.random.default_rng(99).standard_normal((k, k))
    out = []
    for _ in range(n_sets):
        pf = rng.standard_normal((m, k)).astype(np.float32)
        rf = (np.tanh(pf @ mix) + 0.1 * rng.standard_normal((m, k))).astype(np.float32)
        out.append((pf, rf))
    return out


def test_train_psim_learns_a_synthetic_matching():
    cfg = PsimConfig(moments=4, width=32, embed=8, steps=250, batch=128, lr=5e-3, ema=0.9)
    train = synthetic_pairs(3, 400, 4, seed=0)
    calls = []
    model, losses = train_psim(train, cfg, seed=0, xp=np, progress=calls.append)
    assert len(losses) == 250 and sum(calls) == 250
    assert np.mean(losses[-20:]) < 0.5 * np.mean(losses[:5])
    assert model.moments == 4 and LOG_T_RANGE[0] <= model.log_t <= LOG_T_RANGE[1]
    emb = model.embed_patches(train[0][0][:10], np)
    np.testing.assert_allclose(np.linalg.norm(emb, axis=1), 1, rtol=1e-4)
    ev = evaluate_psim(model, synthetic_pairs(1, 300, 4, seed=1), synthetic_pairs(1, 300, 4, seed=2), 0, np)
    assert ev.balanced_accuracy > 0.85 and ev.auc > 0.9
    assert ev.auc <= 1.0
    fpr, tpr = np.array(ev.roc_fpr), np.array(ev.roc_tpr)
    assert len(fpr) == len(tpr) == 101
    assert (np.diff(fpr) >= 0).all() and (np.diff(tpr) >= 0).all()  # cuts go from strict to lax


def test_evaluate_psim_of_an_untrained_model_is_near_chance():
    cfg = PsimConfig(moments=4, width=16, embed=4, steps=1, batch=16)
    model, _ = train_psim(synthetic_pairs(1, 50, 4, seed=0), cfg, seed=0, xp=np)
    # pairs with no relation at all: nothing to learn, so no threshold can beat chance by much
    rng = np.random.default_rng(5)
    noise = [(rng.standard_normal((400, 4)).astype(np.float32), rng.standard_normal((400, 4)).astype(np.float32))]
    ev = evaluate_psim(model, noise, [(rng.standard_normal((400, 4)).astype(np.float32),
                                       rng.standard_normal((400, 4)).astype(np.float32))], 0, np)
    assert abs(ev.balanced_accuracy - 0.5) < 0.1 and abs(ev.auc - 0.5) < 0.1


def test_patch_tower_takes_wider_patch_features_than_the_rows_moments():
    # extra patch features (an oracle's) widen the patch tower only; the rows keep their K moments
    cfg = PsimConfig(moments=4, width=32, embed=8, steps=250, batch=128, lr=5e-3, ema=0.9)
    rng = np.random.default_rng(3)
    train = [(np.concatenate([pf, rng.standard_normal((len(pf), 3)).astype(np.float32)], axis=1), rf)
             for pf, rf in synthetic_pairs(3, 400, 4, seed=0)]
    model, losses = train_psim(train, cfg, seed=0, xp=np)
    assert model.orig["W0"].shape == (7, 32) and model.enc["W0"].shape == (4, 32)
    assert model.embed_patches(train[0][0][:5], np).shape == (5, 8)
    assert model.embed_rows(train[0][1][:5], np).shape == (5, 8)
    assert np.mean(losses[-20:]) < 0.5 * np.mean(losses[:5])  # the moments still carry the match
