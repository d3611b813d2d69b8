"""Markdown tables, one function per table, each writing exactly one ``.md`` file."""
from __future__ import annotations

from collections import defaultdict
from fractions import Fraction
from pathlib import Path

from .data_io import Data
from .style import pct

QUICK_LINE = "*Quick run: smoke-test sizes, not the committed results.*\n\n"


def _write(path, lines, quick: bool = False) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text((QUICK_LINE if quick else "") + "\n".join(lines) + "\n")
    return path


def _table(header, rows, align=None) -> list:
    align = align or ["---"] + ["---:"] * (len(header) - 1)
    return ["| " + " | ".join(header) + " |", "| " + " | ".join(align) + " |",
            *["| " + " | ".join(str(c) for c in r) + " |" for r in rows]]


def _secs(x) -> str:
    return "n/a" if x is None else f"{x:,.1f}"


def _challenge2(c2: dict | None) -> str:
    """Both directions of Challenge 2: T'(x) to the nearest T(x') / T(x) to the nearest T'(x')."""
    if not c2:
        return "n/a"
    return f"{pct(c2['share'])} / {pct(c2['share_public'])} of {c2['n']:,}"


def table1(data: Data, path: Path | str) -> Path:
    """Table 1: the attack on each NeuraCrypt Challenge variant (share matched per stage, time)."""
    d = data["table1"]
    rows = []
    for r in d["results"]["rows"]:
        c2 = r.get("challenge2")
        rows.append([f"{r['preset']}", r["total_depth"], "yes" if r["shuffle"] else "no", f"{r['n']:,}",
                     pct(r["psim_balanced_accuracy"]), pct(r["share_first"]),
                     f"{pct(r['share_boost'])} ({r['boost_rounds']})", f"**{pct(r['share_final'])}**",
                     _secs(r["attack_seconds"]), _challenge2(c2)])
    header = ["variant", "depth", "shuffle", "N", "p-sim bal. acc.", "first matching",
              "after boosting (rounds)", "final (T')", "attack time (s)",
              "T' on fresh images (Challenge 2: T'(x) to the nearest T(x') / T(x) to the nearest T'(x'))"]
    align = ["---", "---:", "---"] + ["---:"] * 7
    return _write(path, _table(header, rows, align),
                  data.quick("table1"))


def table1_paper(data: Data, path: Path | str) -> Path:
    """The paper's Table 1 as reported, for comparison (kept in ``table1.json``)."""
    p = data["table1"]["results"]["paper_reported"]
    rows = [[r["dataset"], f"{r['n']:,}", f"{r['percent_correct']}%"] for r in p["rows"]]
    return _write(path, _table(["dataset", "number of images", "percent correct"], rows, ["---", "---:", "---:"]))


STAGE_NAMES = {"align": "local permutations (§2.2.1)", "psim": "p-sim training (§2.1.1)",
               "first": "i-sim + first matching (§2.1.2-§2.1.3)", "extract": "model extraction (§2.3.1)",
               "final": "final matching with T' (§2.3.2)",
               "rescore": "close calls re-scored with each batch's statistics"}


def _stage_name(stage: str) -> str:
    if stage.startswith("boost"):
        return f"boosting round {stage.split()[1]} (§2.2.2-§2.2.3)"
    return STAGE_NAMES.get(stage, stage)


def table_stages(data: Data, path: Path | str) -> Path:
    """Every stage of the NeuraCrypt-7 run: share matched, seconds, what else it got right."""
    r = data["stages"]["results"]
    rows = []
    for s in r["stages"]:
        note = []
        for key, label in (("local_perm_share", "local permutations right"), ("balanced_accuracy", "balanced accuracy"),
                           ("true_among_candidates", "true encoding among candidates"),
                           ("global_perm_share", "global permutation right")):
            if s.get(key) is not None:
                note.append(f"{label} {pct(s[key])}")
        if s.get("auc") is not None:
            note.append(f"AUC {s['auc']:.3f}")
        if s.get("loss_first") is not None:
            note.append(f"robust loss {s['loss_first']:.3f} → {s['loss_last']:.3f}")
        if s.get("used"):
            note.append(f"matching from the {s['used']}")
        if s.get("skipped"):
            note.append(f"skipped ({s['skipped']})")
        if s.get("rescored") is not None:
            note.append(f"{s['rescored']:,} close calls re-scored with their batches' statistics, "
                        f"{s['changed']} changed")
        rows.append([_stage_name(s["stage"]), pct(s["share_matched"]) if s["share_matched"] is not None else "–",
                     _secs(s["seconds"]) if s["seconds"] is not None else "", "; ".join(note)])
    return _write(path, _table(["stage", "matched", "seconds", "note"], rows, ["---", "---:", "---:", "---"]),
                  data.quick("stages"))


