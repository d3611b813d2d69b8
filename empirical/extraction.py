"""Model extraction (paper §2.3.1): fit T' of the public architecture to matched pairs.

With the matching and both permutations known, every matched original comes with the rows its
encoding should have, in patch-position order. T' has NeuraCrypt's architecture (the network,
with its hand-written gradients, is :mod:`empirical.tprime`) and is fitted by Adam on a robust
loss (Huber with a small threshold, i.e. L1 away from zero) so the few wrongly matched pairs
cannot pull it far. Each step uses images from one of Alice's BatchNorm batches (known from the
file numbering), so T' sees the same batch statistics as T did.

The patch pixels are strongly correlated (neighbouring pixels of natural images), so the first
layer's loss is badly conditioned in pixel coordinates and Adam, a per-coordinate method, moves
slowly along the low-variance pixel directions that still matter for the output. T' is therefore
trained on whitened patches (PCA whitening, with a floor on the eigenvalues; :mod:`empirical.whitening`)
and its first layer is mapped back to pixels afterwards; the function T' computes is unchanged by this.
Along the directions the game's patches hardly vary in, the data barely hold the first layer, and
Adam's whitened steps, mapped back to pixels, are amplified there (up to 1 / sqrt of the floor): T'
would end with large weights exactly where new pictures unlike the game's differ. A decoupled weight
decay, each whitened direction weighted by how near the floor it is (:attr:`ExtractConfig.decay`,
:func:`empirical.whitening.floor_shares`), keeps them small and leaves the well-used directions alone.

:func:`refine_encoder` continues a fit on a cleaner matching (the one T' itself finds) with a
plain squared loss, which is what the nearest-neighbour use of T' measures.

Extraction adapts to the game. Steps are given for NeuraCrypt-7's default size and scaled up for
families whose steps cost less (:mod:`empirical.fit_budget`), so every family gets about the same
work. A share of the matched images (:attr:`ExtractConfig.holdout`) is held back from both fits
(:mod:`empirical.holdout`): every :data:`~empirical.fit_loop.EVAL_EVERY` steps their error is
measured, the parameters with the lowest held-out error are kept, and once the learning rate has
decayed past the middle of its schedule (:data:`~empirical.fit_loop.STOP_FROM`) a fit stops when that
error has not improved for :data:`~empirical.fit_loop.PATIENCE` checks; the loop both fits run is
:func:`empirical.fit_loop.train`. The held-back pairs also give the attacker its own estimate of T''s Challenge 2 score.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import NamedTuple

import numpy as np

from .backend import Array, Namespace
from .batch_sample import whole_batches
from .checkpoint import Checkpoint
from .encoder import EncoderConfig, expand_widths, patchify, random_key
from .encodings import Rows, as_rows
from .fit_budget import fit_steps
from .fit_loop import LossAndGradient, train
from .holdout import Split, held_out_matching, held_out_plan, holdout_split
from .matched import MatchedImages, as_images
from .mlp import Params
from .progress import Progress
from .tprime import (
    BatchNormStats,
    backward,
    batch_stats,
    encode_each,
    forward,
    key_from_params,
    mean_batch_stats,
    params_from_key,
)
from .whitening import Whitening, floor_shares, from_white, patch_whitening, to_white, whitened_patches

# The network's functions are importable from here too, where the attack's callers have found them.
__all__ = ["BatchNormStats", "EncoderFit", "ExtractConfig", "LossAndGradient", "Whitening", "backward",
           "batch_stats", "encode_each", "fit_encoder", "forward", "huber_loss", "key_from_params",
           "mean_batch_stats", "params_from_key", "patch_whitening", "refine_encoder", "refit_mixer", "squared_loss"]

FIT_STREAM, REFINE_STREAM = 0xE7, 0xE8  # tags mixed into the seed: independent draws
CENTRE_IMAGES = 64  # images whose patches set each first-layer bias (to minus the median response) at the start
PROBE_AT = (0.2, 0.5)  # shares of fit_encoder's steps after which the probe (ExtractConfig.probe_alpha) looks; it
# looks once more at the fitted T' before any refit (a fit that passed early can still end worthless)
MIXER_CHUNK_ROWS = 2**14  # refit_mixer runs a batch of more patch rows than this through T' in chunks (a default
# batch, 256 images of 64 patches, runs at once; at 256 px, hidden 1,024 a chunk's activations take about 1 GB)
MIXER_RIDGE = 1e-4  # refit_mixer's ridge per data row: the penalty added to the Gram matrix is ridge * rows * I


@dataclass(frozen=True)
class ExtractConfig:
    steps: int = 250  # Adam steps of fit_encoder (robust loss)
    images_per_step: int = 32  # images per step of fit_encoder, all from one of Alice's BatchNorm batches
    # (fewer where that would be more than STEP_ROWS patch rows: 16 images of 256 px); 64 gave T' no better a
    # matching at twice the seconds (benchmarks/results/cpu_tprime_knobs_ips*.json)
    lr: float = 2e-3  # fit_encoder's peak Adam learning rate (per step), before warm-up and cosine decay
    huber: float = 0.05  # threshold of the robust loss, in units of the targets' standard deviation
    whiten: float = 1e-3  # eigenvalue floor of fit_encoder's patch whitening, relative to the largest (0: off)
    refine_whiten: float = 1e-3  # the same for refine_encoder
    refine_steps: int = 450  # Adam steps of refine_encoder (squared loss; 0: no refit of the whole network)
    refine_lr: float = 4e-3  # refine_encoder's peak Adam learning rate (per step)
    refine_images_per_step: int = 64  # images per step of refine_encoder, from one BatchNorm batch (32: the
    # game's images and new crops of its pictures 1-2 points lower on Challenge 2 for two of four seeds)
    holdout: float = 0.1  # share of the matched images held back from both fits (stopping, self-estimate)
    probe_alpha: float = 0.01  # fit_encoder gives up when, at any of its looks (PROBE_AT), T''s matches of
    # the held-back pairs are as few as chance gives with probability above this (0: never give up)
    adapt_steps: bool = True  # scale steps and refine_steps by empirical.fit_budget.step_scale(family), and
    # give the refit at least fit_budget.MIN_REFINE_PASSES passes over its pairs (empirical.fit_budget.fit_steps)
    seed: int = 0  # seeds T''s initialisation, the held-back images and the batches drawn in both fits
    decay: float = 10.0  # decoupled weight decay of T''s first layer along the patch directions the game's images
    # hardly vary in (empirical.whitening.floor_shares): per step, lr * decay * share; 0: none. There the data
    # leave the weights free and Adam's whitened steps, mapped back to pixels, inflate them; 10 lifted T' on new
    # pictures by 1-4 points (benchmarks/results/cpu_tprime_knobs_decay_*.json)
    bn_refresh: int = 0  # BatchNorm statistics of a training step: 0, those of the step's own images; k > 0, those of
    # its whole Alice batch (up to fit_loop.BN_STATS_ROWS patch rows), recomputed with the current T' when older
    # than k steps.
    # 10 was much worse on new pictures (benchmarks/results/cpu_tprime_failures_bn_refresh10_nc7_n600_seed2.json)
    widths: tuple[int, ...] = ()  # T''s layers' widths (empirical.encoder.expand_widths: one for every layer, or the
    # patch convolution's then each block's); () is the family's own. Wider fits better, at more cost
    hidden_decay: float = 0.0  # the same decay for each block's weights along the directions its input hardly varies
    # in (empirical.fit_loop.hidden_shrinks); 0: none
    members: int = 1  # fits of T' that differ only in their seed (seed, seed + 1, ...), each fitted and refitted
    # on its own; T' is their mean, one network as wide as their widths summed (empirical.tprime.join)


class EncoderFit(NamedTuple):
    params: Params  # T''s parameters, acting on pixels
    losses: list[float]  # the loss at each step
    held_out: tuple[tuple[int, float], ...] = ()  # (steps done, held-out relative squared error) at each check
    best_step: int = 0  # the steps done when the kept parameters were reached (0: no hold-out)
    probe: dict | None = None  # held-back nearest-neighbour shares at the probe's last look (None: no probe ran)
    gave_up: bool = False  # the probe found T' worthless: the fit stopped there (or, at the look after it, no refit)
    probes: tuple[dict, ...] = ()  # every look of the probe, in order; ``probe`` is the last


def huber_loss(y: Array, target: Array, delta: float, xp: Namespace) -> LossAndGradient:
    """Mean Huber loss and its gradient with respect to ``y``."""
    r = y - target
    a = xp.abs(r)
    quad = a <= delta
    loss = xp.where(quad, 0.5 * r * r / delta, a - 0.5 * delta).mean()
    grad = xp.where(quad, r / delta, xp.sign(r)) / r.size
    return LossAndGradient(float(loss), grad)


def squared_loss(y: Array, target: Array, xp: Namespace) -> LossAndGradient:
    """Mean squared error and its gradient with respect to ``y``."""
    r = y - target
    loss = float((r * r).mean())
    r *= 2  # the gradient, 2 r / size, in r's own memory
    r /= r.size
    return LossAndGradient(loss, r)


def _shrink(z: Array, cfg: ExtractConfig, xp: Namespace) -> Array | None:
    """Per whitened direction, the first layer's decay per unit of learning rate (None when off)."""
    return None if cfg.decay <= 0 else (cfg.decay * floor_shares(z, xp)).astype(xp.float32)


