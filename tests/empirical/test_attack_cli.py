"""``python -m empirical.attack`` (ARCHITECTURE.md §1.3) on a game on disk, the referee, and separation.

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
import empirical.keys as keys
import empirical.referee as referee
import empirical.secret_files as secret_files
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
    for mod, name in [(secret_files, "load_secrets"), (secret_files, "read_answer_key"), (attack, "load_secrets"),
                      (attack, "read_answer_key"),
                      (keys, "load_key")]:
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
        secret_files.load_secrets(made["answer"], made["key"])
    with pytest.raises(SecretTouched):
        keys.load_key(made["key"])
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
    assert rows["batch re-scoring"]["share_matched"] == pytest.approx(score["share"])  # the last matching
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
    final = next(r for r in report["stages"] if r["stage"] == "batch re-scoring")
    assert report["final_share_matched"] == final["share_matched"]
    t_prime = keys.load_key(enc)  # T' in the state-dict layout, of the game's family
    assert t_prime.config == game_io.read_config(made["game"])


def test_stop_after_boosting_from_blocks_on_disk(made, tmp_path, capsys):
    """``--stop-after boost`` with a budget so small that the encodings are read a block at a time: the
    submission is boosting's matching, the JSON records the memory, and the table says the peak."""
    sub, out_json = tmp_path / "sub.json", tmp_path / "attack.json"
    rc = attack.main(["--game", str(made["game"]), "--submission", str(sub), "--answer-key", str(made["answer"]),
                      "--stop-after", "boost", "--memory-budget", "1e-6", "--json", str(out_json), *SMALL])
    out = capsys.readouterr().out
    assert rc == 0
    report = json.loads(out_json.read_text())
    assert [r["stage"] for r in report["stages"]][-1].startswith("boost")
    assert report["config"]["stop_after"] == "boost" and report["fresh_images"] is None
    mem = report["memory"]
    assert mem["encodings_in_memory"] is False and mem["budget_bytes"] == int(1e-6 * 1024**3)
    assert mem["peak_resident_bytes"] > 0 and set(mem["peak_resident_bytes_after_stage"]) == \
        {"align", "psim", "first", "boost"}
    assert "read from disk a block at a time" in out
    assert len(json.loads(sub.read_text())) == report["config"]["n_encoded"]


@pytest.mark.parametrize("address", ["tcp://127.0.0.1:9", "no-such-scheme://x"])
def test_an_unreachable_scheduler_is_refused_before_any_work(made, capsys, monkeypatch, address):
    pytest.importorskip("distributed")
    from empirical import passes

    monkeypatch.setattr(passes, "CONNECT_TIMEOUT", "1s")
    _no_attack(monkeypatch)
    line = _one_error_line(capsys, attack.main(["--game", str(made["game"]), "--scheduler", address, *SMALL]))
    assert f"--scheduler {address}" in line, line


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
    assert names[:3] == ["data", "local permutations", "p-sim training"]
    assert names[-2:] == ["final matching", "batch re-scoring"]
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


# --- Alice's files are checked before the attack, and still never reach it ----------------------

@pytest.fixture(scope="module")
def other(made, tmp_path_factory):
    """Another game of the same family and size, with its own answer key and key."""
    root = tmp_path_factory.mktemp("other")
    g, a, k = root / "GAME", root / "answer.json", root / "key.npz"
    rc = challenge.main(["make", "--out", str(g), "--answer-key", str(a), "--secret-key", str(k),
                         "--n", str(N), "--extra", str(EXTRA), "--preset", "neuracrypt-7", "--image-size", "32",
                         "--patch", "8", "--hidden", "16", "--bn-batch", "16", "--seed", "4", "--quiet"])
    assert rc == 0
    return dict(game=g, answer=a, key=k)


def _no_attack(monkeypatch):
    """The attack must not start: calling it fails the test."""
    def refused(*args, **kwargs):
        pytest.fail("the attack started although its inputs were refused")
    monkeypatch.setattr(attack, "run_attack", refused)


def _raw_key(src, dst, edit=None):
    """The key in the original PyTorch state-dict layout: float64 weights, no config entry."""
    with np.load(src, allow_pickle=False) as z:
        sd = {k: z[k].astype(np.float64) for k in z.files if k != "config"}
    if edit:
        edit(sd)
    np.savez(dst, **sd)
    return dst


