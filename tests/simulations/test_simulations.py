"""simulations: every experiment writes one self-describing JSON; the attack ones score each stage."""
import json
from pathlib import Path

import numpy as np
import pytest

from empirical.extraction import ExtractConfig
from empirical.machine import REPO, fit_refusal
from empirical.pipeline import AttackConfig
from empirical.psim import PsimConfig
from paper.provenance import check_fingerprints
from simulations import external
from simulations.__main__ import EXPERIMENTS, build_parser, main, run
from simulations.common import SOURCES, VARIANTS, Settings

FIXTURE = Path(__file__).resolve().parents[1] / "paper" / "fixtures" / "data"
ENVELOPE = {"experiment", "quick", "seed", "config", "machine", "date", "seconds", "load", "source_fingerprint",
            "results"}

# A benchmark result with the keys benchmarks/speedup.py writes (the ones simulations reads).
BENCH = {
    "benchmark": "speedup", "date": "2026-01-01T00:00:00+00:00", "machine": {"cpus": 2},
    "settings": {"n": 100, "preset": "neuracrypt-7", "image_size": 256, "patch": 16, "patches_per_image": 256,
                 "hidden": 256, "psim_steps": 300, "seed": 0, "backend": "numpy"},
    "project": [{"k": 30, "total_seconds": 2.0, "total_cpu_seconds": 3.0, "exact_assignments": 3000}],
    "original": {"all_pairs": 10000, "seconds_per_pair": 0.004, "extrapolated_seconds": 40.0, "extrapolated": True,
                 "sampled_pairs": 500},
    "speedup": 20.0, "speedup_cpu_time": 13.3, "share_matched_project": 0.05, "share_matched_original": None,
    "printed": "left out of the copy",
}


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    """The attack experiments at test-fixture size, into a temporary folder."""
    out = tmp_path_factory.mktemp("data")
    written = run(["table1", "stages", "psim", "examples", "scaling"], Settings.make(tiny=True), out, seed=0,
                  log=lambda msg: None)
    return out, written


def _load(out, name):
    return json.loads((Path(out) / f"{name}.json").read_text())


def test_parser_offers_every_experiment_and_all():
    ap = build_parser()
    for name in [*EXPERIMENTS, "all"]:
        assert ap.parse_args([name]).experiments == [name]
    args = ap.parse_args(["table1", "psim", "--quick", "--out", "x"])
    assert args.quick and args.experiments == ["table1", "psim"] and args.out == Path("x")


def test_quick_settings_are_smaller_than_full():
    full, quick = Settings.make(), Settings.make(quick=True)
    assert quick.quick and not full.quick
    assert quick.table1_n < full.table1_n and quick.psim_steps < full.psim_steps
    assert quick.extract_steps < full.extract_steps and max(quick.scaling_n) < max(full.scaling_n)


def test_cli_speedup_reads_the_benchmark_result(tmp_path, monkeypatch):
    bench = tmp_path / "cpu_speedup.json"
    bench.write_text(json.dumps(BENCH))
    monkeypatch.setattr(external, "BENCH_RESULT", bench)
    monkeypatch.setattr(external, "REPO", tmp_path)
    assert main(["speedup", "--quick", "--out", str(tmp_path / "out")]) == 0
    d = _load(tmp_path / "out", "speedup")
    assert ENVELOPE <= d.keys() and d["quick"] is True and d["experiment"] == "speedup"
    assert d["results"]["available"] and d["results"]["source"] == "cpu_speedup.json"
    s = d["results"]["summary"]
    assert s["speedup"] == 20.0 and s["original_hours"] == pytest.approx(40 / 3600) and s["patches"] == 256
    assert "printed" not in d["results"]["benchmark"]


def test_speedup_without_benchmark_says_so(tmp_path, monkeypatch):
    monkeypatch.setattr(external, "BENCH_RESULT", tmp_path / "none.json")
    monkeypatch.setattr(external, "BENCH_SCRIPT", tmp_path / "none.py")
    assert main(["speedup", "--quick", "--out", str(tmp_path)]) == 0
    assert _load(tmp_path, "speedup")["results"]["available"] is False


def test_attack_experiments_write_self_describing_json(tiny):
    out, written = tiny
    assert set(written) == {"table1", "stages", "psim", "examples", "scaling"}
    for name in written:
        d = _load(out, name)
        assert ENVELOPE <= d.keys() and d["experiment"] == name and d["quick"] is True and d["seed"] == 0
        assert d["machine"]["cpus"] and d["config"]["settings"]["tiny"] is True


