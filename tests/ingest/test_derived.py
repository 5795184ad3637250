"""Scalars measured at ingest from the observations' times and sky positions (``data.motion``):
a team's sheets without them get what the simulator's sheets carry, to the differences of method
docs/own-data.md states."""

import json
import shutil

import numpy as np
import pyarrow.parquet as pq
import pytest

from neoqa.data.motion import geometry_scalars, position_angle
from neoqa.data.sky import deproject, lonlat_to_unit, unit_to_lonlat
from neoqa.data.store import SheetSet, write_shard
from neoqa.errors import NeoqaError
from neoqa.ingest.layout import export, ingest

GEOMETRY = ["rate_deg_per_day", "position_angle_deg", "ecliptic_lat_deg", "galactic_lat_deg", "solar_elongation_deg"]
FIT = ["time_span_hr", "fit_rms_arcsec", "fit_max_offset_arcsec"]
OBS = ["dt_hr", "fit_offset_arcsec"]
SNR = ["composite_snr_ch1", "composite_snr_ch2"]


def test_a_line_on_the_sky_is_measured_back():
    """Sheets moving on straight lines (in the tangent plane at their start) at known rates and
    position angles, anywhere on the sky, near the pole too, give those back."""
    rng = np.random.default_rng(3)
    n, k = 50, 7
    rate = rng.uniform(0.05, 5.0, n)                       # deg/day
    pa = rng.uniform(0, 360, n)
    start = lonlat_to_unit(rng.uniform(0, 360, n), np.r_[rng.uniform(-85, 85, n - 2), 89.9, -89.9])
    t = np.sort(rng.uniform(0, 1.5, (n, k)), axis=1)
    t -= t.mean(axis=1, keepdims=True)                     # about the middle, where the fit's tangent point is
    along = rate[:, None] * t * 3600                       # arcsec
    east, north = along * np.sin(np.deg2rad(pa))[:, None], along * np.cos(np.deg2rad(pa))[:, None]
    v = deproject(-east, north, start[:, None, :], 1.0)    # x grows to the west
    ra, dec = unit_to_lonlat(v.reshape(-1, 3))
    obs, sheet = geometry_scalars((60000 + t).ravel(), ra, dec, np.full(n, k))
    np.testing.assert_allclose(sheet["rate_deg_per_day"], rate, rtol=1e-4)
    np.testing.assert_allclose((sheet["position_angle_deg"] - pa + 180) % 360 - 180, 0, atol=0.05)
    np.testing.assert_allclose(obs["dt_hr"].reshape(n, k), (t - t[:, :1]) * 24, atol=1e-6)
    assert obs["fit_offset_arcsec"].max() < 0.5             # a line, to the projection's curvature
    assert position_angle(0.0, 1.0) == 0 and position_angle(-1.0, 0.0) == 90       # north, east


@pytest.fixture(scope="module")
def simulated(tmp_path_factory, small_batch):
    root = tmp_path_factory.mktemp("derived")
    src = write_shard(root / "src.h5", small_batch)
    return SheetSet(src).read(), export(src, root / "layout")


def test_ingest_measures_motion_and_place_where_the_tables_lack_them(tmp_path, simulated):
    a, layout = simulated
    d = shutil.copytree(layout, tmp_path / "bare")
    (d / "dataset.json").unlink()
    sheets, obs = pq.read_table(d / "sheets.parquet"), pq.read_table(d / "observations.parquet")
    pq.write_table(sheets.drop_columns(GEOMETRY + FIT), d / "sheets.parquet")
    pq.write_table(obs.drop_columns(OBS), d / "observations.parquet")
    b = SheetSet(ingest(d, tmp_path / "ds", survey="neowise", progress=False)).read()
    assert sorted(b.meta["provenance"]["derived_at_ingest"]) == sorted(GEOMETRY + FIT + OBS)
    np.testing.assert_allclose(b.obs_scalar("dt_hr"), a.obs_scalar("dt_hr"), atol=1e-4)
    np.testing.assert_allclose(b.sheet_scalar("time_span_hr"), a.sheet_scalar("time_span_hr"), atol=1e-4)
    # The simulator reports what ingest measures (one code path, data.motion): the same numbers,
    # to the float32 the format stores.
    for name in GEOMETRY + FIT:
        np.testing.assert_allclose(b.sheet_scalar(name), a.sheet_scalar(name), rtol=1e-5, atol=1e-5, err_msg=name)
    np.testing.assert_allclose(b.obs_scalar("fit_offset_arcsec"), a.obs_scalar("fit_offset_arcsec"), atol=1e-5)


def test_ingest_measures_the_composite_snr_where_the_tables_lack_it(tmp_path, simulated, capsys, without_columns):
    """The composite's S/N by the simulator's measurement (data.photometry), each cutout's noise
    estimated from its pixels where the simulator knows it from its uncertainty image."""
    a, layout = simulated
    d, meta = without_columns(layout, "sheets", SNR)
    b = SheetSet(ingest(d, tmp_path / "ds", survey="neowise", progress=False)).read()
    assert sorted(b.meta["provenance"]["derived_at_ingest"]) == SNR
    for name in SNR:
        got, want = b.sheet_scalar(name), a.sheet_scalar(name)
        bright = np.abs(want) > 5
        ratio = got[bright] / want[bright]
        r = np.corrcoef(got, want)[0, 1]
        with capsys.disabled():
            print(f"{name}: {bright.sum()} sheets above S/N 5: ratio median {np.median(ratio):.3f}, "
                  f"5-95% {np.percentile(ratio, 5):.3f}-{np.percentile(ratio, 95):.3f}; correlation {r:.3f}")
        # A cutout's pixels hold stars and the object as well as noise: the pixel estimate runs a
        # few per cent high, more near bright stars (docs/own-data.md gives the numbers).
        assert 0.9 < np.median(ratio) < 1.02 and np.percentile(ratio, 5) > 0.75 and np.percentile(ratio, 95) < 1.1
        assert r > 0.95

    # Without the PSF's width it is not measured, and says so once.
    del meta["psf_fwhm_arcsec"]
    (d / "dataset.json").write_text(json.dumps(meta))
    c = SheetSet(ingest(d, tmp_path / "ds2", survey="neowise", progress=False)).read()
    assert not set(SNR) & set(c.sheet_scalar_names)
    assert capsys.readouterr().err.count("composite_snr_ch1.. not measured") == 1

    meta["psf_fwhm_arcsec"] = [6.1, -1]
    (d / "dataset.json").write_text(json.dumps(meta))
    with pytest.raises(NeoqaError, match=r"dataset.json: psf_fwhm_arcsec \[6.1, -1\]"):
        ingest(d, tmp_path / "ds3", survey="neowise", progress=False)
    assert not (tmp_path / "ds3").exists()
