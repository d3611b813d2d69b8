"""paper: every figure and table is drawn from the data alone; the freshness check catches stale outputs,
and the fingerprint check catches results made by other code."""
import json
import os
import shutil
from pathlib import Path

import pytest

from empirical.machine import fingerprint_now, fingerprint_record, source_fingerprint
from paper import DATA_DIR, PAPER_DIR
from paper.__main__ import main
from paper.freshness import check, numbers_not_in_data
from paper.outputs import MANIFEST, OUTPUTS, all_outputs, build
from paper.provenance import check_fingerprints, fingerprints
from paper.write import _final_share_phrase, _growth_sentence, _peak_stage

FIXTURE = Path(__file__).resolve().parent / "fixtures" / "data"


def stamp_current(folder):
    """Give every source fingerprint in ``folder``'s JSON files the hash of the sources now.

    The fixture's numbers stand for results of the code in the tree: without this, every edit of
    ``empirical/`` or ``simulations/`` would make the fixture "made by other code" and hide what
    the other tests check. Returns the files changed.
    """
    changed = []
    for path in sorted(Path(folder).glob("*.json")):
        obj = json.loads(path.read_text())
        found = False
        for _where, rec in fingerprints(obj):
            rec["hash"] = fingerprint_now(rec)[1]
            found = True
        if found:
            path.write_text(json.dumps(obj, indent=1) + "\n")
            changed.append(path.name)
    return changed


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    """The fixture data drawn once into a temporary folder: (data dir, output dir)."""
    root = tmp_path_factory.mktemp("paper")
    data, out = root / "data", root / "out"
    shutil.copytree(FIXTURE, data)
    assert stamp_current(data)
    _written, skipped = build(data, out, log=lambda msg: None)
    assert not skipped, skipped
    return data, out


@pytest.fixture
def copy(built, tmp_path):
    """A private copy of the built folders, for tests that change them."""
    data, out = tmp_path / "data", tmp_path / "out"
    shutil.copytree(built[0], data)
    shutil.copytree(built[1], out)
    return data, out


def test_every_output_is_written_once_and_nothing_else(built):
    _data, out = built
    paths = [o.path for o in all_outputs()]
    assert len(paths) == len(set(paths))
    found = sorted(str(p.relative_to(out)) for p in out.rglob("*") if p.is_file())
    assert found == sorted([*paths, MANIFEST])
    for p in paths:
        if p.endswith(".png"):
            assert (out / p).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and (out / p).stat().st_size > 10_000


def test_required_outputs_exist(built):
    names = {Path(o.path).name for o in OUTPUTS}
    assert {"table1.md", "stages.png", "scaling.png", "psim_roc.png", "examples.png", "cia.png",
            "predictor.png", "counterexample.png"} <= names


def test_paper_md_embeds_every_figure_and_includes_the_tables(built):
    text = (built[1] / "paper.md").read_text()
    for o in OUTPUTS:
        if o.path.endswith(".png"):
            assert f"]({o.path})" in text, o.path
    assert "{{" not in text and "| variant |" in text
    assert "Quick run" in text or "quick-run data" in text  # the fixture is marked quick


def test_fresh_outputs_pass_the_check(built):
    assert check(built[1], built[0]) == []
    assert main(["--check", "--data", str(built[0]), "--out", str(built[1])]) == 0


def test_changed_data_makes_its_outputs_stale(copy):
    data, out = copy
    d = json.loads((data / "stages.json").read_text())
    d["results"]["final_share"] = 0.123456
    (data / "stages.json").write_text(json.dumps(d))
    problems = check(out, data)
    stale = {p.split(":")[0] for p in problems if "older than its data stages.json" in p}
    assert stale == {"figures/stages.png", "tables/stages.md", "paper.md"}
    assert main(["--check", "--data", str(data), "--out", str(out)]) == 1
    main(["--data", str(data), "--out", str(out), "--only", "stages"])  # redraw those two
    assert {p.split(":")[0] for p in check(out, data)} == {"paper.md"}


