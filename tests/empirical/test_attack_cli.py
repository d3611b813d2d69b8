"""``python -m empirical.attack`` (DESIGN.md §4) on a game on disk, the referee, and separation.

The attack on ``--game DIR`` must read only GAME/: while it runs, every way of reading Alice's
answer key, secret key or permutations raises.
"""
import builtins
import contextlib
import io
import json
import os
import re
from pathlib import Path

import numpy as np
import pytest

import empirical.attack as attack
import empirical.challenge as challenge
import empirical.encoder as encoder
import empirical.game as game_io
import empirical.referee as referee
from empirical.backend import backend_name, get_backend
from empirical.game import ENC_DIR, ORIG_DIR

N, EXTRA = 40, 6
SMALL = ["--psim-steps", "20", "--extract-steps", "5", "--refine-steps", "5", "--candidates", "5",
         "--backend", "numpy", "--quiet"]


class SecretTouched(AssertionError):
    """Raised when the attack reaches for one of Alice's files (not an OSError: nothing may swallow it)."""


@pytest.fixture(scope="module")
def made(tmp_path_factory):
    root = tmp_path_factory.mktemp("cli")
    g, alice = root / "GAME", root / "alice"
    a, k = alice / "answer.json", alice / "key.npz"
    rc = challenge.main(["make", "--out", str(g), "--answer-key", str(a), "--secret-key", str(k),
                         "--n", str(N), "--extra", str(EXTRA), "--preset", "neuracrypt-7", "--image-size", "32",
                         "--patch", "8", "--hidden", "16", "--bn-batch", "16", "--seed", "3", "--quiet"])
    assert rc == 0
    perms = Path(str(k) + ".perms.npy")
    assert a.is_file() and k.is_file() and perms.is_file()
    return dict(root=root, game=g, answer=a, key=k, perms=perms, alice=alice)


def _guard(monkeypatch, secret_paths, touched):
    """Make every reader of Alice's files raise while the attack runs."""
    secret = {os.path.realpath(p) for p in secret_paths}
    secret_dirs = {os.path.dirname(p) for p in secret}

    def check(path):
        if isinstance(path, int):  # a file descriptor: opened already
            return
        try:
            p = os.path.realpath(os.fspath(path))
        except TypeError:  # a file object, e.g. np.load(BytesIO)
            return
        if p in secret or p.startswith(tuple(d + os.sep for d in secret_dirs)):
            touched.append(p)
            raise SecretTouched(f"the attack reached for Alice's file {p}")

    def wrap(fn):
        def guarded(file, *args, **kwargs):
            check(file)
            return fn(file, *args, **kwargs)
        return guarded

    def refuse(name):
        def refused(*args, **kwargs):
            touched.append(name)
            raise SecretTouched(f"the attack called {name}")
        return refused

    monkeypatch.setattr(builtins, "open", wrap(builtins.open))
    monkeypatch.setattr(io, "open", wrap(io.open))  # pathlib's read_text/read_bytes/open
    monkeypatch.setattr(os, "open", wrap(os.open))
    monkeypatch.setattr(np, "load", wrap(np.load))
    for mod, name in [(game_io, "load_secrets"), (game_io, "read_answer_key"), (attack, "load_secrets"),
                      (attack, "read_answer_key"),
                      (encoder, "load_key")]:
        monkeypatch.setattr(mod, name, refuse(f"{mod.__name__}.{name}"))


def test_guard_really_guards(made, monkeypatch):
    """The guard itself: each way in to Alice's files raises."""
    touched = []
    _guard(monkeypatch, [made["answer"], made["key"], made["perms"]], touched)
    with pytest.raises(SecretTouched):
        made["answer"].read_text()
    with pytest.raises(SecretTouched):
        open(made["key"], "rb")
    with pytest.raises(SecretTouched):
        np.load(made["perms"])
    with pytest.raises(SecretTouched):
        game_io.load_secrets(made["answer"], made["key"])
    with pytest.raises(SecretTouched):
        encoder.load_key(made["key"])
    assert len(touched) == 5
    assert json.loads((made["game"] / "encoder.json").read_text())["hidden"] == 16  # GAME/ stays readable


