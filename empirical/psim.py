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

from collections.abc import Iterator
from dataclasses import dataclass
from typing import NamedTuple

import numpy as np

from .backend import Array, Namespace, to_numpy
from .encoder import EncoderConfig, encode_batch, patchify, random_key
from .encodings import Rows
from .mlp import Adam, Params, init_mlp, mlp_backward, mlp_forward
from .moments import moment_features, standardise
from .passes import Scheduler, map_blocks
from .progress import Progress

LOG_T_RANGE = (0.0, np.log(100.0))  # the learned temperature stays between 1 and 100
LOG_T_INIT = np.log(10.0)  # the temperature starts at 10: cosines in [-1, 1] give logits in [-10, 10]
LOG_FLOOR = 1e-30  # added to a softmax probability before its log, so an underflow to 0 stays finite
# Learning-rate schedule, as a factor of ``lr``: min(1, LR_SLOPE * (1 - step / steps) + LR_FLOOR), i.e.
# the full rate for the first half of the steps, then a linear decay to LR_FLOOR.
LR_SLOPE = 2.0
LR_FLOOR = 0.05
THRESHOLD_GRID = 401  # candidate thresholds (quantiles of the validation scores) for the balanced accuracy
ROC_POINTS = 101  # cuts (quantiles of the test scores) at which the ROC curve is reported
ROC_DECIMALS = 4  # the reported ROC points are rounded to this many decimals
# Tags mixed into the seed so each random stream is independent of the others and of other stages'.
PAIRS_STREAM, TRAIN_STREAM, EVAL_STREAM = 0x9514, 0x7121, 0xE7A1


@dataclass(frozen=True)
class PsimConfig:
    moments: int = 15  # K, features per patch or row: the mean and |central moment k|^(1/k) for k = 2..K
    width: int = 128  # hidden units in each of a tower's two hidden layers
    embed: int = 16  # dimensions of the embedding (unit sphere) both towers map into
    steps: int = 1500  # Adam steps of training
    batch: int = 1024  # true (patch, row) pairs per step, all from one attacker encoder
    lr: float = 2e-3  # Adam's learning rate before the schedule's decay (per step)
    ema: float = 0.99  # per-step decay of the weight average that becomes the trained model
    n_encoders: int = 10  # attacker's own random encoders that make the training pairs
    images_per_encoder: int = 256  # images encoded by each of them, as one BatchNorm batch


@dataclass
class PsimModel:
    orig: Params  # tower for original-patch features
    enc: Params  # tower for encoded-row features
    log_t: float  # log of the learned softmax temperature
    moments: int  # K of the features the towers take

    def embed_patches(self, patch_feats: Array, xp: Namespace) -> Array:
        """(n, K) original-patch features -> (n, E) unit embeddings."""
        return mlp_forward(self.orig, patch_feats, xp).embedding

    def embed_rows(self, row_feats: Array, xp: Namespace) -> Array:
        """(n, K) encoded-row features -> (n, E) unit embeddings."""
        return mlp_forward(self.enc, row_feats, xp).embedding


class ContrastiveLoss(NamedTuple):
    loss: float
    d_f: Array  # (B, E) d loss / d f
    d_g: Array  # (B, E) d loss / d g
    d_log_t: float  # d loss / d log_t


class PsimTraining(NamedTuple):
    model: PsimModel
    losses: list[float]  # the training loss at each step


@dataclass(frozen=True)
class PsimEvaluation:
    """p-sim's separation of held-out true pairs from false ones (chance: 0.5 for both scores)."""

    balanced_accuracy: float  # on the test pairs, at the threshold chosen on the validation pairs
    threshold: float  # cosine similarity at or above which a pair is called true
    auc: float  # area under the test ROC curve
    roc_fpr: list[float]  # (ROC_POINTS,) false positive rate at each cut, strict to lax
    roc_tpr: list[float]  # (ROC_POINTS,) true positive rate at the same cuts


PairSet = tuple[Array, Array]  # (patch features, row features), (M, K) each; row i is patch i's


