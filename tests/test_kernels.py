"""The compiled simulator kernels and the fast per-sheet reductions, against their references."""

import numpy as np
import pytest
from scipy import stats

from neoqa.sheets import SheetBatch, composite
from neoqa.simulate import kernels


def test_ziggurat_normals_are_standard_normal():
    n = 2_000_000
    x = kernels.normals(12345, n)
    assert abs(x.mean()) < 3e-3 and abs(x.std() - 1) < 3e-3
    assert stats.kstest(x, "norm").pvalue > 1e-3
    # the tails come from the slow paths (wedges, and the tail beyond 3.44): counts within
    # 4 binomial standard deviations of the normal's
    for t in (2.0, 3.0, 3.5, 4.0, 4.5):
        p = 2 * stats.norm.sf(t)
        assert abs(np.sum(np.abs(x) > t) - n * p) < 4 * np.sqrt(n * p * (1 - p))
    assert abs(stats.skew(x)) < 0.01 and abs(stats.kurtosis(x)) < 0.02
    # neighbours are independent, and a seed gives the same stream
    assert abs(np.corrcoef(x[:-1], x[1:])[0, 1]) < 3e-3
    np.testing.assert_array_equal(kernels.normals(7, 1000), kernels.normals(7, 1000))
    assert not np.array_equal(kernels.normals(7, 1000), kernels.normals(8, 1000))


@pytest.mark.parametrize("n", [1, 2, 8, 9, 10, 71, 72])
def test_median_is_exact(n):
    rng = np.random.default_rng(n)
    buf = np.empty(n, np.float32)
    for trial in range(300):
        b = (rng.normal(size=n) * 30 + 1000).astype(np.float32)
        if trial % 3 == 0:
            b[: n // 3] += 5000                       # a star on the border
        if trial % 5 == 0:
            b = np.rint(b / 50).astype(np.float32) * 50   # ties
        if trial % 7 == 0:
            b[:] = 3.0                                # flat
        expect = np.median(b.astype(np.float64))
        assert kernels.median(b, buf) == pytest.approx(expect, rel=1e-7, abs=1e-6)


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