def test_table1_has_a_row_per_variant_with_shares_per_stage(tiny):
    rows = _load(tiny[0], "table1")["results"]["rows"]
    assert [r["preset"] for r in rows] == list(VARIANTS)
    for r in rows:
        for key in ("share_first", "share_boost", "share_final", "psim_balanced_accuracy"):
            assert 0.0 <= r[key] <= 1.0
        assert r["matched_final"] == round(r["share_final"] * r["n"]) and r["attack_seconds"] > 0
        assert next(s["stage"].split()[0] for s in r["stages"]) == "align"
        assert r["stages"][-1]["stage"] == "rescore" and r["challenge2"]["n"] == 10
    assert rows[0]["total_depth"] == 1 and rows[-1]["total_depth"] == 47


def test_stages_psim_examples_come_from_the_reference_run(tiny):
    out = tiny[0]
    t1 = {r["preset"]: r for r in _load(out, "table1")["results"]["rows"]}["neuracrypt-7"]
    st = _load(out, "stages")["results"]
    assert st["final_share"] == t1["share_final"] and st["first_share"] == t1["share_first"]
    boosts = [s for s in st["stages"] if s["stage"].startswith("boost")]
    assert len(boosts) == t1["boost_rounds"] >= 1
    ps = _load(out, "psim")["results"]
    assert ps["balanced_accuracy"] == t1["psim_balanced_accuracy"]
    assert len(ps["roc_fpr"]) == len(ps["roc_tpr"]) > 10
    ex = _load(out, "examples")["results"]
    with np.load(Path(out) / ex["arrays"]) as z:
        assert z["original"].shape == z["first_match"].shape == z["final_match"].shape == (2, 32, 32)
        assert z["original"].dtype == np.uint8 and z["encoding"].shape == (2, 16, 32)
    assert len(ex["items"]) == 2 and all(isinstance(i["final_correct"], bool) for i in ex["items"])


def test_scaling_rows_and_per_pair_extrapolation(tiny):
    r = _load(tiny[0], "scaling")["results"]
    assert [x["n"] for x in r["rows"]] == [20, 40]
    pp = r["per_pair"]
    assert pp["extrapolated"] and pp["seconds_per_pair"] > 0 and pp["assignment_size"] == 16
    for x in r["rows"]:
        assert x["pairs"] == x["n"] ** 2
        assert x["per_pair_isim_seconds"] == pytest.approx(pp["seconds_per_pair_used"] * x["n"] ** 2)


def _keys(obj, prefix=""):
    """Dotted key paths of dicts (list items merged), for comparing the shape of two JSON files."""
    out = set()
    if isinstance(obj, dict):
        for k, v in obj.items():
            out.add(prefix + k)
            out |= _keys(v, prefix + k + ".")
    elif isinstance(obj, list):
        for v in obj:
            out |= _keys(v, prefix + "[].")
    return out


@pytest.mark.parametrize("name", ["table1", "stages", "psim", "examples", "scaling"])
def test_paper_fixture_has_the_shape_simulations_writes_now(tiny, name):
    """tests/paper's committed fixture must follow the current schema (regenerate it otherwise:
    python -m simulations all --tiny --out tests/paper/fixtures/data)."""
    now = _keys({k: v for k, v in _load(tiny[0], name).items() if k != "machine"})
    fixture = _keys({k: v for k, v in _load(FIXTURE, name).items() if k != "machine"})
    assert now == fixture


def test_scaling_takes_the_per_pair_time_from_a_matching_benchmark(tmp_path, monkeypatch):
    from simulations import experiments

    bench = tmp_path / "cpu_speedup.json"
    bench.write_text(json.dumps(BENCH))
    monkeypatch.setattr(experiments, "BENCH_SPEEDUP", bench)
    monkeypatch.setattr(experiments, "REPO", tmp_path)
    assert experiments._bench_per_pair(256) == (0.004, "cpu_speedup.json")
    assert experiments._bench_per_pair(64) is None  # another assignment size: measured instead


def test_full_sweep_uses_the_attacks_own_defaults():
    full, attack, psim, extract = Settings.make(), AttackConfig(), PsimConfig(), ExtractConfig()
    assert (full.psim_steps, full.psim_encoders, full.psim_images) == (psim.steps, psim.n_encoders,
                                                                       psim.images_per_encoder)
    assert (full.extract_steps, full.refine_steps, full.candidates) == (extract.steps, extract.refine_steps,
                                                                        attack.candidates)


def test_results_carry_the_fingerprint_of_the_code_that_made_them(tiny, tmp_path):
    out, written = tiny
    for name in written:
        d = _load(out, name)
        assert d["source_fingerprint"]["packages"] == list(SOURCES[name]) and "theory" not in SOURCES[name]
        assert d["load"]["loadavg_end"] and d["load"]["limit"] > 0
    assert check_fingerprints([out]) == []  # made by the code in the tree: the check passes
    other = tmp_path / "data"
    other.mkdir()
    d = _load(out, "stages")
    d["source_fingerprint"]["hash"] = "0123456789abcdef"  # as if another version of the attack had made it
    (other / "stages.json").write_text(json.dumps(d))
    problems = check_fingerprints([other])
    assert len(problems) == 1 and "stages.json (top level): made by other code" in problems[0]
    assert "python -m simulations stages" in problems[0]


