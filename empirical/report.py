"""How much each stage got right: the attack's result scored against Alice's secrets, after the attack.

One scorer serves the command line (:mod:`empirical.attack`) and the simulations: it turns an
:class:`~empirical.pipeline.AttackResult` into one record per stage (boosting: one per round),
each with the share of images matched where the stage makes a matching, its seconds, and what
else it got right. Without Alice's secrets (a game on disk with no answer key) the shares are
None and the records still carry each stage's own figures.
"""
from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from .evaluate import global_perm_share, local_perm_share, share_matched, true_matching
from .game import Game, Secrets

if TYPE_CHECKING:
    from .pipeline import AttackResult


def _true_among_candidates(cand: np.ndarray, truth: np.ndarray) -> float:
    """Share of encodings whose original lists the encoding among its candidates."""
    return float(np.mean([k in set(cand[a]) for k, a in enumerate(truth)]))


def score_stages(result: AttackResult, game: Game, secrets: Secrets | None) -> list[dict]:
    """Per-stage records: ``stage``, ``seconds``, ``share_matched`` (or None) and stage figures.

    Boosting contributes one record per round (``boost 1``, ``boost 2``, ...); its seconds are on
    the last round, which is the stage's result.
    """
    truth = true_matching(game, secrets) if secrets is not None else None

    def share(m):
        return None if truth is None or m is None else share_matched(m, truth)

    out, common = [], None
    for st in result.stages:
        rec = {"stage": st.name, "seconds": float(st.seconds), "share_matched": None}
        if st.info.get("resumed"):
            rec["resumed"] = True
        if st.name == "align":
            if st.info.get("skipped"):
                rec["skipped"] = st.info["skipped"]
            elif secrets is not None and secrets.perms is not None:
                rec["local_perm_share"], common = local_perm_share(result.order, secrets.perms)
        elif st.name == "psim":
            rec.update({k: st.info[k] for k in ("balanced_accuracy", "auc") if k in st.info})
        elif st.name == "first":
            rec["share_matched"] = share(st.matching)
            rec["method"] = st.info.get("method", "")
            if truth is not None and "candidates" in st.arrays:
                rec["true_among_candidates"] = _true_among_candidates(st.arrays["candidates"], truth)
        elif st.name == "boost":
            hist = list(st.arrays.get("history", [])) or [st.matching]
            for i, m in enumerate(hist[:-1]):
                out.append({"stage": f"boost {i + 1}", "seconds": None, "share_matched": share(m)})
            rec["stage"] = f"boost {len(hist)}"
            rec["share_matched"] = share(st.matching)
            rec["rounds"] = int(st.info.get("rounds", len(hist)))
            rec.update({k: st.info[k] for k in ("start", "start_reason", "median_margin", "graph") if k in st.info})
            if common is not None and result.pi is not None:
                rec["global_perm_share"] = global_perm_share(result.pi, common)
        elif st.name == "extract":
            rec["share_matched"] = share(st.matching)
            keep = ("loss_", "refine_", "steps_", "held_out", "probe")
            rec.update({k: v for k, v in st.info.items() if k.startswith(keep) or k in ("refined_on", "stopped")})
            rec["matched_by_first_fit"] = st.matching is not None
        elif st.name == "final":
            rec["share_matched"] = share(st.matching)
            rec.update({k: st.info[k] for k in ("used", "median_margin_extracted", "median_margin_psim")
                        if k in st.info})
        elif st.name == "rescore":
            rec["share_matched"] = share(st.matching)
            rec.update({k: st.info[k] for k in ("skipped", "rescored", "candidates_per_encoding", "batches",
                                                "patch_twins", "twin_images", "passes", "changed_per_pass",
                                                "scored_pairs_per_pass", "changed")
                        if k in st.info})
        out.append(rec)
    return out


def _note(rec: dict) -> str:
    """The printed note of one stage record."""
    name = rec["stage"].split(" ")[0]
    if name == "align":
        if "skipped" in rec:
            return rec["skipped"]
        share = rec.get("local_perm_share")
        return "" if share is None else f"local permutations right (up to one common): {share:.1%}"
    if name == "psim":
        return f"balanced accuracy {rec['balanced_accuracy']:.1%} (chance 50%), AUC {rec['auc']:.3f}"
    if name == "first":
        inside = rec.get("true_among_candidates")
        return rec["method"] + ("" if inside is None else f"; true encoding among candidates {inside:.1%}")
    if name == "boost" and "rounds" in rec:
        note = f"{rec['rounds']} round(s)"
        if "start" in rec:
            note += f" from the {rec['start']} ({rec['start_reason']})"
        if "global_perm_share" in rec:
            note += f"; global permutation right {rec['global_perm_share']:.1%}"
        return note
    if name == "extract":
        note = f"robust loss {rec['loss_first']:.3f} -> {rec['loss_last']:.3f}"
        if "stopped" in rec:
            note += f"; {rec['stopped']}"
        if rec["matched_by_first_fit"]:
            note += "; matched by the first fit of T', then refitted on that matching"
        elif "refined_on" in rec:
            note += f"; {rec['refined_on']}"
        held = rec.get("held_out")
        if held:
            note += (f"; on {held['n']} held-back pairs T'(x) to the nearest {held['est_to_nearest_truth']:.1%},"
                     f" back {held['truth_to_nearest_est']:.1%}")
        return note
    if name == "final":
        return f"used: {rec['used']}" if "used" in rec else ""
    if name == "rescore":
        if "skipped" in rec:
            return rec["skipped"]
        twins = f", rows corrected by {rec['patch_twins']} patch twins" if rec.get("patch_twins") else ""
        passes = f" in {rec['passes']} pass{'es' if rec['passes'] > 1 else ''}" if "passes" in rec else ""
        return (f"{rec['rescored']} close calls, {rec['candidates_per_encoding']} candidates each, with the "
                f"statistics of their {rec['batches']} batches{twins}; {rec['changed']} matches changed{passes}")
    return ""


_TITLES = {"align": "local permutations", "psim": "p-sim training", "first": "i-sim + first matching",
           "extract": "model extraction", "final": "final matching", "rescore": "batch re-scoring"}


def table_rows(records: list[dict]) -> list[tuple[str, float | None, float | None, str]]:
    """``(title, share matched or None, seconds or None, note)`` per record, as the table prints them."""
    rows = []
    for rec in records:
        name = rec["stage"].split(" ")[0]
        title = f"boosting round {rec['stage'].split(' ')[1]}" if name == "boost" else _TITLES.get(name, name)
        rows.append((title, rec["share_matched"], rec["seconds"], _note(rec)))
    return rows