def test_secrets_read_up_front_never_reach_the_attack(made, tmp_path, monkeypatch):
    """Given Alice's files, the command reads and checks them before the attack; the attack itself
    (run_attack) is called after that, receives nothing secret, and reaches for no secret file."""
    touched, calls, reads = [], [], []
    real_run, real_load = attack.run_attack, attack.load_secrets

    def guarded_run(game, cfg, xp, **kwargs):
        calls.append((game, cfg, xp, kwargs))
        with pytest.MonkeyPatch.context() as mp:
            _guard(mp, [made["answer"], made["key"], made["perms"]], touched)
            for mod, name in [(secret_files, "check_secrets"), (secret_files, "read_perms"), (attack, "check_secrets"),
                              (keys, "key_config"), (keys, "infer_family")]:
                mp.setattr(mod, name, lambda *a, _n=f"{mod.__name__}.{name}", **k: touched.append(_n))
            return real_run(game, cfg, xp, **kwargs)

    def logged_load(*args, **kwargs):
        reads.append(len(calls))
        return real_load(*args, **kwargs)

    monkeypatch.setattr(attack, "run_attack", guarded_run)
    monkeypatch.setattr(attack, "load_secrets", logged_load)
    out_json = tmp_path / "a.json"
    rc = attack.main(["--game", str(made["game"]), "--submission", str(tmp_path / "s.json"),
                      "--answer-key", str(made["answer"]), "--secret-key", str(made["key"]), "--fresh", "4",
                      "--json", str(out_json), *SMALL])
    assert rc == 0
    assert reads == [0]  # read once, before the attack
    assert len(calls) == 1 and touched == []
    game, cfg, _xp, kwargs = calls[0]
    assert isinstance(game, game_io.Game) and not isinstance(cfg, (dict, game_io.Secrets))
    assert all(not isinstance(v, (dict, game_io.Secrets, encoder.EncoderKey)) for v in kwargs.values())
    report = json.loads(out_json.read_text())  # and the secrets were used afterwards, to score
    assert report["fresh_images"]["n"] == 4 and "local permutations right" in report["stages"][0]["note"]


@pytest.mark.parametrize("which", ["answer key", "secret key", "both"])
def test_another_games_secrets_are_refused_before_the_attack(made, other, tmp_path, capsys, monkeypatch, which):
    _no_attack(monkeypatch)
    answer = other["answer"] if which in ("answer key", "both") else made["answer"]
    key = other["key"] if which in ("secret key", "both") else made["key"]
    line = _one_error_line(capsys, attack.main(["--game", str(made["game"]), "--submission", str(tmp_path / "s"),
                                                "--answer-key", str(answer), "--secret-key", str(key), *SMALL]))
    assert "another game" in line or "lacks id" in line, line
    assert not (tmp_path / "s").exists()


def test_a_key_of_another_family_is_refused_before_the_attack(made, tmp_path, capsys, monkeypatch):
    _no_attack(monkeypatch)
    k = tmp_path / "k.npz"
    challenge.main(["make", "--out", str(tmp_path / "G"), "--answer-key", str(tmp_path / "a.json"),
                    "--secret-key", str(k), "--n", "4", "--image-size", "32", "--patch", "8", "--hidden", "8",
                    "--quiet"])
    capsys.readouterr()
    line = _one_error_line(capsys, attack.main(["--game", str(made["game"]), "--answer-key", str(made["answer"]),
                                                "--secret-key", str(k), *SMALL]))
    assert "is not of the expected family" in line and "hidden 8 vs 16" in line


def test_a_key_without_config_takes_the_games_family(made, tmp_path, capsys):
    raw = _raw_key(made["key"], tmp_path / "raw.npz")
    Path(str(raw) + ".perms.npy").write_bytes(made["perms"].read_bytes())
    out_json = tmp_path / "a.json"
    rc = attack.main(["--game", str(made["game"]), "--submission", str(tmp_path / "s.json"),
                      "--answer-key", str(made["answer"]), "--secret-key", str(raw), "--fresh", "4",
                      "--json", str(out_json), *SMALL])
    assert rc == 0, capsys.readouterr().err
    report = json.loads(out_json.read_text())
    assert report["fresh_images"]["n"] == 4 and "local permutations right" in report["stages"][0]["note"]


def test_a_key_without_config_that_does_not_fit_is_refused_before_the_attack(made, tmp_path, capsys, monkeypatch):
    _no_attack(monkeypatch)
    raw = _raw_key(made["key"], tmp_path / "raw.npz", edit=lambda sd: sd.pop("mixer.1.bias"))
    line = _one_error_line(capsys, attack.main(["--game", str(made["game"]), "--answer-key", str(made["answer"]),
                                                "--secret-key", str(raw), *SMALL]))
    assert "missing weight 'mixer.1.bias'" in line


