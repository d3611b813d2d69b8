"""Hostile inputs to every command, generated: each is refused with one line, and nothing changes.

Games, keys, answer keys, submissions and image sources are damaged at random (truncated, filled
with garbage, of the wrong type, out of range, oversized, a folder or a fifo where a file is due,
a symbolic link leading out of the game). For every case the command must exit non-zero with
exactly one line on stderr and no traceback, and no file anywhere under the working folder may be
created or changed.
"""
import contextlib
import hashlib
import io
import json
import os
import shutil
import stat
import tempfile
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import empirical.attack as attack
import empirical.challenge as challenge
from empirical.alice import make_game
from empirical.encoder import LIMITS, preset
from empirical.game import ENC_DIR, ORIG_DIR, PATH_LIST

FAM = preset("neuracrypt-7", image_size=16, patch=8, hidden=4, bn_batch=3)
N, EXTRA = 5, 1
IDS = [f"img{i}.png" for i in range(N + EXTRA)]
FAST = ["--psim-steps", "2", "--extract-steps", "1", "--refine-steps", "0", "--candidates", "2",
        "--backend", "numpy", "--quiet"]
SETTINGS = settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.too_slow])


# --- a pristine game, copied for each example ----------------------------------------------------

@pytest.fixture(scope="module")
def pristine(tmp_path_factory):
    root = tmp_path_factory.mktemp("pristine")
    imgs = np.random.default_rng(0).random((N + EXTRA, 1, 16, 16)).astype(np.float32)
    make_game(root / "GAME", imgs, IDS, FAM, N, seed=1, answer_key=root / "alice" / "answer.json",
              secret_key=root / "alice" / "key.npz")
    other = root / "other"
    make_game(other / "GAME", imgs, IDS, FAM, N, seed=9, answer_key=other / "answer.json",
              secret_key=other / "key.npz")
    return root


@contextlib.contextmanager
def workspace(pristine):
    """A fresh copy of the pristine game and Alice's files; removed afterwards."""
    base = Path(tempfile.mkdtemp(prefix="hostile-"))
    try:
        shutil.copytree(pristine, base / "w", symlinks=True)
        yield base / "w"
    finally:
        shutil.rmtree(base, ignore_errors=True)


def snapshot(root: Path) -> dict:
    """Every entry under ``root`` (links not followed, fifos not opened): kind, and bytes of files."""
    out = {}
    for dirpath, dirs, files in os.walk(root):
        for name in dirs + files:
            p = Path(dirpath) / name
            st_ = p.lstat()
            rel = p.relative_to(root).as_posix()
            if stat.S_ISLNK(st_.st_mode):
                out[rel] = ("link", os.readlink(p))
            elif stat.S_ISREG(st_.st_mode):
                out[rel] = ("file", st_.st_size, st_.st_mtime_ns, hashlib.sha256(p.read_bytes()).hexdigest())
            elif stat.S_ISDIR(st_.st_mode):
                out[rel] = ("dir",)
            else:
                out[rel] = ("other", stat.S_IFMT(st_.st_mode))
    return out


def run(main, argv) -> tuple:
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            rc = main([str(a) for a in argv])
        except SystemExit as e:  # argparse: also one line
            rc = e.code
    return rc, out.getvalue(), err.getvalue()


def assert_refused(root: Path, main, argv) -> str:
    before = snapshot(root)
    rc, out, err = run(main, argv)
    assert rc not in (0, None), (argv, out, err)
    assert "Traceback" not in err and "Traceback" not in out
    lines = err.splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith("error: ") and len(lines[0]) > 12, lines
    assert "internal error" not in lines[0], lines[0]  # a bad input is named, not reported as a bug
    assert snapshot(root) == before, argv
    return lines[0]


# --- damage ---------------------------------------------------------------------------------------

