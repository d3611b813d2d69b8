"""The work-dir store: a resumed run never reuses stale work, and a damaged stage file is recomputed."""
import dataclasses
import shutil

import numpy as np
import pytest

from empirical import isim, stages
from empirical.alice import bundled_game, make_game
from empirical.encoder import preset
from empirical.game import ENC_DIR, content_digest, read_game
from empirical.pipeline import AttackConfig, run_attack
from empirical.psim import PsimConfig
from empirical.store import Store, stage_keys

FAM = preset("neuracrypt-7", image_size=32, patch=8, hidden=16, bn_batch=8)
TINY = AttackConfig(seed=0, candidates=3, psim=PsimConfig(steps=5, batch=32, width=8, n_encoders=2,
                                                          images_per_encoder=8))


@pytest.fixture(scope="module")
def small():
    return bundled_game(FAM, 12, seed=3)


def test_digest_covers_every_array_whole(small):
    g, _ = small
    assert content_digest(g) == content_digest(dataclasses.replace(g))
    swapped = g.encodings.copy()
    swapped[[1, 2]] = swapped[[2, 1]]
    assert content_digest(dataclasses.replace(g, encodings=swapped)) != content_digest(g)
    last = g.originals.copy()
    last[-1, 0, -1, -1] += 1 / 65535  # the last pixel of the last original, one 16-bit step
    assert content_digest(dataclasses.replace(g, originals=last)) != content_digest(g)
    assert content_digest(dataclasses.replace(g, path_list=g.path_list[1:])) != content_digest(g)


def test_swapped_files_on_disk_are_not_resumed(tmp_path, small):
    """Two encoding files swapped between runs: the second run starts from scratch."""
    g, _ = small
    make_game(tmp_path / "game", g.originals, g.ids, FAM, len(g.files), seed=3)
    work = tmp_path / "work"
    first = run_attack(read_game(tmp_path / "game"), TINY, np, quiet=True, work_dir=work, stop_after="first")
    assert not any(s.info.get("resumed") for s in first.stages)
    again = run_attack(read_game(tmp_path / "game"), TINY, np, quiet=True, work_dir=work, stop_after="first")
    assert all(s.info.get("resumed") for s in again.stages)  # same files: resumed
    enc = tmp_path / "game" / ENC_DIR
    shutil.move(enc / "1.npy", enc / "tmp.npy")
    shutil.move(enc / "2.npy", enc / "1.npy")
    shutil.move(enc / "tmp.npy", enc / "2.npy")
    after = run_attack(read_game(tmp_path / "game"), TINY, np, quiet=True, work_dir=work, stop_after="first")
    assert not any(s.info.get("resumed") for s in after.stages)
    assert len([d for d in work.iterdir() if d.is_dir()]) == 2


@pytest.mark.parametrize("damage", ["empty", "truncated", "garbage", "no record"])
def test_a_damaged_stage_file_is_recomputed_with_one_warning(tmp_path, small, damage):
    g, _ = small
    warnings = []
    store = Store(tmp_path, g, TINY.to_json(), warn=warnings.append)
    store.save("align", {"order": np.arange(6).reshape(2, 3)}, {"seconds": 1.0, "info": {}})
    path = store.path("align")
    assert store.load("align") is not None and not warnings
    if damage == "empty":
        path.write_bytes(b"")
    elif damage == "truncated":
        path.write_bytes(path.read_bytes()[:40])
    elif damage == "garbage":
        path.write_bytes(b"not a zip archive at all" * 10)
    else:
        np.savez(path, order=np.arange(3))  # a valid archive without the stage's record
    assert store.load("align") is None
    assert len(warnings) == 1 and "recomputing stage 'align'" in warnings[0] and "\n" not in warnings[0]


def test_keys_follow_settings_and_every_earlier_stage():
    base = stage_keys(TINY.to_json())
    more = stage_keys(dataclasses.replace(TINY, candidates=4).to_json())
    changed = {name for name in stages.STAGES if base[name] != more[name]}
    assert changed == {"first", "boost", "extract", "final", "rescore"}  # 'first' reads candidates; later ones follow


def test_a_method_change_in_a_helper_module_makes_saved_stages_stale(monkeypatch):
    """The first matching's version covers isim.py (where balance lives), not just the stage module."""
    first = stages.REGISTRY["first"]
    assert isim in first.sources
    base = stage_keys(TINY.to_json())
    monkeypatch.setitem(stages.REGISTRY, "first", dataclasses.replace(first, sources=first.sources[:1]))
    now = stage_keys(TINY.to_json())
    assert {n for n in stages.STAGES if base[n] != now[n]} == {"first", "boost", "extract", "final", "rescore"}


def test_every_stage_has_a_version_from_its_own_source():
    versions = {name: stages.REGISTRY[name].version for name in stages.STAGES}
    assert len(set(versions.values())) == len(versions)
    for name in stages.STAGES:
        assert stages.REGISTRY[name].sources[0].__name__ == f"empirical.stages.{name}"


class _Killed(Exception):
    pass


def test_extraction_killed_part_way_resumes_inside_the_stage(tmp_path, small, monkeypatch):
    """A run killed 500 steps into extraction's refit keeps the first fit, the refit's matching and the
    refit so far in the stage's parts folder; run again, it fits nothing twice, goes on from the
    refit's last save, ends exactly as an uninterrupted run, and removes the folder."""
    from empirical import checkpoint
    from empirical.stages import extract as stage

    g, _ = small
    whole = run_attack(g, TINY, np, quiet=True)
    monkeypatch.setattr(checkpoint, "CHECKPOINT_SECONDS", 0.0)  # a save before every step
    real_refine = stage.refine_encoder

    def dying_refine(*args, progress=None, **kw):
        done = [0]

        def count(n):
            progress(n)
            done[0] += n
            if done[0] >= 500:
                raise _Killed

        return real_refine(*args, progress=count, **kw)

    monkeypatch.setattr(stage, "refine_encoder", dying_refine)
    work = tmp_path / "work"
    with pytest.raises(_Killed):
        run_attack(g, TINY, np, quiet=True, work_dir=work)
    parts = Store(work, g, TINY.to_json()).scratch("extract")
    assert sorted(p.name for p in parts.iterdir()) == ["fit-done.npz", "refine.npz", "refit-matching.npz"]

    resumed_at = []

    def no_fit(*args, **kw):
        raise AssertionError("the first fit was saved: it must not run again")

    def refine(*args, progress=None, **kw):
        def first(n):
            if not resumed_at:
                resumed_at.append(n)  # the refit's first advance: the steps it found done
            progress(n)

        return real_refine(*args, progress=first, **kw)

    monkeypatch.setattr(stage, "fit_encoder", no_fit)
    monkeypatch.setattr(stage, "refine_encoder", refine)
    again = run_attack(g, TINY, np, quiet=True, work_dir=work)
    extract = next(s for s in again.stages if s.name == "extract")
    assert resumed_at == [499] and extract.info["resumed_parts"] == ["fit-done", "refit-matching", "refine"]
    np.testing.assert_array_equal(again.matching, whole.matching)
    for a, b in zip(dataclasses.astuple(again.encoder)[1:], dataclasses.astuple(whole.encoder)[1:], strict=True):
        for x, y in zip(a if isinstance(a, tuple) else (a,), b if isinstance(b, tuple) else (b,), strict=True):
            np.testing.assert_array_equal(x, y)
    assert not parts.exists() and Store(work, g, TINY.to_json()).load("extract") is not None
