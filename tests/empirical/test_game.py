"""Reading a game and Alice's files defensively, writing outputs all-or-nothing, and one-line errors."""
import json
import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import empirical.errors as errors
import empirical.memory as memory
import empirical.staging as staging
from empirical.alice import make_game
from empirical.encoder import preset
from empirical.errors import UserError, run_command
from empirical.game import ENC_DIR, ORIG_DIR, PATH_LIST, GameError, read_config, read_game
from empirical.secret_files import check_secrets, load_secrets, read_answer_key
from empirical.staging import Staging, sweep_stale_partials

TINY = preset("neuracrypt-7", image_size=16, patch=8, hidden=4, bn_batch=3)


def _images(n, size=16, seed=0):
    return np.random.default_rng(seed).random((n, 1, size, size)).astype(np.float32)


def _make(root: Path, name="G", seed=2, n=5, extra=1):
    root.mkdir(parents=True, exist_ok=True)
    g, a, k = root / name, root / f"{name}-A.json", root / f"{name}-K.npz"
    make_game(g, _images(n + extra, seed=seed), [f"img{i}.png" for i in range(n + extra)], TINY, n, seed=seed,
              answer_key=a, secret_key=k)
    return g, a, k


@pytest.fixture(scope="module")
def pristine(tmp_path_factory):
    return _make(tmp_path_factory.mktemp("pristine"))


@pytest.fixture
def game(pristine, tmp_path):
    """A fresh copy of a small game with Alice's files beside it."""
    g, a, k = pristine
    shutil.copytree(g, tmp_path / "G")
    for p in (a, k, Path(str(k) + ".perms.npy")):
        shutil.copy(p, tmp_path / p.name)
    return tmp_path / "G", tmp_path / a.name, tmp_path / k.name


def _edit_config(g, **fields):
    p = g / "encoder.json"
    p.write_text(json.dumps({**json.loads(p.read_text()), **fields}))


# --- numbering of the encodings ----------------------------------------------------------------

def test_leading_zero_beside_the_plain_name_is_refused(game):
    g = game[0]
    shutil.copy(g / ENC_DIR / "1.npy", g / ENC_DIR / "01.npy")
    (g / ENC_DIR / "1.npy").unlink()
    with pytest.raises(GameError, match=r"'01.npy' is not named <k>.npy"):
        read_game(g)


def test_a_gap_in_the_numbering_is_refused(game):
    """The numbering gives the BatchNorm batches: 0..N-1 exactly, never 0, 1, 2, 4, 5."""
    g = game[0]
    (g / ENC_DIR / "3.npy").rename(g / ENC_DIR / "5.npy")
    with pytest.raises(GameError, match=r"not numbered 0\.\.4: 3\.npy is missing"):
        read_game(g)


def test_unicode_digits_are_not_a_number(game):
    g = game[0]
    (g / ENC_DIR / "4.npy").rename(g / ENC_DIR / "\u0664.npy")  # ARABIC-INDIC DIGIT FOUR
    with pytest.raises(GameError, match=r"is not named <k>.npy"):
        read_game(g)


# --- what is not a regular file inside GAME/, or leads outside it --------------------------------

def test_symlinked_original_outside_the_game_is_refused(game, tmp_path):
    g = game[0]
    outside = tmp_path / "elsewhere.png"
    (g / ORIG_DIR / "img2.png").rename(outside)
    (g / ORIG_DIR / "img2.png").symlink_to(outside)
    with pytest.raises(GameError, match=r"symbolic link.*outside the game folder"):
        read_game(g)


def test_symlinked_encoding_outside_the_game_is_refused(game, tmp_path):
    g = game[0]
    outside = tmp_path / "e.npy"
    (g / ENC_DIR / "2.npy").rename(outside)
    (g / ENC_DIR / "2.npy").symlink_to(outside)
    with pytest.raises(GameError, match=r"symbolic link.*outside the game folder"):
        read_game(g)


