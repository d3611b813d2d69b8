"""Re-scoring the final matching's close calls with each BatchNorm batch's own statistics."""
import contextlib

import numpy as np
import pytest

import empirical.rescore as rescore_mod
from empirical.data import bundled_images
from empirical.encoder import encode, patchify, preset, random_key
from empirical.encodings import Rows
from empirical.extraction import params_from_key
from empirical.rescore import (
    PATCH_TWINS,
    TWINS,
    _rescore_pass,
    close_calls,
    nearest_twins,
    patch_corrections,
    patch_summary,
    rescore_close_calls,
)
from empirical.tprime import batch_stats_of, encode_each

FAM = preset("neuracrypt-7", image_size=32, patch=8, hidden=64, bn_batch=8, shuffle=False)


def test_patch_summary_is_each_patchs_mean_then_its_standard_deviation():
    x = np.zeros((1, 1, 16, 16), np.float32)
    x[0, 0, :8, 8:] = 1.0  # patch 1 (top right) white
    x[0, 0, 8:, :8] = np.tile([0.0, 1.0], (8, 4))  # patch 2 (bottom left) stripes
    s = patch_summary(x, 8, np)
    np.testing.assert_allclose(s[0], [0, 1, 0.5, 0, 0, 0, 0.5, 0])


@pytest.mark.parametrize("seed", [0, 1])
def test_nearest_twins_are_the_brute_force_nearest_others_of_the_pool(seed):
    rng = np.random.default_rng(seed)
    summary = rng.standard_normal((40, 6)).astype(np.float32)
    queries, pool = np.array([0, 5, 7, 30]), np.arange(3, 40, 2)
    dist, who = nearest_twins(summary, queries, pool, 3, np, chunk=3)
    for q, d, w in zip(queries, dist, who, strict=True):
        others = pool[pool != q]
        full = ((summary[others] - summary[q]) ** 2).sum(axis=1)
        np.testing.assert_array_equal(w, others[np.argsort(full)[:3]])
        np.testing.assert_allclose(d, np.sort(full)[:3], rtol=1e-4, atol=1e-5)


def test_close_calls_are_the_encodings_whose_original_has_the_nearest_twin():
    summary = np.array([[0.0], [10.0], [10.1], [20.0], [30.0], [30.5]], np.float32)
    matching = np.array([3, 1, 0, 4, 2, 5])  # encoding k -> original
    # nearest-twin distances by original: 0:10, 1:0.01, 2:0.01, 3:10, 4:0.25, 5:0.25
    np.testing.assert_array_equal(close_calls(summary, matching, 6, np, share=0.5, least=1), [1, 3, 4])
    np.testing.assert_array_equal(close_calls(summary, matching, 6, np, share=0.1, least=6), np.arange(6))


@pytest.fixture(scope="module")
def twin_game():
    """32 real images in 4 BatchNorm batches of 8; images 3 and 20 replaced by nearly flat twins
    (brightness 0.50 and 0.51, faint noise), in different batches. Encoded by Alice's key, unshuffled."""
    rng = np.random.default_rng(0)
    imgs = bundled_images(32, 32, seed=3, patch=8)
    for i, level in ((3, 0.50), (20, 0.51)):
        imgs[i] = level + 0.004 * rng.standard_normal(imgs[i].shape)
    key = random_key(FAM, 7)
    enc, _ = encode(imgs, key, np)
    return imgs, key, enc, np.arange(32) // FAM.bn_batch


def test_a_swapped_pair_of_flat_twins_from_two_batches_is_put_right(twin_game):
    imgs, key, enc, groups = twin_game
    truth = np.arange(32)
    swapped = truth.copy()
    swapped[[3, 20]] = [20, 3]
    out = rescore_close_calls(params_from_key(key, np), imgs, Rows(enc, np), swapped, groups, FAM, np)
    np.testing.assert_array_equal(out.matching, truth)
    assert out.info["changed"] == 2 and out.info["rescored"] == 32  # a game this small is scored whole
    assert out.info["batches"] == 4


