"""The privacy game on disk (ARCHITECTURE.md §1.2): make, read, score, and every bad input."""
import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import empirical.alice as alice
import empirical.referee as referee
import empirical.secret_files as secret_files
from empirical.alice import make_game
from empirical.challenge import main
from empirical.encoder import encode, preset
from empirical.game import ENC_DIR, ORIG_DIR, PATH_LIST, GameError, read_game
from empirical.keys import load_key

N, EXTRA, SIZE, HIDDEN, BN_BATCH = 200, 10, 64, 128, 64
GAME_ENTRIES = {"encoder.json", ORIG_DIR, ENC_DIR, PATH_LIST}


def read_png(path) -> np.ndarray:
    """A PNG's pixels as float64 in [0, 1], read without the package: v / (2^bits - 1)."""
    with Image.open(path) as im:
        a = np.asarray(im)
    assert a.dtype in (np.uint8, np.uint16, np.int32), a.dtype
    return a.astype(np.float64) / (255.0 if a.dtype == np.uint8 else 65535.0)


def assert_one_error_line(capsys, rc):
    out, err = capsys.readouterr()
    assert rc != 0
    assert "Traceback" not in err and "Traceback" not in out
    lines = err.splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith("error: ") and len(lines[0]) > len("error: ") + 10
    assert "\r" not in err  # no progress bar left over
    return lines[0]


# --- a full-size game, made once ---------------------------------------------------------------

@pytest.fixture(scope="module")
def game(tmp_path_factory):
    root = tmp_path_factory.mktemp("game")
    g, a, k = root / "GAME", root / "alice" / "A.json", root / "alice" / "K.npz"
    rc = main(["make", "--out", str(g), "--answer-key", str(a), "--secret-key", str(k),
               "--n", str(N), "--extra", str(EXTRA), "--preset", "neuracrypt-7", "--image-size", str(SIZE),
               "--hidden", str(HIDDEN), "--bn-batch", str(BN_BATCH), "--quiet"])
    assert rc == 0
    return dict(root=root, game=g, answer=a, key=k, perms=Path(str(k) + ".perms.npy"))


def test_layout(game):
    g = game["game"]
    assert {p.name for p in g.iterdir()} == GAME_ENTRIES
    assert json.loads((g / "encoder.json").read_text()) == {
        "channels": 1, "image_size": SIZE, "patch": 16, "hidden": HIDDEN, "depth": 4, "shuffle": True,
        "bn_batch": BN_BATCH}
    files = sorted(p.name for p in (g / ENC_DIR).iterdir())
    assert files == sorted(f"{k}.npy" for k in range(N))
    for name in ("0.npy", f"{N - 1}.npy"):
        a = np.load(g / ENC_DIR / name, allow_pickle=False)
        assert a.shape == (16, HIDDEN) and a.dtype == np.float32
    originals = sorted(p.relative_to(g / ORIG_DIR).as_posix() for p in (g / ORIG_DIR).rglob("*"))
    assert len(originals) == N + EXTRA and all(o.endswith(".png") for o in originals)
    with Image.open(g / ORIG_DIR / originals[0]) as im:
        assert im.mode.startswith("I") and np.asarray(im).max() > 255  # 16-bit grayscale
    path_list = json.loads((g / PATH_LIST).read_text())
    answer = json.loads(game["answer"].read_text())
    assert isinstance(path_list, list) and len(path_list) == N
    assert set(path_list) == set(answer)
    assert sorted(answer.values()) == files


def test_secrets_live_outside_the_game(game):
    g = game["game"].resolve()
    for p in (game["answer"], game["key"], game["perms"]):
        assert p.is_file()
        assert g not in p.resolve().parents
    inside = [p.name for p in g.rglob("*") if p.is_file()]
    assert not any(n.endswith(".npz") for n in inside)
    assert sorted(n for n in inside if n.endswith(".json")) == sorted(["encoder.json", PATH_LIST])
    answer_bytes = game["answer"].read_bytes()
    assert all(p.read_bytes() != answer_bytes for p in g.rglob("*.json"))


def test_decoys_are_originals_but_not_encoded(game):
    g = read_game(game["game"])
    answer = json.loads(game["answer"].read_text())
    decoys = set(g.ids) - set(g.path_list)
    assert len(decoys) == EXTRA
    assert not decoys & set(answer)
    assert set(g.path_list) <= set(g.ids)


