"""theory.experiments writes one JSON per experiment with config, seed, machine and date."""

import json

import pytest

from empirical.machine import fingerprint_now
from theory import experiments


def test_quick_run_writes_three_self_describing_files(tmp_path):
    assert experiments.main(["--quick", "--out", str(tmp_path), "--seed", "7"]) == 0
    for name in experiments.EXPERIMENTS:
        data = json.loads((tmp_path / f"theory_{name}.json").read_text())
        assert data["experiment"] == name and data["seed"] == 7
        assert {"config", "machine", "date", "results"} <= data.keys()
        assert data["machine"]["platform"]
        # made by the theory's code alone: its fingerprint covers theory/ and matches the sources now
        assert data["source_fingerprint"]["packages"] == ["theory"]
        recorded, now, _ = fingerprint_now(data["source_fingerprint"])
        assert recorded == now
        assert data["load"]["loadavg_end"] and data["seconds"] >= 0
    cia = json.loads((tmp_path / "theory_cia.json").read_text())["results"]
    assert all(row["max_cia_advantage"] == "0" for row in cia["exhaustive"] if row["encoder"] == "ideal")
    rows = json.loads((tmp_path / "theory_counterexample.json").read_text())["results"]["rows"]
    assert all(row["reconstruction_rate"] == 1.0 for row in rows)


def test_help_exits_cleanly(capsys):
    with pytest.raises(SystemExit) as stop:
        experiments.main(["--help"])
    assert stop.value.code == 0
    assert "--quick" in capsys.readouterr().out
