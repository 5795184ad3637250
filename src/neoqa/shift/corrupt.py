"""Corruptions of a dataset for robustness tests: what a changed or ageing sensor does to sheets.

Each corruption acts on the data as stored (pixels and the scalars a pipeline would have
measured from them), at a severity on a documented scale; severity 0 is the data unchanged.
After the pixels and per-observation scalars change, ``refresh`` rebuilds the composite
(the background-subtracted cutouts averaged in the moving frame, as the simulator makes it)
and every sheet scalar that derives from observation scalars, so a sheet stays
self-consistent. The physics of each corruption is in docs/robustness.md.
"""

from __future__ import annotations

import dataclasses
import warnings
from dataclasses import dataclass
from typing import Callable

import numpy as np
from scipy import ndimage

from neoqa.errors import NeoqaError
from neoqa.features.views import padded
from neoqa.data.schema import DEFAULT_DETECT_SNR, LABEL_MIN_OBS, OBS_SCALARS
from neoqa.data import photometry
from neoqa.data.photometry import centre_flux, pixel_sigma, sky_levels
from neoqa.data.sheets import SheetBatch, composite
from neoqa.data.summaries import summarise


@dataclass(frozen=True)
class Corruption:
    name: str
    unit: str                   # what a severity value measures
    severities: tuple           # five increasing severities
    apply: Callable             # (batch, severity, rng) -> batch, on a copy
    doc: str
    needs: tuple = ()           # dataset metadata it cannot run without

    def missing(self, batch) -> str | None:
        """Why this corruption cannot run on ``batch``, or None."""
        absent = [k for k in self.needs if not batch.meta.get(k)]
        return f"the dataset records no {absent[0]} (add it to dataset.json before ingest)" if absent else None


# ---------------------------------------------------------------- helpers
def _copy(b: SheetBatch) -> SheetBatch:
    copy = lambda d: None if d is None else {k: v.copy() for k, v in d.items()}   # noqa: E731
    return dataclasses.replace(
        b, label=b.label.copy(), k=b.k.copy(), composite=b.composite.copy(), sheet_scalars=b.sheet_scalars.copy(),
        cutouts=b.cutouts.copy(), obs_scalars=b.obs_scalars.copy(), ra=b.ra.copy(), dec=b.dec.copy(),
        mag=b.mag.copy(), truth_sheet=copy(b.truth_sheet), truth_obs=copy(b.truth_obs), meta=dict(b.meta))


def _col(b: SheetBatch, name: str, sheet: bool = False) -> int | None:
    names = b.sheet_scalar_names if sheet else b.obs_scalar_names
    return names.index(name) if name in names else None


def _chan(b: SheetBatch) -> range:
    return range(b.cutouts.shape[1])


def obs_sky(b: SheetBatch) -> np.ndarray:
    """Per-observation, per-channel sky [M, C] (``data.photometry.sky_levels``)."""
    return sky_levels(b.cutouts, b.obs_scalars, b.obs_scalar_names)


def psf_sigma_px(b: SheetBatch, required: bool = True) -> np.ndarray:
    """Per-channel PSF sigma in pixels from the dataset's record (``data.photometry.psf_sigma_px``);
    where it is absent and not ``required``, 1 pixel: good enough for a matched filter's width."""
    sigma = photometry.psf_sigma_px(b.meta, b.cutouts.shape[1], required=required,
                                    where="the PSF corruption")
    return np.ones(b.cutouts.shape[1]) if sigma is None else sigma


# ---------------------------------------------------------------- consistency
def _nan(fn, v):
    with warnings.catch_warnings(), np.errstate(all="ignore"):
        warnings.simplefilter("ignore", RuntimeWarning)
        return fn(v, axis=1)


def _matched_flux(comp: np.ndarray, sigma: np.ndarray):
    """The PSF-fit flux at the centre of each composite channel and its noise [N, C], as the
    composite's S/N is measured (``data.photometry``)."""
    flux, norm = centre_flux(comp, sigma)
    return flux, pixel_sigma(comp) / norm[None]


