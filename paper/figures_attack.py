"""Figures of the attack (paper §2): per-stage shares, time against N, p-sim's ROC, example images.

Each function reads :class:`~paper.data_io.Data` and writes exactly one PNG.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
from matplotlib.ticker import FuncFormatter, LogLocator

from .data_io import Data
from .style import COLORS, pct, pyplot, save, title

STAGE_LABELS = {"first": "first matching\n(i-sim, §2.1.3)", "final": "final matching\nwith T' (§2.3.2)",
                "rescore": "close calls with\nbatch statistics"}


def _stage_label(name: str) -> str:
    if name.startswith("boost"):
        return f"boosting\nround {name.split()[1]} (§2.2)"
    return STAGE_LABELS.get(name, name)


def fig_stages(data: Data, path: Path | str) -> Path:
    """Share matched after each stage of the NeuraCrypt-7 run, on a log scale from chance to 100%."""
    plt = pyplot()
    d = data["stages"]
    r = d["results"]
    st = [s for s in r["stages"] if s["share_matched"] is not None]
    vals = np.array([100 * s["share_matched"] for s in st])
    fig, ax = plt.subplots(figsize=(max(6.5, 1.25 * len(st) + 2), 4.3))
    x = np.arange(len(st))
    colors = ["tab:orange" if s["stage"] == "first" else "tab:red" if s["stage"] in ("final", "rescore") else "tab:blue"
              for s in st]
    chance = 100 * r["chance"]
    floor = min([chance] + [v for v in vals if v > 0]) / 3  # log axis: zero shares sit on the floor
    ax.bar(x, np.maximum(vals, floor), bottom=0, color=colors, width=0.65)
    for i, v in enumerate(vals):
        ax.text(i, max(v, floor) * 1.12, f"{v:.1f}%", ha="center", va="bottom", fontsize=9)
    ax.axhline(chance, color="k", ls=":", lw=1, label=f"chance: 1/N = {chance:.2g}%")
    ax.set_yscale("log")
    # Headroom above 100% holds the bar labels, the legend and the note; no ticks there.
    ax.set_ylim(floor, 100 * (100 / floor) ** 0.45)
    ax.set_yticks([t for t in (0.01, 0.1, 1, 10, 100) if t >= floor])
    ax.legend(loc="upper right")
    ax.yaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}%"))
    ax.set_xticks(x)
    ax.set_xticklabels([_stage_label(s["stage"]) for s in st], fontsize=8.5)
    ax.set_ylabel("images matched correctly (log scale)")
    ax.set_xlabel("attack stage (in the order it runs)")
    ax.set_title(title(f"Boosting: share of the N = {r['n']:,} encodings matched after each stage "
                       f"({r['preset']})", data.quick("stages")))
    sm = r["summary"]
    note = [f"p-sim balanced accuracy {pct(sm['psim_balanced_accuracy'])}"]
    if sm.get("local_perm_share") is not None:
        note.append(f"local permutations right {pct(sm['local_perm_share'])}")
    if sm.get("global_perm_share") is not None:
        note.append(f"global permutation right {pct(sm['global_perm_share'])}")
    ax.text(0.01, 0.98, "\n".join(note), transform=ax.transAxes, va="top", fontsize=8.5,
            bbox=dict(boxstyle="round", fc="white", ec="0.7"))
    ax.grid(axis="x", visible=False)
    return save(fig, path)


def fig_scaling(data: Data, path: Path | str) -> Path:
    """Attack time against N for this project and the per-pair assignment method; share matched."""
    plt = pyplot()
    d = data["scaling"]
    r = d["results"]
    rows = r["rows"]
    n = np.array([row["n"] for row in rows])
    fb = r.get("fixed_budget")  # the games-on-disk sweep at one memory budget, when it was run
    if fb:
        fig, (ax, ax2, ax3) = plt.subplots(1, 3, figsize=(16, 4.4), gridspec_kw={"width_ratios": [1.5, 1, 1]})
    else:
        fig, (ax, ax2) = plt.subplots(1, 2, figsize=(11.5, 4.4), gridspec_kw={"width_ratios": [1.5, 1]})
    ax.loglog(n, [row["attack_seconds"] for row in rows], "o-", color="tab:red", label="this project: whole attack")
    if fb:
        nb = np.array([row["n"] for row in fb["rows"]])
        ax.loglog(nb, [row["attack_seconds"] for row in fb["rows"]], "D-", color="tab:purple",
                  label=f"whole attack, game on disk,\n{fb['budget_gib']:g} GiB memory budget")
    ax.loglog(n, [row["isim_seconds"] for row in rows], "s-", color="tab:orange",
              label="this project: i-sim + first matching")
    ax.loglog(n, [row["per_pair_isim_seconds"] for row in rows], "^--", color="tab:blue",
              label="per-pair assignment method: i-sim\n(N² exact assignments, extrapolated)")
    ax.set_xlabel("N (images = encodings)")
    ax.set_ylabel("wall-clock time (s, log scale)")
    ticks = np.union1d(n, nb) if fb else n
    ax.set_xticks(ticks)
    ax.set_xticklabels([f"{v:,}" for v in ticks])
    ax.minorticks_off()
    ax.yaxis.set_major_locator(LogLocator(base=10, subs=(1.0, 2.0, 5.0)))
    ax.yaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
    pp = r["per_pair"]
    ax.set_title(f"Time against N ({r['preset']}; per pair {1e3 * pp['seconds_per_pair_used']:.2f} ms "
                 f"for a {pp['assignment_size']}×{pp['assignment_size']} assignment)", fontsize=10)
    ax.legend(loc="best", fontsize=8, framealpha=0.9)
    nr = [row["n"] for row in rows]
    ax2.plot(nr, [100 * row["share_first"] for row in rows], "s-", color="tab:orange", label="after first matching")
    ax2.plot(nr, [100 * row["share_final"] for row in rows], "o-", color="tab:red", label="final (after T')")
    if fb:
        ax2.plot(nb, [100 * row["share_final"] for row in fb["rows"]], "D-", color="tab:purple",
                 label="final, game on disk")
        ax3.loglog(nb, [row["peak_rss_gib"] for row in fb["rows"]], "D-", color="tab:purple",
                   label="attack: peak resident memory")
        ax3.loglog(nb, [row["encodings_gib"] for row in fb["rows"]], "v:", color="0.4", label="the encodings' size")
        ax3.axhline(fb["budget_gib"], color="k", ls="--", lw=1, label=f"--memory-budget {fb['budget_gib']:g} GiB")
        ax3.set_xticks(nb)
        ax3.set_xticklabels([f"{v:,}" for v in nb])
        ax3.minorticks_off()
        ax3.yaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
        ax3.set_xlabel("N (images = encodings)")
        ax3.set_ylabel("GiB (log scale)")
        ax3.set_title("Memory against N (game on disk)", fontsize=10)
        ax3.legend(loc="upper left", fontsize=8)
    ax2.set_xscale("log")
    ax2.set_xticks(ticks)
    ax2.set_xticklabels([f"{v:,}" for v in ticks])
    ax2.minorticks_off()
    ax2.set_ylim(0, 105)
    ax2.set_xlabel("N (images = encodings)")
    ax2.set_ylabel("images matched correctly (%)")
    ax2.set_title("Share matched against N", fontsize=10)
    ax2.legend(loc="center right")
    fig.suptitle(title("Scaling of the attack with the number of images", data.quick("scaling")))
    fig.tight_layout()
    return save(fig, path)


def fig_psim_roc(data: Data, path: Path | str) -> Path:
    """p-sim's ROC on held-out patch/row pairs of fresh attacker encoders."""
    plt = pyplot()
    r = data["psim"]["results"]
    fpr, tpr = np.r_[0, r["roc_fpr"], 1], np.r_[0, r["roc_tpr"], 1]
    fig, ax = plt.subplots(figsize=(5.2, 5.0))
    ax.plot(fpr, tpr, color="tab:red", lw=2, label=f"p-sim (AUC {r['auc']:.3f})")
    ax.plot([0, 1], [0, 1], "k:", lw=1, label="chance (AUC 0.5)")
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1)
    ax.set_aspect("equal")
    ax.set_xlabel("false-positive rate (non-matching pairs accepted)")
    ax.set_ylabel("true-positive rate (matching pairs accepted)")
    ax.set_title(title(f"p-sim ROC on held-out pairs ({r['preset']})\nbalanced accuracy "
                       f"{pct(r['balanced_accuracy'])}", data.quick("psim")).replace(" [", "\n["), fontsize=10)
    ax.legend(loc="lower right")
    return save(fig, path)


