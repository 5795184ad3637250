"""Photometry on the sheet's pixels that every source of sheets shares: the composite's S/N (the
simulator reports it, ingest measures it where a team's tables lack it, the corruptions move it),
each cutout's sky and noise, and the PSF's width from a dataset's record.

One code path, so that ``composite_snr_ch1/2`` means the same whether a sheet was simulated,
ingested or corrupted: a PSF fit at the composite's centre pixel (where the moving frame puts the
object) in a ``WINDOW``-pixel square, the PSF a pixel-integrated Gaussian of the channel's width.
"""

from __future__ import annotations

import numpy as np
from scipy.special import erf

from neoqa.data.sheets import pixel_median
from neoqa.errors import NeoqaError

FWHM_PER_SIGMA = 2.0 * np.sqrt(2.0 * np.log(2.0))
WINDOW = 7                      # the detection pipeline's measurement window (simulate.kernels.WINDOW)
NEAR_STAR_FWHM = 3.0            # a catalogued star nearer than this many PSF FWHM (their mean) flags a detection


def psf_sigma_px(meta: dict, channels: int, required: bool = True, where: str = "the dataset") -> np.ndarray | None:
    """Per-channel PSF sigma in pixels from a dataset's ``psf_fwhm_arcsec`` (one FWHM, or one per
    channel) and ``pixel_scale_arcsec`` (the simulator records both; a team adds the FWHM to its
    dataset.json). Where it is absent and not ``required``, None; a value that is not a positive
    width is refused in one line naming ``where``."""
    fwhm, scale = meta.get("psf_fwhm_arcsec"), meta.get("pixel_scale_arcsec")
    if fwhm is None or scale is None:
        if required:
            raise NeoqaError(f"{where}: the PSF width is unknown: no psf_fwhm_arcsec "
                             "(add it to dataset.json before ingest)")
        return None
    try:
        sigma = np.broadcast_to(np.asarray(fwhm, np.float64), (channels,)) / float(scale) / FWHM_PER_SIGMA
    except (TypeError, ValueError):
        sigma = np.array([np.nan])
    if not (np.all(np.isfinite(sigma)) and np.all(sigma > 0)):
        raise NeoqaError(f"{where}: psf_fwhm_arcsec {fwhm!r} with pixel_scale_arcsec {scale!r} is not a "
                         f"positive width for each of the {channels} channels")
    return sigma


def pixel_sigma(images: np.ndarray) -> np.ndarray:
    """Robust per-image, per-channel pixel noise [.., C]: 1.4826 x the median absolute deviation
    (a compact source moves it little)."""
    flat = images.reshape(*images.shape[:-2], -1)
    med = np.median(flat, axis=-1, keepdims=True)
    return 1.4826 * np.median(np.abs(flat - med), axis=-1)


def sky_levels(cutouts: np.ndarray, obs_scalars: np.ndarray, names) -> np.ndarray:
    """Each cutout channel's sky [M, C]: the ``sky_ch1``.. observation scalars where they are
    present and finite, else the cutout's median pixel."""
    names = list(names)
    sky = pixel_median(cutouts).astype(np.float64)
    for c in range(cutouts.shape[1]):
        name = f"sky_ch{c + 1}"
        if name in names:
            v = np.asarray(obs_scalars[:, names.index(name)], np.float64)
            sky[:, c] = np.where(np.isfinite(v), v, sky[:, c])
    return sky


def _profile(sigma: np.ndarray) -> np.ndarray:
    """[C, WINDOW]: a unit Gaussian of each width integrated over the window's pixels, centred on
    the middle pixel's centre."""
    edges = np.arange(WINDOW + 1, dtype=np.float64) - WINDOW / 2
    c = 0.5 * erf(edges[None, :] / (np.sqrt(2.0) * np.asarray(sigma, np.float64)[:, None]))
    return c[:, 1:] - c[:, :-1]


def centre_flux(images: np.ndarray, sigma_px) -> tuple[np.ndarray, np.ndarray]:
    """PSF-fit flux at the centre pixel of each image ([N, C] from [N, C, S, S], background already
    subtracted) and the PSF's norm sqrt(sum P^2) over the window [C]: the flux's S/N is
    flux x norm / (pixel noise)."""
    S = images.shape[-1]
    if S < WINDOW:
        raise NeoqaError(f"cutouts of {S} pixels are smaller than the {WINDOW}-pixel measurement window")
    p = _profile(sigma_px)                                                  # separable: P = p_y p_x
    lo = S // 2 - WINDOW // 2
    win = np.asarray(images[..., lo:lo + WINDOW, lo:lo + WINDOW], np.float64)
    s2 = (p ** 2).sum(-1) ** 2                                              # sum of P^2 over the square
    flux = np.einsum("ncyx,cy,cx->nc", win, p, p) / s2
    return flux, np.sqrt(s2)


def composite_noise(noise: np.ndarray, k) -> np.ndarray:
    """A composite's pixel noise [N, C] from its cutouts' [M, C] (rows by sheet, ``k`` per sheet):
    the mean of k independent images."""
    k = np.asarray(k, np.int64)
    starts = np.concatenate([[0], np.cumsum(k)[:-1]])
    return np.sqrt(np.add.reduceat(np.asarray(noise, np.float64) ** 2, starts, axis=0)) / k[:, None]


def composite_snr(composites: np.ndarray, sigma_px, noise: np.ndarray) -> np.ndarray:
    """``composite_snr_ch1``..: each composite's PSF-fit S/N at its centre [N, C], given its pixel
    noise [N, C] (``composite_noise``)."""
    flux, norm = centre_flux(composites, sigma_px)
    with np.errstate(divide="ignore", invalid="ignore"):
        return flux * norm[None, :] / np.maximum(noise, 1e-6)


def near_star_flag(star_dist_arcsec, psf_fwhm_arcsec) -> np.ndarray:
    """``near_star_flag``: 1 where the nearest catalogued star is within ``NEAR_STAR_FWHM`` times
    the channels' mean PSF FWHM, else 0 (none known: 0)."""
    with np.errstate(invalid="ignore"):
        return (np.asarray(star_dist_arcsec) < NEAR_STAR_FWHM * np.mean(psf_fwhm_arcsec)).astype(np.float32)