def chance_bar(n: int, alpha: float) -> int:
    """The fewest right picks among ``n`` held-back pairs that chance alone reaches with probability at most
    ``alpha``: a T' that knows nothing picks each pair's own encoding with probability 1/n, so its count
    of right picks is Binomial(n, 1/n) (about Poisson(1): 5 or more for alpha 0.01)."""
    from scipy.stats import binom

    k = 1
    while binom.sf(k - 1, n, 1 / n) > alpha:  # P(count >= k)
        k += 1
    return k


def fit_encoder(images: Array | MatchedImages, targets: Array | Rows, groups: np.ndarray, family: EncoderConfig,
                cfg: ExtractConfig, xp: Namespace, progress: Progress | None = None, *, split: Split | None = None,
                memory_budget: int | None = None, checkpoint: Checkpoint | None = None) -> EncoderFit:
    """Fit T' to ``targets`` (n, P, D): the rows of the encoding matched to each image, in position order.

    ``groups`` (n,) host is each pair's BatchNorm batch. The pairs ``split`` holds back (by default
    :func:`empirical.holdout.holdout_split`'s) are not fitted: they decide which parameters are kept
    and when to stop. After each share :data:`PROBE_AT` of the steps a probe (a copy of T' with its
    mixer refitted) matches the held-back images to the held-back encodings
    (:func:`empirical.holdout.held_out_matching`, by all rows and by patch means; the better
    counts). When fewer are right than :func:`chance_bar` (the fewest that a T' knowing nothing
    reaches by chance with probability at most ``cfg.probe_alpha``), the fit gives up there
    (``gave_up``): the pairs carry no encoder it can learn, or too many of them are wrong,
    and more steps would be minutes spent for nothing. The fitted T' is looked at once more the same
    way, and fails (``gave_up``, all its steps run) when it ends below the bar: then no refit is worth
    its minutes. A fit that learns slowly but learns passes every look.
    ``images`` may be :class:`~empirical.matched.MatchedImages` and ``targets``
    :class:`~empirical.encodings.Rows` (both read a batch at a time); with ``memory_budget`` (bytes),
    whitened patch rows that would not fit are computed on read (:func:`~empirical.whitening.whitened_patches`).
    With ``checkpoint`` (:class:`~empirical.checkpoint.Checkpoint`), the fit saves itself as it goes and
    goes on from the last save it finds there (the probe's looks included), ending as an uninterrupted
    fit would. Returns an :class:`EncoderFit`.
    """
    rng = np.random.default_rng([cfg.seed, FIT_STREAM])
    params = params_from_key(random_key(family, rng.integers(2**63), expand_widths(family, cfg.widths) or None), xp)
    split = holdout_split(groups, cfg) if split is None else split
    steps, _ = fit_steps(cfg, family)
    images = as_images(images, xp)  # no copy when they are on the device already
    rows, mu, z = whitened_patches(images, family, cfg.whiten, xp, memory_budget)  # (n, P, C*p*p)
    # Centre each first-layer unit on the data: a random bias can leave units that are off for
    # every patch, and a dead unit never recovers (neuracrypt-2 lost all of them this way).
    pick = rng.choice(split.fit, min(CENTRE_IMAGES, len(split.fit)), replace=False)
    sample = rows[xp.asarray(pick)].reshape(-1, rows.shape[2])
    params["b0"] = -xp.median(sample @ params["W0"].T, axis=0).astype(xp.float32)
    targets = as_rows(targets, xp)  # read a batch at a time; a game's encodings need not fit in memory
    delta = cfg.huber * float(targets[xp.asarray(pick)].std())  # the targets' scale, from fitted pairs only
    probed: list[dict] = []

    def looks_right(trial: Params, step: int) -> bool:  # trial: T' with its mixer refitted
        shares = held_out_matching(trial, images, targets, groups, split.held, family, xp)
        hits = round(max(shares["rows"], shares["patch_means"]) * shares["n"])
        probed.append({"step": step, **shares, "right": hits, "bar": chance_bar(shares["n"], cfg.probe_alpha)})
        return hits >= probed[-1]["bar"]

    def go_on(work: Params, step: int) -> bool:
        return looks_right(refit_mixer(from_white(work, mu, z, xp), images, targets, groups, family, xp,
                                       subset=split.fit), step)

    probing = cfg.probe_alpha > 0 and len(split.held) and family.depth >= 0
    at = tuple(sorted({k for k in (max(1, round(a * steps)) for a in PROBE_AT) if k < steps}))
    probe = (at, go_on) if probing and at else None
    log = train(params, rows, targets, groups, split.fit, family, steps, cfg.lr, cfg.images_per_step,
                lambda y, t: huber_loss(y, t, delta, xp), rng, xp, True, progress,
                held=held_out_plan(targets, groups, split, xp), probe=probe, shrink=_shrink(z, cfg, xp),
                bn_refresh=cfg.bn_refresh, checkpoint=checkpoint, extra=lambda: {"probed": probed},
                on_resume=lambda meta: probed.extend(meta["probed"]), hidden_decay=cfg.hidden_decay)
    params = refit_mixer(from_white(params, mu, z, xp), images, targets, groups, family, xp, subset=split.fit)
    gave_up = log.gave_up
    if probe is not None and not gave_up:  # the last look: the fitted T' itself, kept parameters and mixer
        gave_up = not looks_right(params, len(log.losses))
        probed[-1]["after_fit"] = True
    return EncoderFit(params, log.losses, tuple(log.held_out), log.best_step if log.held_out else 0,
                      probed[-1] if probed else None, gave_up, tuple(probed))


