"""``paper.md`` from ``paper_template.md``: every ``{{name}}`` is a number or phrase computed from the data.

``{{table:NAME}}`` includes ``tables/NAME.md`` (drawn first by ``python -m paper``). Numbers are
never typed into the template: :func:`context` formats them from the JSON files, and
:func:`paper.freshness.numbers_not_in_data` checks the result.
"""
from __future__ import annotations

import re
from pathlib import Path

from .data_io import Data
from .style import pct

TEMPLATE = Path(__file__).resolve().parent / "paper_template.md"
_PLACEHOLDER = re.compile(r"\{\{\s*([\w:.\-]+)\s*\}\}")


def _n(x) -> str:
    return f"{x:,}"


def _f(x, digits=1) -> str:
    return "n/a" if x is None else f"{x:,.{digits}f}"


def _seconds_hours(seconds, hours) -> str:
    """``"5,400.0 s (1.5 h)"``; the hours only when there are enough of them to matter."""
    return f"{_f(seconds)} s" + (f" ({_f(hours)} h)" if hours is not None and hours >= 0.1 else "")


def _final_share_phrase(lowest: float) -> str:
    """How the final share behaves over the scaling sweep, readable at 100%."""
    if lowest >= 1.0:
        return "The share matched is 100% at every N."
    shown = pct(lowest) if pct(lowest) != "100.0%" else pct(lowest, 2)  # 99.96% is not 100.0%
    return f"The share matched stays at or above {shown} over the range."


def _fixed_budget_sentence(sc: dict) -> str:
    """The games-on-disk sweep at one memory budget (``benchmarks/streaming.py``), or why it is absent."""
    fb = sc.get("fixed_budget")
    if not fb:
        return ("The sweep of games on disk at one memory budget (`benchmarks/streaming.py --modes budget`) "
                "has not been run for this family, so only the in-memory sizes above are shown.")
    rows = fb["rows"]
    lo, hi = rows[0], rows[-1]
    blocks = [r for r in rows if not r["encodings_in_memory"]]
    read = (f"from N = {_n(blocks[0]['n'])} on the encodings no longer fit half the budget and are read from their "
            "files a block at a time" if blocks else "every game's encodings fit half the budget and are read whole")
    grow = (f"; the attack's time grows with exponent {_f(fb['exponent_attack'], 2)} in N" if fb["exponent_attack"]
            is not None else "; no exponent of its time is fitted (some timings were taken under load)")
    return (f"Games made on disk by `challenge make` and attacked each in its own process with "
            f"`--memory-budget {fb['budget_gib']:g}` (source: `{fb['source']}`; {read}): from N = {_n(lo['n'])} to "
            f"{_n(hi['n'])} the attack takes {_f(lo['attack_seconds'])} to {_f(hi['attack_seconds'])} s and "
            f"{_sweep_shares(rows)}{grow}. Its peak resident memory goes "
            f"from {_f(lo['peak_rss_gib'], 2)} to {_f(hi['peak_rss_gib'], 2)} GiB "
            f"(slope {_f(fb['exponent_peak_rss'], 2)} on log-log axes), against encodings of "
            f"{_f(lo['encodings_gib'], 2)} to {_f(hi['encodings_gib'], 2)} GiB; at N = {_n(hi['n'])} the stage that "
            f"reaches the peak is `{_peak_stage(hi)}`.")


def _sweep_shares(rows: list) -> str:
    """How the sweep's final shares read: every N at 100%, or which N fell short and by how much."""
    short = [r for r in rows if r["share_final"] < 1.0]
    if not short:
        return "matches 100% at every N"
    return "matches 100% at every N but " + ", ".join(f"{_n(r['n'])} ({pct(r['share_final'], 3)})" for r in short)


PEAK_NEAR = 0.01  # a stage "reaches" the run's peak when the peak after it is within this share of the peak


def _peak_stage(row: dict) -> str:
    """The first stage, in the attack's run order, after which the run's peak resident memory had been
    reached, within :data:`PEAK_NEAR` (the JSON's keys are sorted by name, not by run order)."""
    from empirical.stages import STAGES

    after = row.get("peak_rss_gib_after_stage") or {}
    top = max(after.values(), default=None)
    order = [k for k in STAGES if k in after] + [k for k in after if k not in STAGES]
    return next((k for k in order if after[k] >= (1 - PEAK_NEAR) * top), "unknown")


