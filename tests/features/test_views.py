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
