"""The whole attack (paper §2), as stages that take what Bob has and return what they found.

Bob has a :class:`~empirical.challenge.Game`: the public family, every original, and the
encodings in file order. No stage receives Alice's key, permutations or answer key; the
evaluation against those happens afterwards (:mod:`empirical.evaluate`).

Stage order. The paper matches images first (§2.1) and recovers the local permutations after
(§2.2.1). The local permutations need no matching at all, so they come first here: with every
encoding in a common row order, p-sim's row features can be standardised per slot, which removes
the positional embedding's offset and makes p-sim markedly sharper. Then:

1. ``align``    local permutations (§2.2.1)
2. ``psim``     train p-sim on the attacker's own encoders (§2.1.1)
3. ``first``    i-sim on pre-screened candidates, first matching (§2.1.2-§2.1.3)
4. ``boost``    global permutation and re-matching, iterated (§2.2.2-§2.2.3)
5. ``extract``  fit T' to the matched pairs (§2.3.1); match with it, refit on its own matching
6. ``final``    encode every original with T', match by distance (§2.3.2)

With ``work_dir`` set, each finished stage is saved there and a later run with the same game and
configuration resumes after the last finished stage.
"""
from __future__ import annotations

import functools
import hashlib
import json
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from .alignment import align_rows, apply_order
from .assignment import match_encodings, match_margins
from .backend import to_numpy
from .boosting import boost, known_perm_scores
from .challenge import Game
from .extraction import ExtractConfig, encode_each, fit_encoder, key_from_params, mean_batch_stats, refine_encoder
from .isim import balance, first_matching, isim_candidates, sliced_prescore, top_candidates
from .progress import progress_bar
from .psim import PsimConfig, PsimModel, evaluate_psim, patch_features, row_features, train_psim, training_pairs

STAGES = ("align", "psim", "first", "boost", "extract", "final")


@dataclass(frozen=True)
class AttackConfig:
    seed: int = 0
    align_iterations: int = 2
    psim: PsimConfig = field(default_factory=PsimConfig)
    candidates: int = 15  # encodings per original that get an exact i-sim
    boost_rounds: int = 12
    extract: ExtractConfig = field(default_factory=ExtractConfig)

    def to_json(self) -> dict:
        return asdict(self)


@dataclass
class StageResult:
    name: str
    seconds: float
    matching: np.ndarray | None = None  # (N,) encoding -> original index
    info: dict = field(default_factory=dict)  # JSON-friendly figures
    arrays: dict = field(default_factory=dict)  # larger outputs kept for evaluation and resuming


@dataclass
class AttackResult:
    stages: list
    order: np.ndarray  # (N, P) local permutations: encoding b's row for slot q is order[b, q]
    pi: np.ndarray | None  # (P,) original position j -> slot pi[j]
    matching: np.ndarray  # final (N,) encoding -> original index
    encoder: object = None  # the extracted T' as an EncoderKey
    patch_emb: object = None  # (N_o, P, E) p-sim embeddings of the original patches (xp array)
    row_emb: object = None  # (N, P, E) p-sim embeddings of the aligned encoded rows (xp array)

    def submission(self, game: Game) -> dict:
        """``{id: "<k>.npy"}`` for every encoding file."""
        return {game.ids[int(a)]: f for f, a in zip(game.files, self.matching, strict=True)}