def contrastive_loss(f: Array, g: Array, log_t: float, xp: Namespace) -> ContrastiveLoss:
    """Symmetric B-way softmax loss of embeddings ``f`` (B, E) and ``g`` (B, E), pair i = (f_i, g_i).

    Returns ``(loss, d_f, d_g, d_log_t)``.
    """
    B = f.shape[0]
    t = float(np.exp(log_t))
    sim = f @ g.T  # (B, B)
    s = t * sim

    def softmax(a: Array, axis: int) -> Array:
        e = a - a.max(axis=axis, keepdims=True)  # a new (B, B), then updated in place
        e = xp.exp(e, out=e)
        e /= e.sum(axis=axis, keepdims=True)
        return e

    p_row, p_col = softmax(s, 1), softmax(s, 0)
    idx = xp.arange(B)
    loss = -0.5 * (xp.log(p_row[idx, idx] + LOG_FLOOR).mean() + xp.log(p_col[idx, idx] + LOG_FLOOR).mean())
    eye = xp.eye(B, dtype=s.dtype)
    d_s = p_row  # 0.5 * ((p_row - eye) + (p_col - eye)) / B, in p_row's memory
    d_s -= eye
    p_col -= eye
    d_s += p_col
    d_s *= 0.5
    d_s /= B
    d_f = t * (d_s @ g)
    d_g = t * (d_s.T @ f)
    d_log_t = float((d_s * sim).sum()) * t
    return ContrastiveLoss(float(loss), d_f, d_g, d_log_t)


def patch_features(images: Array, family: EncoderConfig, k: int, xp: Namespace, block: int | None = None) -> Array:
    """Moment features of every patch of ``images`` (N, C, H, W) -> (N, P, K), standardised.

    ``block`` images at a time (default all): each patch's features depend on that patch alone.
    """
    step = len(images) if block is None else block
    feats = [moment_features(patchify(xp.asarray(images[s:s + step], dtype=xp.float32), family.patch), k, xp)
             for s in range(0, len(images), step)]  # (b, P, K) each
    return standardise(feats[0] if len(feats) == 1 else xp.concatenate(feats), xp)


def row_moments(block: Array, k: int, xp: Namespace) -> Array:
    """One block of the row-features pass: moment features (b, P, D) -> (b, P, K)."""
    return moment_features(xp.asarray(block), k, xp)


def row_features(encodings: Array | Rows, k: int, xp: Namespace, block: int | None = None,
                 scheduler: Scheduler = None) -> Array:
    """Moment features of rows (N, P, D) in a common order -> (N, P, K), standardised per slot.

    The rows must be aligned (unshuffled, or put in reference order by the local permutations)
    so that a slot holds the same patch position in every encoding. :class:`~empirical.encodings.Rows`
    are read ``block`` encodings at a time (each row's features depend on that row alone), in a pass
    run where ``scheduler`` says (:func:`empirical.passes.map_blocks`).
    """
    if isinstance(encodings, Rows):
        step = len(encodings) if block is None else block
        feats = map_blocks(row_moments, encodings, step, (k, xp), scheduler)  # (b, P, K) each
        feats = [xp.asarray(f) for f in feats]
        feats = feats[0] if len(feats) == 1 else xp.concatenate(feats)  # (N, P, K)
    else:
        feats = moment_features(xp.asarray(encodings), k, xp)
    return standardise(feats, xp)


def pair_encodings(images: Array, family: EncoderConfig, cfg: PsimConfig, seed: int,
                   xp: Namespace) -> Iterator[tuple[Array, Array]]:
    """Per attacker encoder: ``(pick, enc)``, the picked images' indices (n,) and their encodings (n, P, D).

    Each encoder is a fresh random key of the family; its n images are one BatchNorm batch, encoded
    without the shuffle, so row j of an encoding is patch j's. Keys and picks come from the seed alone.
    """
    rng = np.random.default_rng([seed, PAIRS_STREAM])
    images = xp.asarray(images)  # once, not once per encoder
    for _ in range(cfg.n_encoders):
        key = random_key(family, rng.integers(2**63)).to(xp)
        pick = xp.asarray(rng.choice(len(images), size=min(cfg.images_per_encoder, len(images)), replace=False))
        yield pick, encode_batch(images[pick], key, xp)  # (n,), (n, P, D)


