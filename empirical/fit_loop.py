"""The Adam loop both of model extraction's fits run (:mod:`empirical.extraction`).

Each step fits T' to images of one of Alice's BatchNorm batches (so T' sees statistics like the
ones T saw), at a learning rate that warms up and then decays as a half cosine. Around the step:
the first layer's decoupled decay (``shrink``), first-layer units that went dead re-drawn on the
data, the held-out error measured every :data:`EVAL_EVERY` steps (the best parameters kept, and a
stop once it no longer falls: :data:`PATIENCE`, :data:`STOP_FROM`), the probe's looks, and
checkpoints of the whole state (:mod:`empirical.fit_state`), so a stopped loop goes on bit for bit.
"""
from __future__ import annotations

from collections.abc import Callable
from typing import NamedTuple

import numpy as np

from .backend import Array, Namespace, to_numpy
from .checkpoint import Checkpoint
from .encoder import EncoderConfig
from .fit_budget import STEP_ROWS
from .fit_state import LoopState, resume_loop
from .holdout import HeldOut, held_out_error
from .mlp import Adam, Params
from .progress import Progress
from .tprime import BatchNormStats, backward, batch_stats, forward

REVIVE_EVERY = 10  # steps between checks for first-layer units that are off for every patch
REVIVE_IMAGES = 16  # images whose patches centre a re-drawn unit
WARMUP_STEPS = 20  # the learning rate rises linearly over this many steps, then decays as a half cosine
EVAL_EVERY = 25  # steps between measurements of the held-out error
PATIENCE = 4  # a fit stops after this many measurements without a lower held-out error ...
STOP_FROM = 0.5  # ... and not before this share of its steps (the learning rate is still high before)
HIDDEN_EVERY = 25  # steps between recomputations of the blocks' decay directions (ExtractConfig.hidden_decay)
HIDDEN_IMAGES = 64  # fitted images (spread evenly over them) whose block inputs give those directions
HIDDEN_FLOOR = 1e-3  # eigenvalue floor of a block input's covariance, relative to its largest (as the whitening's)
BN_STATS_ROWS = 2**15  # patch rows of one Alice batch whose statistics a step uses (ExtractConfig.bn_refresh): a
# whole batch of 256 images of 128 px; at 256 px, a fixed sample of 128 of its images


class LossAndGradient(NamedTuple):
    loss: float  # the mean loss over every output value
    grad: Array  # d loss / d y, the shape of y


LossFn = Callable[[Array, Array], LossAndGradient]
Probe = tuple[tuple[int, ...], Callable[[Params, int], bool]]  # (after these many steps, go on?) given the working
# parameters and the steps done


class TrainLog(NamedTuple):
    losses: list[float]  # the training loss at each step run
    held_out: list[tuple[int, float]]  # (steps done, held-out error) at each check
    best_step: int  # steps done when the returned parameters were reached (the last step without a hold-out)
    gave_up: bool = False  # the probe said stop


def lr_factor(step: int, steps: int) -> float:
    """The share of the peak learning rate at ``step`` of ``steps``: linear warm-up, then a half cosine."""
    return min(1.0, (step + 1) / WARMUP_STEPS) * 0.5 * (1 + np.cos(np.pi * step / steps))


def _revive_dead_units(params: Params, opt: Adam, z0: Array, rows: Array, fit: np.ndarray,
                       rng: np.random.Generator, xp: Namespace) -> int:
    """Re-draw first-layer units that are off for every patch of the step, centred on the data.

    A unit whose ReLU is off everywhere gets no gradient and never comes back; without BatchNorm
    after it (neuracrypt-2) Adam's early steps can switch many off. A re-drawn unit is centred on
    fitted images (``fit``, host indices into ``rows``). Returns how many were re-drawn.
    """
    dead = to_numpy((z0 > 0).sum(axis=0) == 0)
    n_dead = int(dead.sum())
    if n_dead == 0:
        return 0
    fan_in = params["W0"].shape[1]
    bound = 1.0 / np.sqrt(fan_in)  # PyTorch's default initialisation, as the family's keys use
    w = xp.asarray(rng.uniform(-bound, bound, (n_dead, fan_in)).astype(np.float32))
    pick = rng.choice(fit, min(REVIVE_IMAGES, len(fit)), replace=False)
    sample = rows[xp.asarray(pick)].reshape(-1, fan_in)
    units = xp.asarray(np.flatnonzero(dead))
    params["W0"][units] = w
    params["b0"][units] = -xp.median(sample @ w.T, axis=0)
    for state in (opt.m, opt.v):
        state["W0"][units] = 0
        state["b0"][units] = 0
    return n_dead


