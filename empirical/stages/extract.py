"""Stage ``extract``: fit T' to the matched pairs (paper §2.3.1), then refit it on its own matching.

T' of the public architecture is fitted to boosting's matched, aligned pairs with a robust loss.
T' then matches the images itself; where it separates them better than p-sim does (median
margins, :mod:`empirical.stages.final`), its own matching is the cleaner one. A second,
squared-loss fit on the cleaner matching brings T' closer to T.

Both fits hold back the same pairs (:func:`empirical.holdout.holdout_split`, drawn once here); the
stage reports the steps each fit ran and kept, and T''s nearest-neighbour shares on the held-back
pairs: the attacker's own estimate of its Challenge 2 score, made without Alice's key.

The first fit probes itself early and again when fitted (:func:`empirical.extraction.fit_encoder`):
when T' picks the right held-back encoding too rarely, it stops there, the refit is skipped, and the
stage says so; the final stage then keeps boosting's matching, whose margins a worthless T' cannot
beat.

With :attr:`~empirical.extraction.ExtractConfig.members` K > 1 the fit and its refit run K times,
from the seeds seed..seed+K-1, all holding back the same pairs; T' is their mean, joined into one
network (:func:`empirical.tprime.join`), the report's keys are the first fit's and ``members``
lists each fit's own, and the stage's matching is the first fit's. No other fit runs after a first
one that gave up.

With a work dir the stage is resumable inside: the first fit and the refit save themselves as they
go (every :data:`empirical.checkpoint.CHECKPOINT_SECONDS`), and the finished first fit and the
refit's matching are kept, in the stage's parts folder (:meth:`empirical.store.Store.scratch`). A
killed run, started again on the same backend, goes on from there and ends exactly as it would
have; a part saved for another computation or unreadable is computed again; the report lists the
parts read back (``resumed_parts``; member k's end in ``-k``), and the folder is removed once the
stage is saved. At the challenge's size this stage takes hours.
"""
from __future__ import annotations

import sys
from dataclasses import replace
from typing import NamedTuple

import numpy as np

from .. import (
    assignment,
    batch_sample,
    boosting,
    candidate_graph,
    checkpoint,
    encoder,
    encodings,
    extraction,
    fit_budget,
    fit_loop,
    fit_state,
    holdout,
    matched,
    mlp,
    nearest,
    passes,
    sketch,
    tprime,
    whitening,
)
from ..backend import to_numpy
from ..checkpoint import Checkpoint, pack, unpack
from ..extraction import EncoderFit, ExtractConfig, fit_encoder, refine_encoder
from ..fit_budget import fit_steps
from ..holdout import Split, held_out_scores, holdout_split
from ..matched import MatchedImages
from ..mlp import Params
from ..progress import progress_bar
from . import final
from .base import Context, Stage, StageResult, register

PARTS = ("fit", "fit-done", "refit-matching", "refine")  # the resumable parts, in the order they are made
LOSS_TAIL = 20  # the reported final loss of a fit is the mean over this many last steps


def _fit_info(prefix: str, fit: EncoderFit, planned: int) -> dict:
    """What one fit reports: its loss, the steps planned, run and kept, the last held-out error."""
    info = {f"{prefix}loss_first": fit.losses[0], f"{prefix}loss_last": float(np.mean(fit.losses[-LOSS_TAIL:])),
            f"{prefix}steps_planned": planned, f"{prefix}steps_run": len(fit.losses)}
    if fit.held_out:
        info[f"{prefix}steps_kept"] = fit.best_step
        info[f"{prefix}held_out_error"] = min(e for _, e in fit.held_out)
    return info


def _parts(ctx: Context, n_pairs: int, member: int = 0) -> dict[str, Checkpoint | None]:
    """The stage's resumable parts for fit ``member`` (:attr:`ExtractConfig.members`), each a
    :class:`~empirical.checkpoint.Checkpoint` in the run's scratch folder for this stage (None without a
    work dir): the first fit as it goes (``fit``) and when done (``fit-done``), the matching the refit
    is fitted on (``refit-matching``), the refit as it goes (``refine``). The fits fingerprint their own
    parts; the others carry the pairs and the backend. Member k > 0's files end in ``-k``."""
    fp = {"pairs": n_pairs, "xp": ctx.xp.__name__}
    tail = f"-{member}" if member else ""
    return {name: None if ctx.scratch is None else Checkpoint(ctx.scratch / f"{name}{tail}.npz", fingerprint=fp)
            for name in PARTS}


