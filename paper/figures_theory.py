"""Figures of the theory (paper §3, Appendices A-B), from ``theory_*.json``.

Each function reads :class:`~paper.data_io.Data` and writes exactly one PNG.
"""
from __future__ import annotations

from collections import defaultdict
from fractions import Fraction
from pathlib import Path

import numpy as np

from .data_io import Data
from .style import pyplot, save, title

ENCODER_NAMES = {"ideal": "ideal (label-preserving permutation)", "cyclic_shift": "cyclic shift within a class",
                 "random_permutation": "random permutation ignoring labels\n(CIA-private but not label-preserving)"}


def _encoder_label(name: str) -> str:
    """``gf2_affine_3`` -> ``GF(2) affine, 3 bits``."""
    parts = name.split("_")
    if parts[0] == "gf2" and len(parts) == 3:
        return f"GF(2) {parts[1]}, {parts[2]} bits"
    return name.replace("_", " ")


def _frac(s) -> float:
    return float(Fraction(str(s)))


def fig_cia(data: Data, path: Path | str) -> Path:
    """CIA advantage: exact maxima over all games (small domains), and leaky encoders' adversaries."""
    plt = pyplot()
    r = data["theory_cia"]["results"]
    fig, (ax, ax2) = plt.subplots(1, 2, figsize=(12.5, 4.8), gridspec_kw={"width_ratios": [1, 1.45]})
    by = defaultdict(list)
    for row in r["exhaustive"]:
        by[row["encoder"]].append((row["domain_size"], _frac(row["max_cia_advantage"])))
    styles = {"ideal": dict(marker="o", color="tab:green", ms=10, lw=3),
              "cyclic_shift": dict(marker="s", color="tab:red", ms=7, lw=1.5),
              "random_permutation": dict(marker="^", color="0.35", ms=6, lw=1.2, ls="--")}
    for enc, pts in by.items():
        pts.sort()
        ax.plot([p[0] for p in pts], [p[1] for p in pts], label=ENCODER_NAMES.get(enc, enc),
                **styles.get(enc, dict(marker="x", color="k")))
    ax.set_xticks(sorted({p[0] for pts in by.values() for p in pts}))
    ax.set_ylim(-0.05, 1.1)
    ax.set_xlabel("domain size |X| (every concept, every pair, every adversary)")
    ax.set_ylabel("max CIA advantage (exact)")
    ax.set_title("Exact maximum CIA advantage over all games", fontsize=10)
    ax.legend(loc="center right", fontsize=8)

    bars = []
    mc = r["ideal_monte_carlo"]
    bars.append((f"ideal, |X| = {mc['domain_size']}\nall-queries adversary", mc["advantage"],
                 (mc["low"], mc["high"]), "CIA"))
    for row in r["leaky_exact"]:
        kind = "CIA" if "cia" in row["adversary"] else "NIA"
        label = f"{_encoder_label(row['encoder'])}\n{row['adversary'].replace('_', ' ')}"
        ci = (row["monte_carlo"]["low"], row["monte_carlo"]["high"]) if "monte_carlo" in row else None
        bars.append((label, _frac(row["exact_advantage"]), ci, kind))
    tn = r["tiny_neuracrypt"]
    cfg = tn["config"]
    for key, kind in (("nia_energy_threshold", "NIA"), ("cia_nearby_query", "CIA")):
        v = tn[key]
        bars.append((f"tiny NeuraCrypt ({cfg['side']}×{cfg['side']} px)\n{key.replace('_', ' ')}",
                     v["advantage"], (v["low"], v["high"]), kind))
    y = np.arange(len(bars))[::-1]
    colors = ["tab:blue" if b[3] == "NIA" else "tab:red" for b in bars]
    ax2.barh(y, [b[1] for b in bars], color=colors, height=0.65)
    for yi, b in zip(y, bars, strict=True):
        if b[2] is not None:
            ax2.errorbar(b[1], yi, xerr=[[max(0, b[1] - b[2][0])], [max(0, b[2][1] - b[1])]], color="k",
                         capsize=3, lw=1)
        ax2.text(max(b[1], 0) + 0.03, yi + 0.18, f"{b[1]:.3g}", va="bottom", fontsize=8)
    ax2.set_yticks(y)
    ax2.set_yticklabels([b[0].replace("\n", ": ").replace(" nia", " NIA").replace(" cia", " CIA") for b in bars],
                        fontsize=8)
    ax2.set_xlim(0, 1.15)
    ax2.set_xlabel("advantage (exact, or Monte Carlo with 99% CI)")
    ax2.set_title("Ideal vs leaky encoders (blue: NIA adversary, red: CIA adversary)", fontsize=10)
    ax2.grid(axis="y", visible=False)
    fig.suptitle(title("CIA advantage, " + r["advantage_definition"], data.quick("theory_cia")), fontsize=11)
    fig.tight_layout()
    return save(fig, path)


