"""The simulator: determinism, the label rule, balance, noise, measured scalars against truth."""

import hashlib

import numpy as np
import pytest

from neoqa.data.schema import SCENARIOS, SOURCE_CODE, SOURCE_KINDS
from neoqa.simulate import SimConfig, simulate, simulate_batch, runner


def _digest(folder):
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(folder.iterdir())}


def test_same_seed_same_bytes_whatever_the_workers(tmp_path, monkeypatch):
    monkeypatch.setattr(runner, "SHARD_SIZE", 150)
    a = simulate(tmp_path / "a", 400, seed=3, workers=1, progress=False)
    b = simulate(tmp_path / "b", 400, seed=3, workers=2, progress=False)
    c = simulate(tmp_path / "c", 400, seed=4, workers=1, progress=False)
    assert len(_digest(a)) == 4                       # three shards and the manifest
    assert _digest(a) == _digest(b)
    assert _digest(a)["shard-00000.h5"] != _digest(c)["shard-00000.h5"]


def test_label_rule_holds_on_truth(small_batch):
    b = small_batch
    obj = b.truth_obs["object_id"]
    sheet = b.obs_sheet_index()
    counts = np.zeros((len(b), 2), int)
    for o in (0, 1):
        np.add.at(counts[:, o], sheet, obj == o)
    n_obj = counts.max(1)
    assert np.array_equal(n_obj, b.truth_sheet["n_object_obs"])
    assert np.array_equal(b.truth_sheet["clean_label"], (n_obj >= 5).astype(np.int8))
    # every object detection holds its object; another detection holds one only where the object
    # is in that exposure (the matching rule); every sheet came from the linker (k >= 5)
    own = b.truth_obs["source_kind"] == SOURCE_CODE["object"]
    assert np.all(obj[own] >= 0)
    where = np.where(obj == 1, b.truth_obs["object2_x_px"], b.truth_obs["object_x_px"])
    assert np.all(np.isfinite(where[(obj >= 0) & ~own]))
    assert b.k.min() >= 5


def test_class_balance_and_label_noise(large_batch):
    b = large_batch
    clean = b.truth_sheet["clean_label"]
    assert abs(clean.mean() - 0.23) < 0.03
    flipped = (b.label != clean).mean()
    assert 0.01 < flipped < 0.03


def test_settings_change_balance_and_noise():
    b = simulate_batch(SimConfig(positive_fraction=0.5, label_noise=0.0), 400, seed=2)
    assert abs(b.truth_sheet["clean_label"].mean() - 0.5) < 0.08
    assert np.array_equal(b.label, b.truth_sheet["clean_label"])


def test_negatives_are_what_the_linker_makes(large_batch):
    """False sheets are the chance and artifact tracklets a linker strings through the false
    detections of a field (and the rare mixture that falls short of five of one object); a false
    tracklet is never real; every kind of false detection the fields hold appears."""
    t = large_batch.truth_sheet
    neg = t["clean_label"] == 0
    false_tracklet = np.isin(t["scenario"], [SCENARIOS.index("chance"), SCENARIOS.index("artifact")])
    assert np.all(neg[false_tracklet])
    assert np.mean(false_tracklet[neg]) > 0.95
    assert (t["scenario"] == SCENARIOS.index("artifact")).sum() > 200
    kinds = set(np.unique(large_batch.truth_obs["source_kind"]))
    assert {SOURCE_CODE[k] for k in SOURCE_KINDS if k != "ghost"} <= kinds
    # Real objects near threshold dominate the positives.
    assert np.median(t["true_snr"][~neg]) < 10


def test_measured_rate_matches_true_rate(large_batch):
    t = large_batch.truth_sheet
    pos = (t["clean_label"] == 1) & (t["scenario"] == SCENARIOS.index("object"))
    measured = large_batch.sheet_scalar("rate_deg_per_day")[pos]
    true = t["true_rate_deg_per_day"][pos]
    rel = np.abs(measured - true) / true
    assert np.median(rel) < 0.03
    assert np.percentile(rel, 90) < 0.15


def test_measured_photometry_matches_truth(large_batch):
    b = large_batch
    obj = b.truth_obs["source_kind"] == SOURCE_CODE["object"]
    # the offset of a real detection from the fitted motion is within a few pixels' astrometric error
    off = b.obs_scalar("fit_offset_arcsec")[obj]
    assert np.median(off) < 0.6 * 6.25
    # a lone object sits at the cutout centre, to within rounding and the motion fit's error
    lone = obj & (b.truth_sheet["scenario"] == SCENARIOS.index("object"))[b.obs_sheet_index()]
    r = np.hypot(b.truth_obs["true_x_px"][lone], b.truth_obs["true_y_px"][lone])
    assert np.median(r) < 0.8
    # main-belt tracks are straight over a day (longer ones, at high latitude, curve away from the
    # linear fit); close NEOs wiggle with WISE's orbital parallax
    sheet = b.obs_sheet_index()
    span = np.zeros(len(b))
    np.maximum.at(span, sheet, b.obs_scalar("dt_hr"))
    mba = (b.truth_sheet["object_class"][sheet] == 1)[lone] & (span[sheet] <= 24.0)[lone]
    assert mba.sum() > 1000
    assert np.percentile(r[mba], 95) < 1.0
    # positive sheets are redder (W1 - W2) than stars: thermal emission
    t = b.truth_sheet
    col = b.sheet_scalar("color_ch1_ch2")
    assert np.nanmedian(col[t["clean_label"] == 1]) > 0.8
    # detected objects have SNR above the WMOPS threshold in their best band
    snr = np.maximum(b.obs_scalar("snr_ch1"), b.obs_scalar("snr_ch2"))[obj]
    assert np.all(snr >= 4.5)