def fig_examples(data: Data, path: Path | str) -> Path:
    """Original, its encoding as a heat map, and the originals the attack matched the encoding to."""
    plt = pyplot()
    r = data["examples"]["results"]
    a = data.arrays(r["arrays"])
    items = r["items"]
    fig, axes = plt.subplots(len(items), 4, figsize=(11.5, 2.75 * len(items)), squeeze=False)
    P, D = r["encoding_shape"]
    lim = float(np.abs(a["encoding"].astype(np.float32)).max())
    for i, it in enumerate(items):
        row = axes[i]
        row[0].imshow(a["original"][i], cmap="gray", vmin=0, vmax=255)
        row[0].set_title(f"original {it['original']}\n(encoded as {it['file']})", fontsize=9)
        im = row[1].imshow(a["encoding"][i].astype(np.float32), cmap="coolwarm", vmin=-lim, vmax=lim,
                           aspect="auto", interpolation="nearest")
        row[1].set_title(f"its encoding: {P} shuffled rows × first\n{r['encoding_columns_shown']} of {D} hidden units",
                         fontsize=9)
        row[1].set_xlabel("hidden unit")
        row[1].set_ylabel("row (patch, shuffled)")
        fig.colorbar(im, ax=row[1], fraction=0.046, pad=0.02, label="value")
        for j, (key, ok, label) in enumerate([("first_match", it["first_correct"], "first matching"),
                                               ("final_match", it["final_correct"], "final matching")]):
            ax = row[2 + j]
            ax.imshow(a[key][i], cmap="gray", vmin=0, vmax=255)
            verdict = "right" if ok else "WRONG"
            ax.set_title(f"{label} picks {it[key]}\n({verdict})", fontsize=9, color="tab:green" if ok else "tab:red")
            for s in ax.spines.values():
                s.set_edgecolor("tab:green" if ok else "tab:red")
                s.set_linewidth(3)
        for ax in (row[0], row[2], row[3]):
            ax.set_xticks([])
            ax.set_yticks([])
            ax.grid(False)
        row[1].grid(False)
    side = r["image_side_shown"]
    fig.suptitle(title(f"Example encodings of the {r['preset']} game and the originals matched to them "
                       f"(images shown at {side}×{side} px)", data.quick("examples")), fontsize=11)
    fig.tight_layout()
    return save(fig, path)