@pytest.mark.parametrize("content,pattern", [(b"", "not a key file"), ("zip-as-npy", "not a key file"),
                                             (b"PK\x03\x04 broken", "not a key file")])
def test_a_damaged_secret_key_is_refused_before_the_attack(made, tmp_path, capsys, monkeypatch, content, pattern):
    _no_attack(monkeypatch)
    k = tmp_path / "k.npz"
    if content == "zip-as-npy":
        np.save(k, np.zeros(3))
        k = k.with_suffix(".npz.npy")
    else:
        k.write_bytes(content)
    line = _one_error_line(capsys, attack.main(["--game", str(made["game"]), "--answer-key", str(made["answer"]),
                                                "--secret-key", str(k), *SMALL]))
    assert re.search(pattern, line), line


# --- outputs: never inside GAME/, never one of Alice's files ------------------------------------

def _tree(root) -> dict:
    return {p.relative_to(root).as_posix(): (p.read_bytes() if p.is_file() else None)
            for p in sorted(Path(root).rglob("*"))}


@pytest.mark.parametrize("flag,where", [
    ("--submission", f"{ENC_DIR}/0.npy"), ("--submission", f"{ORIG_DIR}/x.json"), ("--json", "encoder.json"),
    ("--save-encoder", f"{ENC_DIR}/t.npz"), ("--plots", "plots"), ("--work-dir", "."),
])
def test_no_output_goes_inside_the_game(made, capsys, monkeypatch, flag, where):
    _no_attack(monkeypatch)
    before = _tree(made["game"])
    target = made["game"] / where
    line = _one_error_line(capsys, attack.main(["--game", str(made["game"]), flag, str(target), *SMALL]))
    assert "inside the game folder" in line and flag in line
    assert _tree(made["game"]) == before


def test_an_output_through_a_symlink_into_the_game_is_refused(made, tmp_path, capsys, monkeypatch):
    _no_attack(monkeypatch)
    (tmp_path / "link").symlink_to(made["game"] / ENC_DIR)
    line = _one_error_line(capsys, attack.main(["--game", str(made["game"]), "--submission",
                                                str(tmp_path / "link" / "1.npy"), *SMALL]))
    assert "inside the game folder" in line


@pytest.mark.parametrize("flag", ["--submission", "--json", "--save-encoder"])
def test_no_output_overwrites_alices_files(made, capsys, monkeypatch, flag):
    _no_attack(monkeypatch)
    before = made["answer"].read_bytes()
    line = _one_error_line(capsys, attack.main(["--game", str(made["game"]), flag, str(made["answer"]),
                                                "--answer-key", str(made["answer"]), *SMALL]))
    assert "not overwriting Alice's file" in line
    assert made["answer"].read_bytes() == before


def test_an_output_that_is_a_folder_is_refused_before_the_attack(made, tmp_path, capsys, monkeypatch):
    _no_attack(monkeypatch)
    line = _one_error_line(capsys, attack.main(["--game", str(made["game"]), "--json", str(tmp_path), *SMALL]))
    assert "is a folder, not a file" in line


# --- numbers, Ctrl-C ---------------------------------------------------------------------------

@pytest.mark.parametrize("flags,pattern", [
    (["--extra", "-3"], "--extra must be at least 0"),
    (["--psim-steps", "0"], "--psim-steps must be at least 1"),
    (["--extract-steps", "0"], "--extract-steps must be at least 1"),
    (["--candidates", "0"], "--candidates must be at least 1"),
    (["--seed", "-1"], "--seed must be between 0"),
    (["--n", "1"], "--n must be at least 2"),
    (["--answer-key", "a.json"], "--answer-key needs --game"),
    (["--patch", "0"], "patch must be positive"),
    (["--memory-budget", "0"], "--memory-budget must be a positive number of GiB"),
    (["--memory-budget", "nan"], "--memory-budget must be a positive number of GiB"),
    (["--tprime-decay", "-1"], "--tprime-decay must be a number at least 0"),
    (["--tprime-decay", "inf"], "--tprime-decay must be a number at least 0"),
    (["--tprime-members", "0"], "--tprime-members must be at least 1"),
    (["--stop-after", "boost", "--save-encoder", "t.npz"], "--save-encoder needs model extraction"),
])
def test_bad_numbers_are_refused_in_one_line(capsys, monkeypatch, flags, pattern):
    _no_attack(monkeypatch)
    line = _one_error_line(capsys, attack.main([*flags, "--quiet", "--backend", "numpy"]))
    assert pattern in line, line


