import numpy as np
import pytest

from neoqa.data.schema import OBS_SCALARS
from neoqa.data.summaries import summarise


def _padded(v, k):
    out = np.full((len(k), k.max()), np.nan)
    for i, (a, n) in enumerate(zip(np.concatenate([[0], np.cumsum(k)[:-1]]), k)):
        out[i, :n] = v[a:a + n]
    return out


def test_summaries_match_numpy_nan_reductions():
    """Every summary equals NumPy's NaN-skipping reduction over the sheet's observations,
    including sheets with one observation and sheets whose values are all NaN."""
    rng = np.random.default_rng(0)
    k = rng.integers(1, 30, 400)
    k[:3] = 1
    n = k.sum()
    obs = {name: rng.normal(5, 3, n).astype(np.float32) for name in OBS_SCALARS}
    for v in obs.values():
        v[rng.random(n) < 0.3] = np.nan
        v[:2] = np.nan                       # the first sheet (k = 1) and second are all NaN
    obs["near_star_flag"] = np.where(np.isnan(obs["near_star_flag"]), np.nan, obs["near_star_flag"] > 5)
    got = summarise(obs, k, detect_snr=4.5)
    p = {name: _padded(v.astype(np.float64), k) for name, v in obs.items()}
    with np.errstate(all="ignore"), pytest.warns(RuntimeWarning):
        expect = {
            "k": k,
            "time_span_hr": np.nanmax(p["dt_hr"], 1) - np.nanmin(p["dt_hr"], 1),
            "fit_rms_arcsec": np.sqrt(np.nanmean(p["fit_offset_arcsec"] ** 2, 1)),
            "fit_max_offset_arcsec": np.nanmax(p["fit_offset_arcsec"], 1),
            "snr_median_ch1": np.nanmedian(p["snr_ch1"], 1), "snr_max_ch2": np.nanmax(p["snr_ch2"], 1),
            "detected_fraction_ch1": np.nanmean(np.where(np.isnan(p["snr_ch1"]), np.nan, p["snr_ch1"] >= 4.5), 1),
            "mag_median_ch2": np.nanmedian(p["mag_ch2"], 1), "sky_median_ch1": np.nanmedian(p["sky_ch1"], 1),
            "color_ch1_ch2": np.nanmedian(p["mag_ch1"] - p["mag_ch2"], 1),
            "mag_scatter_ch2": np.nanstd(p["mag_ch2"], 1), "chi2_median": np.nanmedian(p["psf_chi2"], 1),
            "near_star_fraction": np.nanmean(p["near_star_flag"], 1),
        }
    for name, want in expect.items():
        np.testing.assert_allclose(got[name], want, rtol=1e-12, atol=1e-12, err_msg=name)
    assert np.isnan(got["snr_median_ch1"][0]) and np.isnan(got["detected_fraction_ch1"][1])


def test_summaries_use_only_the_columns_given():
    k = np.array([2, 3])
    got = summarise({"snr_ch1": np.array([1.0, 6, 5, 2, 9])}, k, detect_snr=4.5)
    assert set(got) == {"k", "snr_median_ch1", "snr_max_ch1", "detected_fraction_ch1"}
    np.testing.assert_allclose(got["snr_median_ch1"], [3.5, 5.0])
    np.testing.assert_allclose(got["detected_fraction_ch1"], [0.5, 2 / 3])


def test_every_module_imports_on_its_own():
    """No import cycle: each module loads first in a fresh interpreter (the suite's own
    imports would hide one)."""
    import subprocess
    import sys

    for module in ("neoqa.data.summaries", "neoqa.shift.corrupt", "neoqa.sorting", "neoqa.simulate.kernels"):
        subprocess.run([sys.executable, "-c", f"import {module}"], check=True)
