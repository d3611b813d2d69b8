"""nearest: Challenge 2's two nearest-neighbour shares."""
import numpy as np

from empirical.nearest import nearest_shares


def test_nearest_shares_in_both_directions():
    truth = np.array([[0.0], [1.0]])
    est = np.array([[0.4], [0.45]])
    # est[1] is nearer truth[0] than truth[1]; yet truth[1] is nearer est[1] than est[0]
    assert nearest_shares(truth, est) == {"est_to_nearest_truth": 0.5, "truth_to_nearest_est": 1.0}
    assert nearest_shares(truth, truth) == {"est_to_nearest_truth": 1.0, "truth_to_nearest_est": 1.0}
