"""Pixel profiles, rendering and pipeline measurement: the NumPy face of ``kernels``.

Sources are pixel-integrated Gaussians (exact integration over each pixel, so
sub-pixel positions render correctly); a narrow width gives cosmic rays and hot
pixels. Measurement is what a detection pipeline does on the same pixels: a
windowed centroid, PSF-fit photometry and a reduced chi-square.
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np
from scipy.special import erf

from neoqa.data.photometry import FWHM_PER_SIGMA
from neoqa.simulate import kernels
from neoqa.simulate.kernels import LUT_REACH, LUT_STEP

FWHM_TO_SIGMA = 1.0 / FWHM_PER_SIGMA


def pixel_profile_exact(centre, sigma, n):
    """1-D pixel-integrated Gaussian: [..., n] for pixel centres 0..n-1 (error functions)."""
    edges = np.arange(n + 1, dtype=np.float64) - 0.5
    z = (edges - centre[..., None]) / (np.sqrt(2.0) * sigma[..., None])
    c = 0.5 * erf(z)
    return (c[..., 1:] - c[..., :-1]).astype(np.float32)


@lru_cache(maxsize=64)
def _lut(sigma: float) -> np.ndarray:
    """Pixel 0's profile at offsets stepping LUT_STEP (linear interpolation keeps errors
    below 1e-5 of the peak) out to LUT_REACH pixels, then a final zero."""
    d = np.arange(-LUT_REACH, LUT_REACH + LUT_STEP, LUT_STEP)
    t = pixel_profile_exact(-d, np.full(d.shape, sigma), 1)[:, 0]     # pixel 0 seen from offset d
    return np.append(t, 0.0).astype(np.float32)


def pixel_profile(centre, sigma, n):
    """1-D pixel-integrated Gaussian: [..., n] for pixel centres 0..n-1.

    Tabulated per distinct width (sources use a handful) and linearly interpolated:
    the same values as ``pixel_profile_exact`` to ~1e-5, at a fraction of the cost.
    """
    centre = np.asarray(centre, np.float32)
    sigma = np.broadcast_to(np.asarray(sigma, np.float32), centre.shape)
    values, which = np.unique(sigma, return_inverse=True)
    tables, length = lut_tables(values)
    pix = np.arange(n, dtype=np.float32)
    pos = (pix - centre[..., None] + LUT_REACH) / LUT_STEP
    pos = np.clip(pos, 0, length - 2)
    i = pos.astype(np.int64)
    f = pos - i
    i += (which.reshape(centre.shape) * length)[..., None]
    return (tables[i] * (1 - f) + tables[i + 1] * f).astype(np.float32)


@lru_cache(maxsize=64)
def _luts(sigmas: tuple) -> np.ndarray:
    return np.concatenate([_lut(s) for s in sigmas])


def psf_sum_sq(sigma_px: float, n_sub: int = 8) -> float:
    """Mean over sub-pixel positions of sum(P^2) for a unit-flux PSF (sets the noise per depth)."""
    offs = (np.arange(n_sub) + 0.5) / n_sub - 0.5
    g = pixel_profile(offs + 10.0, np.full(n_sub, sigma_px), 21)
    s = np.sum(g * g, axis=-1)
    return float(np.mean(s[:, None] * s[None, :]))


def lut_tables(sigmas) -> tuple[np.ndarray, int]:
    """The profile tables of ``sigmas`` end to end, and the length of one (table i starts at i x length)."""
    tables = _luts(tuple(round(float(v), 6) for v in np.ravel(sigmas)))
    return tables, len(tables) // len(np.ravel(sigmas))


def render_points(x, y, flux, sigma, size):
    """Sum of point sources on [M, C, size, size] images.

    x, y: [M, S] local pixel positions; flux: [M, S, C]; sigma: [M, S, C] in pixels.
    """
    flux = np.asarray(flux, np.float32)
    values, which = np.unique(np.asarray(sigma, np.float32), return_inverse=True)
    tables, length = lut_tables(values)
    img = np.zeros((flux.shape[0], flux.shape[2], size, size), np.float32)
    kernels.add_points(img, np.arange(len(img)), np.asarray(x, np.float32), np.asarray(y, np.float32), flux,
                       which.reshape(flux.shape).astype(np.int64), tables, length)
    return img


REFINE_STEPS = (-0.375, -0.125, 0.125, 0.375)
CENTROID_ITERS = 3


def measure(img, x0, y0, sigma_psf, sky, noise, iters=CENTROID_ITERS, refine=True, rows=None):
    """Centroid and PSF-fit photometry near (x0, y0) in each image, as a pipeline does.

    img: [N, C, P, P]; rows: [M] images to measure (default all); x0, y0: [M] starting
    positions (local pixels); sigma_psf: [C]; sky, noise: [M, C] (noise from the
    uncertainty image). In a ``kernels.WINDOW``-pixel square: a windowed centroid on
    the summed S/N image, then (``refine``) the sub-pixel offset on a 4 x 4 grid that
    maximises the matched-filter S/N, then PSF-fit flux, S/N and reduced chi-square per
    channel. Returns dict of x, y [M] and flux, snr, chi2 [M, C].
    """
    rows = np.arange(img.shape[0]) if rows is None else np.asarray(rows)
    sigma_psf = np.asarray(sigma_psf, np.float64)
    tables, length = lut_tables(sigma_psf)
    x, y, flux, snr, chi2 = kernels.measure(
        np.ascontiguousarray(img, np.float32), rows.astype(np.int64), np.asarray(x0, np.float64),
        np.asarray(y0, np.float64), np.ascontiguousarray(sky, np.float64), np.ascontiguousarray(noise, np.float64),
        psf_setup(tables, length, len(sigma_psf), float(np.mean(sigma_psf)), iters, refine))
    return {"x": x, "y": y, "flux": flux, "snr": snr, "chi2": chi2}


def psf_setup(tables, length, channels, sigma_mean, iters=CENTROID_ITERS, refine=True) -> kernels.Psf:
    """The kernels' profile and measurement settings; each channel's PSF is table c (width 0)."""
    return kernels.Psf(tables, int(length), np.arange(channels), float(sigma_mean), int(iters),
                       np.asarray(REFINE_STEPS if refine else (), np.float64))
