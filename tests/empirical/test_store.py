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