def refine_encoder(params: Params, images: Array | MatchedImages, targets: Array | Rows, groups: np.ndarray,
                   family: EncoderConfig, cfg: ExtractConfig, xp: Namespace, progress: Progress | None = None, *,
                   split: Split | None = None, memory_budget: int | None = None,
                   checkpoint: Checkpoint | None = None) -> EncoderFit:
    """Continue fitting T' (warm start from ``params``) with a squared loss; an :class:`EncoderFit`.

    Meant for pairs that are all (or nearly all) right, such as the matching T' itself gives:
    without outliers to resist, the squared loss fits the mean, which is what a distance between
    encodings compares. The pairs ``split`` holds back (by default the same as :func:`fit_encoder`'s)
    are not fitted. The last layer is refitted by least squares at the end, as in :func:`fit_encoder`,
    whose notes on ``images``, ``targets``, ``memory_budget`` and ``checkpoint`` hold here too.
    """
    split = holdout_split(groups, cfg) if split is None else split
    images, targets = as_images(images, xp), as_rows(targets, xp)
    _, steps = fit_steps(cfg, family, len(split.fit))
    if family.depth == -1 or steps <= 0:  # the linear family is already solved exactly
        return EncoderFit(refit_mixer(params, images, targets, groups, family, xp, subset=split.fit), [])
    rng = np.random.default_rng([cfg.seed, REFINE_STREAM])
    rows, mu, z = whitened_patches(images, family, cfg.refine_whiten, xp, memory_budget)
    work = {k: v.copy() for k, v in to_white(params, mu, z, xp).items()}
    log = train(work, rows, targets, groups, split.fit, family, steps, cfg.refine_lr, cfg.refine_images_per_step,
                lambda y, t: squared_loss(y, t, xp), rng, xp, False, progress,
                held=held_out_plan(targets, groups, split, xp), shrink=_shrink(z, cfg, xp), bn_refresh=cfg.bn_refresh,
                checkpoint=checkpoint, hidden_decay=cfg.hidden_decay)
    params = refit_mixer(from_white(work, mu, z, xp), images, targets, groups, family, xp, subset=split.fit)
    return EncoderFit(params, log.losses, tuple(log.held_out), log.best_step if log.held_out else 0)


