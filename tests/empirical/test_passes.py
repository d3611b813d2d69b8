"""Passes over the encodings: the same results in this process, on Dask in this process, and on a
Dask cluster of two worker processes, down to the whole attack's matching."""
import numpy as np
import pytest

from empirical.alice import bundled_game, make_game
from empirical.encoder import preset
from empirical.encodings import EncodingFiles, Rows
from empirical.game import ENC_DIR, GameError, read_game
from empirical.passes import map_blocks
from empirical.pipeline import AttackConfig, run_attack
from empirical.psim import PsimConfig

distributed = pytest.importorskip("distributed")

FAM = preset("neuracrypt-7", image_size=32, patch=8, hidden=16, bn_batch=8)
TINY = AttackConfig(seed=0, candidates=3, psim=PsimConfig(steps=5, batch=32, width=8, n_encoders=2,
                                                          images_per_encoder=8))
BUDGET = 3 * FAM.encoding_bytes(1)  # the encodings are read from their files a block at a time


def first_columns(block, xp):
    """Each row's first value, in the rows' order (a pass that drops a gather gives other values)."""
    return xp.asarray(block)[:, :, 0].copy()


@pytest.fixture(scope="module")
def on_disk(tmp_path_factory):
    g, _ = bundled_game(FAM, 24, seed=6)
    folder = tmp_path_factory.mktemp("passes") / "G"
    make_game(folder, g.originals, g.ids, FAM, 20, seed=6)
    return folder


@pytest.fixture(scope="module")
def cluster():
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None) as c, \
            distributed.Client(c) as client:
        yield client


def test_a_pass_gives_the_same_blocks_everywhere(on_disk, cluster):
    files = read_game(on_disk, memory_budget=BUDGET).encodings
    assert isinstance(files, EncodingFiles)
    order = np.argsort(np.random.default_rng(1).random(files.shape[:2]), axis=1)  # (N, P) one order each
    rows = Rows(files, np).take(order)
    whole = np.take_along_axis(files.load(), order[:, :, None], axis=1)
    want = [whole[s:s + 6, :, 0] for s in range(0, 20, 6)]
    for scheduler in (None, "sync", cluster):
        got = map_blocks(first_columns, rows, 6, (np,), scheduler)
        assert len(got) == 4
        for a, b in zip(got, want, strict=True):
            np.testing.assert_array_equal(a, b)


def test_the_attack_on_a_cluster_matches_the_one_in_this_process(on_disk, cluster):
    here = run_attack(read_game(on_disk, memory_budget=BUDGET), TINY, np, quiet=True, memory_budget=BUDGET)
    for scheduler in ("sync", cluster):
        there = run_attack(read_game(on_disk, memory_budget=BUDGET), TINY, np, quiet=True, memory_budget=BUDGET,
                           scheduler=scheduler)
        np.testing.assert_array_equal(there.order, here.order)
        np.testing.assert_array_equal(there.row_emb, here.row_emb)
        for a, b in zip(there.stages, here.stages, strict=True):
            if b.matching is not None:
                np.testing.assert_array_equal(a.matching, b.matching)
        np.testing.assert_array_equal(there.matching, here.matching)


def test_bad_values_found_by_a_worker_name_the_file(on_disk, tmp_path, cluster):
    import shutil

    folder = tmp_path / "G"
    shutil.copytree(on_disk, folder)
    files = read_game(folder, memory_budget=BUDGET).encodings
    last = folder / ENC_DIR / "19.npy"
    a = np.load(last)
    a[0, 0] = np.inf
    np.save(last, a)
    with pytest.raises(GameError, match=r"19\.npy contains NaN or inf"):
        map_blocks(first_columns, Rows(files, np), 6, (np,), cluster)