def test_without_a_record_file_times_decide(copy):
    data, out = copy
    (out / MANIFEST).unlink()
    assert check(out, data) == []  # the outputs were written after the data
    later = (out / "figures" / "cia.png").stat().st_mtime + 10
    os.utime(data / "theory_cia.json", (later, later))
    problems = check(out, data)
    assert "figures/cia.png: older than its data theory_cia.json (run `python -m paper`)" in problems


def test_hand_edited_output_is_reported(copy):
    data, out = copy
    with open(out / "tables" / "table1.md", "a") as f:
        f.write("| extra | row |\n")
    assert any(p.startswith("tables/table1.md: changed since") for p in check(out, data))


def test_number_not_in_data_is_reported(copy):
    data, out = copy
    share = json.loads((data / "table1.json").read_text())["results"]["rows"][0]["share_final"]
    ok = f"The attack matched {100 * share:.1f}% (§2.3.2, Table 1, Theorem 1, NeuraCrypt-47, Appendix A)."
    assert numbers_not_in_data(ok, data) == []
    assert numbers_not_in_data("It took 123456.7 s, 8,765,432 pairs and 4,321.98 ms.", data) == [
        "123456.7", "8,765,432", "4,321.98"]
    assert numbers_not_in_data("Skipped: `--n 8765432`, $e^{-8765432}$, [fig](figures/x_8765432.png).", data) == []
    with open(out / "paper.md", "a") as f:
        f.write("\nThe attack took 123456.7 s.\n")
    assert "paper.md: quotes '123456.7', which is in none of the data files" in check(out, data)


def test_missing_data_is_skipped_with_a_hint(tmp_path):
    data = tmp_path / "data"
    shutil.copytree(FIXTURE, data)
    (data / "psim.json").unlink()
    written, skipped = build(data, tmp_path / "out", only=["psim_roc", "table1"], log=lambda msg: None)
    assert [p.name for p in written] == ["table1.md"] and "psim.json" in skipped["figures/psim_roc.png"]


def test_committed_outputs_are_fresh():
    """The figures, tables and paper.md in the repository were drawn from the data committed beside them."""
    if not (PAPER_DIR / MANIFEST).exists():
        pytest.skip("paper/ has not been built yet: python -m simulations all && python -m paper")
    assert check(PAPER_DIR, DATA_DIR) == []


def test_theory_files_are_quick_only_while_the_manifest_vouches_for_them(tmp_path):
    from paper.data_io import Data

    data = tmp_path / "data"
    shutil.copytree(FIXTURE, data)
    assert Data(data).quick("theory_cia") and Data(data).quick("table1")
    d = json.loads((data / "theory_cia.json").read_text())
    d["date"] = "2000-01-01T00:00:00+00:00"  # regenerated by python -m theory.experiments, not recorded
    (data / "theory_cia.json").write_text(json.dumps(d))
    assert not Data(data).quick("theory_cia") and Data(data).quick("theory_predictor")


# --- source fingerprints ----------------------------------------------------------------------------

def test_every_fixture_result_records_a_fingerprint():
    """The fixture follows the schema: every data file says which sources made it."""
    for path in sorted(FIXTURE.glob("*.json")):
        records = list(fingerprints(json.loads(path.read_text())))
        assert records, path.name
        for _where, rec in records:
            assert set(rec) == {"packages", "hash"} and rec["packages"], path.name


def test_current_fingerprints_pass_and_the_check_reads_the_results_folders(built, tmp_path):
    data, out = built
    assert check_fingerprints([data]) == []
    results = tmp_path / "results"
    results.mkdir()
    (results / "bench.json").write_text(json.dumps({"benchmark": "scaling",
                                                    "source_fingerprint": fingerprint_record(["empirical"])}))
    assert main(["--check", "--data", str(data), "--out", str(out), "--results", str(results)]) == 0