def test_symlinked_folder_of_encodings_outside_is_refused(game, tmp_path):
    g = game[0]
    (g / ENC_DIR).rename(tmp_path / "encs")
    (g / ENC_DIR).symlink_to(tmp_path / "encs")
    with pytest.raises(GameError, match="outside the game folder"):
        read_game(g)


def test_symlink_inside_the_game_is_fine(game):
    g = game[0]
    (g / "shared").mkdir()
    (g / ENC_DIR / "2.npy").rename(g / "shared" / "2.npy")
    (g / ENC_DIR / "2.npy").symlink_to(Path("..") / "shared" / "2.npy")
    assert read_game(g).encodings.shape == (5, 4, 4)


@pytest.mark.parametrize("where", [f"{ENC_DIR}/2.npy", f"{ORIG_DIR}/img1.png", "encoder.json", PATH_LIST])
def test_a_fifo_where_a_file_is_due_is_refused_without_blocking(game, where):
    g = game[0]
    (g / where).unlink()
    os.mkfifo(g / where)
    with pytest.raises(GameError, match="not a regular file"):
        read_game(g)


def test_a_folder_where_an_encoding_is_due_is_refused(game):
    g = game[0]
    (g / ENC_DIR / "2.npy").unlink()
    (g / ENC_DIR / "2.npy").mkdir()
    with pytest.raises(GameError, match="not a regular file"):
        read_game(g)


# --- encoder.json: every field in range, before anything is allocated -------------------------

@pytest.mark.parametrize("fields,pattern", [
    (dict(depth=10**9), "depth must be at least -1 and at most 256"),
    (dict(patch=0), "patch must be positive"),
    (dict(bn_batch=10**23), "bn_batch must be positive and at most"),
    (dict(image_size=10**9), "image_size must be positive and at most"),
    (dict(hidden=-4), "hidden must be positive"),
    (dict(channels=3), "only channels 1 is supported"),
    (dict(image_size=8192, patch=1), "patches per image"),
])
def test_encoder_json_out_of_range_is_refused(game, fields, pattern):
    g = game[0]
    _edit_config(g, **fields)
    with pytest.raises(GameError, match=pattern) as e:
        read_game(g)
    assert "\n" not in str(e.value)


def test_deeply_nested_encoder_json_is_refused(game):
    g = game[0]
    (g / "encoder.json").write_text("[" * 20000 + "]" * 20000)
    with pytest.raises(GameError, match="nested too deeply"):
        read_config(g)


def test_a_game_larger_than_memory_is_refused_before_reading(game, monkeypatch):
    g = game[0]
    _edit_config(g, image_size=4096, patch=16, hidden=32768, depth=4)  # within range, but huge
    monkeypatch.setattr(memory, "available_memory", lambda: 2 * 2**30)
    with pytest.raises(GameError, match=r"needs .* GiB of memory; 2\.0 GiB is available") as e:
        read_game(g)
    assert str(g) in str(e.value)


def test_memory_check_counts_the_whole_game(game, monkeypatch):
    """Just below and just above what the game needs."""
    from empirical.game import game_bytes

    g = game[0]
    need = game_bytes(TINY, 6, 5)
    monkeypatch.setattr(memory, "available_memory", lambda: need)
    assert read_game(g).encodings.shape == (5, 4, 4)
    monkeypatch.setattr(memory, "available_memory", lambda: need - 1)
    with pytest.raises(GameError, match="of memory"):
        read_game(g)


# --- encodings: headers checked before data ---------------------------------------------------

@pytest.mark.parametrize("content,pattern", [
    (b"", "not a .npy file"),
    (None, "truncated"),
    ("zip", "zip archive"),
    ("padded", "unexpected bytes"),
])
def test_damaged_encodings_are_refused_by_name(game, content, pattern):
    g = game[0]
    p = g / ENC_DIR / "3.npy"
    whole = p.read_bytes()
    if content is None:
        p.write_bytes(whole[:-5])
    elif content == "zip":
        p.unlink()
        with open(p, "wb") as f:
            np.savez(f, a=np.zeros((4, 4), np.float32))
    elif content == "padded":
        p.write_bytes(whole + b"\0" * 8)
    else:
        p.write_bytes(content)
    with pytest.raises(GameError, match=pattern) as e:
        read_game(g)
    assert "3.npy" in str(e.value)