def fig_predictor(data: Data, path: Path | str) -> Path:
    """Theorem 1: the extracting predictor's accuracy against the number of votes k, with its bound."""
    plt = pyplot()
    d = data["theory_predictor"]
    rows = [r for r in d["results"]["rows"] if r["test_distribution"] == "uniform"]
    settings = sorted({r["setting"] for r in rows})
    fig, axes = plt.subplots(1, len(settings), figsize=(6.0 * len(settings), 4.6), squeeze=False)
    eps_all = sorted({r["target_eps"] for r in rows if r["target_eps"] is not None})
    cmap = plt.get_cmap("viridis")
    for ax, setting in zip(axes[0], settings, strict=True):
        sub = [r for r in rows if r["setting"] == setting and r["accepted"]]
        for j, eps in enumerate([None, *eps_all]):
            pts = defaultdict(list)
            for r in sub:
                if r["target_eps"] == eps:
                    # no bound when a class's realised error reached one half (Theorem 1 needs eps < 1/2)
                    b = r["hoeffding_bound"]
                    pts[r["votes"]].append((1 - r["mc_error"], np.nan if b is None else 1 - b))
            if not pts:
                continue
            k = np.array(sorted(pts))
            acc = np.array([np.mean([p[0] for p in pts[v]]) for v in k])
            bound = np.array([np.nanmean([p[1] for p in pts[v]]) if any(not np.isnan(p[1]) for p in pts[v])
                              else np.nan for v in k])
            color = "k" if eps is None else cmap(0.85 * (j - 1) / max(1, len(eps_all) - 1))
            label = "exact learner" if eps is None else f"ε = {eps:g}"
            ax.plot(k, 100 * acc, "o-", color=color, ms=4, label=label)
            ax.plot(k, 100 * np.maximum(bound, 0), "--", color=color, lw=1)
        ax.set_xscale("log")
        ks = sorted({r["votes"] for r in sub})
        ax.set_xticks(ks)
        ax.set_xticklabels([str(k) for k in ks])
        ax.minorticks_off()
        ax.set_ylim(0, 102)
        ax.set_xlabel("votes k (fresh keys per prediction, log scale)")
        ax.set_ylabel("accuracy on fresh x (%)")
        learner = sub[0]["learner"].split("(")[-1].rstrip(")") if sub else setting
        ax.set_title(f"{setting} (learner {learner})", fontsize=10)
    handles, labels = axes[0][0].get_legend_handles_labels()
    fig.suptitle(title("Theorem 1: the extracting predictor's accuracy against k, with the Hoeffding bound "
                       "(uniform test points, mean over repeats)", data.quick("theory_predictor")), fontsize=11)
    fig.tight_layout(rect=(0, 0.1, 1, 1))
    fig.legend(handles, labels, loc="lower center", ncol=len(labels), fontsize=9, title_fontsize=9,
               title="learner's balanced error (solid: measured accuracy; dashed, same colour: Hoeffding lower "
                     "bound 1 − exp(−2k(½−ε)²))")
    return save(fig, path)


def fig_counterexample(data: Data, path: Path | str) -> Path:
    """Appendix A: Challenge 2's score of a scheme that leaks x, against m/n: exact, normal, Monte Carlo."""
    plt = pyplot()
    d = data["theory_counterexample"]
    rows = d["results"]["rows"]
    targets = sorted({r["targets"] for r in rows})
    cols = 2 if len(targets) > 1 else 1
    nrow = int(np.ceil(len(targets) / cols))
    fig, axes = plt.subplots(nrow, cols, figsize=(6.0 * cols, 3.9 * nrow), squeeze=False)
    n = d["config"]["n"]
    for ax, t in zip(axes.ravel(), targets, strict=True):
        sub = sorted((r for r in rows if r["targets"] == t), key=lambda r: r["m_over_n"])
        lc = [r for r in sub if r["strategy"] == "leak_constant"]
        mn = np.array([r["m_over_n"] for r in lc])
        ax.plot(mn, [r["exact_score"] for r in lc], "-", color="tab:red", lw=2, label="exact (Binomial laws)")
        ax.plot(mn, [r["normal_score"] for r in lc], "--", color="tab:blue", lw=1.5, label="normal approximation")
        for strat, mk, c in (("leak_constant", "o", "k"), ("leak_majority_fit", "s", "tab:orange")):
            pts = [r for r in sub if r["strategy"] == strat]
            if not pts:
                continue
            y = np.array([r["mc_score"] for r in pts])
            lo = np.array([r["mc_ci99"][0] for r in pts])
            hi = np.array([r["mc_ci99"][1] for r in pts])
            ax.errorbar([r["m_over_n"] for r in pts], y, yerr=[y - lo, hi - y], fmt=mk, color=c, ms=4, capsize=2,
                        lw=1, label=f"Monte Carlo, T' = {strat.replace('_', ' ')} (99% CI)")
        ax.axhline(lc[0]["chance"], color="0.4", ls=":", lw=1.2, label=f"chance 1/|A| = {lc[0]['chance']:.3g}")
        ax.set_xscale("log")
        ax.set_ylim(0, 1.05)
        ax.set_xlabel("m / n (random bits appended per leaked bit, log scale)")
        ax.set_ylabel("Challenge 2 score (share of A matched)")
        ax.set_xticks(mn)
        ax.set_xticklabels([f"{v:g}" for v in mn])
        ax.minorticks_off()
        ax.set_title(f"|A| = {t} target encodings, n = {n}", fontsize=10)
        ax.legend(loc="upper right", fontsize=7)
    for ax in axes.ravel()[len(targets):]:
        ax.set_visible(False)
    fig.suptitle(title("Appendix A: T(x) = x ‖ f(x) publishes x, yet its Challenge 2 score falls to chance "
                       "as m/n grows",
                       data.quick("theory_counterexample")), fontsize=11)
    fig.tight_layout()
    return save(fig, path)