def test_result_made_by_other_code_fails_the_check(copy, capsys):
    data, out = copy
    d = json.loads((data / "table1.json").read_text())
    d["source_fingerprint"]["hash"] = "0" * 16
    (data / "table1.json").write_text(json.dumps(d))
    problems = check_fingerprints([data])
    assert len(problems) == 1 and "table1.json (top level): made by other code" in problems[0]
    assert "0000000000000000" in problems[0] and "python -m simulations table1" in problems[0]
    main(["--data", str(data), "--out", str(out)])  # the outputs are fresh again, the data still stale
    capsys.readouterr()
    assert check(out, data) == []
    assert main(["--check", "--data", str(data), "--out", str(out)]) == 1
    printed = capsys.readouterr().out
    assert "table1.json (top level): made by other code" in printed
    assert "not made by the code now in the tree" in printed


def test_each_kind_of_result_is_told_its_own_command(tmp_path):
    from paper.provenance import remake_hint

    attack_run = {"config": {}, "stage_records": [], "final_share_matched": 1.0}
    assert "python -m empirical.attack" in remake_hint(tmp_path / "cpu_default_seed0.json", attack_run)
    assert "benchmarks/games.py" in remake_hint(tmp_path / "cpu_games.json", {"benchmark": "games"})
    assert remake_hint(tmp_path / "table1.json", {}) == "`python -m simulations table1`"


def test_nested_and_missing_fingerprints_are_reported(copy):
    data, _out = copy
    d = json.loads((data / "speedup.json").read_text())
    d["results"]["benchmark"]["source_fingerprint"]["hash"] = "f" * 16  # the benchmark's result copied inside
    (data / "speedup.json").write_text(json.dumps(d))
    d = json.loads((data / "psim.json").read_text())
    del d["source_fingerprint"]
    (data / "psim.json").write_text(json.dumps(d))
    problems = check_fingerprints([data])
    assert any("speedup.json (results.benchmark): made by other code" in p for p in problems)
    assert any("psim.json: records no source fingerprint" in p for p in problems)
    assert len(problems) == 2


def test_a_bare_hash_stands_for_every_package(tmp_path):
    (tmp_path / "r.json").write_text(json.dumps({"source_fingerprint": source_fingerprint()}))
    assert check_fingerprints([tmp_path]) == []
    (tmp_path / "r.json").write_text(json.dumps({"source_fingerprint": "not the hash"}))
    assert len(check_fingerprints([tmp_path])) == 1


def test_fingerprint_covers_only_its_packages(tmp_path):
    """Editing one package leaves the results of another current; editing its own makes them stale."""
    for pkg in ("alpha", "beta"):
        (tmp_path / pkg).mkdir()
        (tmp_path / pkg / "mod.py").write_text("X = 1\n")
    (tmp_path / "script.py").write_text("Y = 1\n")
    before = source_fingerprint(tmp_path, ["alpha", "script.py"])
    (tmp_path / "beta" / "mod.py").write_text("X = 2\n")
    (tmp_path / "alpha" / "notes.txt").write_text("not a source\n")
    assert source_fingerprint(tmp_path, ["alpha", "script.py"]) == before
    (tmp_path / "script.py").write_text("Y = 2\n")
    assert source_fingerprint(tmp_path, ["alpha", "script.py"]) != before
    rec = fingerprint_record(["alpha"], tmp_path)
    (tmp_path / "alpha" / "mod.py").write_text("X = 3\n")
    recorded, now, packages = fingerprint_now(rec, tmp_path)
    assert recorded == rec["hash"] != now and packages == ["alpha"]


# --- the growth exponent and the load --------------------------------------------------------------