def _save_fit(done: Checkpoint | None, fit: EncoderFit) -> None:
    if done is not None:
        done.save({**pack(params=fit.params), "losses": np.asarray(fit.losses, np.float64)},
                  {"held_out": fit.held_out, "best_step": fit.best_step, "probe": fit.probe, "gave_up": fit.gave_up,
                   "probes": fit.probes})


def _load_fit(done: Checkpoint | None, xp) -> EncoderFit | None:
    def check(arrays: dict, meta: dict) -> None:
        missing = [k for k in ("held_out", "best_step", "probe", "gave_up", "probes") if k not in meta]
        missing += [k for k in ("params.W0", "losses") if k not in arrays]
        if missing:
            raise KeyError(f"no {', '.join(missing)}")

    saved = done.load(check=check) if done is not None else None
    if saved is None:
        return None
    arrays, meta = saved
    return EncoderFit(unpack(arrays, "params", xp), [float(v) for v in arrays["losses"]],
                      tuple((int(k), float(e)) for k, e in meta["held_out"]), int(meta["best_step"]), meta["probe"],
                      bool(meta["gave_up"]), tuple(meta["probes"]))


def _refit_matching(ctx: Context, part: Checkpoint | None, params: Params,
                    m_boost: np.ndarray) -> tuple[np.ndarray, float, float]:
    """T''s own matching and its median margin, beside boosting's (kept in ``part`` once computed)."""
    def parse(arrays: dict, meta: dict) -> tuple[np.ndarray, float, float]:
        if arrays["matching"].shape != m_boost.shape:
            raise ValueError(f"a matching of shape {arrays['matching'].shape}, not {m_boost.shape}")
        return arrays["matching"], float(meta["t_margin"]), float(meta["p_margin"])

    saved = part.load(check=parse) if part is not None else None
    if saved is not None:
        return parse(*saved)
    m_t, t_margin, _ = final.encoder_matching(ctx, params, m_boost)
    p_margin = final.boosting_margin(ctx)
    if part is not None:
        part.save({"matching": m_t}, {"t_margin": float(t_margin), "p_margin": float(p_margin)})
    return m_t, t_margin, p_margin


class _Member(NamedTuple):
    params: Params  # the member's T', refitted when the refit ran
    m_fit: np.ndarray  # the matching its last fit was fitted on
    gave_up: bool  # its first fit's probe found it worthless
    info: dict  # what its fits report
    resumed: list[str]  # its parts read back from the work dir


def _fit_member(ctx: Context, ec: ExtractConfig, parts: dict, split: Split, steps: int, refine_steps: int,
                bar) -> _Member:
    """One fit of T' from ``ec.seed``, then its refit on the cleaner matching (the stage's notes)."""
    fam, xp, tgt, groups, m_boost = ctx.game.config, ctx.xp, final.targets(ctx), ctx.game.bn_groups, ctx.boosted
    refine = fam.depth >= 0 and refine_steps > 0
    fit = _load_fit(parts["fit-done"], xp)
    if fit is None:
        fit = fit_encoder(MatchedImages(ctx.originals, m_boost, xp), tgt, groups, fam, ec, xp, progress=bar,
                          split=split, memory_budget=ctx.memory_budget, checkpoint=parts["fit"])
        _save_fit(parts["fit-done"], fit)
        if ctx.scratch is not None:
            parts["fit"].clear()  # done: its last save is stale (at the challenge's size, hundreds of MB)
    else:
        bar(steps)
    params = fit.params
    info = _fit_info("", fit, steps)
    if fit.probe is not None:
        info["probe"] = fit.probe
        info["probes"] = [{k: p[k] for k in ("step", "right", "n", "bar")} for p in fit.probes]
    if fit.gave_up:
        where = (f"fitted ({len(fit.losses)} of {steps} steps)" if fit.probe.get("after_fit")
                 else f"stopped after {len(fit.losses)} of {steps} steps")
        info["stopped"] = (f"{where} and no refit: T' picked {fit.probe['right']} of the {fit.probe['n']} "
                           f"held-back pairs right, fewer than {fit.probe['bar']} (what chance reaches with "
                           f"probability {ec.probe_alpha}), so it cannot improve the matching")
        bar(refine_steps if refine else 0)
        refine = False
    m_fit = m_boost
    if refine:
        # Refit on the cleaner of the two matchings: T''s own when it separates the images at least
        # as well as p-sim did (median margins), else boosting's.
        m_t, t_margin, p_margin = _refit_matching(ctx, parts["refit-matching"], params, m_boost)
        info.update(refine_margin_extracted=t_margin, refine_margin_psim=p_margin)
        if t_margin >= p_margin:
            m_fit = m_t
            info["refined_on"] = "extracted encoder's matching"
        else:
            info["refined_on"] = "boosting's matching (T' margins smaller)"
        ref = refine_encoder(params, MatchedImages(ctx.originals, m_fit, xp), tgt, groups, fam, ec, xp,
                             progress=bar, memory_budget=ctx.memory_budget, split=split,
                             checkpoint=parts["refine"])
        params = ref.params
        info.update(_fit_info("refine_", ref, refine_steps))
    resumed = [name for name, p in parts.items() if p is not None and p.loaded]
    return _Member(params, m_fit, fit.gave_up, info, resumed)


