"""Whole BatchNorm batches drawn for the sampled passes of model extraction."""
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from empirical.batch_sample import whole_batches


def test_members_that_fit_are_returned_as_given():
    groups = np.repeat(np.arange(4), 10)
    members = np.array([3, 1, 30, 22])
    assert np.array_equal(whole_batches(groups, 16, members, max_rows=4 * 16), members)


@settings(max_examples=30, deadline=None)
@given(sizes=st.lists(st.integers(1, 12), min_size=1, max_size=8), p=st.integers(1, 5), cap=st.integers(1, 60),
       seed=st.integers(0, 3))
def test_a_draw_is_whole_batches_within_the_cap(sizes, p, cap, seed):
    groups = np.repeat(np.arange(len(sizes)), sizes)
    members = np.flatnonzero(np.arange(len(groups)) % 3 != 1)  # a subset, as the fitted pairs are
    got = whole_batches(groups, p, members, seed=seed, max_rows=cap)
    assert np.all(np.isin(got, members)) and np.all(np.diff(got) > 0)
    if len(members) * p <= cap:
        assert np.array_equal(got, members)
        return
    chosen = np.unique(groups[got])
    # every chosen batch is taken whole (all of its members), and at least one batch is chosen
    assert len(chosen) >= 1
    assert np.array_equal(got, members[np.isin(groups[members], chosen)])
    if len(chosen) > 1:
        assert len(got) * p <= cap
    assert np.array_equal(got, whole_batches(groups, p, members, seed=seed, max_rows=cap))  # reproducible


def test_one_batch_larger_than_the_cap_is_still_taken():
    groups = np.repeat(np.arange(3), 50)
    got = whole_batches(groups, 64, max_rows=100)
    assert len(got) == 50 and len(np.unique(groups[got])) == 1


@pytest.mark.parametrize("seed", [0, 1])
def test_the_draw_depends_on_the_seed_only_through_the_order(seed):
    groups = np.repeat(np.arange(20), 8)
    got = whole_batches(groups, 4, seed=seed, max_rows=8 * 4 * 5)
    assert len(np.unique(groups[got])) == 5 and len(got) == 40