def test_results_hold_no_local_path(tiny):
    out, written = tiny
    for name in written:
        text = (Path(out) / f"{name}.json").read_text()
        assert str(REPO) not in text and str(out) not in text, name


def test_every_timing_keeps_its_load_and_the_fit_obeys_the_load_rule(tiny):
    out = tiny[0]
    for row in _load(out, "table1")["results"]["rows"]:
        assert row["load"]["loadavg_start"] and row["challenge2"]["load"]["loadavg_end"]
    r = _load(out, "scaling")["results"]
    assert all(x["load"]["threads"] >= 1 for x in r["rows"]) and r["per_pair"]["load"]
    refusal = fit_refusal(r["rows"])
    g = r["growth_fit"]
    if refusal is None:  # the machine was quiet while the tests ran: the exponents are fitted
        assert g["fitted"] and g["reason"] is None and r["exponent_attack"] is not None
    else:
        assert not g["fitted"] and r["exponent_attack"] is None and r["exponent_isim"] is None
        assert {k: g[k] for k in refusal} == refusal


def test_load_rule_refuses_busy_and_unrecorded_timings():
    def row(n, start, end):
        return {"n": n, "load": {"loadavg_start": [start, 0, 0], "loadavg_end": [end, 0, 0], "threads": 2,
                                 "cpus": 4, "limit": 3.0}}

    assert fit_refusal([row(100, 0.2, 2.9), row(200, 3.0, 2.0)]) is None  # at the limit is still quiet
    busy = fit_refusal([row(100, 0.2, 2.9), row(200, 3.2, 2.0)])
    assert busy == {"reason": "busy", "n": 200, "load": 3.2, "limit": 3.0, "threads": 2, "cpus": 4}
    assert fit_refusal([row(100, 0.2, 0.3), {"n": 200}])["reason"] == "not recorded"


def test_simulations_package_has_no_import_cycle(import_cycles):
    assert import_cycles("simulations") == []


def _sweep(preset="neuracrypt-7", hidden=256, error_at=None):
    """A result with the keys benchmarks/streaming.py writes in its fixed-budget mode."""
    def run(n, gib, seconds):
        if n == error_at:
            return {"n": n, "error": "make: exit 1"}
        load = {"loadavg_start": [0.4, 0, 0], "loadavg_end": [2.0, 0, 0], "threads": 2, "cpus": 2, "limit": 2.5}
        return {"n": n, "encodings_gib": 0.06 * n / 1000, "make": {"seconds": n / 100, "peak_rss_gib": 0.4},
                "budget": {"seconds": seconds, "final_share_matched": 1.0, "encodings_in_memory": n < 4000,
                           "peak_rss_gib": gib, "stages": [{"stage": "align", "share_matched": None, "seconds": 1.0}],
                           "peak_rss_gib_after_stage": {"align": gib / 2, "first": gib}, "load": load}}

    return {"benchmark": "streaming", "date": "2026-01-01T00:00:00+00:00",
            "settings": {"preset": preset, "image_size": 128, "patch": 16, "hidden": hidden, "budget_gib": 1.0,
                         "modes": ["budget"]},
            "runs": [run(1000, 1.0, 100.0), run(4000, 2.0, 400.0)]}


def test_scaling_reads_the_fixed_budget_sweep_of_its_own_family_only(tmp_path, monkeypatch):
    from simulations import experiments

    bench = tmp_path / "cpu_streaming_sweep.json"
    monkeypatch.setattr(experiments, "BENCH_SWEEP", bench)
    monkeypatch.setattr(experiments, "REPO", tmp_path)
    full = Settings.make()
    assert experiments._bench_sweep(full) is None  # not run
    bench.write_text(json.dumps(_sweep()))
    fb = experiments._bench_sweep(full)
    assert fb["source"] == "cpu_streaming_sweep.json" and fb["budget_gib"] == 1.0
    assert [r["n"] for r in fb["rows"]] == [1000, 4000] and fb["rows"][1]["peak_rss_gib"] == 2.0
    assert fb["rows"][0]["encodings_in_memory"] and not fb["rows"][1]["encodings_in_memory"]
    assert fb["exponent_attack"] == pytest.approx(1.0) and fb["exponent_peak_rss"] == pytest.approx(0.5)
    bench.write_text(json.dumps(_sweep(error_at=4000)))  # a failed N is left out, the rest kept
    assert [r["n"] for r in experiments._bench_sweep(full)["rows"]] == [1000]
    for other in (_sweep(hidden=512), _sweep(preset="neuracrypt-2")):
        bench.write_text(json.dumps(other))
        assert experiments._bench_sweep(full) is None