def test_composite_is_mean_of_recentred_cutouts(small_batch):
    b = small_batch
    i = 3
    off = b.offsets
    cut = b.cutouts[off[i]:off[i + 1]]
    sky = b.obs_scalars[off[i]:off[i + 1]][:, [b.obs_scalar_names.index("sky_ch1"), b.obs_scalar_names.index("sky_ch2")]]
    expect = (cut - sky[:, :, None, None]).mean(0)
    np.testing.assert_allclose(b.composite[i], expect, rtol=1e-4, atol=1e-3)


def test_neosurveyor_uses_its_instrument():
    b = simulate_batch(SimConfig(survey="neosurveyor"), 300, seed=1)
    assert b.meta["channels"] == ["NC1", "NC2"]
    assert b.meta["pixel_scale_arcsec"] == 3.0
    assert all(s.startswith("NS") for s in b.sheet_id)
    # four visits of six exposures within ~8 h
    assert np.nanmax(b.sheet_scalar("time_span_hr")) < 8.5
    assert b.k.max() <= 24


def test_missing_values_are_nan_never_magic(small_batch):
    mags = small_batch.obs_scalars[:, small_batch.obs_scalar_names.index("mag_ch1")]
    snr = small_batch.obs_scalar("snr_ch1")
    assert np.all(np.isnan(mags[snr <= 0]))
    assert not np.any(np.isin(small_batch.obs_scalars, [-999, -9999, 99]))


def test_bad_survey_is_a_clear_error(tmp_path):
    from neoqa.errors import NeoqaError

    with pytest.raises(NeoqaError, match="unknown survey"):
        simulate(tmp_path / "x", 10, survey="hubble", progress=False)
    assert not (tmp_path / "x").exists()


def test_motion_and_place_are_the_true_tracks_measured_at_the_sheet(large_batch):
    """The rate, position angle and place on the sky a sheet reports are those of its object's true
    track, taken through each cutout's WCS and measured as ingest measures (data.motion): north and
    latitude at the sheet, fast movers and high declinations included (before 0.9.0 they were taken
    at the field's pointing, up to 32 degrees of position angle away)."""
    from neoqa.data.motion import geometry_scalars
    from neoqa.data.sky import deproject, lonlat_to_unit, unit_to_lonlat

    b, t = large_batch, large_batch.truth_sheet
    lone = (t["clean_label"] == 1) & (t["scenario"] == SCENARIOS.index("object"))
    sheet = b.obs_sheet_index()
    rows = lone[sheet] & (b.truth_obs["source_kind"] == SOURCE_CODE["object"])
    keep = np.bincount(sheet[rows], minlength=len(b)) == b.k          # every observation is the object
    rows = keep[sheet]
    w = b.wcs[rows]
    # A true position in FITS pixels of its cutout, then the tangent plane (x west) through the WCS.
    half = b.cutouts.shape[-1] // 2
    x = half + 1 + b.truth_obs["true_x_px"][rows] - w[:, 2]
    y = half + 1 + b.truth_obs["true_y_px"][rows] - w[:, 3]
    scale = w[:, 7] * 3600                                              # arcsec per pixel, north up
    assert np.ptp(scale) < 1e-9 and np.allclose(w[:, 4], -w[:, 7]) and not w[:, 5:7].any()
    true = deproject(x, y, lonlat_to_unit(w[:, 0], w[:, 1]), float(scale[0]))
    ra, dec = unit_to_lonlat(true)
    _, want = geometry_scalars(b.mjd[rows], ra, dec, b.k[keep])
    got = {n: b.sheet_scalar(n)[keep] for n in want}
    fast = want["rate_deg_per_day"] > 1.0
    assert keep.sum() > 300 and fast.sum() > 5
    dpa = np.abs((got["position_angle_deg"] - want["position_angle_deg"] + 180) % 360 - 180)
    rel = np.abs(got["rate_deg_per_day"] / want["rate_deg_per_day"] - 1)
    print(f"{keep.sum()} lone real sheets ({fast.sum()} faster than 1 deg/day): position angle off by a median "
          f"{np.median(dpa):.2f}, 95% {np.percentile(dpa, 95):.2f}, fast at most {dpa[fast].max():.2f} deg; "
          f"rate by a median {np.median(rel):.4f}")
    assert np.median(dpa) < 0.1 and np.percentile(dpa, 95) < 1 and dpa[fast].max() < 0.5        # 0.8.0: 1.8 fast
    assert np.median(rel) < 0.02
    for name in ("ecliptic_lat_deg", "galactic_lat_deg", "solar_elongation_deg"):
        assert np.abs(got[name] - want[name]).max() < 0.01, name          # degrees: arcseconds apart
