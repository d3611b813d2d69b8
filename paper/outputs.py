"""Every output of ``python -m paper``: its path, the data files it is drawn from, the function that draws it.

``build.json`` beside the outputs records, for each output, the SHA-256 of every data file it
was drawn from and of the output itself; :mod:`paper.freshness` compares those with the files now
on disk (content, not modification times: a git checkout does not keep file times).
"""
from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from . import figures_attack as fa
from . import figures_theory as ft
from . import tables
from .data_io import Data, MissingData, sha256
from .write import TEMPLATE, write_paper

MANIFEST = "build.json"


@dataclass(frozen=True)
class Output:
    path: str  # relative to the output folder
    sources: tuple  # data files (relative to the data folder) it is drawn from
    make: Callable  # make(data, path) writes exactly the file at path
    optional_sources: tuple = ()  # read when present (e.g. the theory manifest's quick flag)


THEORY = ("theory.json",)
OUTPUTS = (
    Output("tables/table1.md", ("table1.json",), tables.table1),
    Output("tables/table1_paper.md", ("table1.json",), tables.table1_paper),
    Output("tables/stages.md", ("stages.json",), tables.table_stages),
    Output("tables/scaling.md", ("scaling.json",), tables.table_scaling),
    Output("tables/speedup.md", ("speedup.json",), tables.table_speedup),
    Output("tables/theory_cia.md", ("theory_cia.json",), tables.table_cia, THEORY),
    Output("figures/stages.png", ("stages.json",), fa.fig_stages),
    Output("figures/variants.png", ("table1.json",), fa.fig_variants),
    Output("figures/scaling.png", ("scaling.json",), fa.fig_scaling),
    Output("figures/psim_roc.png", ("psim.json",), fa.fig_psim_roc),
    Output("figures/examples.png", ("examples.json", "examples.npz"), fa.fig_examples),
    Output("figures/cia.png", ("theory_cia.json",), ft.fig_cia, THEORY),
    Output("figures/predictor.png", ("theory_predictor.json",), ft.fig_predictor, THEORY),
    Output("figures/counterexample.png", ("theory_counterexample.json",), ft.fig_counterexample, THEORY),
)
PAPER_SOURCES = ("table1.json", "stages.json", "scaling.json", "psim.json", "examples.json", "speedup.json",
                 "theory_cia.json", "theory_predictor.json", "theory_counterexample.json")


# ``paper.md``: drawn from the data files and the template (and the tables it includes).
PAPER_OUTPUT = Output("paper.md", PAPER_SOURCES, write_paper, (*THEORY, "run_all.json"))


def all_outputs() -> tuple[Output, ...]:
    """Every output, ``paper.md`` last (it includes the tables)."""
    return (*OUTPUTS, PAPER_OUTPUT)


def source_hashes(output: Output, data_dir: Path, out_dir: Path) -> dict[str, str | None]:
    """SHA-256 of each data file (and, for paper.md, the template and included tables) now on disk."""
    hashes = {}
    for name in output.sources + output.optional_sources:
        p = Path(data_dir) / name
        if p.exists() or name in output.sources:
            hashes[name] = sha256(p) if p.exists() else None
    if output.path == "paper.md":
        hashes["<template>"] = sha256(TEMPLATE)
        for o in OUTPUTS:
            if o.path.startswith("tables/") and (Path(out_dir) / o.path).exists():
                hashes[f"<{o.path}>"] = sha256(Path(out_dir) / o.path)
    return hashes


def read_manifest(out_dir: Path | str) -> dict:
    p = Path(out_dir) / MANIFEST
    return json.loads(p.read_text()) if p.exists() else {}


def build(data_dir: Path | str, out_dir: Path | str, only: list[str] | None = None,
          log: Callable[[str], None] = print) -> tuple[list[Path], dict[str, str]]:
    """Draw every output (or those named in ``only``); returns (written paths, skipped {path: reason})."""
    data_dir, out_dir = Path(data_dir), Path(out_dir)
    data = Data(data_dir)
    manifest = read_manifest(out_dir)
    written, skipped = [], {}
    for o in all_outputs():
        if only and not {o.path, Path(o.path).name, Path(o.path).stem} & set(only):
            continue
        missing = [s for s in o.sources if not (data_dir / s).exists()]
        if missing:
            skipped[o.path] = f"missing data: {', '.join(missing)}"
            log(f"skipped {o.path}: {skipped[o.path]}")
            continue
        try:
            o.make(data, out_dir / o.path)
        except MissingData as e:
            skipped[o.path] = str(e)
            log(f"skipped {o.path}: {e}")
            continue
        manifest[o.path] = {"sources": source_hashes(o, data_dir, out_dir), "sha256": sha256(out_dir / o.path)}
        written.append(out_dir / o.path)
        log(f"wrote {out_dir / o.path}")
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / MANIFEST).write_text(json.dumps(manifest, indent=1, sort_keys=True) + "\n")
    return written, skipped
