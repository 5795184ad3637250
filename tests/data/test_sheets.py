"""The in-memory container: the composite as the simulator stacks it, gathering rows."""

import numpy as np

from neoqa.data.sheets import SheetBatch, composite


def test_composite_is_the_mean_of_background_subtracted_cutouts():
    rng = np.random.default_rng(1)
    k = np.array([1, 5, 3, 8])
    cut = rng.normal(size=(k.sum(), 2, 5, 5)).astype(np.float32)
    sky = rng.normal(size=(k.sum(), 2)).astype(np.float32)
    got = composite(cut, sky, k)
    starts = np.concatenate([[0], np.cumsum(k)[:-1]])
    expect = np.add.reduceat(cut - sky[:, :, None, None], starts, axis=0) / k[:, None, None, None]
    assert got.dtype == np.float32 and got.shape == (4, 2, 5, 5)
    np.testing.assert_allclose(got, expect, atol=1e-6)


def test_gather_equals_concat_then_select(small_batch):
    a = small_batch
    b = small_batch.select(np.arange(len(small_batch))[::-1][:40])
    rng = np.random.default_rng(2)
    which = rng.integers(0, 2, 60)
    rows = np.where(which == 0, rng.integers(0, len(a), 60), rng.integers(0, len(b), 60))
    got = SheetBatch.gather([a, b], which, rows)
    expect = SheetBatch.concat([a, b]).select(np.where(which == 0, rows, rows + len(a)))
    assert got.equals(expect)
    assert got.n_obs == int(got.k.sum())


def test_a_slice_is_the_selection_of_a_range_without_copies(small_batch):
    for start, stop in ((0, 10), (37, 38), (5, len(small_batch)), (12, 12)):
        part, chosen = small_batch.slice(start, stop), small_batch.select(np.arange(start, stop))
        for name in ("sheet_id", "label", "k", "composite", "cutouts", "obs_scalars", "mjd"):
            np.testing.assert_array_equal(getattr(part, name), getattr(chosen, name))
        assert part.truth_obs.keys() == chosen.truth_obs.keys()
    assert np.shares_memory(small_batch.slice(3, 9).cutouts, small_batch.cutouts)
