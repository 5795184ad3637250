"""Sheet scalars that summarise a sheet's observations (medians, maxima, fractions).

The simulator computes them when it makes a sheet and ``corrupt.refresh`` recomputes
them after a corruption, through this one function, so the two always agree. The
observation table is flat, one row per observation, grouped by sheet (``k`` rows
each, as in ``SheetBatch``); NaN marks a missing value and is skipped, and a sheet
with no finite value gets NaN.
"""

from __future__ import annotations

import math

import numpy as np
from numba import njit

from neoqa.data.schema import N_CHANNELS
from neoqa.sorting import insertion_sort

# The statistics of one column over one sheet (the order of ``_segment_stats``'s output).
MEDIAN, MAX, MIN, MEAN, STD, RMS, FRAC_GE = range(7)


@njit(cache=True)
def _segment_stats(v, offsets, threshold, median):
    """[sheets, 7]: median (if ``median``, else NaN), max, min, mean, std (ddof 0), rms and
    the fraction >= threshold of the finite values of v[offsets[i]:offsets[i + 1]], NaN
    where there are none."""
    n = offsets.shape[0] - 1
    out = np.full((n, 7), np.nan)
    b = np.empty(max(1, v.shape[0]))
    for i in range(n):
        m = 0
        for j in range(offsets[i], offsets[i + 1]):
            if not math.isnan(v[j]):
                b[m] = v[j]
                m += 1
        if m == 0:
            continue
        s = ss = 0.0
        lo = hi = b[0]
        ge = 0
        for j in range(m):
            s += b[j]
            ss += b[j] * b[j]
            ge += b[j] >= threshold
            lo = min(lo, b[j])
            hi = max(hi, b[j])
        mean = s / m
        d2 = 0.0
        for j in range(m):
            d2 += (b[j] - mean) ** 2
        if median:                        # a sheet has tens of values at most
            insertion_sort(b, m)
            out[i, MEDIAN] = 0.5 * (b[(m - 1) // 2] + b[m // 2])
        out[i, MAX] = hi
        out[i, MIN] = lo
        out[i, MEAN] = mean
        out[i, STD] = math.sqrt(d2 / m)
        out[i, RMS] = math.sqrt(ss / m)
        out[i, FRAC_GE] = ge / m
    return out


def summarise(obs: dict, k: np.ndarray, detect_snr: float) -> dict:
    """The observation-derived sheet scalars (``schema.SHEET_SCALARS`` names) that the
    columns in ``obs`` (observation-scalar name -> flat [sum k] array) support."""
    offsets = np.concatenate([[0], np.cumsum(k)]).astype(np.int64)
    done = {}

    def stats(name, threshold=np.inf, median=True):
        if name not in done:
            done[name] = _segment_stats(np.asarray(obs[name], np.float64), offsets, threshold, median)
        return done[name]

    out = {"k": np.asarray(k, np.float64)}
    if "dt_hr" in obs:
        s = stats("dt_hr", median=False)
        out["time_span_hr"] = s[:, MAX] - s[:, MIN]
    if "fit_offset_arcsec" in obs:
        s = stats("fit_offset_arcsec", median=False)
        out["fit_rms_arcsec"], out["fit_max_offset_arcsec"] = s[:, RMS], s[:, MAX]
    for c in range(1, N_CHANNELS + 1):
        if f"snr_ch{c}" in obs:
            s = stats(f"snr_ch{c}", detect_snr)
            out[f"snr_median_ch{c}"], out[f"snr_max_ch{c}"] = s[:, MEDIAN], s[:, MAX]
            out[f"detected_fraction_ch{c}"] = s[:, FRAC_GE]
        if f"mag_ch{c}" in obs:
            out[f"mag_median_ch{c}"] = stats(f"mag_ch{c}")[:, MEDIAN]
        if f"sky_ch{c}" in obs:
            out[f"sky_median_ch{c}"] = stats(f"sky_ch{c}")[:, MEDIAN]
    if "mag_ch1" in obs and "mag_ch2" in obs:
        obs = {**obs, "color": np.asarray(obs["mag_ch1"], np.float64) - np.asarray(obs["mag_ch2"], np.float64)}
        out["color_ch1_ch2"] = stats("color")[:, MEDIAN]
        out["mag_scatter_ch2"] = stats("mag_ch2")[:, STD]
    if "psf_chi2" in obs:
        out["chi2_median"] = stats("psf_chi2")[:, MEDIAN]
    if "near_star_flag" in obs:
        out["near_star_fraction"] = stats("near_star_flag", median=False)[:, MEAN]
    return out