def test_a_right_matching_is_kept(twin_game):
    imgs, key, enc, groups = twin_game
    truth = np.arange(32)
    out = rescore_close_calls(params_from_key(key, np), imgs, Rows(enc, np), truth, groups, FAM, np,
                              share=0.25, least=1)
    np.testing.assert_array_equal(out.matching, truth)
    # each of the 8 close calls: its match and up to TWINS of the other 7 originals in the pool
    assert out.info == {"rescored": 8, "candidates_per_encoding": 1 + min(TWINS, 7), "batches": out.info["batches"],
                        "patch_twins": PATCH_TWINS, "twin_images": out.info["twin_images"], "passes": 1,
                        "changed_per_pass": [0], "scored_pairs_per_pass": [8 * 8], "changed": 0}


def test_only_the_close_calls_may_change_and_unmatched_originals_are_candidates(twin_game):
    """With decoys: an encoding matched to a decoy twin of its original gets its original back."""
    imgs, key, enc, groups = twin_game
    decoy = imgs[3:4] + 0.02  # a brighter flat twin, never encoded
    originals = np.concatenate([imgs, decoy])  # original 32 is the decoy
    wrong = np.arange(32)
    wrong[3] = 32  # encoding 3 matched to the decoy; its own original 3 left unmatched
    out = rescore_close_calls(params_from_key(key, np), originals, Rows(enc, np), wrong, groups, FAM, np,
                              share=0.1, least=4)
    assert out.matching[3] == 3
    assert out.info["rescored"] == 4
    assert (out.matching != wrong).sum() == 1


@pytest.mark.parametrize("k", [1, 3, 7])
def test_patch_corrections_average_the_k_nearest_twin_rows_position_by_position(k):
    rng = np.random.default_rng(k)
    cands, twins = rng.random((4, 5, 6)), rng.random((7, 5, 6))  # (c, P, F), (n, P, F)
    residuals = rng.standard_normal((7, 5, 3))  # (n, P, D)
    got = patch_corrections(cands, twins, residuals, k, np)
    for c in range(4):
        for p in range(5):
            d = ((twins[:, p] - cands[c, p]) ** 2).sum(axis=1)
            want = residuals[np.argsort(d)[:k], p].mean(axis=0)
            np.testing.assert_allclose(got[c, p], want, rtol=1e-12)


def test_patch_twins_are_confident_encodings_of_the_same_batch_with_their_residuals(twin_game, monkeypatch):
    """The twins correcting batch g's candidates are the originals matched into g that no close call may take."""
    imgs, key, enc, groups = twin_game
    params = params_from_key(key, np)
    params = {**params, "bm": params["bm"] + 0.3}  # a T' with an error, so residuals are not zero
    seen = []

    def spy(patches, twin_patches, twin_residuals, k, xp):
        seen.append((patches, twin_patches, twin_residuals, k))
        return np.zeros((len(patches), *twin_residuals.shape[1:]), np.float32)

    monkeypatch.setattr(rescore_mod, "patch_corrections", spy)
    truth = np.arange(32)
    out = rescore_close_calls(params, imgs, Rows(enc, np), truth, groups, FAM, np, share=0.1, least=4, twins=2)
    summary = patch_summary(imgs, FAM.patch, np)
    calls = close_calls(summary, truth, 32, np, share=0.1, least=4)
    _, near = nearest_twins(summary, truth[calls], truth[calls], 2, np)
    doubtful = np.union1d(truth[calls], near.ravel())
    assert seen and all(k == PATCH_TWINS for *_, k in seen)
    expected = {}
    for g in np.unique(groups[calls]):
        sure = np.setdiff1d(np.flatnonzero(groups == g), doubtful)  # encodings; here each holds its own original
        stats = batch_stats_of(params, imgs, groups, g, FAM, np)
        expected[g] = (patchify(imgs[sure], FAM.patch), enc[sure] - encode_each(params, imgs[sure], FAM, stats, np))
    for _, twin_patches, twin_residuals, _ in seen:
        matches = [g for g, (p, _) in expected.items()
                   if p.shape == twin_patches.shape and np.allclose(p, twin_patches)]
        assert len(matches) == 1
        np.testing.assert_allclose(twin_residuals, expected[matches[0]][1], atol=1e-5)
        assert np.abs(twin_residuals).max() > 0.1  # the planted error shows in the residuals
    assert out.info["twin_images"] == sum(len(p) for p, _ in expected.values())