def _growth_sentence(sc: dict) -> str:
    """The growth exponent of the attack's time in N, or why none is fitted.

    An exponent is quoted only when every timing of the sweep records its load average and none
    was taken under load (:func:`empirical.machine.fit_refusal`): times that other jobs stretched
    would make the slope measure their load as much as the attack's growth. Data made before the
    load was recorded beside each timing get no exponent either.
    """
    from empirical.machine import fit_refusal

    rows = sc["rows"]
    ns = ", ".join(_n(r["n"]) for r in rows)
    refusal = fit_refusal(rows)
    if refusal is None and sc.get("exponent_attack") is not None:
        exp = sc["exponent_attack"]
        note = ("below one because p-sim training and model extraction do not grow with N" if exp < 1 else
                "p-sim training and model extraction do not grow with N, the matching stages do")
        return (f"The whole NeuraCrypt-7 attack at N = {ns} grows with exponent {_f(exp, 2)} in N over this range "
                f"(least-squares slope on log-log axes; {note}), and its i-sim stage with exponent "
                f"{_f(sc['exponent_isim'], 2)}. Every one of these timings was taken with the machine's one-minute "
                "load average within a quarter of its cores above the run's own threads.")
    if refusal is None:
        return f"The attack was timed at N = {ns}: too few sizes to fit how its time grows with N."
    if refusal["reason"] == "not recorded":
        why = ("the data do not record the load average beside each timing, so nothing shows whether other "
               "jobs stretched them")
    else:
        why = (f"at N = {_n(refusal['n'])} the machine's one-minute load average reached {_f(refusal['load'], 2)}, "
               f"above the limit of {_f(refusal['limit'], 2)} (the run's own {_n(refusal['threads'])} threads plus a "
               f"quarter of its {_n(refusal['cpus'])} cores)")
    return (f"The attack was timed at N = {ns}, but no exponent of its growth in N is fitted to these times: {why}. "
            "A slope fitted to times that other jobs stretched measures their load as much as the attack's growth, "
            "so the write-up fits one only when every timing's one-minute load average stayed within a quarter of "
            "the cores above the run's own threads.")


def _by_preset(rows) -> dict:
    return {r["preset"]: r for r in rows}


def _quick_banner(data, names) -> str:
    quick = [n for n in names if n in data and data.quick(n)]
    if not quick:
        return ""
    return ("> **These are quick-run data** (`python -m simulations all --quick`: smoke-test sizes, "
            "few training steps). They show that the pipeline runs, not the results; the committed write-up "
            "comes from the full run. Quick files: " + ", ".join(f"`{n}.json`" for n in quick) + ".\n")