def test_read_game(game):
    g = read_game(game["game"])
    assert g.config == preset("neuracrypt-7", image_size=SIZE, hidden=HIDDEN, bn_batch=BN_BATCH)
    assert len(g.ids) == N + EXTRA and g.ids == sorted(g.ids)
    assert g.originals.shape == (N + EXTRA, 1, SIZE, SIZE) and g.originals.dtype == np.float32
    assert g.files == [f"{k}.npy" for k in range(N)]
    assert g.encodings.shape == (N, 16, HIDDEN)
    np.testing.assert_array_equal(g.encodings[7], np.load(game["game"] / ENC_DIR / "7.npy"))
    np.testing.assert_array_equal(g.bn_groups, np.arange(N) // BN_BATCH)
    assert len(set(g.bn_groups)) == 4  # several BatchNorm batches
    np.testing.assert_allclose(g.originals[3, 0], read_png(game["game"] / ORIG_DIR / g.ids[3]), atol=1e-7)


def test_encodings_match_the_float64_reference(game, helpers):
    """Re-encode the originals on disk with the saved key, in the same BatchNorm batches."""
    g = game["game"]
    with np.load(game["key"], allow_pickle=False) as z:
        sd = {k: z[k] for k in z.files if k != "config"}
        cfg = json.loads(str(z["config"]))
    assert cfg == json.loads((g / "encoder.json").read_text())
    answer = json.loads(game["answer"].read_text())
    id_of_file = {f: i for i, f in answer.items()}
    x = np.stack([read_png(g / ORIG_DIR / id_of_file[f"{k}.npy"]) for k in range(N)])[:, None]
    ref = helpers.reference_encode(sd, cfg, x, bn_batch=cfg["bn_batch"])  # batch = k // bn_batch
    enc = np.stack([np.load(g / ENC_DIR / f"{k}.npy") for k in range(N)])
    perms = np.load(game["perms"])
    assert perms.shape == (N, 16)
    np.testing.assert_array_equal(np.sort(perms, axis=1), np.tile(np.arange(16), (N, 1)))
    assert (perms != np.arange(16)).any(axis=1).mean() > 0.9  # rows really are shuffled
    helpers.assert_close_f32(enc, np.take_along_axis(ref, perms[:, :, None], axis=1))
    # and not by luck: one batch of 200 would give other encodings
    wrong = helpers.reference_encode(sd, cfg, x[:BN_BATCH + 1], bn_batch=BN_BATCH + 1)
    assert not np.allclose(helpers.unshuffle(enc[:BN_BATCH + 1], perms[:BN_BATCH + 1]), wrong, atol=1e-3)


def test_secrets_round_trip(game):
    s = secret_files.load_secrets(game["answer"], game["key"])
    assert s.answer == json.loads(game["answer"].read_text())
    assert s.perms.shape == (N, 16)
    assert s.key.config == load_key(game["key"]).config
    assert len(s.key.block_w) == 4


def test_score_answer_key_and_derangement(game, tmp_path, capsys):
    answer = json.loads(game["answer"].read_text())
    ids = sorted(answer)
    deranged = {i: answer[ids[(j + 1) % len(ids)]] for j, i in enumerate(ids)}
    assert all(deranged[i] != answer[i] for i in ids)
    odd = ids[1::2]  # half the ids trade files among themselves: each file still claimed once
    half = {**{i: answer[i] for i in ids[0::2]}, **{i: answer[odd[(j + 1) % len(odd)]] for j, i in enumerate(odd)}}
    assert len(set(half.values())) == len(half)
    for sub, share, correct in [(answer, 1.0, N), (deranged, 0.0, 0), (half, 0.5, N // 2)]:
        path, out_json = tmp_path / "sub.json", tmp_path / "res" / "score.json"
        path.write_text(json.dumps(sub))
        rc = main(["score", "--answer-key", str(game["answer"]), "--submission", str(path), "--json", str(out_json)])
        out, err = capsys.readouterr()
        assert rc == 0 and err == ""
        assert out.strip() == f"score: {share:.4f} ({correct} of {N} ids mapped to the right file)"
        assert json.loads(out_json.read_text()) == {"correct": correct, "total": N, "share": share}
    assert referee.score_submission(answer, {})["share"] == 0.0
    first_ten = dict(list(answer.items())[:10])
    assert referee.score_submission(answer, first_ten) == {"correct": 10, "total": N, "share": 10 / N}


def test_make_cli_in_a_subprocess(tmp_path):
    g, a, k = tmp_path / "G", tmp_path / "A.json", tmp_path / "K.npz"
    run = lambda *args: subprocess.run([sys.executable, "-m", "empirical.challenge", *args],  # noqa: E731
                                       capture_output=True, text=True, timeout=120)
    r = run("make", "--out", str(g), "--answer-key", str(a), "--secret-key", str(k), "--n", "12", "--extra", "3",
            "--preset", "neuracrypt-2", "--image-size", "32", "--patch", "8", "--hidden", "8", "--bn-batch", "5")
    assert r.returncode == 0, r.stderr
    assert "Traceback" not in r.stderr
    assert r.stdout.startswith(f"wrote game {g}: 12 encoded of 15 originals")
    game = read_game(g)
    assert game.encodings.shape == (12, 16, 8) and len(game.ids) == 15
    r = run("score", "--answer-key", str(a), "--submission", str(a))
    assert r.returncode == 0 and r.stdout.startswith("score: 1.0000 (12 of 12")
    r = run("score", "--answer-key", str(a), "--submission", str(tmp_path / "none.json"))
    assert r.returncode != 0 and "Traceback" not in r.stderr
    assert r.stderr.strip().splitlines() == [f"error: missing submission: {tmp_path / 'none.json'}"]


# --- make_game as a library --------------------------------------------------------------------

def _images(n, size=16, seed=0):
    return np.random.default_rng(seed).random((n, 1, size, size)).astype(np.float32)


TINY = preset("neuracrypt-7", image_size=16, patch=8, hidden=4, bn_batch=3)


def test_make_game_encodes_exactly_what_the_pngs_hold(tmp_path):
    """Images off the 16-bit grid are still encoded as the originals on disk read back."""
    ids = [f"sub/{i}.png" for i in range(7)]
    secrets = make_game(tmp_path / "G", _images(7), ids, TINY, 6, seed=1)
    g = read_game(tmp_path / "G")
    assert g.ids == sorted(ids)
    id_of_file = {f: i for i, f in secrets.answer.items()}
    x = np.stack([g.originals[g.ids.index(id_of_file[f])] for f in g.files])
    plain, _ = encode(x, secrets.key, np, shuffle=False)  # same code, same batches: bit for bit
    np.testing.assert_array_equal(g.encodings, np.take_along_axis(plain, secrets.perms[:, :, None], axis=1))


def test_make_game_rounds_a_batch_at_a_time(tmp_path, monkeypatch):
    """No rounded copy of every image: each call rounds one image (its PNG) or one BatchNorm batch."""
    sizes = []
    real = alice.quantize16

    def counting(x, *args, **kwargs):
        sizes.append(np.asarray(x).size)
        return real(x, *args, **kwargs)

    monkeypatch.setattr(alice, "quantize16", counting)
    ids = [f"{i}.png" for i in range(8)]
    make_game(tmp_path / "G", _images(8), ids, TINY, 7, seed=2)
    assert max(sizes) <= TINY.bn_batch * 16 * 16
    assert sum(sizes) == (8 + 7) * 16 * 16  # every image for its PNG, every encoded one once more


def test_make_game_is_deterministic_from_its_seed(tmp_path):
    ids = [f"{i}.png" for i in range(5)]
    imgs = _images(5)
    s1 = make_game(tmp_path / "a", imgs, ids, TINY, 4, seed=3)
    s2 = make_game(tmp_path / "b", imgs, ids, TINY, 4, seed=3)
    s3 = make_game(tmp_path / "c", imgs, ids, TINY, 4, seed=4)
    assert s1.answer == s2.answer
    np.testing.assert_array_equal(s1.key.conv_w, s2.key.conv_w)
    np.testing.assert_array_equal(read_game(tmp_path / "a").encodings, read_game(tmp_path / "b").encodings)
    assert not np.array_equal(s1.key.conv_w, s3.key.conv_w)


def test_make_game_into_an_existing_empty_folder(tmp_path):
    (tmp_path / "G").mkdir()
    make_game(tmp_path / "G", _images(3), ["a.png", "b.png", "c.png"], TINY, 2)
    assert {p.name for p in (tmp_path / "G").iterdir()} == GAME_ENTRIES


@pytest.mark.parametrize("case", ["nonempty", "file", "dup_ids", "n_ids", "n_zero", "n_big", "shape"])
def test_make_game_refuses(tmp_path, case):
    out, imgs, ids, n = tmp_path / "G", _images(3), ["a.png", "b.png", "c.png"], 2
    if case == "nonempty":
        out.mkdir()
        (out / "keep.txt").write_text("mine")
    elif case == "file":
        out.write_text("mine")
    elif case == "dup_ids":
        ids = ["a.png", "a.png", "c.png"]
    elif case == "n_ids":
        ids = ids[:2]
    elif case == "n_zero":
        n = 0
    elif case == "n_big":
        n = 4
    elif case == "shape":
        imgs = _images(3, size=24)
    with pytest.raises(GameError) as e:
        make_game(out, imgs, ids, TINY, n)
    assert "\n" not in str(e.value)
    if case == "nonempty":
        assert [p.name for p in out.iterdir()] == ["keep.txt"]
    elif case == "file":
        assert out.read_text() == "mine"
    else:
        assert not out.exists()


class Interrupt(Exception):
    pass


@pytest.mark.parametrize("exc", [Interrupt, KeyboardInterrupt])
def test_interrupted_make_leaves_nothing(tmp_path, monkeypatch, exc):
    real, written = alice.write_npy, []

    def flaky(path, array):
        if len(written) == 3:
            raise exc("interrupted")
        real(path, array)
        written.append(path)

    monkeypatch.setattr(alice, "write_npy", flaky)
    parent = tmp_path / "p"
    parent.mkdir()
    with pytest.raises(exc):
        make_game(parent / "G", _images(8), [f"{i}.png" for i in range(8)], TINY, 6)
    assert len(written) == 3  # it got part of the way
    assert list(parent.iterdir()) == []  # no game, no temporary folder beside it


def test_interrupted_cli_make_leaves_nothing(tmp_path, monkeypatch, capsys):
    def disk_full(path, array):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(alice, "write_npy", disk_full)
    rc = main(["make", "--out", str(tmp_path / "G"), "--answer-key", str(tmp_path / "s" / "A.json"),
               "--secret-key", str(tmp_path / "s" / "K.npz"), "--n", "4", "--image-size", "32", "--patch", "8",
               "--hidden", "4", "--quiet"])  # (without --quiet a cleared progress bar precedes the line)
    line = assert_one_error_line(capsys, rc)
    assert "No space left" in line
    assert list(tmp_path.iterdir()) == []  # no game, no temporary folder, no secrets


# --- read_game on broken games -----------------------------------------------------------------

@pytest.fixture(scope="module")
def small_game(tmp_path_factory):
    root = tmp_path_factory.mktemp("small")
    secrets = make_game(root / "G", _images(6), [f"img{i}.png" for i in range(6)], TINY, 5, seed=2)
    return root / "G", secrets


def _npy(name, array):
    def corrupt(g):
        np.save(g / ENC_DIR / name, array)
    return corrupt


def _write(rel, text):
    def corrupt(g):
        p = g / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        (p.write_bytes if isinstance(text, bytes) else p.write_text)(text)
    return corrupt


def _edit_json(rel, fn):
    def corrupt(g):
        p = g / rel
        p.write_text(json.dumps(fn(json.loads(p.read_text()))))
    return corrupt


def _remove(rel):
    def corrupt(g):
        p = g / rel
        shutil.rmtree(p) if p.is_dir() else p.unlink()
    return corrupt


def _empty_dir(rel):
    def corrupt(g):
        shutil.rmtree(g / rel)
        (g / rel).mkdir()
    return corrupt


ENC_SHAPE = (4, 4)
BROKEN = {
    "no encoder.json": (_remove("encoder.json"), "missing encoder description"),
    "encoder.json invalid": (_write("encoder.json", "{channels: 1"), "not valid JSON"),
    "encoder.json binary": (_write("encoder.json", b"\xff\xfe\x00\x81"), "not a text"),
    "encoder.json list": (_write("encoder.json", "[1, 2]"), "JSON object"),
    "encoder.json field missing": (_edit_json("encoder.json", lambda d: {k: v for k, v in d.items() if k != "hidden"}),
                                   "'hidden'"),
    "encoder.json float": (_edit_json("encoder.json", lambda d: {**d, "hidden": 4.5}), "'hidden' must be an integer"),
    "encoder.json string": (_edit_json("encoder.json", lambda d: {**d, "image_size": "16"}), "'image_size'"),
    "encoder.json bad size": (_edit_json("encoder.json", lambda d: {**d, "image_size": 20}), "multiple of patch"),
    "no originals": (_remove(ORIG_DIR), "missing folder of originals"),
    "empty originals": (_empty_dir(ORIG_DIR), "no PNG or JPEG"),
    "corrupt original": (_write(f"{ORIG_DIR}/img0.png", b"not a png"), "cannot read image"),
    "no path list": (_remove(PATH_LIST), "missing path list"),
    "path list invalid": (_write(PATH_LIST, '["img0.png", '), "not valid JSON"),
    "path list dict": (_write(PATH_LIST, '{"img0.png": "0.npy"}'), "JSON list"),
    "path list numbers": (_write(PATH_LIST, "[0, 1, 2, 3, 4]"), "JSON list"),
    "path list unknown id": (_edit_json(PATH_LIST, lambda ids: [*ids[:-1], "ghost.png"]), "no original.*ghost.png"),
    "path list duplicate": (_edit_json(PATH_LIST, lambda ids: ids[:-1] + ids[:1]), "more than once"),
    "no encodings": (_remove(ENC_DIR), "missing folder of encodings"),
    "empty encodings": (_empty_dir(ENC_DIR), "no .npy encodings"),
    "badly named encoding": (_npy("x.npy", np.zeros(ENC_SHAPE, np.float32)), "not named <k>.npy"),
    "encoding missing": (_remove(f"{ENC_DIR}/4.npy"), "4 encodings but the path list names 5"),
    "wrong shape": (_npy("2.npy", np.zeros((4, 5), np.float32)), r"2.npy has shape \(4, 5\)"),
    "wrong shape 3d": (_npy("2.npy", np.zeros((1, 4, 4), np.float32)), "has shape"),
    "wrong dtype f64": (_npy("1.npy", np.zeros(ENC_SHAPE, np.float64)), "dtype float64"),
    "wrong dtype int": (_npy("1.npy", np.zeros(ENC_SHAPE, np.int32)), "dtype int32"),
    "nan": (_npy("3.npy", np.where(np.eye(4, dtype=bool), np.nan, 0).astype(np.float32)), "NaN or inf"),
    "inf": (_npy("0.npy", np.full(ENC_SHAPE, -np.inf, np.float32)), "NaN or inf"),
    "object array": (_npy("0.npy", np.array([{"a": 1}] * 4, dtype=object)), "cannot read"),
    "not an npy": (_write(f"{ENC_DIR}/0.npy", b"garbage bytes"), "cannot read"),
}


def test_small_game_reads(small_game):
    g = read_game(small_game[0])
    assert g.encodings.shape == (5, *ENC_SHAPE) and len(g.ids) == 6


@pytest.mark.parametrize("case", sorted(BROKEN))
def test_read_game_rejects_broken_games(small_game, tmp_path, case):
    corrupt, pattern = BROKEN[case]
    g = tmp_path / "G"
    shutil.copytree(small_game[0], g)
    read_game(g)  # the copy is fine before the damage
    corrupt(g)
    with pytest.raises(GameError, match=pattern) as e:
        read_game(g)
    assert "\n" not in str(e.value)


@pytest.mark.parametrize("kind", ["missing", "file"])
def test_read_game_rejects_a_missing_folder(tmp_path, kind):
    g = tmp_path / "G"
    if kind == "file":
        g.write_text("not a folder")
    with pytest.raises(GameError, match="no such game folder"):
        read_game(g)


# --- the score command on bad inputs -----------------------------------------------------------

@pytest.fixture
def answer_key(tmp_path):
    p = tmp_path / "A.json"
    p.write_text(json.dumps({"a.png": "0.npy", "b.png": "1.npy", "c.png": "2.npy"}))
    return p


SUBMISSIONS = {
    "unknown id": ('{"a.png": "0.npy", "zzz.png": "1.npy"}', "not in the game.*zzz.png"),
    "unknown file": ('{"a.png": "0.npy", "b.png": "9.npy"}', "file.*not in the game.*9.npy"),
    "invalid JSON": ('{"a.png": "0.npy"', "not valid JSON"),
    "binary": (b"\x89PNG\r\n\x1a\n\xff\xff", "not a text"),
    "a list": ('["0.npy"]', "JSON object"),
    "non-string file": ('{"a.png": 0}', "JSON object"),
    "empty file": ("", "not valid JSON"),
}


@pytest.mark.parametrize("case", sorted(SUBMISSIONS))
def test_score_rejects_bad_submissions(tmp_path, answer_key, capsys, case):
    text, pattern = SUBMISSIONS[case]
    sub = tmp_path / "sub.json"
    (sub.write_bytes if isinstance(text, bytes) else sub.write_text)(text)
    rc = main(["score", "--answer-key", str(answer_key), "--submission", str(sub)])
    line = assert_one_error_line(capsys, rc)
    assert re.search(pattern, line), line


ANSWER_KEYS = {
    "missing": (None, "missing answer key"),
    "invalid JSON": ("{", "not valid JSON"),
    "a list": ('["a.png"]', "JSON object"),
    "two ids one file": ('{"a.png": "0.npy", "b.png": "0.npy"}', "same file"),
}


@pytest.mark.parametrize("case", sorted(ANSWER_KEYS))
def test_score_rejects_bad_answer_keys(tmp_path, capsys, case):
    text, pattern = ANSWER_KEYS[case]
    a = tmp_path / "A.json"
    if text is not None:
        a.write_text(text)
    sub = tmp_path / "sub.json"
    sub.write_text('{"a.png": "0.npy"}')
    rc = main(["score", "--answer-key", str(a), "--submission", str(sub)])
    line = assert_one_error_line(capsys, rc)
    assert re.search(pattern, line), line


@pytest.mark.parametrize("what", ["submission", "answer-key"])
def test_score_rejects_a_folder_or_missing_file(tmp_path, answer_key, capsys, what):
    sub = tmp_path / "sub.json"
    sub.write_text('{"a.png": "0.npy"}')
    paths = {"answer-key": str(answer_key), "submission": str(sub)}
    paths[what] = str(tmp_path)  # a folder, not a file
    rc = main(["score", "--answer-key", paths["answer-key"], "--submission", paths["submission"]])
    assert "missing" in assert_one_error_line(capsys, rc)


# --- the make command on bad inputs ------------------------------------------------------------

def _make_args(tmp_path, *extra, out=None):
    return ["make", "--out", str(out or tmp_path / "G"), "--answer-key", str(tmp_path / "s" / "A.json"),
            "--secret-key", str(tmp_path / "s" / "K.npz"), "--n", "4", "--image-size", "32", "--patch", "8",
            "--hidden", "4", *extra]


def test_make_into_a_non_empty_folder(tmp_path, capsys):
    out = tmp_path / "G"
    out.mkdir()
    (out / "old.txt").write_text("keep me")
    rc = main(_make_args(tmp_path))  # no --quiet: the error must still be one clean line
    line = assert_one_error_line(capsys, rc)
    assert "not overwriting" in line
    assert [p.name for p in out.iterdir()] == ["old.txt"]
    assert not (tmp_path / "s").exists()


def _bad_npy(tmp_path, array):
    p = tmp_path / "bad.npy"
    np.save(p, array)
    return str(p)


MAKE_BAD = {
    "missing npy": (lambda t: ["--data", str(t / "missing.npy")], "no such file"),
    "npy bad shape": (lambda t: ["--data", _bad_npy(t, np.zeros((4, 32, 32, 3), np.float32))], "expected shape"),
    "npy nan": (lambda t: ["--data", _bad_npy(t, np.full((4, 32, 32), np.nan, np.float32))], "NaN or inf"),
    "npy inf": (lambda t: ["--data", _bad_npy(t, np.full((4, 32, 32), np.inf, np.float32))], "NaN or inf"),
    "npy too few": (lambda t: ["--data", _bad_npy(t, np.zeros((3, 32, 32), np.uint8))], "3 images; 4 are needed"),
    "not a source": (lambda t: ["--data", str(t / "nowhere")], "none"),
    "empty folder": (lambda t: (t / "empty").mkdir() or ["--data", str(t / "empty")], "no PNG or JPEG"),
    "size not a multiple": (lambda t: ["--image-size", "36"], "multiple of patch"),
    "n zero": (lambda t: ["--n", "0"], "--n must be"),
    "extra negative": (lambda t: ["--extra", "-1"], "--extra"),
    "key inside game": (lambda t: ["--secret-key", str(t / "G" / "K.npz")], "inside the game folder"),
    "out is a file": (lambda t: (t / "G").write_text("x") and [], "not overwriting"),
}


@pytest.mark.parametrize("case", sorted(MAKE_BAD))
def test_make_rejects_bad_inputs(tmp_path, capsys, case):
    extra, pattern = MAKE_BAD[case]
    args = _make_args(tmp_path, "--quiet", *extra(tmp_path))
    rc = main(args)
    line = assert_one_error_line(capsys, rc)
    assert re.search(pattern, line), line
    assert not (tmp_path / "G").is_dir()
    assert not (tmp_path / "s").exists()


def test_make_from_a_folder_and_npy(tmp_path):
    """User data goes into the game: folder ids keep their relative paths (as .png)."""
    src = tmp_path / "src"
    rng = np.random.default_rng(0)
    for rel in ["x/a.png", "b.jpg", "c.png"]:
        (src / rel).parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(rng.integers(0, 256, (40, 36), dtype=np.uint8)).save(src / rel)
    assert main(_make_args(tmp_path, "--quiet", "--data", str(src), "--n", "2", "--extra", "1")) == 0
    g = read_game(tmp_path / "G")
    assert g.ids == ["b.png", "c.png", "x/a.png"]
    np.save(tmp_path / "s.npy", rng.random((5, 32, 32)).astype(np.float32))
    # the same answer-key and secret-key paths again: replacing Alice's files takes --force
    assert main(_make_args(tmp_path, "--quiet", "--force", "--data", str(tmp_path / "s.npy"), out=tmp_path / "H")) == 0
    h = read_game(tmp_path / "H")
    assert h.ids == [f"{i:06d}.png" for i in range(4)] and len(h.files) == 4


# --- make never destroys a file ----------------------------------------------------------------

def _tree(root) -> dict:
    """Every entry under ``root`` with its kind and, for files, its bytes."""
    out = {}
    for p in sorted(Path(root).rglob("*")):
        rel = p.relative_to(root).as_posix()
        out[rel] = p.read_bytes() if p.is_file() and not p.is_symlink() else ("dir" if p.is_dir() else "other")
    return out


def _make_paths(tmp_path, answer, secret, *extra, out=None):
    return ["make", "--out", str(out or tmp_path / "G"), "--answer-key", str(answer), "--secret-key", str(secret),
            "--n", "4", "--image-size", "32", "--patch", "8", "--hidden", "4", "--quiet", *extra]


@pytest.mark.parametrize("case", ["answer is secret", "answer is perms", "answer is the game", "secret in answer"])
def test_make_refuses_outputs_that_coincide(tmp_path, capsys, case):
    s = tmp_path / "s"
    answer, secret = {
        "answer is secret": (s / "X", s / "X"),
        "answer is perms": (s / "K.npz.perms.npy", s / "K.npz"),
        "answer is the game": (tmp_path / "G", s / "K.npz"),
        "secret in answer": (s / "A", s / "A" / "K.npz"),
    }[case]
    line = assert_one_error_line(capsys, main(_make_paths(tmp_path, answer, secret)))
    assert "same path" in line or "inside" in line, line
    assert list(tmp_path.iterdir()) == []


def test_make_never_overwrites_a_users_file_without_force(tmp_path, capsys):
    mine = tmp_path / "notes.txt"
    mine.write_text("my notes")
    line = assert_one_error_line(capsys, main(_make_paths(tmp_path, mine, tmp_path / "K.npz")))
    assert "notes.txt exists; not overwriting it (--force replaces it)" in line
    assert mine.read_text() == "my notes"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["notes.txt"]  # no game either
    assert main(_make_paths(tmp_path, mine, tmp_path / "K.npz", "--force")) == 0
    assert set(json.loads(mine.read_text()).values()) == {f"{k}.npy" for k in range(4)}


def test_make_never_overwrites_an_existing_key_or_its_permutations(tmp_path, capsys):
    perms = tmp_path / "K.npz.perms.npy"
    perms.write_bytes(b"someone's permutations")
    line = assert_one_error_line(capsys, main(_make_paths(tmp_path, tmp_path / "A.json", tmp_path / "K.npz")))
    assert "K.npz.perms.npy exists" in line
    assert perms.read_bytes() == b"someone's permutations"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["K.npz.perms.npy"]


def test_make_refuses_secrets_inside_another_game(tmp_path, capsys):
    other = tmp_path / "OTHER"
    assert main(_make_paths(tmp_path, tmp_path / "oa.json", tmp_path / "ok.npz", out=other)) == 0
    capsys.readouterr()
    before = _tree(tmp_path)
    for where in [other / "K.npz", other / ORIG_DIR / "K.npz", other / ENC_DIR / "sub" / "K.npz"]:
        line = assert_one_error_line(capsys, main(_make_paths(tmp_path, tmp_path / "A.json", where)))
        assert "looks like a game folder" in line
        line = assert_one_error_line(capsys, main(_make_paths(tmp_path, where, tmp_path / "K.npz")))
        assert "looks like a game folder" in line
    line = assert_one_error_line(capsys, main(_make_paths(tmp_path, tmp_path / "A.json", tmp_path / "K.npz",
                                                          out=other / ORIG_DIR / "G")))
    assert "looks like a game folder" in line
    assert _tree(tmp_path) == before  # the other game untouched, nothing new


def test_make_replaces_a_game_only_with_force(tmp_path, capsys):
    a, k = tmp_path / "A.json", tmp_path / "K.npz"
    assert main(_make_paths(tmp_path, a, k)) == 0
    capsys.readouterr()
    before = _tree(tmp_path)
    line = assert_one_error_line(capsys, main(_make_paths(tmp_path, tmp_path / "A2.json", tmp_path / "K2.npz")))
    assert "holds a game; not overwriting it" in line
    assert _tree(tmp_path) == before
    assert main(_make_paths(tmp_path, a, k, "--force", "--seed", "5")) == 0
    after = _tree(tmp_path)
    assert set(after) == set(before) and after != before
    g = read_game(tmp_path / "G")
    assert load_key(k).config == g.config and sorted(json.loads(a.read_text()).values()) == g.files
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no backup or temporary left


def test_make_with_force_still_refuses_a_folder_that_is_not_a_game(tmp_path, capsys):
    (tmp_path / "G").mkdir()
    (tmp_path / "G" / "thesis.tex").write_text("years of work")
    line = assert_one_error_line(capsys, main(_make_paths(tmp_path, tmp_path / "A.json", tmp_path / "K.npz",
                                                          "--force")))
    assert "not overwriting" in line
    assert (tmp_path / "G" / "thesis.tex").read_text() == "years of work"


@pytest.mark.parametrize("fails", ["save_key", "perms"])
def test_make_is_all_or_nothing_when_a_secret_cannot_be_written(tmp_path, monkeypatch, capsys, fails):
    """The game is complete on disk only with Alice's files; a failure on the last file leaves nothing."""
    if fails == "save_key":
        def broken(path, key):
            raise OSError(28, "No space left on device")
        monkeypatch.setattr(alice, "save_key", broken)
    else:
        real = alice.write_npy

        def broken(path, array):
            if ".perms.npy" in str(path):
                raise OSError(28, "No space left on device")
            real(path, array)
        monkeypatch.setattr(alice, "write_npy", broken)
    line = assert_one_error_line(capsys, main(_make_paths(tmp_path, tmp_path / "s" / "A.json",
                                                          tmp_path / "s" / "K.npz")))
    assert "No space left" in line
    assert list(tmp_path.iterdir()) == []  # no orphan game, no answer key, no temporary


def test_make_refuses_an_id_that_would_leave_originals(tmp_path):
    with pytest.raises(GameError, match=r"relative path ending in \.png"):
        make_game(tmp_path / "G", _images(2), ["../escape.png", "b.png"], TINY, 1)
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("flags,pattern", [
    (["--patch", "0"], "--patch: patch must be positive"),
    (["--bn-batch", str(10**23)], "--bn-batch: bn_batch must be positive and at most"),
    (["--image-size", str(10**9)], "--image-size: image_size must be positive and at most"),
    (["--seed", "-1"], "--seed must be between 0"),
    (["--n", "abc"], "invalid int value"),
])
def test_make_refuses_bad_numbers_in_one_line(tmp_path, capsys, flags, pattern):
    try:
        rc = main(_make_paths(tmp_path, tmp_path / "A.json", tmp_path / "K.npz", *flags))
    except SystemExit as e:  # argparse's own errors exit, also with one line
        rc = e.code
    line = assert_one_error_line(capsys, rc)
    assert pattern in line, line
    assert list(tmp_path.iterdir()) == []


def test_make_refuses_what_would_not_fit_in_memory(tmp_path, capsys, monkeypatch):
    import empirical.memory as memory

    monkeypatch.setattr(memory, "available_memory", lambda: 10 * 2**20)
    line = assert_one_error_line(capsys, main(_make_paths(tmp_path, tmp_path / "A.json", tmp_path / "K.npz",
                                                          "--n", "5000")))
    assert re.search(r"--n 5000 .* needs \d+\.\d MiB of memory; 10\.0 MiB is available", line), line
    assert list(tmp_path.iterdir()) == []


# --- score: duplicates, empty keys, no tracebacks ---------------------------------------------

def test_score_refuses_one_file_claimed_by_two_ids(tmp_path, answer_key, capsys):
    sub = tmp_path / "sub.json"
    sub.write_text('{"a.png": "0.npy", "b.png": "0.npy"}')
    line = assert_one_error_line(capsys, main(["score", "--answer-key", str(answer_key), "--submission", str(sub)]))
    assert "maps both 'a.png' and 'b.png' to '0.npy'" in line


def test_score_refuses_an_empty_answer_key(tmp_path, capsys):
    (tmp_path / "A.json").write_text("{}")
    (tmp_path / "sub.json").write_text("{}")
    line = assert_one_error_line(capsys, main(["score", "--answer-key", str(tmp_path / "A.json"),
                                               "--submission", str(tmp_path / "sub.json")]))
    assert "empty answer key" in line


def test_score_json_never_overwrites_an_input(tmp_path, answer_key, capsys):
    sub = tmp_path / "sub.json"
    sub.write_text('{"a.png": "0.npy"}')
    line = assert_one_error_line(capsys, main(["score", "--answer-key", str(answer_key), "--submission", str(sub),
                                               "--json", str(answer_key)]))
    assert "not overwriting an input" in line
    assert json.loads(answer_key.read_text()) == {"a.png": "0.npy", "b.png": "1.npy", "c.png": "2.npy"}


@pytest.mark.parametrize("case,pattern", [("deep", "nested too deeply"), ("huge", "is refused for the submission")])
def test_score_refuses_pathological_json(tmp_path, answer_key, capsys, case, pattern):
    sub = tmp_path / "sub.json"
    if case == "huge":  # 300 MiB (a sparse file: nothing is written)
        with open(sub, "w") as f:
            f.write('{"a.png": "0.npy"}')
            f.truncate(300 * 2**20)
    else:
        sub.write_text("[" * 5000 + "]" * 5000)
    line = assert_one_error_line(capsys, main(["score", "--answer-key", str(answer_key), "--submission", str(sub)]))
    assert pattern in line, line


# --- score-encoder: keys from elsewhere, damaged keys ------------------------------------------

def _raw_copy(src, dst, drop=("config",), edit=None):
    """The key at ``src`` in the original state-dict layout (no config entry), as PyTorch's float64."""
    with np.load(src, allow_pickle=False) as z:
        sd = {k: z[k].astype(np.float64) for k in z.files if k not in drop and k != "config"}
        if "config" in z.files and "config" not in drop:
            sd["config"] = z["config"]
    if edit:
        edit(sd)
    np.savez(dst, **sd)
    return dst


def _score_encoder(*args):
    return main(["score-encoder", "--n", "12", "--seed", "3", *map(str, args)])


def test_score_encoder_accepts_a_key_without_config(game, tmp_path, capsys):
    raw = _raw_copy(game["key"], tmp_path / "raw.npz")
    for a, b in [(raw, game["key"]), (game["key"], raw)]:
        assert _score_encoder("--secret-key", a, "--encoder", b) == 0
        out, err = capsys.readouterr()
        assert err == "" and out.startswith("T' nearest-neighbour score: 1.0000 on 12 images")
    line = assert_one_error_line(capsys, _score_encoder("--secret-key", raw, "--encoder", raw))
    assert "give the BatchNorm batch size (--bn-batch)" in line
    assert _score_encoder("--secret-key", raw, "--encoder", raw, "--bn-batch", BN_BATCH) == 0
    assert capsys.readouterr().out.startswith("T' nearest-neighbour score: 1.0000")


def test_score_encoder_refuses_a_real_mismatch_before_any_work(game, tmp_path, capsys, monkeypatch):
    import empirical.data as data

    monkeypatch.setattr(data, "bundled_images", lambda *a, **k: pytest.fail("images drawn before the check"))
    bad = _raw_copy(game["key"], tmp_path / "bad.npz", edit=lambda sd: sd.update(
        {"mixer.1.bias": np.zeros(HIDDEN + 1)}))
    line = assert_one_error_line(capsys, _score_encoder("--secret-key", game["key"], "--encoder", bad))
    assert "'mixer.1.bias' has shape" in line
    line = assert_one_error_line(capsys, _score_encoder("--secret-key", game["key"], "--encoder", game["key"],
                                                        "--bn-batch", "7"))
    assert "--bn-batch 7 disagrees" in line


@pytest.mark.parametrize("damage,pattern", [
    ("nan", "contains NaN or inf"),
    ("empty", "not a key file"),
    ("npy", "not a key file"),
    ("string config", "'hidden' must be an integer"),
    ("truncated", "not a key file|cannot read"),
    ("folder", "is a folder"),
])
def test_score_encoder_refuses_damaged_keys_in_one_line(game, tmp_path, capsys, damage, pattern):
    p = tmp_path / "T.npz"
    if damage == "nan":
        _raw_copy(game["key"], p, drop=(), edit=lambda sd: sd["image_encoder.0.bias"].__setitem__(0, np.nan))
    elif damage == "empty":
        p.write_bytes(b"")
    elif damage == "npy":
        np.save(p, np.zeros(3))
        p = p.with_suffix(".npz.npy")
    elif damage == "string config":
        cfg = {**json.loads((game["game"] / "encoder.json").read_text()), "hidden": "128"}
        _raw_copy(game["key"], p, drop=(), edit=lambda sd: sd.update({"config": np.array(json.dumps(cfg))}))
    elif damage == "truncated":
        p.write_bytes(game["key"].read_bytes()[: game["key"].stat().st_size // 2])
    elif damage == "folder":
        p.mkdir()
    line = assert_one_error_line(capsys, _score_encoder("--secret-key", game["key"], "--encoder", p))
    assert re.search(pattern, line), line


def test_score_encoder_refuses_bad_numbers(game, capsys):
    line = assert_one_error_line(capsys, _score_encoder("--secret-key", game["key"], "--encoder", game["key"],
                                                        "--seed", "-2"))
    assert "--seed must be between 0" in line


def test_ctrl_c_during_make_is_one_line_and_leaves_nothing(tmp_path, monkeypatch, capsys):
    def interrupted(path, array):
        raise KeyboardInterrupt

    monkeypatch.setattr(alice, "write_npy", interrupted)
    rc = main(_make_args(tmp_path, "--quiet"))
    _out, err = capsys.readouterr()
    assert rc == 130 and err == "interrupted; nothing was written (make writes everything or nothing)\n"
    assert list(tmp_path.iterdir()) == []