def refresh(b: SheetBatch, before: SheetBatch, pixels_changed: bool = True) -> SheetBatch:
    """Rebuild the composite and the derived sheet scalars of ``b`` (in place) from its observations.

    ``before`` is the uncorrupted batch (same sheets): the composite S/N moves by what the
    matched filter measures between the two composites, so its scale stays the pipeline's.
    """
    C = b.cutouts.shape[1]
    if pixels_changed:
        b.composite = composite(b.cutouts, obs_sky(b), b.k)
    detect = float(b.meta.get("detect_snr", DEFAULT_DETECT_SNR))
    names = [n for n in OBS_SCALARS if _col(b, n) is not None]
    new = summarise({n: b.obs_scalars[:, _col(b, n)] for n in names}, b.k, detect)
    if pixels_changed:
        sigma = psf_sigma_px(before, required=False)
        f0, n0 = _matched_flux(before.composite, sigma)
        f1, n1 = _matched_flux(b.composite, sigma)
        for c in range(C):
            i = _col(b, f"composite_snr_ch{c + 1}", sheet=True)
            if i is not None:
                with np.errstate(all="ignore"):    # a flat (lost) channel has no S/N: NaN
                    snr = (b.sheet_scalars[:, i] * n0[:, c] + f1[:, c] - f0[:, c]) / n1[:, c]
                new[f"composite_snr_ch{c + 1}"] = np.where(n1[:, c] > 0, snr, np.nan)
    for name, v in new.items():
        i = _col(b, name, sheet=True)
        if i is not None:
            b.sheet_scalars[:, i] = v
    return b


# ---------------------------------------------------------------- the corruptions
def _scale_snr(b: SheetBatch, factor: np.ndarray, rows=slice(None)) -> None:
    """S/N times ``factor`` [C] (magnitude errors divide by it): what a changed noise or PSF does."""
    for c in _chan(b):
        i, j = _col(b, f"snr_ch{c + 1}"), _col(b, f"magerr_ch{c + 1}")
        if i is not None:
            b.obs_scalars[rows, i] *= factor[c]
        if j is not None:
            b.obs_scalars[rows, j] /= factor[c]


def more_noise(b, factor, rng):
    """Pixel noise times ``factor``: independent Gaussian noise of sigma sqrt(factor^2 - 1) x
    each cutout's measured noise is added, S/N divides by ``factor``."""
    sig = pixel_sigma(b.cutouts) * np.sqrt(factor ** 2 - 1)
    b.cutouts += (rng.standard_normal(b.cutouts.shape, dtype=np.float32) * sig[:, :, None, None]).astype(np.float32)
    _scale_snr(b, np.full(b.cutouts.shape[1], 1 / factor))
    return b


def _gaussian_kernel_power(s: float) -> float:
    """Sum of the squared weights of ndimage's Gaussian filter of sigma ``s``: the variance a
    filtered white-noise pixel keeps."""
    delta = np.zeros((31, 31))
    delta[15, 15] = 1
    return float((ndimage.gaussian_filter(delta, s) ** 2).sum())


def broader_psf(b, s_px, rng):
    """The PSF convolved with a Gaussian of sigma ``s_px`` pixels (defocus, jitter, a warmer
    telescope): the sky-subtracted signal is smoothed, then white noise restores each pixel's
    variance. Background-limited PSF-fit S/N falls as sigma / sqrt(sigma^2 + s^2)."""
    sky = obs_sky(b)[:, :, None, None]
    sig = pixel_sigma(b.cutouts)
    smooth = ndimage.gaussian_filter(b.cutouts - sky, sigma=(0, 0, s_px, s_px), mode="nearest")
    keep = _gaussian_kernel_power(s_px)
    noise = rng.standard_normal(b.cutouts.shape, dtype=np.float32) * (sig * np.sqrt(1 - keep))[:, :, None, None]
    b.cutouts = (smooth + sky + noise).astype(np.float32)
    sigma = psf_sigma_px(b)
    _scale_snr(b, sigma / np.sqrt(sigma ** 2 + s_px ** 2))
    return b