def context(data: Data) -> dict[str, str]:
    """Every placeholder's text, from the data files."""
    c = {}
    t1 = data["table1"]
    rows = t1["results"]["rows"]
    by = _by_preset(rows)
    fam = t1["config"]["family"]
    att = t1["config"]["attack"]
    paper = t1["results"]["paper_reported"]
    c.update(image_size=_n(fam["image_size"]), patch=_n(fam["patch"]), patches=_n(fam["patches"]),
             hidden=_n(fam["hidden"]), t1_n=_n(t1["config"]["n"]), seed=_n(t1["seed"]),
             psim_steps=_n(att["psim"]["steps"]), psim_encoders=_n(att["psim"]["n_encoders"]),
             psim_images=_n(att["psim"]["images_per_encoder"]), extract_steps=_n(att["extract"]["steps"]),
             refine_steps=_n(att["extract"].get("refine_steps", 0)),
             candidates=_n(att["candidates"]), boost_rounds_max=_n(att["boost_rounds"]),
             t1_variants=_n(len(rows)), t1_full=_n(t1["results"]["summary"]["variants_at_100_percent"]),
             t1_lowest=pct(t1["results"]["summary"]["lowest_final_share"]),
             t1_lowest_variant=t1["results"]["summary"]["lowest_final_variant"],
             t1_minutes=_f(t1["results"]["summary"]["total_attack_minutes"]))
    cs = paper["challenge_scale"]
    c.update(ch_image_size=_n(cs["image_size"]), ch_patch=_n(cs["patch"]), ch_patches=_n(cs["patches"]),
             ch_hidden=_n(cs["hidden"]))
    imagenet = [r for r in paper["rows"] if r["dataset"] == "ImageNet"]
    chex = [r for r in paper["rows"] if r["dataset"] != "ImageNet"]
    c.update(paper_imagenet_rows=_n(len(imagenet)), paper_imagenet_n=_n(imagenet[0]["n"]),
             paper_chexpert_rows=_n(len(chex)), paper_chexpert_n=_n(chex[0]["n"]),
             paper_percent=f"{imagenet[0]['percent_correct']}%")
    for key, name in (("lin", "linear"), ("nc2ns", "neuracrypt-2-noshuffle"), ("nc2", "neuracrypt-2"),
                      ("nc7", "neuracrypt-7"), ("nc47", "neuracrypt-47")):
        r = by[name]
        c[f"{key}_first"], c[f"{key}_boost"], c[f"{key}_final"] = (pct(r["share_first"]), pct(r["share_boost"]),
                                                                  pct(r["share_final"]))
        c[f"{key}_matched"] = _n(r["matched_final"])
        c[f"{key}_psim"] = pct(r["psim_balanced_accuracy"])
        c[f"{key}_seconds"] = _f(r["attack_seconds"])
        c[f"{key}_rounds"] = _n(r["boost_rounds"])
        c[f"{key}_local"] = pct(r["local_perm_share"])
        c[f"{key}_global"] = pct(r["global_perm_share"])
        c[f"{key}_used"] = r.get("final_used") or "n/a"
        c[f"{key}_boost_start"] = r.get("boost_start") or "first matching"
        c2 = r.get("challenge2") or {}
        c[f"{key}_c2"] = pct(c2.get("share"))
        c[f"{key}_c2_n"] = _n(c2["n"]) if c2 else "n/a"

    st = data["stages"]["results"]
    shares = [s for s in st["stages"] if s["share_matched"] is not None]
    boosts = [s for s in shares if s["stage"].startswith("boost")]
    c.update(st_n=_n(st["n"]), st_chance=pct(st["chance"], 2), st_first=pct(st["first_share"]),
             st_final=pct(st["final_share"]), st_rounds=_n(len(boosts)),
             st_round1=pct(boosts[0]["share_matched"]) if boosts else "n/a",
             st_boost_last=pct(boosts[-1]["share_matched"]) if boosts else "n/a",
             st_factor=_f(st["boost_factor"]) if st["boost_factor"] else "n/a",
             st_cand=pct(next((s.get("true_among_candidates") for s in st["stages"] if s["stage"] == "first"), None)))

    ps = data["psim"]["results"]
    first, chance = st["first_share"], st["chance"]
    c["st_first_verdict"] = (f"well above chance ({c['st_chance']}) but far from a break, like the paper's own first "
                             "matching (§2.1.3: \"more than a few percent\")" if first >= 3 * chance else
                             f"hardly better than chance ({c['st_chance']})")
    c["st_boost_verdict"] = ("boosting turns that into a near-complete break" if boosts and
                             boosts[-1]["share_matched"] >= 0.9 else "here boosting does not take off")
    c.update(psim_acc=pct(ps["balanced_accuracy"]), psim_auc=_f(ps["auc"], 3))

    sc = data["scaling"]["results"]
    srows = sc["rows"]
    pp = sc["per_pair"]
    c.update(sc_ns=", ".join(_n(r["n"]) for r in srows), sc_n_max=_n(sc["largest_n"]),
             sc_attack_max=_f(srows[-1]["attack_seconds"]), sc_isim_max=_f(srows[-1]["isim_seconds"]),
             sc_pairs_max=_n(srows[-1]["pairs"]),
             sc_perpair_time=_seconds_hours(srows[-1]["per_pair_isim_seconds"], sc["largest_n_per_pair_hours"]),
             sc_speedup_max=_f(sc["largest_n_isim_speedup"], 0), sc_ms_pair=_f(pp["ms_per_pair_used"], 3),
             sc_pair_size=_n(pp["assignment_size"]), sc_pair_source=pp["source"],
             sc_growth=_growth_sentence(sc), sc_fixed_budget=_fixed_budget_sentence(sc),
             sc_final_phrase=_final_share_phrase(min(r["share_final"] for r in srows)))
    sp_max = sc["largest_n_isim_speedup"]
    c["sc_speedup_phrase"] = (f"{_f(sp_max, 0)} times faster" if sp_max and sp_max >= 1 else
                              "no faster at this small size")

    sp = data["speedup"]["results"]
    if sp.get("available"):
        s = sp["summary"]
        c.update(sp_n=_n(s["n"]), sp_image_size=_n(s["image_size"]), sp_patches=_n(s["patches"]), sp_k=_n(s["k"]),
                 sp_speedup=_f(s["speedup"], 0), sp_speedup_cpu=_f(s["speedup_cpu_time"], 0),
                 sp_project=_f(s["project_seconds"]), sp_original=_f(s["original_seconds"], 0),
                 sp_original_time=_seconds_hours(s["original_seconds"], s["original_hours"]),
                 sp_ms_pair=_f(s["original_ms_per_pair"], 2),
                 sp_pairs=_n(s["original_pairs"]),
                 sp_source=(f"`{sp['source']}`" if sp.get("source_kind", "file") == "file" else
                            f"`{sp['source']}`, run by `python -m simulations speedup` as no benchmark result "
                            "was there"),
                 sp_how="extrapolated from a random sample of " + _n(s["original_sampled_pairs"]) + " pairs"
                 if s["original_extrapolated"] else "run on every pair")
    else:
        for k in ("sp_n", "sp_image_size", "sp_patches", "sp_k", "sp_speedup", "sp_speedup_cpu", "sp_project",
                  "sp_original", "sp_original_time", "sp_ms_pair", "sp_pairs", "sp_source", "sp_how"):
            c[k] = "n/a"

    c.update(_theory_context(data))

    if "run_all" in data:
        ra = data["run_all"]
        m = ra["machine"]
        c["run_sentence"] = (f"The data behind this file come from a {'quick' if ra['quick'] else 'full'} run, "
                             f"`{ra['command']}`, which took {_f(ra['total_minutes'])} minutes on {_n(m['cpus'])} "
                             f"CPU cores ({m['cpu']}) and finished on {ra['date'][:10]}. " + _load_sentence(ra))
    else:
        c["run_sentence"] = ("The experiments behind this file were run one at a time (there is no `run_all.json`), "
                             "so no total run time is recorded; each data file records its own seconds, machine "
                             "and load.")
    c["quick_banner"] = _quick_banner(data, ["table1", "stages", "psim", "examples", "scaling", "speedup",
                                             "run_all", "theory_cia", "theory_predictor", "theory_counterexample"])
    return c