def _stats_images(batch: np.ndarray, n_patches: int, rng: np.random.Generator) -> np.ndarray:
    """Host indices of the images of one batch whose statistics stand for it: all of them, or a fixed
    sample of :data:`BN_STATS_ROWS` patch rows' worth (sorted)."""
    keep = max(1, BN_STATS_ROWS // n_patches)
    return batch if len(batch) <= keep else np.sort(rng.choice(batch, keep, replace=False))


def hidden_shrinks(params: Params, rows: Array, family: EncoderConfig, xp: Namespace) -> list[Array]:
    """Per block, how little its input varies along each direction: ``V diag(share) V^T`` (W_{i-1}, W_{i-1}).

    The block inputs of T' on ``rows`` (n, P, F) have covariance ``V diag(s) V^T``; ``share_k`` is
    ``(s_min + f s_max) / (s_k + f s_max)`` with f = :data:`HIDDEN_FLOOR`, about 1 where the inputs
    hardly vary (the data leave the block's weights free there) and about f along their main
    direction, as :func:`empirical.whitening.floor_shares` weighs the first layer's directions.
    """
    out = []
    for blk in forward(params, rows, family, xp).cache.blocks:
        h = blk.h_in.astype(xp.float64)  # (n*P, W_{i-1})
        h = h - h.mean(axis=0)
        s, v = xp.linalg.eigh(h.T @ h / h.shape[0])
        s = xp.maximum(s, 0.0)
        f = HIDDEN_FLOOR * s[-1]
        out.append(((v * ((s[0] + f) / (s + f))) @ v.T).astype(xp.float32))
    return out


class _StepDraw:
    """Which fitted images each step reads (all from one BatchNorm batch, at most :data:`STEP_ROWS`
    patch rows), and, with ``bn_refresh`` > 0, the batch statistics it normalises them with."""

    def __init__(self, groups: np.ndarray, fit: np.ndarray, n_patches: int, images_per_step: int, bn_refresh: int,
                 rng: np.random.Generator):
        self.ids = np.unique(groups[fit])
        self.members = [fit[groups[fit] == g] for g in self.ids]
        self.bn_refresh = bn_refresh
        self.stats_rows = {int(g): _stats_images(np.flatnonzero(groups == g), n_patches, rng)
                           for g in self.ids} if bn_refresh > 0 else {}
        self.per_step = max(1, min(images_per_step, STEP_ROWS // n_patches))

    def images(self, rng: np.random.Generator) -> tuple[int, np.ndarray]:
        """``(batch, host indices)`` of one step's images."""
        pick = rng.integers(len(self.members))
        idx = self.members[pick]
        if len(idx) > self.per_step:
            idx = rng.choice(idx, self.per_step, replace=False)
        return int(self.ids[pick]), idx

    def stats(self, g: int, step: int, st: LoopState, params: Params, rows: Array, family: EncoderConfig,
              xp: Namespace) -> list[BatchNormStats] | None:
        """Batch ``g``'s statistics for this step (None: the step's own), recomputed when too old."""
        if self.bn_refresh <= 0:
            return None
        if g not in st.stats_at or step - st.stats_at[g][0] >= self.bn_refresh:
            st.stats_at[g] = (step, batch_stats(params, rows[xp.asarray(self.stats_rows[g])], family, xp))
        return st.stats_at[g][1]


class _BlockDecay:
    """The blocks' decay (``hidden_decay``): its directions (:func:`hidden_shrinks`) from
    :data:`HIDDEN_IMAGES` fitted images spread evenly, taken at the loop's (re)start and every
    :data:`HIDDEN_EVERY` steps."""

    def __init__(self, rate: float, fit: np.ndarray, xp: Namespace):
        self.rate = rate
        self.spread = xp.asarray(fit[np.linspace(0, len(fit) - 1, min(HIDDEN_IMAGES, len(fit))).astype(int)])
        self.mats: list[Array] | None = None

    def apply(self, params: Params, rows: Array, family: EncoderConfig, xp: Namespace, step: int, lr: float) -> None:
        """Shrink each block's weights along its input's little-used directions, at learning rate ``lr``."""
        if self.mats is None or step % HIDDEN_EVERY == 0:
            self.mats = hidden_shrinks(params, rows[self.spread], family, xp)
        for i, d in enumerate(self.mats, start=1):
            params[f"W{i}"] -= (lr * self.rate) * (params[f"W{i}"] @ d)


def _held_out_says_stop(st: LoopState, step: int, steps: int, params: Params, rows: Array, targets: Array,
                        held: HeldOut, family: EncoderConfig, xp: Namespace) -> bool:
    """After ``step``: measure the held-out error when due, keep the best parameters, and say whether
    :data:`PATIENCE` measurements without a new lowest (from :data:`STOP_FROM` of the steps on) end the fit."""
    if (step + 1) % EVAL_EVERY != 0 and step + 1 != steps:
        return False
    err = held_out_error(params, rows, targets, held, family, xp)
    st.curve.append((step + 1, err))
    if err < st.best_err:
        st.best, st.best_err = {k: v.copy() for k, v in params.items()}, err
        st.best_step, st.since = step + 1, 0
    else:
        st.since += 1
    return st.since >= PATIENCE and step + 1 >= STOP_FROM * steps


def train(params: Params, rows: Array, targets: Array, groups: np.ndarray, fit: np.ndarray, family: EncoderConfig,
          steps: int, lr: float, images_per_step: int, loss_fn: LossFn, rng: np.random.Generator, xp: Namespace,
          revive: bool, progress: Progress | None, held: HeldOut | None = None, probe: Probe | None = None,
          shrink: Array | None = None, bn_refresh: int = 0, checkpoint: Checkpoint | None = None,
          extra: Callable[[], dict] | None = None, on_resume: Callable[[dict], None] | None = None,
          hidden_decay: float = 0.0) -> TrainLog:
    """Adam steps on ``params`` (in place), each on fitted images of one BatchNorm batch.

    ``rows`` (n, P, F) and ``targets`` (n, P, D) are every pair; ``fit`` (host indices) the ones
    trained on, ``groups`` (n,) host every pair's batch. A step reads at most :data:`STEP_ROWS` patch
    rows (fewer than ``images_per_step`` images where images have many patches). The learning rate
    follows :func:`lr_factor` over ``steps``. With ``held`` (a plan of
    :func:`empirical.holdout.held_out_plan`), the held-out error is measured every
    :data:`EVAL_EVERY` steps and at the end; ``params`` end as the measured parameters with the
    lowest, and from :data:`STOP_FROM` of the steps on, training stops after :data:`PATIENCE`
    measurements without a new lowest (the progress bar is advanced to its end). With ``probe``
    ``(ks, go_on)``, training stops after ``k`` steps, for each ``k`` in ``ks``, when ``go_on(params, k)`` is
    false. With ``shrink`` (F,), each step also scales the first layer's column k (a whitened patch
    direction) by ``1 - lr * shrink[k]`` (decoupled weight decay). BatchNorm takes the statistics of
    the step's own images unless ``bn_refresh`` > 0: then those of the step's whole batch (every pair
    of it, fitted or not, up to :data:`BN_STATS_ROWS` patch rows), as Alice's encoder took them,
    recomputed with the current parameters when older than ``bn_refresh`` steps and held fixed
    within a step (no gradient through them). With ``hidden_decay`` > 0, each block's weights decay
    the same way along the directions its input hardly varies in (:func:`hidden_shrinks`, from
    :data:`HIDDEN_IMAGES` fitted images, every :data:`HIDDEN_EVERY` steps and at a (re)start: so a
    resumed loop is not bit for bit an uninterrupted one).

    With ``checkpoint``, the whole state of the loop (parameters, Adam's moments, the generator,
    the losses, the held-out record, the best parameters so far and the checks since, the BatchNorm
    statistics kept across steps) is saved whenever ``checkpoint.due`` says, with ``extra()``'s
    record beside it. A state saved there for this same loop (its fingerprint: steps, rates, sizes,
    shapes, backend) is restored first, ``on_resume`` gets its record, and the loop goes on from
    the step it had reached, bit for bit as if it had not stopped.
    """
    draw = _StepDraw(groups, fit, rows.shape[1], images_per_step, bn_refresh if family.depth > 0 else 0, rng)
    opt = Adam(params, xp, lr=lr, average_decay=0.0)  # the weight average is not used here
    fingerprint = {"steps": steps, "lr": lr, "images_per_step": draw.per_step, "fitted": len(fit),
                   "pairs": len(groups), "rows": list(rows.shape), "revive": revive, "bn_refresh": draw.bn_refresh}
    blocks = _BlockDecay(hidden_decay, fit, xp) if hidden_decay > 0 and family.depth > 0 else None
    if blocks is not None:
        fingerprint["hidden_decay"] = hidden_decay
    st, meta = resume_loop(checkpoint, fingerprint, params, opt, rng, xp, best_step=steps)
    bar = progress if progress is not None else (lambda k: None)
    if meta is not None:
        if on_resume is not None:
            on_resume(meta)
        bar(st.start)
    gave_up = False
    for step in range(st.start, steps):
        if checkpoint is not None and step > st.start and checkpoint.due(step):
            arrays, meta = st.snapshot(step, params, opt, rng)
            checkpoint.save(arrays, {**meta, **(extra() if extra is not None else {})})
        g, idx = draw.images(rng)
        stats = draw.stats(g, step, st, params, rows, family, xp)
        idx = xp.asarray(idx)
        y, cache = forward(params, rows[idx], family, xp, bn_stats=stats)
        loss, dy = loss_fn(y, targets[idx])
        f = lr_factor(step, steps)
        opt.step(params, backward(params, cache, dy, family, xp), lr=lr * f)
        if shrink is not None:
            params["W0"] *= 1 - lr * f * shrink
        if blocks is not None:
            blocks.apply(params, rows, family, xp, step, lr * f)
        if revive and step % REVIVE_EVERY == 0:
            _revive_dead_units(params, opt, cache.z0, rows, fit, rng, xp)
        st.losses.append(loss)
        bar(1)
        stop = held is not None and _held_out_says_stop(st, step, steps, params, rows, targets, held, family, xp)
        if not stop and probe is not None and step + 1 in probe[0] and not probe[1](params, step + 1):
            gave_up = stop = True
        if stop:
            bar(steps - step - 1)
            break
    if st.best is not None:
        params.update(st.best)
    return TrainLog(st.losses, st.curve, st.best_step, gave_up)
