"""Is every output drawn from the data now in ``paper/data/``, and does paper.md quote only the data?

:func:`check` returns a list of problems (empty when all is well):

* an output is missing, or has no entry in ``build.json``;
* an output is *older than its data*: a data file it is drawn from has changed since it was
  drawn (its SHA-256 differs from the one recorded in ``build.json``). Content is compared, not
  modification times, because a git checkout gives files arbitrary times; without a
  ``build.json`` entry the check falls back to modification times;
* an output was edited by hand after it was drawn (its own hash differs);
* ``paper.md`` quotes a number that no data file holds (:func:`numbers_not_in_data`).
"""
from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np

from .data_io import numeric_leaves, sha256
from .outputs import all_outputs, read_manifest, source_hashes

# Numbers that are names, not results: section and statement references, variant names, years of
# citations, numbered list items and headings, ISO dates (copied from the data's date strings).
# Code spans and blocks (commands, file names), inline maths, comments and link targets are skipped.
_SKIP = [
    r"```.*?```", r"<!--.*?-->", r"`[^`\n]*`", r"\$[^$\n]+\$", r"\]\([^)]*\)", r"<[^>\n]*>",
    r"§\s*\d+(?:\.\d+)*",
    r"\b(?:Table|Theorem|Definition|Def\.|Figure|Appendix|Challenge|Section|Lemma)\s+\d+(?:\s*\(\d+\))?",
    r"(?i)\bneuracrypt-\d+", r"\b(?:et al\.,?|arXiv)\s+\d{4}", r"(?m)^\s*\d+\.\s",
    r"(?m)^#+\s*\d+(?:\.\d+)*", r"\b\d{4}-\d{2}-\d{2}(?:T[\d:+]+)?",
]
_NUMBER = re.compile(r"(?<![\w.\-/])(\d{1,3}(?:,\d{3})+|\d+)(\.\d+)?(?:/(\d+))?(?![\w])")


def _strip_names(text: str) -> str:
    for pat in _SKIP:
        text = re.sub(pat, " ", text, flags=re.S)
    return text


def data_values(data_dir) -> tuple:
    """(sorted array of every number in the data's JSON files, set of their string leaves)."""
    vals, strings = [], set()

    def strs(o):
        if isinstance(o, str):
            strings.add(o)
        elif isinstance(o, dict):
            for v in o.values():
                strs(v)
        elif isinstance(o, list):
            for v in o:
                strs(v)

    for p in sorted(Path(data_dir).glob("*.json")):
        obj = json.loads(p.read_text())
        vals.extend(numeric_leaves(obj))
        strs(obj)
    return np.sort(np.array(vals, dtype=np.float64)), strings


def _present(values: np.ndarray, lo: float, hi: float) -> bool:
    i = np.searchsorted(values, lo, side="left")
    return i < len(values) and values[i] <= hi


def numbers_not_in_data(text: str, data_dir) -> list:
    """Number tokens of ``text`` that match no value of the data at the precision they are quoted.

    A token with d decimals matches a value v when it equals v, or 100 v (a percentage), to within
    half a unit of its last digit; "a/b" matches a fraction string or value of the data.
    """
    values, strings = data_values(data_dir)
    bad = []
    for m in _NUMBER.finditer(_strip_names(text)):
        whole, dec, den = m.group(1).replace(",", ""), m.group(2) or "", m.group(3)
        if den is not None:
            frac = f"{whole}/{den}"
            x = int(whole) / int(den) if int(den) else float("nan")
            if frac in strings or _present(values, x - 1e-9, x + 1e-9):
                continue
            bad.append(m.group(0))
            continue
        x = float(whole + dec)
        tol = 0.5 * 10.0 ** -(len(dec) - 1 if dec else 0) + 1e-9
        if _present(values, x - tol, x + tol) or _present(values, (x - tol) / 100, (x + tol) / 100):
            continue
        bad.append(m.group(0))
    return bad


def check(out_dir, data_dir) -> list:
    """Problems with the outputs under ``out_dir`` given the data under ``data_dir`` (empty: all fresh)."""
    out_dir, data_dir = Path(out_dir), Path(data_dir)
    manifest = read_manifest(out_dir)
    problems = []
    for o in all_outputs():
        p = out_dir / o.path
        if not p.exists():
            problems.append(f"{o.path}: missing (run `python -m paper`)")
            continue
        entry = manifest.get(o.path)
        if entry is None:  # no record of what it was drawn from: fall back to file times
            for s in o.sources:
                sp = data_dir / s
                if sp.exists() and sp.stat().st_mtime > p.stat().st_mtime:
                    problems.append(f"{o.path}: older than its data {s} (run `python -m paper`)")
            continue
        now = source_hashes(o, data_dir, out_dir)
        for name, h in now.items():
            if entry["sources"].get(name) != h:
                problems.append(f"{o.path}: older than its data {name} (drawn from another version; "
                                f"run `python -m paper`)")
        if entry.get("sha256") != sha256(p):
            problems.append(f"{o.path}: changed since `python -m paper` drew it (edited by hand?)")
    paper = out_dir / "paper.md"
    if paper.exists():
        for tok in numbers_not_in_data(paper.read_text(), data_dir):
            problems.append(f"paper.md: quotes {tok!r}, which is in none of the data files")
    return problems