@pytest.mark.parametrize(("passes", "want"), [(5, [1, 1, 1, 0]), (2, [1, 1])])
def test_passes_go_on_while_a_pass_changes_a_match(twin_game, monkeypatch, passes, want):
    """Each scripted pass puts one more of three wrong encodings right; the passes stop at the
    first that changes nothing, or at the cap."""
    imgs, key, enc, groups = twin_game
    truth = np.arange(32)
    start = truth.copy()
    start[[1, 2, 3, 4, 5, 6]] = [2, 1, 4, 3, 6, 5]  # three swapped pairs
    calls = []

    def one_pass(params, originals, summary, targets, matching, *args):
        calls.append(matching.copy())
        out = matching.copy()
        wrong = np.flatnonzero(out != truth)
        out[wrong[:2]] = truth[wrong[:2]]  # one swapped pair put right
        return out, {"rescored": 32}

    monkeypatch.setattr(rescore_mod, "_rescore_pass", one_pass)
    out = rescore_close_calls(params_from_key(key, np), imgs, Rows(enc, np), start, groups, FAM, np, passes=passes)
    assert out.info["changed_per_pass"] == [2 * c for c in want]
    assert out.info["passes"] == len(calls) == len(want)
    assert out.info["changed"] == int((out.matching != start).sum()) == 2 * sum(want)
    np.testing.assert_array_equal(calls[0], start)  # each pass starts from the one before
    assert out.info["rescored"] == 32


def test_a_later_pass_scores_again_only_the_batches_that_changed(twin_game):
    """Pass 2 after the swap is put right: the two batches whose matching changed are scored
    anew, the others' scores are reused, and the pass decides as one that scored everything."""
    imgs, key, enc, groups = twin_game
    params = params_from_key(key, np)
    swapped = np.arange(32)
    swapped[[3, 20]] = [20, 3]
    args = (params, imgs, patch_summary(imgs, FAM.patch, np), Rows(enc, np))
    rest = (groups, FAM, np, 0.1, 32, TWINS, PATCH_TWINS)
    memo = {}
    first, info1 = _rescore_pass(*args, swapped, *rest, memo)
    assert info1["scored_pairs"] == 32 * (1 + TWINS)  # every encoding and its candidates, once
    np.testing.assert_array_equal(first, np.arange(32))  # the swap put right
    again, info2 = _rescore_pass(*args, first, *rest, memo)
    fresh_memo = {}
    fresh, info_fresh = _rescore_pass(*args, first, *rest, fresh_memo)
    np.testing.assert_array_equal(again, fresh)
    assert info_fresh["scored_pairs"] == 32 * (1 + TWINS)
    assert info2["scored_pairs"] == 16 * (1 + TWINS)  # batches 0 and 2 (images 3 and 20), 8 encodings each
    for g in fresh_memo:
        assert memo[g].costs.keys() >= fresh_memo[g].costs.keys()
        for pair, value in fresh_memo[g].costs.items():
            assert memo[g].costs[pair] == pytest.approx(value, rel=1e-5)


def test_each_pass_shows_a_bar_advanced_once_per_close_call(twin_game):
    imgs, key, enc, groups = twin_game
    swapped = np.arange(32)
    swapped[[3, 20]] = [20, 3]
    bars = []

    @contextlib.contextmanager
    def bar(total, desc):
        done = []
        yield done.append
        bars.append((desc, total, sum(done)))

    out = rescore_close_calls(params_from_key(key, np), imgs, Rows(enc, np), swapped, groups, FAM, np, bar=bar)
    assert out.info["passes"] == 2
    assert bars == [("re-scoring, pass 1", 32, 32), ("re-scoring, pass 2", 32, 32)]
