"""holdout: the matched pairs held back from extraction, their error and the attacker's own estimate."""
import numpy as np

from empirical.encoder import encode, patchify, random_key
from empirical.extraction import ExtractConfig
from empirical.holdout import (
    EVAL_BATCHES,
    MIN_HELD_OUT,
    STATS_IMAGES,
    HeldOut,
    held_out_error,
    held_out_plan,
    held_out_scores,
    holdout_split,
)
from empirical.tprime import params_from_key


def test_holdout_split_holds_back_a_share_of_each_batch():
    groups = np.repeat([0, 1, 2], [200, 200, 100])
    a = holdout_split(groups, ExtractConfig(holdout=0.1, seed=4))
    assert len(np.intersect1d(a.fit, a.held)) == 0 and len(a.fit) + len(a.held) == len(groups)
    assert [int((groups[a.held] == g).sum()) for g in (0, 1, 2)] == [20, 20, 10]
    assert np.array_equal(a.held, holdout_split(groups, ExtractConfig(holdout=0.1, seed=4)).held)
    assert not np.array_equal(a.held, holdout_split(groups, ExtractConfig(holdout=0.1, seed=5)).held)
    small = holdout_split(np.zeros(10 * MIN_HELD_OUT - 1, int), ExtractConfig(holdout=0.1))
    assert len(small.held) == 0 and len(small.fit) == 10 * MIN_HELD_OUT - 1  # too few to hold back
    assert len(holdout_split(groups, ExtractConfig(holdout=0.0)).held) == 0


def test_held_out_error_uses_each_batch_statistics_images(small_pairs):
    """The true encoder has zero held-out error only when BatchNorm sees the whole batch, as Alice's did."""

    fam, imgs, _, _ = small_pairs(n=80, depth=2)
    key = random_key(fam, 9)
    targets, _ = encode(imgs, key, np, shuffle=False, bn_batch=40)
    groups = np.arange(80) // 40
    rows = patchify(imgs, fam.patch)
    split = holdout_split(groups, ExtractConfig(holdout=0.5))
    plan = held_out_plan(targets, groups, split, np)
    true = params_from_key(key, np)
    assert held_out_error(true, rows, targets, plan, fam, np) < 1e-6
    only_held = HeldOut(tuple((h, h) for h, _ in plan.batches), plan.scale)  # statistics of the held-back alone
    assert held_out_error(true, rows, targets, only_held, fam, np) > 1e-3


def test_held_out_scores_of_the_true_encoder_are_perfect(small_pairs):
    fam, imgs, _, _ = small_pairs(n=40, depth=2)
    key = random_key(fam, 9)
    targets, _ = encode(imgs, key, np, shuffle=False, bn_batch=20)
    held = np.array([1, 5, 8, 13, 21, 22, 30, 34])
    out = held_out_scores(params_from_key(key, np), imgs, targets, np.arange(40) // 20, held, fam, np)
    assert out == {"est_to_nearest_truth": 1.0, "truth_to_nearest_est": 1.0, "n": 8}
    wrong = targets.copy()
    wrong[held] = targets[held[::-1]]  # every held-back image paired with another held-back image's encoding
    out = held_out_scores(params_from_key(key, np), imgs, wrong, np.arange(40) // 20, held, fam, np)
    assert out["est_to_nearest_truth"] == 0.0


def test_held_out_scores_read_whole_batches_up_to_the_cap(small_pairs, monkeypatch):
    """Past SAMPLE_ROWS patch rows, only the held-back pairs of the drawn batches are scored (and their
    batches encoded); the shares of the true encoder stay perfect."""
    from empirical import batch_sample

    fam, imgs, _, _ = small_pairs(n=40, depth=2)
    key = random_key(fam, 9)
    groups = np.arange(40) // 20
    targets, _ = encode(imgs, key, np, shuffle=False, bn_batch=20)
    held = np.array([1, 5, 8, 13, 21, 22, 30, 34])
    monkeypatch.setattr(batch_sample, "SAMPLE_ROWS", 20 * fam.n_patches)
    drawn = np.unique(groups[batch_sample.whole_batches(groups, fam.n_patches)])
    assert len(drawn) == 1
    out = held_out_scores(params_from_key(key, np), imgs, targets, groups, held, fam, np)
    assert out == {"est_to_nearest_truth": 1.0, "truth_to_nearest_est": 1.0, "n": 4}


def test_held_out_plan_measures_a_few_batches_with_their_own_statistics():
    groups = np.repeat(np.arange(EVAL_BATCHES + 2), 300)
    split = holdout_split(groups, ExtractConfig(holdout=0.1))
    targets = np.random.default_rng(0).random((len(groups), 2, 3)).astype(np.float32)
    plan = held_out_plan(targets, groups, split, np)
    assert len(plan.batches) == EVAL_BATCHES
    for held, stats in plan.batches:
        g = groups[held[0]]
        assert (groups[held] == g).all() and (groups[stats] == g).all()  # one batch each
        assert np.array_equal(stats[:len(held)], held) and len(stats) == STATS_IMAGES  # held back ones first
        assert np.isin(stats[len(held):], split.fit).all()
    assert held_out_plan(targets, groups, split._replace(held=np.arange(0)), np) is None
