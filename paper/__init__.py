"""The write-up's figures, tables and text, drawn from ``paper/data/`` alone (see ARCHITECTURE.md).

``python -m paper`` regenerates every output listed in :mod:`paper.outputs` (one function per
figure or table, each writing exactly one file) and then ``paper/paper.md`` from
``paper/paper_template.md``. Nothing here runs an attack: the numbers come from the JSON files
that ``python -m simulations`` writes. :mod:`paper.freshness` checks that every output was drawn
from the data now in ``paper/data/`` and that ``paper.md`` quotes no number the data do not hold;
:mod:`paper.provenance` checks that every result was made by the code now in the tree.
"""
from pathlib import Path

PAPER_DIR = Path(__file__).resolve().parent
DATA_DIR = PAPER_DIR / "data"
RESULTS_DIR = PAPER_DIR.parent / "benchmarks" / "results"  # the benchmarks' committed results
