import dataclasses
import json

import numpy as np
import pytest

from neoqa.shift import corrupt as cr
from neoqa.errors import NeoqaError
from neoqa.data.schema import LABEL_MIN_OBS


def _close(a, b):
    np.testing.assert_allclose(a, b, rtol=2e-4, atol=1e-4, equal_nan=True)


def test_refresh_rebuilds_the_stored_composite_and_sheet_scalars(small_batch):
    """refresh on unchanged data reproduces what the simulator stored: the two agree on
    how every derived sheet scalar is computed."""
    again = cr.refresh(cr._copy(small_batch), small_batch)
    _close(again.composite, small_batch.composite)
    _close(again.sheet_scalars, small_batch.sheet_scalars)


@pytest.mark.parametrize("name", list(cr.CORRUPTIONS))
def test_corruptions_are_seeded_copies(small_batch, name):
    before = small_batch.cutouts.copy(), small_batch.obs_scalars.copy(), small_batch.sheet_scalars.copy()
    sev = cr.CORRUPTIONS[name].severities[-2]
    a = cr.corrupt(small_batch, name, sev, seed=3)
    b = cr.corrupt(small_batch, name, sev, seed=3)
    c = cr.corrupt(small_batch, name, sev, seed=4)
    assert cr.corrupt(small_batch, name, 0.0) is small_batch
    assert len(a) == len(small_batch)
    assert a.equals(b)
    changed = lambda x: not (x.n_obs == small_batch.n_obs and np.array_equal(x.cutouts, small_batch.cutouts)   # noqa: E731
                             and np.array_equal(x.obs_scalars, small_batch.obs_scalars, equal_nan=True))
    assert changed(a)
    if name != "zero_point":
        assert not a.equals(c)
    # the input is never modified
    np.testing.assert_array_equal(small_batch.cutouts, before[0])
    np.testing.assert_array_equal(small_batch.obs_scalars, before[1])
    np.testing.assert_array_equal(small_batch.sheet_scalars, before[2])


def test_more_noise_scales_pixel_noise_and_snr(small_batch):
    out = cr.corrupt(small_batch, "noise", 2.0)
    ratio = np.median(cr.pixel_sigma(out.cutouts) / cr.pixel_sigma(small_batch.cutouts))
    assert ratio == pytest.approx(2.0, rel=0.05)
    _close(out.obs_scalar("snr_ch2"), small_batch.obs_scalar("snr_ch2") / 2)
    _close(out.obs_scalar("magerr_ch1"), small_batch.obs_scalar("magerr_ch1") * 2)
    assert np.nanmedian(out.sheet_scalar("composite_snr_ch2")) < 0.7 * np.nanmedian(small_batch.sheet_scalar("composite_snr_ch2"))


def test_broader_psf_keeps_the_noise_and_lowers_snr(small_batch):
    out = cr.corrupt(small_batch, "psf", 1.0)
    ratio = np.median(cr.pixel_sigma(out.cutouts) / cr.pixel_sigma(small_batch.cutouts))
    assert ratio == pytest.approx(1.0, abs=0.08)
    sigma = cr.psf_sigma_px(small_batch)
    _close(out.obs_scalar("snr_ch1"), small_batch.obs_scalar("snr_ch1") * sigma[0] / np.hypot(sigma[0], 1.0))
    # the source is spread: the bright central pixel of bright composites falls
    c = small_batch.composite.shape[-1] // 2
    bright = np.argsort(-small_batch.composite[:, 1, c, c])[:50]
    assert np.median(out.composite[bright, 1, c, c] / small_batch.composite[bright, 1, c, c]) < 0.8
    no_psf = dataclasses.replace(small_batch, meta={k: v for k, v in small_batch.meta.items() if k != "psf_fwhm_arcsec"})
    with pytest.raises(NeoqaError, match="psf_fwhm_arcsec"):
        cr.corrupt(no_psf, "psf", 1.0)


def test_artifacts_add_bright_pixels_only(small_batch):
    out = cr.corrupt(small_batch, "artifacts", 2.0)
    diff = out.cutouts - small_batch.cutouts
    assert (diff >= 0).all()
    hit = (diff > 0).reshape(out.n_obs, -1).any(1)
    assert 0.75 < hit.mean() < 0.95          # 1 - exp(-2) = 0.86 of cutouts are hit
    np.testing.assert_array_equal(out.obs_scalars, small_batch.obs_scalars)


def test_dropped_observations_reapply_the_label_rule(small_batch):
    out = cr.corrupt(small_batch, "dropped", 0.5)
    assert (out.k >= 1).all() and out.k.sum() < 0.6 * small_batch.k.sum()
    assert (out.k <= small_batch.k).all()
    s, oid = out.obs_sheet_index(), out.truth_obs["object_id"]
    n_obj = np.stack([np.bincount(s[oid == o], minlength=len(out)) for o in (0, 1)]).max(0)
    np.testing.assert_array_equal(out.truth_sheet["clean_label"], n_obj >= LABEL_MIN_OBS)
    flips_before = small_batch.label != small_batch.truth_sheet["clean_label"]
    np.testing.assert_array_equal(out.label != out.truth_sheet["clean_label"], flips_before)
    assert out.label.mean() < small_batch.label.mean()          # real sheets lose their 5th detection
    assert np.nanmin(out.obs_scalar("dt_hr")) == 0
    _close(out.sheet_scalar("k"), out.k)
    # nested: what survives at 0.5 survived at 0.3
    assert (cr.corrupt(small_batch, "dropped", 0.3).k >= out.k).all()