# --- Alice's files checked against the game ----------------------------------------------------

def test_secrets_of_the_game_fit(game):
    g, a, k = game
    gm = read_game(g)
    check_secrets(load_secrets(a, k, gm.config), gm, a, k)  # no error


def test_another_games_answer_key_is_refused(game, tmp_path):
    g = game[0]
    _, a2, _ = _make(tmp_path / "other", seed=7, n=4, extra=2)
    gm = read_game(g)
    with pytest.raises(GameError, match=r"another game|lacks id|not an encoding"):
        check_secrets(load_secrets(a2), gm, a2)


def test_another_games_key_of_the_same_family_is_refused(game, tmp_path):
    g, a, _ = game
    _, _, k2 = _make(tmp_path / "other", seed=7)
    gm = read_game(g)
    with pytest.raises(GameError, match="does not reproduce the game's encodings"):
        check_secrets(load_secrets(a, k2, gm.config), gm, a, k2)


def test_another_games_permutations_are_refused(game, tmp_path):
    g, a, k = game
    _, _, k2 = _make(tmp_path / "other", seed=7)
    shutil.copy(str(k2) + ".perms.npy", str(k) + ".perms.npy")
    gm = read_game(g)
    with pytest.raises(GameError, match="permutations of another game"):
        check_secrets(load_secrets(a, k, gm.config), gm, a, k)


def test_perms_of_the_wrong_shape_are_refused(game):
    g, a, k = game
    np.save(str(k) + ".perms.npy", np.zeros((5, 3), np.int32))
    gm = read_game(g)
    with pytest.raises(GameError, match=r"has shape \(5, 3\); the game needs \(5, 4\)"):
        check_secrets(load_secrets(a, k, gm.config), gm, a, k)


def test_an_empty_answer_key_is_refused(tmp_path):
    (tmp_path / "A.json").write_text("{}")
    with pytest.raises(GameError, match="empty answer key"):
        read_answer_key(tmp_path / "A.json")


# --- Staging: all outputs or none ----------------------------------------------------------------

def test_staging_writes_nothing_until_commit(tmp_path):
    with Staging() as st:
        (st.folder(tmp_path / "G") / "x").write_text("1")
        st.file(tmp_path / "s" / "a.txt").write_text("2")
        assert not (tmp_path / "G").exists() and not (tmp_path / "s" / "a.txt").exists()
        st.commit()
    assert (tmp_path / "G" / "x").read_text() == "1" and (tmp_path / "s" / "a.txt").read_text() == "2"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["G", "s"]
    assert [p.name for p in (tmp_path / "G").iterdir()] == ["x"]  # the marker is gone


def test_staging_rolls_back_a_failed_commit(tmp_path, monkeypatch):
    """The second rename fails: the first output goes back, the file it replaced is restored."""
    (tmp_path / "a.txt").write_text("old a")
    real, calls = Staging._place_file, []

    def failing(self, tmp, final):
        calls.append(final)
        if len(calls) == 2:
            raise PermissionError(13, "Permission denied", str(final))
        return real(self, tmp, final)

    monkeypatch.setattr(Staging, "_place_file", failing)
    with pytest.raises(PermissionError), Staging(force=True) as st:
        st.file(tmp_path / "a.txt").write_text("new a")
        st.file(tmp_path / "b.txt").write_text("new b")
        st.commit()
    assert len(calls) == 2
    assert (tmp_path / "a.txt").read_text() == "old a"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.txt"]


def test_staging_refuses_a_file_that_appeared(tmp_path):
    with pytest.raises(UserError, match="not overwriting"), Staging() as st:
        st.file(tmp_path / "a.txt").write_text("mine")
        (tmp_path / "a.txt").write_text("theirs")  # appears while writing
        st.commit()
    assert (tmp_path / "a.txt").read_text() == "theirs"
    assert [p.name for p in tmp_path.iterdir()] == ["a.txt"]