def table_scaling(data: Data, path: Path | str) -> Path:
    """Attack time against N, beside the per-pair method's extrapolated i-sim time."""
    r = data["scaling"]["results"]
    rows = [[f"{x['n']:,}", _secs(x["attack_seconds"]), _secs(x["isim_seconds"]), f"{x['pairs']:,}",
             _secs(x["per_pair_isim_seconds"]), f"{x['isim_speedup']:,.0f}×" if x["isim_speedup"] else "n/a",
             pct(x["share_first"]), pct(x["share_final"])] for x in r["rows"]]
    header = ["N", "attack (s)", "i-sim + first matching (s)", "pairs N²", "per-pair method i-sim (s, extrapolated)",
              "i-sim speed-up", "first matching", "final"]
    lines = _table(header, rows)
    fb = r.get("fixed_budget")
    if fb:
        lines += ["", f"Games on disk (`{fb['source']}`), each attacked in its own process with "
                      f"`--memory-budget {fb['budget_gib']:g}`:", ""]
        lines += _table(["N", "encodings (GiB)", "read", "make (s)", "attack (s)", "peak memory (GiB)", "final"],
                        [[f"{x['n']:,}", f"{x['encodings_gib']:.2f}",
                          "whole" if x["encodings_in_memory"] else "in blocks", _secs(x["make_seconds"]),
                          _secs(x["attack_seconds"]), f"{x['peak_rss_gib']:.2f}", pct(x["share_final"])]
                         for x in fb["rows"]])
    return _write(path, lines, data.quick("scaling"))


def table_speedup(data: Data, path: Path | str) -> Path:
    """The speed-up benchmark: this project's i-sim stage against the per-pair assignment method."""
    r = data["speedup"]["results"]
    if not r.get("available"):
        return _write(path, [f"Speed-up benchmark not available: {r.get('reason', 'no data')}"])
    s = r["summary"]
    orig = (f"extrapolated from {s['original_sampled_pairs']:,} sampled pairs" if s["original_extrapolated"]
            else "run in full")
    rows = [["this project (sliced pre-score, exact i-sim on k candidates)", f"{s['project_exact_assignments']:,}",
             _secs(s["project_seconds"]), _secs(s["project_cpu_seconds"]), pct(s["share_matched_project"])],
            [f"per-pair assignment ({orig})", f"{s['original_pairs']:,}", _secs(s["original_seconds"]), "",
             pct(s["share_matched_original"]) if s["share_matched_original"] is not None else "n/a"]]
    lines = _table(["method", f"exact {s['patches']}×{s['patches']} assignments", "wall (s)", "CPU (s)",
                    "first matching right"], rows, ["---", "---:", "---:", "---:", "---:"])
    cpu = "n/a" if s.get("speedup_cpu_time") is None else f"{s['speedup_cpu_time']:,.0f}×"
    lines += ["", f"Speed-up: **{s['speedup']:,.0f}×** wall time ({cpu} CPU time); "
                  f"N = {s['n']:,}, {s['image_size']}×{s['image_size']} px, P = {s['patches']}, k = {s['k']}."]
    return _write(path, lines, data.quick("speedup"))


def table_cia(data: Data, path: Path | str) -> Path:
    """Exact CIA checks over every game on small domains, per encoder."""
    r = data["theory_cia"]["results"]
    by = defaultdict(list)
    for row in r["exhaustive"]:
        by[row["encoder"]].append(row)
    rows = []
    for enc, rs in by.items():
        sizes = sorted(x["domain_size"] for x in rs)
        largest = max(rs, key=lambda x: x["domain_size"])
        rows.append([enc.replace("_", " "), f"{sizes[0]}–{sizes[-1]}", f"{largest['games']:,}",
                     str(max(Fraction(x["max_cia_advantage"]) for x in rs)),
                     str(max(Fraction(x["definition2_condition1_max_tv"]) for x in rs)),
                     str(max(Fraction(x["definition2_condition2_max_tv_uniform_D"]) for x in rs)),
                     str(min(Fraction(x["min_label_preservation"]) for x in rs))])
    header = ["encoder", "domain sizes", "games at the largest domain", "max CIA advantage", "Def. 2 (1): max TV",
              "Def. 2 (2): max TV", "min label preservation"]
    return _write(path, _table(header, rows, ["---", "---:", "---:", "---:", "---:", "---:", "---:"]),
                  data.quick("theory_cia"))
