"""The composite's S/N, the one measurement simulated, ingested and corrupted sheets share."""

import numpy as np
import pytest
from scipy.special import erf

from neoqa.data.photometry import (FWHM_PER_SIGMA, centre_flux, composite_noise, composite_snr, pixel_sigma,
                                   psf_sigma_px, sky_levels)
from neoqa.errors import NeoqaError


def _star(flux, sigma, S=15):
    """A pixel-integrated Gaussian of ``flux`` centred on pixel S // 2's centre, [S, S]."""
    edges = np.arange(S + 1) - S // 2 - 0.5
    p = np.diff(0.5 * erf(edges / (np.sqrt(2) * sigma)))
    return flux * np.outer(p, p)


def test_the_psf_fit_gives_back_a_centred_source_and_its_noise():
    sigma = np.array([0.9, 1.3])
    img = np.stack([_star(100.0, s) for s in sigma])[None]
    flux, norm = centre_flux(img, sigma)
    np.testing.assert_allclose(flux, [[100.0, 100.0]], rtol=1e-9)
    # S/N is calibrated: over noisy copies, the measured flux scatters by noise / norm.
    rng = np.random.default_rng(0)
    noisy = img + rng.normal(0, 2.0, (4000, *img.shape[1:]))
    snr = composite_snr(noisy, sigma, np.full((4000, 2), 2.0))
    np.testing.assert_allclose(snr.std(0), 1.0, rtol=0.05)
    np.testing.assert_allclose(snr.mean(0), 100.0 * norm / 2.0, rtol=0.01)
    np.testing.assert_allclose(pixel_sigma(noisy - img).mean(0), 2.0, rtol=0.02)
    bright = pixel_sigma(noisy).mean(0) / 2.0           # a source at S/N ~40 in 15 x 15 pixels moves it little
    assert np.all((bright > 1.02) & (bright < 1.1))
    with pytest.raises(NeoqaError, match="smaller than the 7-pixel"):
        centre_flux(np.zeros((1, 2, 5, 5)), sigma)


def test_a_composite_of_k_cutouts_has_their_noise_over_root_k():
    noise = np.array([[2.0, 4.0]] * 5)
    np.testing.assert_allclose(composite_noise(noise, [1, 4]), [[2.0, 4.0], [1.0, 2.0]])


def test_the_psf_width_comes_from_the_datasets_record():
    meta = {"psf_fwhm_arcsec": [6.1, 6.4], "pixel_scale_arcsec": 2.75}
    np.testing.assert_allclose(psf_sigma_px(meta, 2), np.array([6.1, 6.4]) / 2.75 / FWHM_PER_SIGMA)
    np.testing.assert_allclose(psf_sigma_px({**meta, "psf_fwhm_arcsec": 5.5}, 2), 2 / FWHM_PER_SIGMA)
    assert psf_sigma_px({"pixel_scale_arcsec": 2.75}, 2, required=False) is None
    with pytest.raises(NeoqaError, match="here: the PSF width is unknown"):
        psf_sigma_px({"pixel_scale_arcsec": 2.75}, 2, where="here")
    for bad in ([6.1, 0], [1, 2, 3], "wide", [6.1, float("nan")]):
        with pytest.raises(NeoqaError, match="here: psf_fwhm_arcsec .* is not a positive width"):
            psf_sigma_px({**meta, "psf_fwhm_arcsec": bad}, 2, where="here")


def test_sky_comes_from_the_sky_scalars_where_finite_else_the_median_pixel():
    cut = np.zeros((2, 2, 9, 9), np.float32)
    cut[:, 1] = 7.0
    obs = np.array([[3.0, 1.0], [np.nan, 1.0]])
    sky = sky_levels(cut, obs, ["sky_ch1", "other"])
    np.testing.assert_array_equal(sky, [[3.0, 7.0], [0.0, 7.0]])