def artifacts(b, rate, rng):
    """Unflagged hot pixels and cosmic rays: a Poisson(``rate``) number of hits per cutout, half
    single hot pixels of 20-200 sigma, half cosmic-ray tracks 2-4 pixels long of 10-100 sigma,
    each in one channel. The scalars stay as measured (the worst case: the pipeline missed them)."""
    M, C, S, _ = b.cutouts.shape
    n = rng.poisson(rate, M)
    obs = np.repeat(np.arange(M), n)
    H = len(obs)
    chan = rng.integers(0, C, H)
    y0, x0 = rng.integers(0, S, H), rng.integers(0, S, H)
    is_ray = rng.random(H) < 0.5
    length = np.where(is_ray, rng.integers(2, 5, H), 1)
    amp = np.where(is_ray, rng.uniform(10, 100, H), rng.uniform(20, 200, H)) * pixel_sigma(b.cutouts)[obs, chan]
    angle = rng.uniform(0, np.pi, H)
    step = np.arange(4)
    ys = np.rint(y0[:, None] + step * np.sin(angle)[:, None]).astype(int)
    xs = np.rint(x0[:, None] + step * np.cos(angle)[:, None]).astype(int)
    ok = (step[None, :] < length[:, None]) & (ys >= 0) & (ys < S) & (xs >= 0) & (xs < S)
    hit = np.nonzero(ok)
    np.add.at(b.cutouts, (obs[hit[0]], chan[hit[0]], ys[hit], xs[hit]), amp[hit[0]].astype(np.float32))
    return b


def dropped_observations(b, fraction, rng):
    """Each observation lost with probability ``fraction`` (at least one stays per sheet): smaller
    k. Where truth is known the label rule is applied again, keeping each sheet's label flip."""
    M = b.n_obs
    sheet = b.obs_sheet_index()
    keep = rng.random(M) >= fraction
    kept = np.bincount(sheet[keep], minlength=len(b))
    lone = np.flatnonzero(kept == 0)
    keep[b.offsets[lone] + rng.integers(0, b.k[lone])] = True
    rows = np.flatnonzero(keep)
    out = b._take(np.arange(len(b)), rows)
    out.k = np.bincount(sheet[rows], minlength=len(b)).astype(np.int32)
    i = _col(out, "dt_hr")
    if i is not None:     # times count from the first remaining observation
        first = _nan(np.nanmin, padded(out, out.obs_scalars[:, i]))
        out.obs_scalars[:, i] -= np.repeat(first, out.k).astype(np.float32)
    if out.truth_sheet is not None:
        oid, s = out.truth_obs["object_id"], out.obs_sheet_index()
        counts = np.stack([np.bincount(s[oid == o], minlength=len(out)) for o in (0, 1)], axis=1)
        n_obj = counts.max(1)
        clean = (n_obj >= LABEL_MIN_OBS).astype(np.int8)
        flipped = (b.label >= 0) & (b.label != b.truth_sheet["clean_label"])
        out.label = np.where(b.label < 0, b.label, np.where(flipped, 1 - clean, clean)).astype(np.int8)
        out.truth_sheet["clean_label"] = clean
        out.truth_sheet["n_object_obs"] = n_obj.astype(np.int16)
    return out


def _missing(channel):
    def apply(b, fraction, rng):
        lost = rng.random(b.n_obs) < fraction
        med = np.median(b.cutouts[lost, channel].reshape(int(lost.sum()), -1), axis=1)
        b.cutouts[lost, channel] = med[:, None, None]
        for name in ("snr", "mag", "magerr", "sky"):
            i = _col(b, f"{name}_ch{channel + 1}")
            if i is not None:
                b.obs_scalars[lost, i] = np.nan
        return b
    apply.__doc__ = (f"Channel {channel + 1} lost in a fraction of observations (a dead detector or readout): its "
                     "pixels flat at their median, its S/N, magnitude, error and sky NaN (the data contract's missing).")
    return apply


def zero_point(b, dm, rng):
    """A photometric calibration error: channel 1 magnitudes fainter by ``dm``, channel 2 brighter
    by ``dm``, so colours move by 2 dm. The pixels are untouched (only the calibration is wrong)."""
    for c, sign in ((0, 1.0), (1, -1.0)):
        i = _col(b, f"mag_ch{c + 1}")
        if i is not None:
            b.obs_scalars[:, i] += sign * dm
        b.mag[b.band == c] += sign * dm
    return b