def _replace(p: Path, how: str, data: st.DataObject, outside: Path) -> None:
    """Damage the file ``p`` so that it can never be read as what it should be."""
    whole = p.read_bytes()
    if how == "truncate":
        keep = len(whole.rstrip()) - 1 if p.suffix == ".json" else (len(whole) // 2 if p.suffix == ".png" else
                                                                    len(whole) - 1)
        p.write_bytes(whole[:data.draw(st.integers(0, keep), label="keep")])
    elif how == "empty":
        p.write_bytes(b"")
    elif how == "garbage":
        junk = data.draw(st.binary(min_size=1, max_size=64), label="junk")
        if junk.startswith((b"\x93NUMPY", b"\x89PNG", b"PK")):
            junk = b"x" + junk
        p.write_bytes(junk)
    elif how == "folder":
        p.unlink()
        p.mkdir()
    elif how == "fifo":
        p.unlink()
        os.mkfifo(p)
    elif how == "zip":
        p.unlink()
        with open(p, "wb") as f:
            np.savez(f, a=np.zeros((4, 4), np.float32))
    elif how == "link outside":
        target = outside / f"moved-{p.name}"
        p.rename(target)
        p.symlink_to(target)


HOW = ["truncate", "empty", "garbage", "folder", "fifo", "zip", "link outside"]
FILE_HOW = [h for h in HOW if h != "link outside"]  # Alice's files may be links; GAME/'s may not lead out
WRONG_TYPES = st.one_of(st.floats(), st.text(max_size=5), st.none(), st.lists(st.integers(), max_size=2),
                        st.dictionaries(st.text(max_size=2), st.integers(), max_size=2))


def bad_field_value(name: str):
    """A value of ``name`` that no game of the pristine one's files can have."""
    if name == "shuffle":
        return st.one_of(WRONG_TYPES, st.integers())
    lo, hi = LIMITS[name]
    out_of_range = st.one_of(st.integers(max_value=lo - 1), st.integers(min_value=hi + 1, max_value=10**30))
    wrong = st.one_of(WRONG_TYPES, st.booleans())
    current = FAM.to_json()[name]
    if name in ("depth", "bn_batch"):  # another valid value still fits the files: only invalid ones
        return st.one_of(out_of_range, wrong)
    if name == "image_size":  # another size changes the encodings' shape
        return st.one_of(out_of_range, wrong, st.integers(1, 2048).filter(lambda v: v != current))
    return st.one_of(out_of_range, wrong, st.integers(lo, min(hi, 64)).filter(lambda v: v != current))


@st.composite
def game_damage(draw):
    kind = draw(st.sampled_from(["file", "field", "missing field", "numbering", "path list", "encoding values"]))
    if kind == "file":
        target = draw(st.sampled_from(["encoder.json", PATH_LIST, f"{ENC_DIR}/{{k}}.npy", f"{ORIG_DIR}/{{i}}"]))
        target = target.format(k=draw(st.integers(0, N - 1)), i=draw(st.integers(0, N - 1)))
        return kind, target, draw(st.sampled_from(HOW))
    if kind in ("field", "missing field"):
        name = draw(st.sampled_from(sorted(FAM.to_json())))
        return kind, name, (draw(bad_field_value(name)) if kind == "field" else None)
    if kind == "numbering":
        return kind, draw(st.sampled_from(["gap", "leading zero", "extra copy", "not a number"])), \
            draw(st.integers(0, N - 1))
    if kind == "path list":
        return kind, draw(st.sampled_from(["duplicate", "unknown id", "not strings", "one less", "object"])), None
    return kind, draw(st.sampled_from(["nan", "inf", "float64", "int", "shape", "object"])), draw(st.integers(0, N - 1))


