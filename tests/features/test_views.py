"""The views models read: the padded set view holds each sheet's observations in time order."""


import numpy as np

from neoqa.features import views as features


def test_padded_view_matches_the_sheets(small_batch):
    part = small_batch.select([0, 1, 2])
    sets = features.padded_sets(part)
    assert sets["images"].shape[:2] == (3, part.k.max())
    assert np.array_equal(sets["mask"].sum(1), part.k)
    order = features.time_order(part)
    np.testing.assert_array_equal(sets["images"][0, : part.k[0]], part.cutouts[order][: part.k[0]])


def test_pixel_median_is_numpys_median():
    rng = np.random.default_rng(3)
    for size in (15, 4, 1):                                     # odd, even and one pixel
        img = rng.normal(size=(50, 2, size, size)).astype(np.float32)
        np.testing.assert_array_equal(features.pixel_median(img), np.median(img.reshape(50, 2, -1), axis=2))
    img[3, 1, 0, 0] = np.nan                                    # not finite: numpy's own median (NaN)
    got = features.pixel_median(img)
    assert np.isnan(got[3, 1]) and np.isfinite(np.delete(got.ravel(), 7)).all()


def test_standardised_cutouts_are_the_numpy_expressions_values():
    """The compiled pass gives exactly the float32 values of the NumPy expression it replaced."""
    rng = np.random.default_rng(5)
    for size in (15, 4, 1):                                     # odd, even and one pixel
        img = (rng.normal(size=(300, 2, size, size)) * rng.uniform(0.1, 1e3, size=(300, 2, 1, 1))).astype(np.float32)
        img[0, 0] = 7.0                                        # a flat cutout: every pixel its median
        img[1, 1, 0, 0] = 1e9                                   # a cosmic ray, clipped
        scale = np.array([3.3, 0.07], np.float32)
        want = np.clip((img - features.pixel_median(img)[..., None, None]) / scale[None, :, None, None], -50, 50)
        got = features.standardised_cutouts(img, scale, 50.0)
        assert got.dtype == np.float32 and got.shape == img.shape
        np.testing.assert_array_equal(got, want.astype(np.float32))
        assert (got[0, 0] == 0).all() and (size == 1 or (np.abs(got) == 50).any())   # one pixel is its median
    img[5, 0, 0, 0] = np.nan                                    # outside the contract: NumPy's NaN, not a number
    assert np.isnan(features.standardised_cutouts(img, scale, 50.0)[5, 0]).all()