def refit_mixer(params: Params, images: Array, targets: Array, groups: np.ndarray, family: EncoderConfig,
                xp: Namespace, ridge: float = MIXER_RIDGE, *, subset: np.ndarray | None = None) -> Params:
    """Refit the last Linear layer of T' by ridge least squares on the matched pairs (``subset``: host
    indices of the ones to use; default all).

    Given the layers below, the output is linear in the mixer's weights, so its best value is a
    regression of the targets on T''s penultimate features (BatchNorm with each of Alice's
    batches' own statistics). For the linear family the whole encoder is that one layer, and the
    regression recovers it outright. At most :data:`~empirical.batch_sample.SAMPLE_ROWS` patch rows
    of whole batches are used (:func:`~empirical.batch_sample.whole_batches`): a Gram matrix of D + 1
    features is well estimated long before that.
    """
    d = family.hidden
    n_in = family.patch_dim if family.depth == -1 else params["Wm"].shape[1]  # the last block's width
    images = as_images(images, xp)  # no copy when they are on the device already
    gram = xp.zeros((n_in + 1, n_in + 1), dtype=xp.float64)
    cross = xp.zeros((n_in + 1, d), dtype=xp.float64)
    count = 0
    use = np.arange(len(groups)) if subset is None else np.asarray(subset)
    use = whole_batches(groups, family.n_patches, use)  # (k,) host: whole batches, up to SAMPLE_ROWS rows
    for g in np.unique(groups[use]):
        mine = use[groups[use] == g]
        rows = patchify(xp.asarray(images[xp.asarray(mine)], dtype=xp.float32), family.patch)  # (b, P, C*p*p)
        # A batch too large to run through T' at once is run in chunks, with its own statistics frozen.
        chunked = rows.shape[0] * rows.shape[1] > MIXER_CHUNK_ROWS
        stats = batch_stats(params, rows, family, xp) if chunked else None
        step = max(1, MIXER_CHUNK_ROWS // rows.shape[1]) if chunked else len(mine)
        for s in range(0, len(mine), step):
            cache = forward(params, rows[s:s + step], family, xp, bn_stats=stats).cache
            # The last linear layer's input: the mixer's features, or the raw patches for the linear family.
            feats = (cache.x if family.depth == -1 else cache.g).astype(xp.float64)  # (b*P, F)
            feats = xp.concatenate([feats, xp.ones((feats.shape[0], 1), dtype=xp.float64)], axis=1)
            y = targets[xp.asarray(mine[s:s + step])].reshape(feats.shape[0], -1).astype(xp.float64)  # (b*P, D)
            gram += feats.T @ feats
            cross += feats.T @ y
            count += feats.shape[0]
    sol = xp.linalg.solve(gram + ridge * count * xp.eye(gram.shape[0]), cross)  # (features+1, D)
    out = dict(params)
    w, b = ("W0", "b0") if family.depth == -1 else ("Wm", "bm")
    out[w] = sol[:-1].T.astype(xp.float32).copy()
    out[b] = sol[-1].astype(xp.float32).copy()
    return out
