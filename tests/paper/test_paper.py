"""paper: every figure and table is drawn from the data alone; the freshness check catches stale outputs."""
import json
import os
import shutil
from pathlib import Path

import pytest

from paper import DATA_DIR, PAPER_DIR
from paper.__main__ import main
from paper.freshness import check, numbers_not_in_data
from paper.outputs import MANIFEST, OUTPUTS, all_outputs, build

FIXTURE = Path(__file__).resolve().parent / "fixtures" / "data"


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    """The fixture data drawn once into a temporary folder: (data dir, output dir)."""
    root = tmp_path_factory.mktemp("paper")
    data, out = root / "data", root / "out"
    shutil.copytree(FIXTURE, data)
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