@pytest.fixture(scope="module")
def guarded_run(made, tmp_path_factory):
    """The attack on GAME/ with every secret out of reach; returns its submission."""
    sub = tmp_path_factory.mktemp("sub") / "parallel_data_predictions.json"
    touched = []
    with pytest.MonkeyPatch.context() as mp:
        _guard(mp, [made["answer"], made["key"], made["perms"]], touched)
        rc = attack.main(["--game", str(made["game"]), "--submission", str(sub), *SMALL])
    assert touched == []
    assert rc == 0
    return json.loads(sub.read_text())


def test_attack_on_disk_writes_a_full_submission(made, guarded_run):
    sub = guarded_run
    files = sorted(p.name for p in (made["game"] / ENC_DIR).iterdir())
    assert sorted(sub.values()) == files  # every encoding file, each once
    originals = {p.relative_to(made["game"] / ORIG_DIR).as_posix() for p in (made["game"] / ORIG_DIR).rglob("*.png")}
    assert len(originals) == N + EXTRA
    assert set(sub) <= originals and len(sub) == N


@pytest.fixture(scope="module")
def scored_run(made, guarded_run, tmp_path_factory):
    """The attack again, now given the answer key to score itself after it has finished."""
    d = tmp_path_factory.mktemp("scored")
    sub, out_json = d / "sub.json", d / "attack.json"
    rc = attack.main(["--game", str(made["game"]), "--submission", str(sub), "--answer-key", str(made["answer"]),
                      "--json", str(out_json), *SMALL])
    assert rc == 0
    return json.loads(sub.read_text()), json.loads(out_json.read_text())


def test_reading_the_answer_key_afterwards_changes_nothing(guarded_run, scored_run):
    assert scored_run[0] == guarded_run


def test_attack_report_agrees_with_the_referee(made, scored_run):
    """The table's final share is the referee's score of the submission (ids Alice encoded only)."""
    sub, report = scored_run
    answer = json.loads(made["answer"].read_text())
    path_list = json.loads((made["game"] / game_io.PATH_LIST).read_text())  # public: the encoded ids
    assert set(path_list) == set(answer)
    score = referee.score_submission(answer, {i: f for i, f in sub.items() if i in set(path_list)})
    assert score["total"] == N
    assert report["final_share_matched"] == pytest.approx(score["share"])
    rows = {r["stage"]: r for r in report["stages"]}
    assert rows["final matching"]["share_matched"] == pytest.approx(score["share"])
    assert report["config"]["n_encoded"] == N and report["config"]["n_originals_in_game"] == N + EXTRA
    assert report["config"]["n_originals"] == N  # the public path list names the encoded ids
    assert report["config"]["game"] == str(made["game"])


def test_referee_scores_the_attack_submission_as_written(made, scored_run, tmp_path, capsys):
    sub, report = scored_run
    path, score_json = tmp_path / "sub.json", tmp_path / "score.json"
    path.write_text(json.dumps(sub))
    capsys.readouterr()
    rc = challenge.main(["score", "--answer-key", str(made["answer"]), "--submission", str(path),
                         "--json", str(score_json)])
    out, err = capsys.readouterr()
    assert rc == 0, err
    score = json.loads(score_json.read_text())
    assert report["final_share_matched"] == pytest.approx(score["share"])
    assert out.startswith(f"score: {score['share']:.4f}")


def test_table_goes_to_the_current_stdout(made, tmp_path):
    buf = io.StringIO()
    with contextlib.redirect_stdout(buf):
        rc = attack.main(["--game", str(made["game"]), "--submission", str(tmp_path / "s.json"),
                          "--answer-key", str(made["answer"]), *SMALL])
    assert rc == 0
    text = buf.getvalue()
    assert "submission written to" in text
    line = next(ln for ln in text.splitlines() if ln.startswith("final matching"))
    assert re.search(r"\d+\.\d%", line)


