"""Alice's evaluation of an attack: true matching, local and global permutation shares, Challenge 2."""
import numpy as np
import pytest

from empirical.alice import game_in_memory
from empirical.data import bundled_images
from empirical.encoder import preset, random_key
from empirical.evaluate import (
    challenge2_score,
    global_perm_share,
    local_perm_share,
    share_matched,
    true_matching,
)
from empirical.game import Game, Secrets

FAM = preset("neuracrypt-7", image_size=32, patch=8, hidden=8, bn_batch=4)


def hand_game():
    ids = ["a.png", "b.png", "c.png", "d.png", "e.png"]  # e.png is a decoy
    files = ["0.npy", "1.npy", "2.npy", "3.npy"]
    game = Game(FAM, ids, np.zeros((5, 1, 32, 32), np.float32), files, np.zeros((4, 16, 8), np.float32),
                ["a.png", "b.png", "c.png", "d.png"])
    answer = {"c.png": "0.npy", "a.png": "1.npy", "d.png": "2.npy", "b.png": "3.npy"}
    return game, Secrets(None, answer, None)


def test_true_matching_by_hand():
    game, secrets = hand_game()
    np.testing.assert_array_equal(true_matching(game, secrets), [2, 0, 3, 1])


def test_true_matching_of_a_generated_game():
    imgs = bundled_images(12, 32, seed=0, patch=8)
    ids = [f"{i:02d}.png" for i in range(12)]
    game, secrets = game_in_memory(imgs, ids, FAM, 9, seed=1)
    truth = true_matching(game, secrets)
    assert truth.shape == (9,) and len(set(truth.tolist())) == 9
    for k, f in enumerate(game.files):
        assert secrets.answer[game.ids[truth[k]]] == f


def test_share_matched():
    truth = np.array([2, 0, 3, 1])
    assert share_matched(truth, truth) == 1.0
    assert share_matched([2, 0, 1, 3], truth) == 0.5
    assert share_matched([0, 1, 2, 3], truth) == 0.0


def _perms_and_order(n, p, common, seed=0):
    """Shuffles ``perms`` and the order that puts true position ``common[q]`` at slot q, for all."""
    rng = np.random.default_rng(seed)
    perms = np.argsort(rng.random((n, p)), axis=1)  # row r of encoding b is position perms[b, r]
    inverse = np.argsort(perms, axis=1)  # position -> row
    order = np.take_along_axis(inverse, np.tile(common, (n, 1)), axis=1)
    return perms, order


def test_local_perm_share_right_up_to_a_common_permutation():
    common = np.array([3, 0, 4, 1, 2])
    perms, order = _perms_and_order(10, 5, common)
    share, got = local_perm_share(order, perms)
    assert share == 1.0
    np.testing.assert_array_equal(got, common)


def test_local_perm_share_one_encoding_off():
    common = np.array([3, 0, 4, 1, 2])
    perms, order = _perms_and_order(10, 5, common, seed=1)
    order[6, [0, 1]] = order[6, [1, 0]]  # two slots swapped in one encoding
    share, got = local_perm_share(order, perms)
    assert share == pytest.approx(9 / 10)
    np.testing.assert_array_equal(got, common)
    order[2] = order[2, ::-1]
    assert local_perm_share(order, perms)[0] == pytest.approx(8 / 10)


def test_global_perm_share():
    common = np.array([3, 0, 4, 1, 2])  # slot q holds position common[q]
    pi = np.argsort(common)  # position j -> the slot holding it
    assert global_perm_share(pi, common) == 1.0
    wrong = pi.copy()
    wrong[[0, 1]] = wrong[[1, 0]]
    assert global_perm_share(wrong, common) == pytest.approx(3 / 5)


@pytest.fixture(scope="module")
def fresh_images():
    return bundled_images(40, 32, seed=5, patch=8)


def test_challenge2_score_of_the_key_itself(fresh_images):
    key = random_key(FAM, 0)
    res = challenge2_score(key, key, fresh_images, np, seed=3)
    assert res["share"] == 1.0 and res["share_public"] == 1.0 and res["n"] == 40
    assert res["relative_error"] < 1e-6  # same key, same batches: only the shuffle differs


def test_challenge2_score_of_an_unrelated_key(fresh_images):
    res = challenge2_score(random_key(FAM, 0), random_key(FAM, 1), fresh_images, np)
    assert res["share"] <= 0.15 and res["share_public"] <= 0.15  # chance is 1/40
    assert res["relative_error"] > 0.1


def test_true_matching_of_another_games_answer_key_is_one_line():
    """Not a KeyError: the answer key that does not fit the game is named as such."""
    from empirical.game import GameError

    game, _ = hand_game()
    with pytest.raises(GameError, match=r"names id 'z\.png'"):
        true_matching(game, Secrets(None, {"z.png": "0.npy"}, None))
    with pytest.raises(GameError, match=r"no original for '2\.npy'"):
        true_matching(game, Secrets(None, {"c.png": "0.npy", "a.png": "1.npy", "b.png": "3.npy"}, None))


def test_challenge2_bytes_grows_with_the_images():
    from empirical.evaluate import challenge2_bytes

    small, large = challenge2_bytes(FAM, 10), challenge2_bytes(FAM, 10_000)
    assert small < large and large > 8 * 10_000**2  # the (n, n) distances dominate