def _load_sentence(ra: dict) -> str:
    """How busy the machine was during the whole run, from ``run_all.json``'s load record."""
    from empirical.machine import load_exceeded

    end = ra["machine"]["loadavg"][0]
    try:
        busy = load_exceeded(ra.get("load"))
    except KeyError:  # made before the run recorded its load at the start
        return (f"The machine was shared with other jobs (load average {_f(end)} when it finished), so the times "
                "are noisy; each data file records its machine and load.")
    if busy is None:
        return (f"Its one-minute load average stayed within the limit of {_f(ra['load']['limit'])} (the run's own "
                "threads plus a quarter of the cores) at the start and the end; each data file records its machine "
                "and the load beside its times.")
    return (f"Other jobs shared the machine (one-minute load average {_f(busy)}, above the limit of "
            f"{_f(ra['load']['limit'])}: the run's own threads plus a quarter of the cores), so the times are noisy; "
            "each data file records its machine and the load beside its times.")


def _gf2_name(name: str) -> str:
    from .figures_theory import _encoder_label

    return _encoder_label(name)


def _theory_context(data) -> dict:
    from fractions import Fraction

    c = {}
    cia = data["theory_cia"]["results"]
    ideal = [r for r in cia["exhaustive"] if r["encoder"] == "ideal"]
    shift = [r for r in cia["exhaustive"] if r["encoder"] == "cyclic_shift"]
    c.update(cia_ideal_max=str(max(Fraction(r["max_cia_advantage"]) for r in ideal)),
             cia_ideal_domain=_n(max(r["domain_size"] for r in ideal)),
             cia_ideal_games=_n(max(ideal, key=lambda r: r["domain_size"])["games"]),
             cia_shift_max=str(max(Fraction(r["max_cia_advantage"]) for r in shift)) if shift else "n/a")
    mc = cia["ideal_monte_carlo"]
    c.update(cia_mc_adv=_f(mc["advantage"], 3), cia_mc_low=_f(mc["low"], 3), cia_mc_high=_f(mc["high"], 3),
             cia_mc_domain=_n(mc["domain_size"]), cia_mc_trials=_n(mc["trials"]))
    tn = cia["tiny_neuracrypt"]
    c.update(tn_side=_n(tn["config"]["side"]), tn_nia=_f(tn["nia_energy_threshold"]["advantage"], 3),
             tn_cia=_f(tn["cia_nearby_query"]["advantage"], 3))
    aff = [r for r in cia["leaky_exact"] if r["adversary"] == "affine_relation_cia"]
    aff_nia = [r for r in cia["leaky_exact"] if r["adversary"] == "best_nia_any_pair"]
    c.update(gf2_cia=aff[0]["exact_advantage"] if aff else "n/a",
             gf2_nia=aff_nia[0]["exact_advantage"] if aff_nia else "n/a",
             gf2_name=_gf2_name(aff[0]["encoder"]) if aff else "n/a")

    pr = data["theory_predictor"]
    rows = [r for r in pr["results"]["rows"] if r["test_distribution"] == "uniform" and r["target_eps"] is not None]
    eps_max = max(r["target_eps"] for r in rows)
    k_max = max(r["votes"] for r in rows)
    worst = [r for r in rows if r["target_eps"] == eps_max and r["votes"] == k_max]
    ones = [r for r in rows if r["target_eps"] == eps_max and r["votes"] == 1]
    bounded = [r for r in pr["results"]["rows"] if r["hoeffding_bound"] is not None]
    viol = sum(r["exact_error"] > r["hoeffding_bound"] + 1e-12 for r in bounded)
    c.update(pr_eps=_f(eps_max, 2), pr_k=_n(k_max),
             pr_err_k=pct(max(r["exact_error"] for r in worst)),
             pr_err_1=pct(max(r["exact_error"] for r in ones)),
             pr_bound_k=pct(max((r["hoeffding_bound"] for r in worst if r["hoeffding_bound"] is not None),
                                default=None)),
             pr_bound_held=("The exact error never exceeds the bound wherever the bound applies (every class's "
                            "realised error below one half)." if viol == 0 else
             "In some measured settings the exact error exceeds the bound (see `theory_predictor.json`)."),
             pr_settings=", ".join(sorted({r["setting"] for r in rows})))

    ce = data["theory_counterexample"]
    rows = ce["results"]["rows"]
    big = max(r["m_over_n"] for r in rows)
    t_max = max(r["targets"] for r in rows)
    at = next(r for r in rows if r["m_over_n"] == big and r["targets"] == t_max and r["strategy"] == "leak_constant")
    small = next(r for r in rows if r["m_over_n"] == min(x["m_over_n"] for x in rows) and r["targets"] == t_max
             and r["strategy"] == "leak_constant")
    c.update(ce_n=_n(ce["config"]["n"]), ce_big=_n(big), ce_targets=_n(t_max), ce_exact_big=_f(at["exact_score"], 3),
             ce_chance=_f(at["chance"], 3), ce_small=_n(small["m_over_n"]), ce_exact_small=_f(small["exact_score"], 3),
             ce_mc_big=_f(at["mc_score"], 3))
    return c


def render(template: str, ctx: dict[str, str], tables_dir: Path) -> str:
    def sub(m):
        key = m.group(1)
        if key.startswith("table:"):
            return (tables_dir / f"{key[6:]}.md").read_text().rstrip("\n")
        if key not in ctx:
            raise KeyError(f"paper_template.md uses {{{{{key}}}}}, which paper.write.context does not provide")
        return str(ctx[key])

    return _PLACEHOLDER.sub(sub, template)


def write_paper(data: Data, path: Path | str) -> Path:
    """Render ``paper_template.md`` with the data's numbers into ``path`` (tables from beside it)."""
    path = Path(path)
    text = render(TEMPLATE.read_text(), context(data), path.parent / "tables")
    path.write_text(text)
    return path