def test_secret_key_adds_local_permutations_and_challenge_2(made, tmp_path, capsys):
    sub, out_json = tmp_path / "sub.json", tmp_path / "attack.json"
    enc = tmp_path / "t_prime.npz"
    rc = attack.main(["--game", str(made["game"]), "--submission", str(sub), "--answer-key", str(made["answer"]),
                      "--secret-key", str(made["key"]), "--fresh", "12", "--save-encoder", str(enc),
                      "--json", str(out_json), *SMALL])
    capsys.readouterr()
    assert rc == 0
    report = json.loads(out_json.read_text())
    names = [r["stage"] for r in report["stages"]]
    assert names[0] == "local permutations" and names[-1] == "T' on fresh images"
    assert "local permutations right" in report["stages"][0]["note"]
    assert report["fresh_images"]["n"] == 12
    final = next(r for r in report["stages"] if r["stage"] == "final matching")
    assert report["final_share_matched"] == final["share_matched"]
    t_prime = encoder.load_key(enc)  # T' in the state-dict layout, of the game's family
    assert t_prime.config == game_io.read_config(made["game"])


def test_default_run_builds_and_scores_its_own_game(tmp_path, capsys):
    out = tmp_path / "r.json"
    rc = attack.main(["--n", "30", "--extra", "4", "--image-size", "32", "--patch", "8", "--hidden", "16",
                      "--psim-steps", "10", "--extract-steps", "3", "--refine-steps", "3", "--fresh", "0",
                      "--backend", "numpy", "--quiet",
                      "--json", str(out)])
    capsys.readouterr()
    assert rc == 0
    report = json.loads(out.read_text())
    names = [r["stage"] for r in report["stages"]]
    assert names[:3] == ["data", "local permutations", "p-sim training"] and names[-1] == "final matching"
    assert report["config"]["n_encoded"] == 30 and report["config"]["n_originals_in_game"] == 34
    assert 0.0 <= report["final_share_matched"] <= 1.0
    assert report["machine"]["backend"] == "numpy"
    assert {"i-sim + first matching", "model extraction", "final matching"} <= set(names)
    assert all(0.0 <= r["share_matched"] <= 1.0 for r in report["stages"] if r["share_matched"] is not None)


# --- bad input and help ------------------------------------------------------------------------

def _one_error_line(capsys, rc):
    _out, err = capsys.readouterr()
    assert rc == 2
    assert "Traceback" not in err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), err
    return lines[0]


def test_missing_game_folder(tmp_path, capsys):
    missing = tmp_path / "nowhere"
    line = _one_error_line(capsys, attack.main(["--game", str(missing), "--quiet"]))
    assert str(missing) in line


def test_broken_game_folder(made, tmp_path, capsys):
    import shutil

    g = tmp_path / "G"
    shutil.copytree(made["game"], g)
    (g / ENC_DIR / "3.npy").unlink()
    line = _one_error_line(capsys, attack.main(["--game", str(g), "--quiet", "--backend", "numpy"]))
    assert "encodings" in line


@pytest.mark.skipif(backend_name(get_backend("auto")) == "cupy", reason="a GPU is present")
def test_cupy_backend_without_a_gpu(made, capsys):
    line = _one_error_line(capsys, attack.main(["--game", str(made["game"]), "--backend", "cupy", "--quiet"]))
    assert "cupy" in line.lower()


@pytest.mark.parametrize("argv", [["--help"], ["-h"]])
def test_attack_help(argv, capsys):
    with pytest.raises(SystemExit) as e:
        attack.main(argv)
    assert e.value.code == 0
    out = capsys.readouterr().out
    assert "--game" in out and "--submission" in out and "--answer-key" in out


def test_challenge_help(capsys):
    with pytest.raises(SystemExit) as e:
        challenge.main(["--help"])
    assert e.value.code == 0
    out = capsys.readouterr().out
    assert "make" in out and "score" in out
    with pytest.raises(SystemExit) as e:
        challenge.main(["make", "--help"])
    assert e.value.code == 0
    out = capsys.readouterr().out
    assert "--out" in out and "--answer-key" in out