def compute(ctx: Context) -> tuple[tuple[Params, np.ndarray, bool], StageResult]:
    ec, fam, xp = ctx.cfg.extract, ctx.game.config, ctx.xp
    tgt, groups, m_boost = final.targets(ctx), ctx.game.bn_groups, ctx.boosted
    split = holdout_split(groups, ec)  # drawn once: every member holds back the same pairs
    steps, refine_steps = fit_steps(ec, fam, len(split.fit))
    per_member = steps + (refine_steps if fam.depth >= 0 else 0)
    parts = [_parts(ctx, len(groups), k) for k in range(ec.members)]
    if ctx.scratch is not None and not ctx.quiet and any(p.path.exists() for ps in parts for p in ps.values()):
        print(f"model extraction: resuming from the parts saved in {ctx.scratch}", file=sys.stderr, flush=True)
    members: list[_Member] = []
    with progress_bar(per_member * ec.members, "model extraction", ctx.quiet) as bar:
        for k in range(ec.members):
            members.append(_fit_member(ctx, replace(ec, seed=ec.seed + k), parts[k], split, steps, refine_steps,
                                       bar))
            if members[0].gave_up:  # a worthless first fit: no other seed is tried
                bar(per_member * (ec.members - 1))
                break
    first = members[0]
    info = dict(first.info)
    params = tprime.join([m.params for m in members], fam, xp)
    if len(members) > 1:  # each member's own report; the keys above are the first member's
        info["members"] = [m.info for m in members]
    resumed = [f"{name}-{k}" if k else name for k, m in enumerate(members) for name in m.resumed]
    if resumed:
        info["resumed_parts"] = resumed  # the parts read back, not computed again
    held, m_fit = split.held, first.m_fit
    if len(held):  # pairs no fit has seen, matched as the first member's last fit's matching says
        info["held_out"] = held_out_scores(params, MatchedImages(ctx.originals, m_fit, xp), tgt, groups, held, fam,
                                           xp)
    # The stage's matching is T''s own (first fit) when it was trusted for the refit.
    own = m_fit if m_fit is not m_boost else None
    return (params, m_fit, first.gave_up), StageResult("extract", matching=own, info=info)


def attach(ctx: Context, value: tuple[Params, np.ndarray, bool]) -> None:
    ctx.params, ctx.fit_matching, ctx.extract_gave_up = value


def save(value: tuple[Params, np.ndarray, bool]) -> tuple[dict, dict]:
    params, m_fit, gave_up = value
    return {**{f"p.{k}": to_numpy(a) for k, a in params.items()}, "fit_matching": m_fit}, {"gave_up": gave_up}


def load(arrays: dict, meta: dict, ctx: Context) -> tuple[Params, np.ndarray, bool]:
    params = {k[2:]: ctx.xp.asarray(v) for k, v in arrays.items() if k.startswith("p.")}
    return params, arrays["fit_matching"], bool(meta["gave_up"])


STAGE = register(Stage(
    name="extract", fields=("extract",),
    sources=(sys.modules[__name__], extraction, fit_budget, holdout, nearest, tprime, mlp, final, encodings,
             matched, whitening, batch_sample, sketch, passes, assignment, boosting, candidate_graph, checkpoint,
             encoder, fit_loop, fit_state),
    compute=compute, attach=attach, save=save, load=load,
))