def apply_game_damage(root: Path, damage, data) -> None:
    g, (kind, what, arg) = root / "GAME", damage
    if kind == "file":
        if what.startswith(ORIG_DIR):  # an original that was encoded (a decoy may go missing unnoticed)
            what = f"{ORIG_DIR}/{sorted(json.loads((g / PATH_LIST).read_text()))[int(what.split('/')[1])]}"
        _replace(g / what, arg, data, root)
    elif kind in ("field", "missing field"):
        d = json.loads((g / "encoder.json").read_text())
        if kind == "field":
            d[what] = arg
        else:
            del d[what]
        (g / "encoder.json").write_text(json.dumps(d))
    elif kind == "numbering":
        e = g / ENC_DIR
        if what == "gap":
            (e / f"{arg}.npy").rename(e / f"{N + arg}.npy")
        elif what == "leading zero":
            (e / f"{arg}.npy").rename(e / f"0{arg}.npy")
        elif what == "extra copy":
            shutil.copy(e / f"{arg}.npy", e / f"{N + arg}.npy")
        else:
            (e / f"{arg}.npy").rename(e / f"{arg}a.npy")
    elif kind == "path list":
        ids = json.loads((g / PATH_LIST).read_text())
        ids = {"duplicate": [*ids[:-1], ids[0]], "unknown id": [*ids[:-1], "ghost.png"],
               "not strings": list(range(len(ids))), "one less": ids[:-1],
               "object": dict.fromkeys(ids, "0.npy")}[what]
        (g / PATH_LIST).write_text(json.dumps(ids))
    else:
        p = g / ENC_DIR / f"{arg}.npy"
        a = np.load(p)
        p.unlink()
        if what == "nan":
            a[0, 0] = np.nan
        elif what == "inf":
            a[-1, -1] = -np.inf
        elif what == "float64":
            a = a.astype(np.float64)
        elif what == "int":
            a = a.astype(np.int32)
        elif what == "shape":
            a = a[:, :-1]
        else:
            a = np.array([None] * 4, dtype=object)
        np.save(p, a)


# --- the attack on a damaged game ----------------------------------------------------------------

@SETTINGS
@given(damage=game_damage(), data=st.data())
def test_attack_refuses_every_damaged_game(pristine, damage, data):
    with workspace(pristine) as root:
        apply_game_damage(root, damage, data)
        assert_refused(root, attack.main, ["--game", root / "GAME", "--submission", root / "sub.json", *FAST])


# --- Alice's files handed to the attack, the referee and score-encoder ----------------------------

@st.composite
def secret_damage(draw):
    which = draw(st.sampled_from(["answer", "key", "perms"]))
    if which == "answer":
        how = draw(st.sampled_from([*FILE_HOW, "empty object", "another game's", "not strings", "two ids one file",
                                    "list"]))
    elif which == "key":
        how = draw(st.sampled_from([*FILE_HOW, "another game's", "nan weight", "no config, misshaped",
                                    "config of another size", "string in config", "npy"]))
    else:
        how = draw(st.sampled_from(["truncate", "empty", "garbage", "folder", "fifo", "another game's", "shape",
                                    "not a permutation"]))
    return which, how


def apply_secret_damage(root: Path, damage, data) -> None:
    which, how = damage
    alice, other = root / "alice", root / "other"
    path = {"answer": alice / "answer.json", "key": alice / "key.npz", "perms": alice / "key.npz.perms.npy"}[which]
    if how in FILE_HOW:
        if how == "zip" and which == "key":
            how = "garbage"  # a key is a zip archive
        _replace(path, how, data, root)
        return
    if how == "another game's":
        src = {"answer": other / "answer.json", "key": other / "key.npz", "perms": other / "key.npz.perms.npy"}
        shutil.copy(src[which], path)
        return
    if which == "answer":
        answer = json.loads(path.read_text())
        ids = sorted(answer)
        value = {"empty object": {}, "not strings": dict.fromkeys(ids, 0), "list": ids,
                 "two ids one file": {**answer, ids[1]: answer[ids[0]]}}[how]
        path.write_text(json.dumps(value))
    elif which == "key":
        with np.load(path, allow_pickle=False) as z:
            sd = {k: z[k] for k in z.files}
        cfg = json.loads(str(sd["config"]))
        if how == "nan weight":
            sd["mixer.1.weight"] = sd["mixer.1.weight"].copy()
            sd["mixer.1.weight"][0, 0] = np.nan
        elif how == "no config, misshaped":
            del sd["config"]
            sd["mixer.1.bias"] = np.zeros(7, np.float32)
        elif how == "config of another size":
            sd["config"] = np.array(json.dumps({**cfg, "hidden": 8}))
        elif how == "string in config":
            sd["config"] = np.array(json.dumps({**cfg, "patch": "8"}))
        elif how == "npy":
            sd = None
        path.unlink()
        with open(path, "wb") as f:
            np.save(f, np.zeros(3)) if sd is None else np.savez(f, **sd)
    else:
        perms = np.load(path)
        path.unlink()
        if how == "shape":
            perms = perms[:, :-1]
        else:
            perms = perms.copy()
            perms[0, 0] = perms[0, 1]
        np.save(path, perms)