@pytest.mark.parametrize("value,pattern", [("0", "widths must be positive"),
                                           ("wide", "expected widths such as 1024 or 256,256,256,256,1024")])
def test_bad_tprime_widths_are_refused_by_the_parser_in_one_line(capsys, monkeypatch, value, pattern):
    _no_attack(monkeypatch)
    with pytest.raises(SystemExit) as exit_:
        attack.main(["--tprime-widths", value, "--quiet"])
    line = _one_error_line(capsys, exit_.value.code)
    assert "argument --tprime-widths" in line and pattern in line, line


def test_bad_numbers_with_a_game(made, capsys, monkeypatch):
    _no_attack(monkeypatch)
    line = _one_error_line(capsys, attack.main(["--game", str(made["game"]), "--secret-key", str(made["key"]),
                                                *SMALL]))
    assert "--secret-key needs --answer-key" in line
    line = _one_error_line(capsys, attack.main(["--game", str(made["game"]), "--tprime-widths", "32,32", *SMALL]))
    assert "--tprime-widths: a depth-4 encoder has 5 layer widths" in line, line


@pytest.mark.parametrize("flags,field,value", [([], "decay", None), (["--tprime-decay", "0"], "decay", 0.0),
                                               (["--tprime-decay", "2.5"], "decay", 2.5), ([], "members", None),
                                               (["--tprime-members", "3"], "members", 3)])
def test_tprime_flags_reach_the_extraction_config(made, monkeypatch, flags, field, value):
    """``--tprime-decay`` and ``--tprime-members`` set their ``ExtractConfig`` fields; without them the
    attack runs with the defaults."""
    from empirical.extraction import ExtractConfig

    seen = {}

    def capture(game, cfg, *args, **kwargs):
        seen[field] = getattr(cfg.extract, field)
        raise KeyboardInterrupt
    monkeypatch.setattr(attack, "run_attack", capture)
    assert attack.main(["--game", str(made["game"]), *flags, *SMALL]) == 130
    assert seen[field] == (getattr(ExtractConfig(), field) if value is None else value)


def test_too_many_members_for_one_network_are_refused(made, capsys, monkeypatch):
    _no_attack(monkeypatch)
    line = _one_error_line(capsys, attack.main(["--game", str(made["game"]), "--tprime-members", "200",
                                                "--tprime-widths", "1024", *SMALL]))
    assert "--tprime-members 200: the fits' mean is one network" in line and "32,768" in line, line


@pytest.mark.parametrize("work_dir", [False, True])
def test_ctrl_c_is_one_line_and_says_how_to_resume(made, tmp_path, capsys, monkeypatch, work_dir):
    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt
    monkeypatch.setattr(attack, "run_attack", interrupted)
    extra = ["--work-dir", str(tmp_path / "w")] if work_dir else []
    rc = attack.main(["--game", str(made["game"]), "--submission", str(tmp_path / "s.json"), *extra, *SMALL])
    _out, err = capsys.readouterr()
    assert rc == 130 and "Traceback" not in err
    lines = err.splitlines()
    assert len(lines) == 1 and lines[0].startswith("interrupted")
    if work_dir:
        assert "rerunning the same command resumes" in lines[0] and str(tmp_path / "w") in lines[0]
    else:
        assert "add --work-dir" in lines[0]
    assert not (tmp_path / "s.json").exists()


def test_an_internal_error_is_one_line_naming_the_type(made, tmp_path, capsys, monkeypatch):
    def bug(*args, **kwargs):
        return {}["missing"]
    monkeypatch.setattr(attack, "run_attack", bug)
    monkeypatch.delenv("NEURACRYPT_DEBUG", raising=False)
    rc = attack.main(["--game", str(made["game"]), "--submission", str(tmp_path / "s.json"), *SMALL])
    _out, err = capsys.readouterr()
    assert rc == 1 and "Traceback" not in err and len(err.splitlines()) == 1
    assert "internal error (KeyError" in err and "NEURACRYPT_DEBUG=1" in err


def test_the_table_reads_100_percent_only_for_a_complete_matching():
    assert attack.share_text(14_641 / 14_643) == "99.9%"  # two wrong of 14,643 is not 100.0%
    assert attack.share_text(1.0) == "100.0%"
    assert attack.share_text(0.138) == "13.8%"  # rounding down does not lose a share that is exact in decimals
    assert attack.share_text(0.9995) == "99.9%"
    assert attack.share_text(0.0) == "0.0%"
    assert attack.share_text(None) == "-"