def astrometric_jitter(b, sigma_arcsec, rng):
    """Per-exposure astrometric errors of ``sigma_arcsec`` per axis: each cutout is displaced by
    its error (bilinear shift, with noise added back to the variance interpolation removes), the
    detection's offset from the motion fit and its RA/Dec move by the same vector."""
    scale = float(b.meta["pixel_scale_arcsec"])
    M, C, S, _ = b.cutouts.shape
    j = rng.normal(0, sigma_arcsec, (M, 2))
    jy, jx = j[:, 0] / scale, j[:, 1] / scale
    sig = pixel_sigma(b.cutouts)
    g = np.arange(S, dtype=float)
    for s in range(0, M, 4096):          # chunks keep the coordinate arrays small
        m = np.arange(s, min(s + 4096, M))
        mm, cc, yy, xx = np.meshgrid(m, np.arange(C), g, g, indexing="ij")
        yy = yy - jy[m][:, None, None, None]
        xx = xx - jx[m][:, None, None, None]
        b.cutouts[m] = ndimage.map_coordinates(b.cutouts, [mm, cc, yy, xx], order=1, mode="nearest")
    fy, fx = np.abs(jy) % 1, np.abs(jx) % 1
    kept = ((1 - fy) ** 2 + fy ** 2) * ((1 - fx) ** 2 + fx ** 2)
    b.cutouts += (rng.standard_normal(b.cutouts.shape, dtype=np.float32)
                  * (sig * np.sqrt(1 - kept)[:, None])[:, :, None, None]).astype(np.float32)
    i = _col(b, "fit_offset_arcsec")
    if i is not None:
        theta = rng.uniform(0, 2 * np.pi, M)
        o = b.obs_scalars[:, i]
        b.obs_scalars[:, i] = np.hypot(o * np.cos(theta) + j[:, 1], o * np.sin(theta) + j[:, 0])
    b.dec = b.dec + j[:, 0] / 3600
    b.ra = (b.ra + j[:, 1] / 3600 / np.cos(np.deg2rad(b.dec))) % 360
    return b


CORRUPTIONS = {c.name: c for c in (
    Corruption("noise", "noise x", (1.25, 1.5, 2.0, 3.0, 4.0), more_noise, more_noise.__doc__),
    Corruption("psf", "extra blur sigma (px)", (0.5, 0.75, 1.0, 1.5, 2.0), broader_psf, broader_psf.__doc__,
               needs=("psf_fwhm_arcsec", "pixel_scale_arcsec")),
    Corruption("artifacts", "hits per cutout", (0.1, 0.25, 0.5, 1.0, 2.0), artifacts, artifacts.__doc__),
    Corruption("dropped", "fraction dropped", (0.1, 0.2, 0.3, 0.4, 0.5), dropped_observations,
               dropped_observations.__doc__),
    Corruption("missing_ch1", "fraction of obs", (0.1, 0.25, 0.5, 0.75, 1.0), _missing(0), _missing(0).__doc__),
    Corruption("missing_ch2", "fraction of obs", (0.1, 0.25, 0.5, 0.75, 1.0), _missing(1), _missing(1).__doc__),
    Corruption("zero_point", "offset (mag)", (0.05, 0.1, 0.2, 0.3, 0.5), zero_point, zero_point.__doc__),
    Corruption("jitter", "sigma (arcsec)", (0.5, 1.0, 2.0, 3.0, 4.0), astrometric_jitter,
               astrometric_jitter.__doc__, needs=("pixel_scale_arcsec",)),
)}
PIXEL_FREE = {"zero_point"}       # corruptions that leave the pixels alone


def corrupt(batch: SheetBatch, name: str, severity: float, seed: int = 0) -> SheetBatch:
    """A corrupted copy of ``batch``; severity 0 returns the batch itself. Seeded by (seed, name) alone, so
    one seed draws the same random numbers at every severity and the severities nest (the observations
    dropped at 0.3 are among those dropped at 0.5): curves against severity are smooth, not noisy."""
    try:
        c = CORRUPTIONS[name]
    except KeyError:
        raise NeoqaError(f"unknown corruption {name!r}; choose from {', '.join(CORRUPTIONS)}") from None
    if severity == 0 or len(batch) == 0:
        return batch
    why = c.missing(batch)
    if why:
        raise NeoqaError(f"corruption {name!r} cannot run: {why}")
    key = [int(seed), list(CORRUPTIONS).index(name)]     # common random numbers: severities nest
    out = c.apply(_copy(batch), float(severity), np.random.default_rng(key))
    return refresh(out, batch, pixels_changed=name not in PIXEL_FREE)
