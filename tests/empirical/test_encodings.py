"""Encodings a block at a time: files read on demand, row orders gathered on read, and the attack
giving the same result whether a game's encodings are held in memory or read from disk in blocks."""
import numpy as np
import pytest

from empirical.alice import bundled_game, game_in_memory, make_game
from empirical.alignment import apply_order
from empirical.encoder import encode, encode_batches, preset, random_key
from empirical.encodings import EncodingFiles, Rows, as_index, block_size
from empirical.game import ENC_DIR, GameError, content_digest, read_game
from empirical.pipeline import AttackConfig, run_attack
from empirical.psim import PsimConfig

FAM = preset("neuracrypt-7", image_size=32, patch=8, hidden=16, bn_batch=8)
TINY = AttackConfig(seed=0, candidates=3, psim=PsimConfig(steps=5, batch=32, width=8, n_encoders=2,
                                                          images_per_encoder=8))
ONE_ENCODING = FAM.encoding_bytes(1)


@pytest.fixture(scope="module")
def on_disk(tmp_path_factory):
    """A game of 20 encodings (3 BatchNorm batches) and 4 decoys, written to disk, with Alice's secrets."""
    g, _ = bundled_game(FAM, 24, seed=5)
    folder = tmp_path_factory.mktemp("enc") / "G"
    secrets = make_game(folder, g.originals, g.ids, FAM, 20, seed=5)
    return folder, secrets


def test_block_size():
    assert block_size(1000, 10, copies=4, cap=None) == 25
    assert block_size(1000, 10, copies=4, cap=8) == 8
    assert block_size(10, 1000, copies=4) == 1  # never less than one item


def test_as_index():
    assert as_index(slice(1, 7, 2), 10).tolist() == [1, 3, 5]
    assert as_index(3, 10).tolist() == [3]
    assert as_index([4, 0], 10).tolist() == [4, 0]


def test_a_large_game_is_read_in_blocks_with_the_same_values(on_disk):
    folder, _ = on_disk
    whole = read_game(folder)
    assert isinstance(whole.encodings, np.ndarray)
    lazy = read_game(folder, memory_budget=3 * ONE_ENCODING)  # half the budget holds one encoding
    assert isinstance(lazy.encodings, EncodingFiles)
    assert lazy.encodings.shape == whole.encodings.shape and len(lazy.encodings) == 20
    for k in (0, 7, 19):
        np.testing.assert_array_equal(lazy.encodings[k], np.load(folder / ENC_DIR / f"{k}.npy"))
    np.testing.assert_array_equal(lazy.encodings[[19, 0, 3]], whole.encodings[[19, 0, 3]])
    np.testing.assert_array_equal(lazy.encodings.load(), whole.encodings)
    starts = [s for s, _ in lazy.encodings.blocks(6)]
    assert starts == [0, 6, 12, 18]
    assert content_digest(lazy) == content_digest(whole)  # hashed a block at a time: the same bytes


def test_streamed_make_writes_what_the_whole_encoder_gives(on_disk):
    """``make`` encodes and writes one BatchNorm batch at a time; its files, shuffles and answer key are
    exactly those of the same game made in memory (all encodings at once)."""
    folder, secrets = on_disk
    g = read_game(folder)
    mem, mem_secrets = game_in_memory(g.originals, g.ids, FAM, 20, seed=5)
    np.testing.assert_array_equal(g.encodings, mem.encodings)
    np.testing.assert_array_equal(secrets.perms, mem_secrets.perms)
    assert secrets.answer == mem_secrets.answer


def test_encode_batches_concatenate_to_encode():
    key = random_key(FAM, 1)
    x = np.random.default_rng(0).random((19, 1, 32, 32), dtype=np.float32)
    enc, perms = encode(x, key, np, seed=7)
    parts = list(encode_batches(x, key, np, seed=7))
    assert [s for s, _, _ in parts] == [0, 8, 16]
    np.testing.assert_array_equal(np.concatenate([e for _, e, _ in parts]), enc)
    np.testing.assert_array_equal(np.concatenate([p for _, _, p in parts]), perms)
    idx = np.array([3, 1, 18, 0])
    _, e_idx, _ = next(encode_batches(x, key, np, seed=7, index=idx))
    np.testing.assert_array_equal(e_idx, encode(x[idx], key, np, seed=7)[0])


def test_rows_gather_the_same_rows_from_every_source(on_disk):
    folder, _ = on_disk
    whole = read_game(folder).encodings
    lazy = read_game(folder, memory_budget=3 * ONE_ENCODING).encodings
    rng = np.random.default_rng(0)
    order = np.argsort(rng.random(whole.shape[:2]), axis=1)  # (N, P) one order per encoding
    pi = rng.permutation(whole.shape[1])  # (P,) one order for all
    want = apply_order(whole, order, np)[:, pi]
    idx = np.array([5, 0, 19, 5])
    for source in (whole, lazy):
        rows = Rows(source, np).take(order).take(pi)
        assert rows.shape == whole.shape
        np.testing.assert_array_equal(rows[idx], want[idx])
        np.testing.assert_array_equal(rows[3], want[3])
        np.testing.assert_array_equal(np.concatenate([b for _, b in rows.blocks(7)]), want)


def test_bad_values_late_in_the_files_are_named(on_disk, tmp_path):
    """NaN in the last file: the block-by-block check names it, both when the game is read and when a
    file is damaged after it was opened (the attack's own passes read it again)."""
    import shutil

    folder = tmp_path / "G"
    shutil.copytree(on_disk[0], folder)
    files = read_game(folder, memory_budget=3 * ONE_ENCODING).encodings
    last = folder / ENC_DIR / "19.npy"
    a = np.load(last)
    a[-1, -1] = np.nan
    np.save(last, a)
    with pytest.raises(GameError, match=r"19\.npy contains NaN or inf"):
        files.read(np.arange(20))
    with pytest.raises(GameError, match=r"19\.npy contains NaN or inf"):
        read_game(folder, memory_budget=3 * ONE_ENCODING)
    with pytest.raises(GameError, match=r"19\.npy contains NaN or inf"):
        read_game(folder)


def test_the_attack_gives_the_same_result_from_blocks(on_disk):
    """The whole attack on a game read from disk in blocks of one or two encodings, against the same game
    held in memory: the same matchings, local permutations and extracted encoder."""
    folder, _ = on_disk
    whole = run_attack(read_game(folder), TINY, np, quiet=True)
    budget = 3 * ONE_ENCODING
    lazy_game = read_game(folder, memory_budget=budget)
    assert isinstance(lazy_game.encodings, EncodingFiles)
    lazy = run_attack(lazy_game, TINY, np, quiet=True, memory_budget=budget)
    np.testing.assert_array_equal(lazy.order, whole.order)
    for a, b in zip(lazy.stages, whole.stages, strict=True):
        assert a.name == b.name
        if b.matching is not None:
            np.testing.assert_array_equal(a.matching, b.matching)
    np.testing.assert_array_equal(lazy.matching, whole.matching)
    np.testing.assert_allclose(lazy.encoder.mix_w, whole.encoder.mix_w, rtol=1e-5, atol=1e-6)