def test_staging_removes_the_folders_it_made_on_failure(tmp_path):
    with pytest.raises(RuntimeError), Staging() as st:
        st.file(tmp_path / "x" / "y" / "a.txt").write_text("1")
        raise RuntimeError("stop")
    assert list(tmp_path.iterdir()) == []


def _dead_pid() -> int:
    p = subprocess.Popen([sys.executable, "-c", "pass"])
    p.wait()
    return p.pid


def test_sweep_removes_only_temporaries_of_dead_processes(tmp_path):
    host = staging._HOST
    dead, alive = _dead_pid(), os.getpid()
    stale_dir = tmp_path / f".G.partial-{host}-{dead}-abc"
    stale_dir.mkdir()
    (stale_dir / staging._MARKER).write_text("")
    stale_file = tmp_path / f".G.partial-{host}-{dead}-def.tmp"
    stale_file.write_text("secret")
    live = tmp_path / f".G.partial-{host}-{alive}-ghi"
    live.mkdir()
    (live / staging._MARKER).write_text("")
    unmarked = tmp_path / f".G.partial-{host}-{dead}-jkl"
    unmarked.mkdir()  # no marker: not ours to delete
    backup = tmp_path / f".G.partial-{host}-{dead}-mno.old"
    backup.write_text("a replaced output")
    other = tmp_path / f".H.partial-{host}-{dead}-pqr"
    other.write_text("another output's")
    removed = sweep_stale_partials(tmp_path / "G")
    assert sorted(removed) == sorted([stale_dir, stale_file])
    assert live.exists() and unmarked.exists() and backup.exists() and other.exists()


def test_make_sweeps_a_killed_makes_temporary(tmp_path):
    dead = _dead_pid()
    stale = tmp_path / f".G.partial-{staging._HOST}-{dead}-xyz"
    (stale / ENC_DIR).mkdir(parents=True)
    (stale / staging._MARKER).write_text("")
    make_game(tmp_path / "G", _images(3), ["a.png", "b.png", "c.png"], TINY, 2)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["G"]


def test_sigterm_during_make_leaves_nothing(tmp_path):
    """A real SIGTERM while encoding: one line, exit 143, no game, no secret, no temporary."""
    cmd = [sys.executable, "-m", "empirical.challenge", "make", "--out", str(tmp_path / "G"),
           "--answer-key", str(tmp_path / "s" / "A.json"), "--secret-key", str(tmp_path / "s" / "K.npz"),
           "--n", "4000", "--image-size", "32", "--patch", "8", "--hidden", "32", "--quiet"]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        import time

        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and not any(p.name.startswith(".G.partial-") for p in tmp_path.iterdir()):
            time.sleep(0.02)
        proc.send_signal(signal.SIGTERM)
        _out, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 128 + signal.SIGTERM, err
    assert err.splitlines() == ["interrupted by SIGTERM; nothing was written (make writes everything or nothing)"]
    assert list(tmp_path.iterdir()) == []


# --- the one-line error of every command --------------------------------------------------------

def test_run_command_user_error(capsys):
    def body():
        raise UserError("bad\nthing")
    assert run_command(body) == 2
    assert capsys.readouterr().err == "error: bad thing\n"


def test_run_command_internal_error_names_the_type_and_the_debug_switch(capsys, monkeypatch):
    monkeypatch.delenv(errors.DEBUG_ENV, raising=False)

    def body():
        return 1 // 0
    assert run_command(body) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "ZeroDivisionError" in err and "NEURACRYPT_DEBUG=1" in err
    monkeypatch.setenv(errors.DEBUG_ENV, "1")
    with pytest.raises(ZeroDivisionError):
        run_command(body)


@pytest.mark.parametrize("exc,code,text", [
    (KeyboardInterrupt, 130, "interrupted; try again"),
    (MemoryError, 2, "error: out of memory"),
    (lambda: OSError(28, "No space left on device"), 2, "error: [Errno 28] No space left on device"),
])
def test_run_command_interrupt_memory_and_os_errors(capsys, exc, code, text):
    def body():
        raise exc()
    assert run_command(body, "try again") == code
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith(text)
