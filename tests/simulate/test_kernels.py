"""The compiled simulator kernels and the fast per-sheet reductions, against their references."""

import numpy as np
import pytest
from scipy import stats

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


def _expose_noise_peaks(snr, seed=1, m=2000, sky_level=100.0):
    """Patches holding one noise peak of matched-filter S/N ``snr`` in the first band each."""
    from neoqa.simulate import render
    from neoqa.simulate.generator import WIDTHS
    from neoqa.simulate.photometry import Frame
    from neoqa.simulate.instruments import NEOWISE

    frame = Frame(NEOWISE)
    rng = np.random.default_rng(seed)
    P, C = 19, 2
    x = (9 + rng.uniform(-0.5, 0.5, (m, 1))).astype(np.float32)
    y = (9 + rng.uniform(-0.5, 0.5, (m, 1))).astype(np.float32)
    flux = np.zeros((m, 1, C), np.float32)
    flux[:, 0, 0] = snr
    tables, length = render.lut_tables(np.multiply.outer(WIDTHS, frame.sigma_px))
    img = np.empty((m, C, P, P), np.float32)
    zeros = np.zeros(m, np.float32)
    star = kernels.BrightStar(zeros, zeros, np.zeros((m, C), np.float32), zeros + 5, np.zeros((m, C), np.float32))
    sig = np.ones((m, C), np.float32)
    noise = kernels.Noise(rng.integers(0, 2**63, m), sig, np.full((m, C), sky_level, np.float32),
                          np.full((m, C), 1e9, np.float32))
    sky, got = kernels.expose(img, np.ones(m, bool), np.ones(m, bool),
                              kernels.Sources(x, y, flux, np.zeros((m, 1), np.int64), np.ones((m, 1), bool)), star,
                              noise, render.psf_setup(tables, length, C, float(np.mean(frame.sigma_px))), 945)
    return frame, img, x[:, 0], y[:, 0], sky, got


def test_a_noise_peak_is_the_noise_conditioned_to_peak_there():
    """A noise peak is not a source added on top of noise (which would draw the noise twice): the
    noise in the measurement window is conditioned so that the pipeline's matched filter there is
    exactly the drawn S/N and has no gradient; the pipeline then finds it where it was put."""
    from neoqa.simulate import render

    frame, img, x, y, sky, got = _expose_noise_peaks(4.7)
    for i in range(20):
        ix, iy = int(min(max(np.rint(x[i]), 3), 15)) - 3, int(min(max(np.rint(y[i]), 3), 15)) - 3
        px = render.pixel_profile(np.array([x[i]]), np.array([frame.sigma_px[0]]), 19)[0]
        py = render.pixel_profile(np.array([y[i]]), np.array([frame.sigma_px[0]]), 19)[0]
        h = np.outer(py[iy:iy + 7], px[ix:ix + 7])
        window = img[i, 0, iy:iy + 7, ix:ix + 7] - 100.0
        assert np.sum(window * h) / np.sqrt(np.sum(h * h)) == pytest.approx(4.7, abs=2e-3)
    mx, my, _, snr, _ = got
    assert np.median(np.hypot(mx - x, my - y)) < 0.2
    assert np.mean(snr[:, 0]) == pytest.approx(4.7, abs=0.1)
    # the other band is untouched noise
    assert abs(np.mean(snr[:, 1])) < 0.1 and 0.8 < np.std(snr[:, 1]) < 1.2
    # the pipeline's sky is the true level to within the error of a median over the annulus
    assert np.std(sky[:, 0] - 100.0) == pytest.approx(1.2533 / np.sqrt(945), rel=0.1)
