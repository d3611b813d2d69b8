"""Matplotlib (agg) set-up shared by the figures: one look, titles that say when data are quick."""
from __future__ import annotations

from pathlib import Path

QUICK_NOTE = " [QUICK RUN: smoke-test sizes]"
COLORS = {"linear": "tab:gray", "neuracrypt-2-noshuffle": "tab:olive", "neuracrypt-2": "tab:green",
          "neuracrypt-7": "tab:red", "neuracrypt-47": "tab:purple"}


def pyplot():
    import matplotlib

    matplotlib.use("agg")
    import matplotlib.pyplot as plt

    plt.rcParams.update({"font.size": 10, "axes.titlesize": 11, "axes.labelsize": 10, "legend.fontsize": 9,
                         "axes.grid": True, "grid.alpha": 0.3, "figure.dpi": 100,
                         "svg.hashsalt": "paper", "savefig.dpi": 120})
    return plt


def title(text: str, quick: bool) -> str:
    return text + (QUICK_NOTE if quick else "")


def save(fig, path) -> Path:
    """Write ``fig`` to ``path`` (PNG, no timestamp in the metadata) and close it."""
    import matplotlib.pyplot as plt

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, bbox_inches="tight", metadata={"Software": None})
    plt.close(fig)
    return path


def pct(x, digits: int = 1) -> str:
    """A share in [0, 1] as a percentage string: ``pct(0.063) == "6.3%"``."""
    return "n/a" if x is None else f"{100 * x:.{digits}f}%"
