"""MatchedImages: originals in a matching's order, gathered on read, equal to the copy they replace."""
import numpy as np

from empirical.matched import MatchedImages, as_images


def test_matched_images_gather_what_the_copy_holds():
    originals = np.random.default_rng(0).random((7, 1, 4, 4), dtype=np.float32)
    m = np.array([3, 0, 6, 2, 5])
    images = MatchedImages(originals, m, np)
    copy = originals[m]
    assert images.shape == copy.shape and len(images) == 5
    np.testing.assert_array_equal(images[np.array([4, 0, 4])], copy[[4, 0, 4]])
    np.testing.assert_array_equal(images[1:4], copy[1:4])
    np.testing.assert_array_equal(images[np.arange(5)], copy)
    assert as_images(images, np) is images
    assert as_images(copy, np) is copy