@SETTINGS
@given(damage=secret_damage(), data=st.data())
def test_attack_refuses_damaged_secrets_before_attacking(pristine, damage, data):
    with workspace(pristine) as root:
        apply_secret_damage(root, damage, data)
        assert_refused(root, attack.main, ["--game", root / "GAME", "--submission", root / "sub.json",
                                           "--answer-key", root / "alice" / "answer.json",
                                           "--secret-key", root / "alice" / "key.npz", *FAST])


@settings(max_examples=40, deadline=None)
@given(damage=secret_damage().filter(lambda d: d[0] == "key" and d[1] != "another game's"), data=st.data())
def test_score_encoder_refuses_damaged_keys(pristine, damage, data):
    with workspace(pristine) as root:
        apply_secret_damage(root, damage, data)
        assert_refused(root, challenge.main, ["score-encoder", "--secret-key", root / "other" / "key.npz",
                                              "--encoder", root / "alice" / "key.npz", "--n", "6"])


@st.composite
def bad_submission(draw):
    how = draw(st.sampled_from(["not an object", "non-string value", "unknown id", "unknown file",
                                "one file twice", *[h for h in FILE_HOW if h != "zip"]]))
    return how, draw(st.one_of(st.integers(), st.text(max_size=4), st.none(), st.lists(st.integers(), max_size=3)))


@SETTINGS
@given(sub=bad_submission(), data=st.data())
def test_score_refuses_every_bad_submission(pristine, sub, data):
    how, junk = sub
    with workspace(pristine) as root:
        answer = json.loads((root / "alice" / "answer.json").read_text())
        path = root / "sub.json"
        ids = sorted(answer)
        value = {"not an object": junk, "non-string value": {**answer, ids[0]: junk},
                 "unknown id": {**answer, "ghost.png": "0.npy"}, "unknown file": {**answer, ids[0]: f"{N + 3}.npy"},
                 "one file twice": {**answer, ids[1]: answer[ids[0]]}}.get(how, answer)
        if how == "non-string value" and isinstance(junk, str):
            value = {**answer, ids[0]: [junk]}
        path.write_text(json.dumps(value))
        if how in FILE_HOW:
            _replace(path, how, data, root)
        assert_refused(root, challenge.main, ["score", "--answer-key", root / "alice" / "answer.json",
                                              "--submission", path, "--json", root / "score.json"])


# --- make: bad numbers, outputs that would destroy something, damaged image sources --------------

@st.composite
def make_case(draw):
    kind = draw(st.sampled_from(["number", "outputs", "data"]))
    if kind == "number":
        flag = draw(st.sampled_from(["--n", "--extra", "--bn-batch", "--patch", "--image-size", "--hidden",
                                     "--seed"]))
        if flag == "--n":
            v = draw(st.integers(max_value=0))
        elif flag in ("--extra", "--seed"):
            v = draw(st.integers(max_value=-1))
        elif flag == "--image-size":
            v = draw(st.one_of(st.integers(max_value=0), st.integers(min_value=8193),
                               st.integers(1, 200).filter(lambda s: s % 8)))
        else:
            lo, hi = LIMITS[{"--bn-batch": "bn_batch", "--patch": "patch", "--hidden": "hidden"}[flag]]
            v = draw(st.one_of(st.integers(max_value=lo - 1), st.integers(min_value=hi + 1, max_value=10**30)))
        return kind, flag, v
    if kind == "outputs":
        return kind, draw(st.sampled_from(["answer is key", "answer is perms", "answer exists", "key exists",
                                           "perms exist", "key in a game", "answer in a game", "out not empty",
                                           "out is a file", "key is a folder", "answer under a file",
                                           "out in a game"])), None
    return kind, draw(st.sampled_from(["npy", "folder"])), draw(st.sampled_from(
        ["truncate", "empty", "garbage", "fifo", "zip", "nan", "object", "too few"]))