def _game_fingerprint(game: Game) -> str:
    h = hashlib.sha256(json.dumps(game.config.to_json(), sort_keys=True).encode())
    h.update("\n".join(game.ids).encode() + b"|" + "\n".join(game.files).encode())
    for a in (game.originals, game.encodings):
        h.update(np.ascontiguousarray(a[:: max(1, len(a) // 64)]).tobytes())
    return h.hexdigest()[:16]


# The configuration fields each stage depends on (its own and every earlier stage's).
_STAGE_FIELDS = {"align": ("seed", "align_iterations"), "psim": ("psim",), "first": ("candidates",),
                 "boost": ("boost_rounds",), "extract": ("extract",), "final": ()}


# Bumped when a stage's method changes, so results saved by an older method are not reused.
_STAGE_VERSIONS = {"align": 1, "psim": 1, "first": 2, "boost": 1, "extract": 2, "final": 2}


def _stage_keys(cfg: AttackConfig) -> dict:
    """A short hash per stage of the configuration (and method version) its result depends on."""
    d, keys, fields, versions = cfg.to_json(), {}, [], {}
    for name in STAGES:
        fields += _STAGE_FIELDS[name]
        versions[name] = _STAGE_VERSIONS[name]
        blob = {**{f: d[f] for f in fields}, "versions": versions}
        keys[name] = hashlib.sha256(json.dumps(blob, sort_keys=True).encode()).hexdigest()[:10]
    return keys


class _Store:
    """Finished stages on disk: ``work_dir/<game fingerprint>/<stage>-<config hash>.npz``.

    A stage is reused only when the game and every configuration field it depends on match, so
    changing, say, the extraction steps re-runs extraction but resumes everything before it.
    """

    def __init__(self, work_dir, game: Game, cfg: AttackConfig):
        self.dir = Path(work_dir) / _game_fingerprint(game) if work_dir else None
        self.keys = _stage_keys(cfg)
        if self.dir is not None:
            self.dir.mkdir(parents=True, exist_ok=True)

    def _path(self, name: str) -> Path:
        return self.dir / f"{name}-{self.keys[name]}.npz"

    def load(self, name: str):
        if self.dir is None or not self._path(name).exists():
            return None
        with np.load(self._path(name), allow_pickle=False) as z:
            arrays = {k: z[k] for k in z.files if k != "_meta"}
            meta = json.loads(str(z["_meta"]))
        return arrays, meta

    def save(self, name: str, arrays: dict, meta: dict) -> None:
        if self.dir is None:
            return
        from .fileio import atomic_path

        with atomic_path(self._path(name)) as tmp:
            with open(tmp, "wb") as f:
                np.savez(f, _meta=np.array(json.dumps(meta)), **{k: to_numpy(v) for k, v in arrays.items()})


def run_attack(game: Game, cfg: AttackConfig, xp, quiet: bool = False, work_dir=None,
               on_stage=None, stop_after: str | None = None) -> AttackResult:
    """Run every stage on ``game``; ``on_stage(StageResult)`` is called as each one finishes.

    ``stop_after`` (``"first"`` or ``"boost"``) ends the run after that stage; the result then
    holds the matching found so far, and ``encoder`` (and, before boosting, ``pi``) stay None.
    """
    if stop_after not in (None, "first", "boost"):
        raise ValueError(f"stop_after must be None, 'first' or 'boost', not {stop_after!r}")
    fam = game.config
    store = _Store(work_dir, game, cfg)
    stages = []
    originals = xp.asarray(game.originals)
    encodings = xp.asarray(game.encodings)
    n_orig, n_enc, P = len(game.originals), len(game.encodings), fam.n_patches

    def finish(res: StageResult):
        stages.append(res)
        if on_stage is not None:
            on_stage(res)

    def stage(name, compute, to_arrays, from_arrays):
        cached = store.load(name)
        if cached is not None:
            arrays, meta = cached
            value = from_arrays(arrays, meta)
            res = StageResult(name, meta["seconds"], arrays.get("matching"), {**meta["info"], "resumed": True},
                              {k[4:]: v for k, v in arrays.items() if k.startswith("res.")})
        else:
            t0 = time.perf_counter()
            value, res = compute()
            res.seconds = time.perf_counter() - t0
            arrays, meta = to_arrays(value)
            arrays.update({f"res.{k}": v for k, v in res.arrays.items()})
            if res.matching is not None:
                arrays["matching"] = res.matching
            store.save(name, arrays, {"seconds": res.seconds, "info": res.info, **meta})
        finish(res)
        return value

    # 1. local permutations ---------------------------------------------------------------------
    def do_align():
        if not fam.shuffle:  # public: the family does not shuffle, rows are in position order
            return np.tile(np.arange(P), (n_enc, 1)), StageResult("align", 0, info={"skipped": "no shuffle"})
        with progress_bar(n_enc * cfg.align_iterations, "local permutations", quiet) as bar:
            order = align_rows(encodings, xp, cfg.align_iterations, progress=bar)
        return order, StageResult("align", 0)

    order = stage("align", do_align, lambda o: ({"order": o}, {}), lambda a, m: a["order"])
    aligned = apply_order(encodings, order, xp)  # (N, P, D)
    del encodings  # one (N, P, D) array on the device at a time: 31 GB at the challenge's scale

    # 2. p-sim ----------------------------------------------------------------------------------
    def do_psim():
        pc = cfg.psim
        pairs = training_pairs(originals, fam, pc, cfg.seed, xp)
        small = PsimConfig(**{**asdict(pc), "n_encoders": 2})
        val = training_pairs(originals, fam, small, cfg.seed + 1, xp)
        test = training_pairs(originals, fam, small, cfg.seed + 2, xp)
        with progress_bar(pc.steps, "p-sim training", quiet) as bar:
            model, losses = train_psim(pairs, pc, cfg.seed, xp, progress=bar)
        ev = evaluate_psim(model, val, test, cfg.seed, xp)
        info = {"balanced_accuracy": ev["balanced_accuracy"], "auc": ev["auc"],
                "roc_fpr": ev["roc_fpr"], "roc_tpr": ev["roc_tpr"],
                "loss_first": losses[0], "loss_last": float(np.mean(losses[-50:]))}
        return model, StageResult("psim", 0, info=info)

    def psim_arrays(model: PsimModel):
        arrays = {f"o.{k}": v for k, v in model.orig.items()}
        arrays.update({f"e.{k}": v for k, v in model.enc.items()})
        return arrays, {"log_t": model.log_t, "moments": model.moments}

    def psim_load(arrays, meta):
        return PsimModel({k[2:]: xp.asarray(v) for k, v in arrays.items() if k.startswith("o.")},
                         {k[2:]: xp.asarray(v) for k, v in arrays.items() if k.startswith("e.")},
                         meta["log_t"], meta["moments"])

    model = stage("psim", do_psim, psim_arrays, psim_load)
    K = model.moments
    patch_emb = model.embed_patches(patch_features(originals, fam, K, xp).reshape(-1, K), xp).reshape(n_orig, P, -1)
    row_emb = model.embed_rows(row_features(aligned, K, xp).reshape(-1, K), xp).reshape(n_enc, P, -1)

    # 3. i-sim and the first matching -----------------------------------------------------------
    def do_first():
        if not fam.shuffle:  # rows already in position order: i-sim needs no assignment
            m = match_encodings(known_perm_scores(patch_emb, row_emb, np.arange(P), xp))
            return m, StageResult("first", 0, m, {"method": "positions known (no shuffle)"})
        pre = balance(sliced_prescore(patch_emb, row_emb, xp), xp)
        cand = top_candidates(pre, cfg.candidates, xp)
        del pre
        with progress_bar(n_orig, "i-sim (exact, on candidates)", quiet) as bar:
            vals = isim_candidates(patch_emb, row_emb, cand, xp, progress=bar)
        m = first_matching(vals, cand, n_enc)
        info = {"method": "exact i-sim on pre-screened candidates", "candidates_per_original": int(cand.shape[1]),
                "exact_assignments": int(cand.size), "assignment_size": P}
        return m, StageResult("first", 0, m, info, {"candidates": cand})

    matching = stage("first", do_first, lambda m: ({}, {}), lambda a, meta: a["matching"])
    if stop_after == "first":
        return AttackResult(stages, order, None, matching, None, patch_emb, row_emb)

    # 4. global permutation and re-matching -----------------------------------------------------
    def do_boost():
        history = []
        if not fam.shuffle:  # public: positions are not permuted, pi is the identity
            pi = np.arange(P)
            m = match_encodings(known_perm_scores(patch_emb, row_emb, pi, xp))
            history.append(m)
            rounds = 1
        else:
            m, pi, rounds = boost(patch_emb, row_emb, matching, xp, cfg.boost_rounds, cfg.seed,
                                  on_round=lambda i, mm, p: history.append(mm))
        return (m, pi), StageResult("boost", 0, m, {"rounds": rounds}, {"history": np.array(history)})

    m_boost, pi = stage("boost", do_boost, lambda v: ({"pi": v[1]}, {}),
                        lambda a, meta: (a["matching"], a["pi"]))
    if stop_after == "boost":
        return AttackResult(stages, order, pi, m_boost, None, patch_emb, row_emb)

    # 5. model extraction -----------------------------------------------------------------------
    targets = aligned[:, xp.asarray(pi), :]  # (N, P, D): encoding rows in the original's position order
    del aligned
    groups = game.bn_groups

    def encoder_matching(params, m_stats):
        """Match every original to an encoding by T''s distance; ``(matching, median margin)``.

        Each original is encoded on its own with BatchNorm statistics averaged over Alice's
        batches, these filled with the originals of ``m_stats``.
        """
        stats = mean_batch_stats(params, originals[xp.asarray(m_stats)], groups, fam, xp)
        tgt = targets.reshape(n_enc, -1)
        score = xp.empty((n_orig, n_enc), dtype=xp.float32)
        for s in range(0, n_orig, 512):  # T'(x) for 512 originals at a time, never all of them
            pred = encode_each(params, originals[s:s + 512], fam, stats, xp).reshape(-1, tgt.shape[1])
            score[s:s + 512] = 2 * (pred @ tgt.T) - (pred * pred).sum(axis=1)[:, None]  # -|a-b|^2 + per-column const
        del pred
        m = match_encodings(score)
        return m, float(np.median(match_margins(score, m, xp)))

    @functools.cache  # computed once, when first needed
    def boosting_margin() -> float:
        p_score = known_perm_scores(patch_emb, row_emb, pi, xp)
        return float(np.median(match_margins(p_score, m_boost, xp)))

    def do_extract():
        ec = cfg.extract
        refine = fam.depth >= 0 and ec.refine_steps > 0
        with progress_bar(ec.steps + (ec.refine_steps if refine else 0), "model extraction", quiet) as bar:
            params, losses = fit_encoder(originals[xp.asarray(m_boost)], targets, groups, fam, ec, xp,
                                         progress=bar)
            info = {"loss_first": losses[0], "loss_last": float(np.mean(losses[-20:]))}
            m_fit = m_boost
            if refine:
                # T' already separates images far better than p-sim, so its own matching is
                # cleaner than boosting's; a second, squared-loss fit on it (outliers gone) brings
                # T' closer to T. If T' is the weaker of the two (a poor fit), its matching is
                # not trusted and T' is left as it is.
                m_t, t_margin = encoder_matching(params, m_boost)
                info.update(refine_margin_extracted=t_margin, refine_margin_psim=boosting_margin())
                if t_margin >= boosting_margin():
                    m_fit = m_t
                    params, r_losses = refine_encoder(params, originals[xp.asarray(m_fit)], targets, groups, fam,
                                                      ec, xp, progress=bar)
                    info.update(refine_loss_first=r_losses[0], refine_loss_last=float(np.mean(r_losses[-20:])),
                                refined_on="extracted encoder's matching")
                else:
                    info["refined_on"] = "not refined (T' margins smaller)"
        # The stage's matching is T''s own (first fit) when it was trusted for the refit.
        return (params, m_fit), StageResult("extract", 0, m_fit if refine and m_fit is not m_boost else None, info)

    params, m_fit = stage(
        "extract", do_extract,
        lambda v: ({**{f"p.{k}": a for k, a in v[0].items()}, "fit_matching": v[1]}, {}),
        lambda a, meta: ({k[2:]: xp.asarray(v) for k, v in a.items() if k.startswith("p.")}, a["fit_matching"]))

    # 6. final matching -------------------------------------------------------------------------
    def do_final():
        m, t_margin = encoder_matching(params, m_fit)
        # T' should separate images far better than p-sim; if it does not (a poor fit), keep
        # boosting's matching rather than make things worse. Decided on margins alone.
        p_margin = boosting_margin()
        info = {"median_margin_extracted": t_margin, "median_margin_psim": p_margin,
                "used": "extracted encoder" if t_margin >= p_margin else "boosting (T' margins smaller)"}
        if t_margin < p_margin:
            m = m_boost
        return m, StageResult("final", 0, m, info)

    final = stage("final", do_final, lambda m: ({}, {}), lambda a, meta: a["matching"])
    return AttackResult(stages, order, pi, final, key_from_params(params, fam), patch_emb, row_emb)


