"""Checkpoints of a stage's parts: what is saved comes back whole, a generator resumes its draws; a damaged
file, one saved for another computation or one its reader cannot use is ignored with one warning; a save
that fails is reported and the computation goes on."""
import numpy as np
import pytest

from empirical.checkpoint import Checkpoint, pack, rng_state, set_rng_state, unpack


def test_arrays_and_record_come_back_as_saved(tmp_path):
    cp = Checkpoint(tmp_path / "part" / "fit.npz")
    assert cp.load() is None  # nothing saved yet
    params = {"W0": np.arange(6, dtype=np.float32).reshape(2, 3), "b0": np.ones(2, np.float32)}
    cp.save({**pack(params=params, best=None), "losses": np.array([0.5, 0.25])},
            {"step": 7, "count": np.int64(3), "share": np.float32(0.5), "curve": [(25, 0.1)]})
    arrays, meta = cp.load()
    assert set(arrays) == {"params.W0", "params.b0", "losses"}  # a None group is not saved
    back = unpack(arrays, "params", np)
    for k in params:
        np.testing.assert_array_equal(back[k], params[k])
        assert back[k].dtype == params[k].dtype
    assert unpack(arrays, "best", np) is None
    assert meta == {"step": 7, "count": 3, "share": 0.5, "curve": [[25, 0.1]]}
    cp.clear()
    assert not cp.path.exists()


def test_a_generator_resumes_its_draws(tmp_path):
    rng = np.random.default_rng([5, 0xE7])
    rng.integers(10, size=100)
    cp = Checkpoint(tmp_path / "rng.npz")
    cp.save({}, {"rng": rng_state(rng)})
    expected = rng.random(50)
    other = np.random.default_rng(0)
    set_rng_state(other, cp.load()[1]["rng"])
    np.testing.assert_array_equal(other.random(50), expected)


@pytest.mark.parametrize("damage", ["empty", "truncated", "garbage"])
def test_a_damaged_checkpoint_is_ignored_with_one_warning(tmp_path, damage):
    warnings = []
    cp = Checkpoint(tmp_path / "fit.npz", warn=warnings.append)
    cp.save({"a": np.zeros(1000)}, {"step": 1})
    data = cp.path.read_bytes()
    cp.path.write_bytes({"empty": b"", "truncated": data[:len(data) // 2], "garbage": b"not a zip file"}[damage])
    assert cp.load() is None
    assert len(warnings) == 1 and str(cp.path) in warnings[0]


def test_due_every_steps_or_by_the_clock(tmp_path):
    by_steps = Checkpoint(tmp_path / "a.npz", every_steps=5)
    assert [s for s in range(1, 16) if by_steps.due(s)] == [5, 10, 15]
    assert Checkpoint(tmp_path / "b.npz", every_seconds=0).due(1)
    assert not Checkpoint(tmp_path / "c.npz", every_seconds=3600).due(1)


def test_a_part_saved_for_another_computation_or_unusable_is_not_loaded(tmp_path):
    warnings = []
    Checkpoint(tmp_path / "fit.npz", fingerprint={"steps": 80, "xp": "numpy"}).save({"a": np.zeros(3)}, {"step": 5})
    other = Checkpoint(tmp_path / "fit.npz", fingerprint={"steps": 60, "xp": "numpy"}, warn=warnings.append)
    assert other.load() is None and not other.loaded
    assert len(warnings) == 1 and "another computation" in warnings[0]
    same = Checkpoint(tmp_path / "fit.npz", warn=warnings.append).bind({"xp": "numpy", "steps": 80})
    assert same.load(check=lambda a, m: m["missing"]) is None and "damaged" in warnings[-1] and len(warnings) == 2
    arrays, meta = same.load(check=lambda a, m: m["step"])
    assert same.loaded and meta == {"step": 5} and arrays["a"].shape == (3,)


def test_a_save_that_fails_is_reported_and_the_work_goes_on(tmp_path):
    warnings = []
    (tmp_path / "blocked").write_text("a file where the folder should be")
    cp = Checkpoint(tmp_path / "blocked" / "fit.npz", warn=warnings.append)
    assert cp.save({"a": np.zeros(3)}, {"step": 1}) is False
    assert len(warnings) == 1 and "could not save" in warnings[0]
    assert cp.load() is None


def test_only_pcg64_generators_are_checkpointed():
    with pytest.raises(TypeError, match="PCG64"):
        rng_state(np.random.Generator(np.random.MT19937(0)))