def make_argv(root: Path, case, data) -> list:
    kind, what, arg = case
    out, answer, key = root / "NEW", root / "new" / "A.json", root / "new" / "K.npz"
    extra = ["--n", "4", "--image-size", "16", "--patch", "8", "--hidden", "4", "--quiet"]
    if kind == "number":
        extra += [what, arg]
    elif kind == "outputs":
        (root / "new").mkdir()
        if what == "answer is key":
            answer = key
        elif what == "answer is perms":
            answer = Path(str(key) + ".perms.npy")
        elif what in ("answer exists", "key exists", "perms exist"):
            target = {"answer exists": answer, "key exists": key, "perms exist": Path(str(key) + ".perms.npy")}[what]
            target.write_text("a user's file")
        elif what == "key in a game":
            key = root / "GAME" / data.draw(st.sampled_from(["", ORIG_DIR, ENC_DIR])) / "K.npz"
        elif what == "answer in a game":
            answer = root / "other" / "GAME" / "A.json"
        elif what == "out not empty":
            out.mkdir()
            (out / "mine.txt").write_text("keep")
        elif what == "out is a file":
            out.write_text("keep")
        elif what == "key is a folder":
            key.mkdir()
        elif what == "answer under a file":
            (root / "new" / "file").write_text("x")
            answer = root / "new" / "file" / "A.json"
        elif what == "out in a game":
            out = root / "GAME" / ORIG_DIR / "NEW"
    else:
        src = root / "src.npy" if what == "npy" else root / "src"
        stack = np.random.default_rng(0).random((6, 16, 16)).astype(np.float32)
        if what == "npy":
            np.save(src, stack)
            victim = src
        else:
            src.mkdir()
            for i in range(6):
                from PIL import Image

                Image.fromarray((stack[i] * 255).astype(np.uint8)).save(src / f"{i}.png")
            victim = src / "3.png"
        if arg in ("truncate", "empty", "garbage", "fifo", "zip"):
            _replace(victim, arg, data, root)
        elif arg == "nan" and what == "npy":
            stack[2, 3, 4] = np.nan
            np.save(src, stack)
        elif arg == "nan":
            from PIL import Image

            Image.fromarray(np.full((16, 16), np.nan, np.float32), mode="F").save(victim, format="TIFF")
        elif arg == "object" and what == "npy":
            np.save(src, np.array([None] * 6, dtype=object))
        elif arg == "object":
            _png_bomb(victim)
        else:  # too few images for --n 4 --extra 3
            extra += ["--extra", "3"]
        extra += ["--data", src]
    return ["make", "--out", out, "--answer-key", answer, "--secret-key", key, *extra]


def _png_bomb(path: Path) -> None:
    """A tiny PNG declaring 20,000 x 20,000 pixels."""
    import struct
    import zlib

    def chunk(tag, body):
        return struct.pack(">I", len(body)) + tag + body + struct.pack(">I", zlib.crc32(tag + body))

    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", 20000, 20000, 8, 0, 0, 0, 0))
                     + chunk(b"IDAT", zlib.compress(b"")) + chunk(b"IEND", b""))


@SETTINGS
@given(case=make_case(), data=st.data())
def test_make_refuses_and_leaves_everything_as_it_was(pristine, case, data):
    with workspace(pristine) as root:
        argv = make_argv(root, case, data)
        assert_refused(root, challenge.main, argv)
        assert not (root / "NEW").is_dir() or list((root / "NEW").iterdir()) == [Path(root / "NEW" / "mine.txt")]


# --- outputs of the attack -------------------------------------------------------------------------

@settings(max_examples=20, deadline=None)
@given(flag=st.sampled_from(["--submission", "--json", "--save-encoder", "--plots", "--work-dir"]),
       where=st.sampled_from(["", ORIG_DIR, ENC_DIR, f"{ENC_DIR}/0.npy", f"{ORIG_DIR}/img0.png", "encoder.json",
                              PATH_LIST]))
def test_attack_never_writes_into_the_game(pristine, flag, where):
    with workspace(pristine) as root:
        target = root / "GAME" / where if where else root / "GAME"
        line = assert_refused(root, attack.main, ["--game", root / "GAME", flag, target, *FAST])
        assert "inside the game folder" in line