def training_pairs(images: Array, family: EncoderConfig, cfg: PsimConfig, seed: int, xp: Namespace, *,
                   patch_feats: Array | None = None) -> list[PairSet]:
    """Per attacker encoder: (patch features, row features) of the same patches, (M, K) each.

    The encodings are :func:`pair_encodings`'; without the shuffle row j is aligned with patch j,
    which gives the labels. ``patch_feats`` (N, P, F) are :func:`patch_features` of ``images`` when
    the caller has them already, or other features of the patches (an oracle's); the patch tower
    takes their width F.
    """
    images = xp.asarray(images)
    pf_all = patch_features(images, family, cfg.moments, xp) if patch_feats is None else patch_feats  # (N, P, K)
    out = []
    for pick, enc in pair_encodings(images, family, cfg, seed, xp):
        rf = row_features(enc, cfg.moments, xp)  # (n, P, K)
        out.append((pf_all[pick].reshape(-1, pf_all.shape[-1]), rf.reshape(-1, cfg.moments)))
    return out


def train_psim(pairs: list[PairSet], cfg: PsimConfig, seed: int, xp: Namespace,
               progress: Progress | None = None) -> PsimTraining:
    """Train the two towers on ``pairs`` (from :func:`training_pairs`); returns ``(model, losses)``."""
    rng = np.random.default_rng([seed, TRAIN_STREAM])
    # Each tower takes its own features' width: K moments for rows, K or more features for patches.
    sizes_o = [pairs[0][0].shape[1], cfg.width, cfg.width, cfg.embed]
    sizes_e = [pairs[0][1].shape[1], cfg.width, cfg.width, cfg.embed]
    params = {**{f"o.{k}": v for k, v in init_mlp(sizes_o, rng, xp).items()},
              **{f"e.{k}": v for k, v in init_mlp(sizes_e, rng, xp).items()},
              "log_t": xp.asarray(np.float32(LOG_T_INIT))}
    opt = Adam(params, xp, lr=cfg.lr, average_decay=cfg.ema)
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
        lr = cfg.lr * min(1.0, LR_SLOPE * (1 - step / cfg.steps) + LR_FLOOR)  # hold, then decay linearly
        opt.step(params, grads, lr=lr)
        params["log_t"] = xp.clip(params["log_t"], *LOG_T_RANGE)
        losses.append(loss)
        if progress is not None:
            progress(1)
    avg = opt.weight_average
    model = PsimModel({k[2:]: v for k, v in avg.items() if k.startswith("o.")},
                      {k[2:]: v for k, v in avg.items() if k.startswith("e.")},
                      float(np.clip(float(avg["log_t"]), *LOG_T_RANGE)), cfg.moments)
    return PsimTraining(model, losses)


def evaluate_psim(model: PsimModel, val_pairs: list[PairSet], test_pairs: list[PairSet], seed: int,
                  xp: Namespace) -> PsimEvaluation:
    """Balanced accuracy of p-sim on held-out matching / non-matching pairs (chance 0.5).

    The threshold is chosen on ``val_pairs`` and the accuracy reported on ``test_pairs``, each
    from attacker encoders that training never saw. Also returns ROC points and the AUC.
    """
    rng = np.random.default_rng([seed, EVAL_STREAM])

    def scores(pairs: list[PairSet]) -> tuple[np.ndarray, np.ndarray]:
        """Host ``(true, false)`` scores: each patch against its own row and against a random other."""
        true, false = [], []
        for pf, rf in pairs:
            a = model.embed_patches(pf, xp)
            b = model.embed_rows(rf, xp)
            true.append(to_numpy((a * b).sum(-1)))
            other = xp.asarray(rng.permutation(len(pf)))
            false.append(to_numpy((a * b[other]).sum(-1)))
        return np.concatenate(true), np.concatenate(false)

    val_true, val_false = scores(val_pairs)
    grid = np.quantile(np.concatenate([val_true, val_false]), np.linspace(0, 1, THRESHOLD_GRID))
    bal = [(np.mean(val_true >= g) + np.mean(val_false < g)) / 2 for g in grid]
    thr = float(grid[int(np.argmax(bal))])
    test_true, test_false = scores(test_pairs)
    acc = float((np.mean(test_true >= thr) + np.mean(test_false < thr)) / 2)
    cuts = np.quantile(np.concatenate([test_true, test_false]), np.linspace(0, 1, ROC_POINTS))[::-1]
    tpr = np.array([np.mean(test_true >= c) for c in cuts])
    fpr = np.array([np.mean(test_false >= c) for c in cuts])
    auc = float(np.trapezoid(np.r_[0, tpr, 1], np.r_[0, fpr, 1]))
    return PsimEvaluation(acc, thr, auc, fpr.round(ROC_DECIMALS).tolist(), tpr.round(ROC_DECIMALS).tolist())
