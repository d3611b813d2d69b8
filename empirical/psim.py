"""Patch similarity p-sim (paper §2.1.1).

Two towers embed an original patch's moment features and an encoded row's moment features into
the same unit sphere, so that a patch and the row it was encoded into land close together. They
are trained with a k-way contrastive softmax: in a batch of B true (patch, row) pairs, each patch
must pick out its own row among the B rows, and each row its own patch. A learned temperature
scales the cosine similarities; it is clipped to a sane range.

Training pairs come only from the attacker's own random encoders of the public family (fresh
seeds, never Alice's key) applied to plaintext images the attacker was given.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .backend import to_numpy
from .encoder import EncoderConfig, encode_batch, patchify, random_key
from .mlp import Adam, init_mlp, mlp_backward, mlp_forward
from .moments import moment_features, standardise

LOG_T_RANGE = (0.0, np.log(100.0))


@dataclass(frozen=True)
class PsimConfig:
    moments: int = 15  # K: mean and central moments 2..K
    width: int = 128  # hidden width of each tower
    embed: int = 16  # embedding dimension
    steps: int = 1500
    batch: int = 1024
    lr: float = 2e-3
    ema: float = 0.99
    n_encoders: int = 10  # attacker's random encoders used for training
    images_per_encoder: int = 256


@dataclass
class PsimModel:
    orig: dict  # tower for original-patch features
    enc: dict  # tower for encoded-row features
    log_t: float
    moments: int

    def embed_patches(self, patch_feats, xp):
        return mlp_forward(self.orig, patch_feats, xp)[0]

    def embed_rows(self, row_feats, xp):
        return mlp_forward(self.enc, row_feats, xp)[0]


def contrastive_loss(f, g, log_t, xp):
    """Symmetric B-way softmax loss of embeddings ``f`` (B, E) and ``g`` (B, E), pair i = (f_i, g_i).

    Returns ``(loss, d_f, d_g, d_log_t)``.
    """
    B = f.shape[0]
    t = float(np.exp(log_t))
    sim = f @ g.T  # (B, B)
    s = t * sim

    def softmax(a, axis):
        a = a - a.max(axis=axis, keepdims=True)
        e = xp.exp(a)
        return e / e.sum(axis=axis, keepdims=True)

    p_row, p_col = softmax(s, 1), softmax(s, 0)
    idx = xp.arange(B)
    loss = -0.5 * (xp.log(p_row[idx, idx] + 1e-30).mean() + xp.log(p_col[idx, idx] + 1e-30).mean())
    eye = xp.eye(B, dtype=s.dtype)
    d_s = 0.5 * ((p_row - eye) + (p_col - eye)) / B
    d_f = t * (d_s @ g)
    d_g = t * (d_s.T @ f)
    d_log_t = float((d_s * sim).sum()) * t
    return float(loss), d_f, d_g, d_log_t


def patch_features(images, family: EncoderConfig, k: int, xp):
    """Moment features of every patch of ``images`` (N, C, H, W) -> (N, P, K), standardised."""
    rows = patchify(xp.asarray(images, dtype=xp.float32), family.patch)
    return standardise(moment_features(rows, k, xp), xp)


def row_features(encodings, k: int, xp):
    """Moment features of rows (N, P, D) in a common order -> (N, P, K), standardised per slot.

    The rows must be aligned (unshuffled, or put in reference order by the local permutations)
    so that a slot holds the same patch position in every encoding.
    """
    return standardise(moment_features(xp.asarray(encodings), k, xp), xp)


def training_pairs(images, family: EncoderConfig, cfg: PsimConfig, seed, xp):
    """Per attacker encoder: (patch features, row features) of the same patches, (M, K) each.

    Encoding without the shuffle keeps row j aligned with patch j, which gives the labels.
    """
    rng = np.random.default_rng([seed, 0x9514])
    pf_all = patch_features(images, family, cfg.moments, xp)  # (N, P, K)
    out = []
    for _ in range(cfg.n_encoders):
        key = random_key(family, rng.integers(2**63)).to(xp)
        pick = rng.choice(len(images), size=min(cfg.images_per_encoder, len(images)), replace=False)
        pick_dev = xp.asarray(pick)
        enc = encode_batch(xp.asarray(images)[pick_dev], key, xp)  # (n, P, D), one BatchNorm batch
        rf = row_features(enc, cfg.moments, xp)
        out.append((pf_all[pick_dev].reshape(-1, cfg.moments), rf.reshape(-1, cfg.moments)))
    return out


def train_psim(pairs, cfg: PsimConfig, seed, xp, progress=None) -> tuple:
    """Train the two towers on ``pairs`` (from :func:`training_pairs`); returns (model, losses)."""
    rng = np.random.default_rng([seed, 0x7121])
    sizes = [cfg.moments, cfg.width, cfg.width, cfg.embed]
    params = {**{f"o.{k}": v for k, v in init_mlp(sizes, rng, xp).items()},
              **{f"e.{k}": v for k, v in init_mlp(sizes, rng, xp).items()},
              "log_t": xp.asarray(np.float32(np.log(10.0)))}
    opt = Adam(params, xp, lr=cfg.lr, ema=cfg.ema)
    losses = []
    for step in range(cfg.steps):
        # One encoder per batch: negatives then share the encoder, as they do at attack time.
        pf, rf = pairs[rng.integers(len(pairs))]
        idx = xp.asarray(rng.choice(len(pf), size=min(cfg.batch, len(pf)), replace=False))
        tower_o = {k[2:]: v for k, v in params.items() if k.startswith("o.")}
        tower_e = {k[2:]: v for k, v in params.items() if k.startswith("e.")}
        fo, co = mlp_forward(tower_o, pf[idx], xp)
        fe, ce = mlp_forward(tower_e, rf[idx], xp)
        loss, d_fo, d_fe, d_lt = contrastive_loss(fo, fe, float(params["log_t"]), xp)
        grads = {**{f"o.{k}": v for k, v in mlp_backward(tower_o, co, d_fo, xp).items()},
                 **{f"e.{k}": v for k, v in mlp_backward(tower_e, ce, d_fe, xp).items()},
                 "log_t": xp.asarray(np.float32(d_lt))}
        lr = cfg.lr * min(1.0, 2.0 * (1 - step / cfg.steps) + 0.05)  # hold, then decay linearly
        opt.step(params, grads, lr=lr)
        params["log_t"] = xp.clip(params["log_t"], *LOG_T_RANGE)
        losses.append(loss)
        if progress is not None:
            progress(1)
    avg = opt.ema
    model = PsimModel({k[2:]: v for k, v in avg.items() if k.startswith("o.")},
                      {k[2:]: v for k, v in avg.items() if k.startswith("e.")},
                      float(np.clip(float(avg["log_t"]), *LOG_T_RANGE)), cfg.moments)
    return model, losses


def evaluate_psim(model: PsimModel, val_pairs, test_pairs, seed, xp) -> dict:
    """Balanced accuracy of p-sim on held-out matching / non-matching pairs (chance 0.5).

    The threshold is chosen on ``val_pairs`` and the accuracy reported on ``test_pairs``, each
    from attacker encoders that training never saw. Also returns ROC points and the AUC.
    """
    rng = np.random.default_rng([seed, 0xE7A1])

    def scores(pairs):
        pos, neg = [], []
        for pf, rf in pairs:
            a = model.embed_patches(pf, xp)
            b = model.embed_rows(rf, xp)
            pos.append(to_numpy((a * b).sum(-1)))
            other = xp.asarray(rng.permutation(len(pf)))
            neg.append(to_numpy((a * b[other]).sum(-1)))
        return np.concatenate(pos), np.concatenate(neg)

    vp, vn = scores(val_pairs)
    grid = np.quantile(np.concatenate([vp, vn]), np.linspace(0, 1, 401))
    bal = [(np.mean(vp >= g) + np.mean(vn < g)) / 2 for g in grid]
    thr = float(grid[int(np.argmax(bal))])
    tp, tn = scores(test_pairs)
    acc = float((np.mean(tp >= thr) + np.mean(tn < thr)) / 2)
    cuts = np.quantile(np.concatenate([tp, tn]), np.linspace(0, 1, 101))[::-1]
    tpr = np.array([np.mean(tp >= c) for c in cuts])
    fpr = np.array([np.mean(tn >= c) for c in cuts])
    auc = float(np.trapezoid(np.r_[0, tpr, 1], np.r_[0, fpr, 1]))
    return {"balanced_accuracy": acc, "threshold": thr, "auc": auc,
            "roc_fpr": fpr.round(4).tolist(), "roc_tpr": tpr.round(4).tolist()}