def test_missing_channel_is_nan_and_flat(small_batch):
    out = cr.corrupt(small_batch, "missing_ch2", 1.0)
    assert np.isnan(out.obs_scalar("snr_ch2")).all() and np.isnan(out.obs_scalar("mag_ch2")).all()
    assert np.isnan(out.sheet_scalar("composite_snr_ch2")).all()
    assert (np.ptp(out.cutouts[:, 1].reshape(out.n_obs, -1), axis=1) == 0).all()
    np.testing.assert_array_equal(out.cutouts[:, 0], small_batch.cutouts[:, 0])


def test_zero_point_moves_colours_only(small_batch):
    out = cr.corrupt(small_batch, "zero_point", 0.2)
    np.testing.assert_array_equal(out.cutouts, small_batch.cutouts)
    shift = out.sheet_scalar("color_ch1_ch2") - small_batch.sheet_scalar("color_ch1_ch2")
    np.testing.assert_allclose(shift[np.isfinite(shift)], 0.4, atol=1e-4)


def test_jitter_moves_positions_and_fit_offsets(small_batch):
    out = cr.corrupt(small_batch, "jitter", 3.0)
    d = np.hypot((out.ra - small_batch.ra) * np.cos(np.deg2rad(small_batch.dec)), out.dec - small_batch.dec) * 3600
    assert np.median(d) == pytest.approx(3.0 * np.sqrt(2 * np.log(2)), rel=0.1)   # Rayleigh median
    assert np.nanmedian(out.sheet_scalar("fit_rms_arcsec")) > np.nanmedian(small_batch.sheet_scalar("fit_rms_arcsec")) + 1


def test_unknown_corruption(small_batch):
    with pytest.raises(NeoqaError, match="unknown corruption"):
        cr.corrupt(small_batch, "frost", 1.0)


def test_robustness_cli(tmp_path, small_neowise, zoo_run):
    from neoqa.cli import main
    from neoqa.evaluate.evaluation import evaluate_path

    out = tmp_path / "rob"
    model = zoo_run / "models" / "ridge"
    assert main(["robustness", "--model", str(model), "--data", str(small_neowise), "--out", str(out),
                 "--corruptions", "noise", "dropped"]) == 0
    rows = json.loads((out / "robustness.json").read_text())["rows"]
    assert len(rows) == 2 * 6
    clean = [r for r in rows if r["severity"] == 0]
    want = evaluate_path(model, small_neowise, resamples=0)["labels"]["rates"]["accuracy"]["value"]
    assert [r["accuracy"] for r in clean] == [pytest.approx(want)] * 2
    noise = [r["accuracy_clean"] for r in rows if r["corruption"] == "noise"]
    assert noise[-1] < noise[0]                                     # 4x the noise costs accuracy
    assert (out / "robustness.png").stat().st_size > 10_000
    assert "## noise" in (out / "robustness.md").read_text()
    assert main(["robustness", "--model", str(model), "--data", str(small_neowise), "--out", str(tmp_path / "x"),
                 "--corruptions", "frost"]) == 2
    assert not (tmp_path / "x").exists()


@pytest.mark.parametrize("name", ["basic_sneon", "ridge"])
def test_models_apply_the_label_rule_to_short_sheets(small_batch, zoo_run, name):
    """Sheets left with fewer than 5 observations cannot be real: every model says so outright."""
    from neoqa.models import persistence as persist

    model, _ = persist.load(zoo_run / "models" / name)
    out = cr.corrupt(small_batch, "dropped", 0.5)
    p = model.predict_proba(out)[:, 1]
    assert (out.k < 5).sum() > 50
    assert p[out.k < 5].max() < 1e-6
    assert p[out.k >= 5].max() > 0.3            # the rule is for short sheets only: long ones keep their scores


def test_robustness_skips_what_the_data_cannot_support(tmp_path, small_batch, zoo_run):
    """Data without a recorded PSF (real data often) skips the PSF corruption, or refuses if asked for it."""
    from neoqa.cli import main
    from neoqa.data.store import write_dataset

    meta = {k: v for k, v in small_batch.meta.items() if k != "psf_fwhm_arcsec"}
    data = write_dataset(tmp_path / "nopsf", [dataclasses.replace(small_batch, meta=meta)])
    model = str(zoo_run / "models" / "ridge")
    out = tmp_path / "rob"
    assert main(["robustness", "--model", model, "--data", str(data), "--out", str(out), "--sheets", "40"]) == 0
    res = json.loads((out / "robustness.json").read_text())
    assert list(res["skipped"]) == ["psf"] and "psf_fwhm_arcsec" in res["skipped"]["psf"]
    assert {r["corruption"] for r in res["rows"]} == set(cr.CORRUPTIONS) - {"psf"}
    assert main(["robustness", "--model", model, "--data", str(data), "--out", str(tmp_path / "x"),
                 "--corruptions", "psf"]) == 2
