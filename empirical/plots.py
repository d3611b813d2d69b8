"""Figures of one attack run (``--plots DIR``): example matches and the share matched per stage."""
from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from .game import Game
    from .pipeline import AttackResult

StageRow = tuple[str, float | None, float | None, str]  # (title, share matched, seconds, note): report.table_rows


def _plt():
    import matplotlib

    matplotlib.use("agg")
    import matplotlib.pyplot as plt

    return plt


def examples_figure(path: str | Path, game: Game, matching: np.ndarray, truth: np.ndarray | None = None,
                    n: int = 4) -> None:
    """For ``n`` encodings: the true original (if known), the encoding as a heat map, the match."""
    plt = _plt()
    pick = np.linspace(0, len(game.files) - 1, n).astype(int)
    cols = 3 if truth is not None else 2
    fig, axes = plt.subplots(n, cols, figsize=(3.2 * cols, 3.0 * n), squeeze=False)
    for r, k in enumerate(pick):
        c = 0
        if truth is not None:
            axes[r, c].imshow(game.originals[truth[k], 0], cmap="gray", vmin=0, vmax=1)
            axes[r, c].set_title(f"original {game.ids[truth[k]]}", fontsize=9)
            c += 1
        enc = game.encodings[k]
        im = axes[r, c].imshow(enc, aspect="auto", cmap="coolwarm",
                               vmin=-np.abs(enc).max(), vmax=np.abs(enc).max())
        axes[r, c].set_title(f"encoding {game.files[k]} (rows: patches, cols: hidden units)", fontsize=8)
        axes[r, c].set_xlabel("hidden unit")
        axes[r, c].set_ylabel("row (shuffled patch)")
        fig.colorbar(im, ax=axes[r, c], fraction=0.046)
        c += 1
        m = matching[k]
        ok = "" if truth is None else (" (right)" if m == truth[k] else " (WRONG)")
        axes[r, c].imshow(game.originals[m, 0], cmap="gray", vmin=0, vmax=1)
        axes[r, c].set_title(f"attack's match {game.ids[m]}{ok}", fontsize=9)
        for a in axes[r]:
            if a is not axes[r, 1 if truth is not None else 0]:
                a.set_xticks([])
                a.set_yticks([])
    fig.suptitle("NeuraCrypt encodings and the originals the attack matched them to")
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)


def stages_figure(path: str | Path, rows: Sequence[StageRow]) -> None:
    """Bar chart of the share of images matched after each matching stage."""
    plt = _plt()
    named = [(name, share) for name, share, _, _ in rows if share is not None]
    if not named:
        return
    fig, ax = plt.subplots(figsize=(1.1 * len(named) + 2.5, 3.8))
    x = np.arange(len(named))
    vals = [100 * s for _, s in named]
    ax.bar(x, vals, color="tab:red")
    for i, v in enumerate(vals):
        ax.text(i, v + 1.5, f"{v:.1f}%", ha="center", fontsize=8)
    ax.set_xticks(x)
    ax.set_xticklabels([n for n, _ in named], rotation=30, ha="right", fontsize=8)
    ax.set_ylabel("images matched correctly (%)")
    ax.set_ylim(0, 110)
    ax.set_title("Share matched after each stage of the attack")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def attack_figures(folder: str | Path, game: Game, result: AttackResult, rows: Sequence[StageRow],
                   truth: np.ndarray | None = None) -> list[Path]:
    """Write ``examples.png`` and ``stages.png`` into ``folder``; returns their paths."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    paths = [folder / "examples.png", folder / "stages.png"]
    examples_figure(paths[0], game, result.matching, truth)
    stages_figure(paths[1], rows)
    return [p for p in paths if p.exists()]