def _scaling_with_load(data, loads):
    """Rewrite scaling.json's rows with the given one-minute loads (limit 2.5: 2 threads, 2 cores)."""
    d = json.loads((data / "scaling.json").read_text())
    for row, load in zip(d["results"]["rows"], loads, strict=True):
        row["load"] = {"loadavg_start": [0.5, 0.4, 0.3], "loadavg_end": [load, 1.5, 1.2], "threads": 2, "cpus": 2,
                       "limit": 2.5}
    d["results"]["exponent_attack"], d["results"]["exponent_isim"] = 0.73, 1.37
    (data / "scaling.json").write_text(json.dumps(d))
    return d["results"]


def test_growth_exponent_is_quoted_only_for_timings_on_a_quiet_machine(copy):
    data, out = copy
    quiet = _scaling_with_load(data, [2.1, 2.4])
    assert "grows with exponent 0.73" in _growth_sentence(quiet)
    busy = _scaling_with_load(data, [2.1, 3.07])
    text = _growth_sentence(busy)
    assert "no exponent of its growth in N is fitted" in text and "0.73" not in text
    assert "load average reached 3.07, above the limit of 2.50" in text
    main(["--data", str(data), "--out", str(out)])
    paper = (out / "paper.md").read_text()
    assert "no exponent of its growth in N is fitted" in paper
    assert numbers_not_in_data(paper, data) == []  # the numbers of the reason are the data's
    for row in busy["rows"]:
        del row["load"]
    assert "do not record the load average" in _growth_sentence(busy)


def test_final_share_reads_well_at_100_percent():
    assert _final_share_phrase(1.0) == "The share matched is 100% at every N."
    assert "at or above 99.96%" in _final_share_phrase(0.9996)
    assert "at or above 95.5%" in _final_share_phrase(0.955)


def test_paper_package_has_no_import_cycle(import_cycles):
    assert import_cycles("paper") == []


def test_the_fixed_budget_sweep_is_drawn_tabled_and_written_from_its_data(copy):
    data, out = copy
    d = json.loads((data / "scaling.json").read_text())
    rows = [{"n": n, "attack_seconds": s, "make_seconds": n / 50, "peak_rss_gib": g, "make_peak_rss_gib": 0.5,
             "encodings_gib": e, "encodings_in_memory": n < 4000, "share_final": f, "stage_seconds": {"align": 1.5},
             "peak_rss_gib_after_stage": {"align": g / 3, "boost": 0.995 * g, "extract": g}}
            for n, s, g, e, f in ((1000, 91.5, 1.25, 0.06, 1.0), (4000, 377.0, 2.75, 0.24, 0.9995))]
    d["results"]["fixed_budget"] = {"source": "benchmarks/results/cpu_streaming_sweep.json", "date": None,
                                    "budget_gib": 1.0, "rows": rows, "exponent_attack": None,
                                    "exponent_peak_rss": 0.57, "growth_fit": {"fitted": False, "reason": "busy"}}
    (data / "scaling.json").write_text(json.dumps(d))
    main(["--data", str(data), "--out", str(out)])
    table = (out / "tables" / "scaling.md").read_text()
    assert "`--memory-budget 1`" in table and "| 4,000 | 0.24 | in blocks |" in table and "| 2.75 |" in table
    paper = (out / "paper.md").read_text()
    assert "from N = 1,000 to 4,000 the attack takes 91.5 to 377.0 s and matches 100% at every N but 4,000 (99.950%)" \
        in paper
    assert "from N = 4,000 on the encodings no longer fit half the budget" in paper
    assert "the stage that reaches the peak is `boost`" in paper
    assert numbers_not_in_data(paper, data) == []


def test_the_peak_stage_is_the_first_in_run_order_not_by_name():
    """The sweep's JSON lists the stages by name; the peak belongs to the earliest one in the run that reached it."""
    after = {"align": 1.2, "boost": 3.23, "extract": 3.23, "final": 3.23, "first": 3.23, "psim": 1.8}
    assert _peak_stage({"peak_rss_gib_after_stage": after}) == "first"
    assert _peak_stage({"peak_rss_gib_after_stage": {**after, "first": 2.0}}) == "boost"
    assert _peak_stage({}) == "unknown"