def fig_variants(data: Data, path: Path | str) -> Path:
    """Share matched after the first matching, boosting and the final matching, per variant."""
    plt = pyplot()
    rows = data["table1"]["results"]["rows"]
    keys = [("share_first", "first matching"), ("share_boost", "after boosting"), ("share_final", "final (T')")]
    fig, ax = plt.subplots(figsize=(9.5, 4.2))
    w = 0.8 / len(rows)
    x = np.arange(len(keys))
    for i, row in enumerate(rows):
        vals = [100 * (row[k] or 0) for k, _ in keys]
        xs = x + (i - (len(rows) - 1) / 2) * w
        ax.bar(xs, vals, w, color=COLORS.get(row["preset"]), label=f"{row['preset']} (N = {row['n']:,})")
        for xi, v in zip(xs, vals, strict=True):
            ax.text(xi, v + 1.5, f"{v:.0f}%" if v >= 10 or v == 0 else f"{v:.1f}%", ha="center", va="bottom",
                    fontsize=7, rotation=90)
    ax.set_xticks(x)
    ax.set_xticklabels([label for _, label in keys])
    ax.set_ylabel("images matched correctly (%)")
    ax.set_ylim(0, 118)
    ax.set_yticks(range(0, 101, 20))
    ax.set_xlabel("attack stage")
    ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1), fontsize=8, title="variant (game size)")
    ax.set_title(title("Share matched per stage for each NeuraCrypt Challenge variant", data.quick("table1")))
    ax.grid(axis="x", visible=False)
    return save(fig, path)
