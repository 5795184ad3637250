"""Real data in and out: the FITS-plus-tables layout, its round trip, and malformed input."""

import re
import shutil
from dataclasses import replace

import numpy as np
import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq
import pytest
from astropy.io import fits

from neoqa.errors import NeoqaError
from neoqa.ingest.layout import export, ingest
from neoqa.data.store import SheetSet, write_shard


def same_sheets(a, b) -> bool:
    """Every array equal, the WCS to the digits a FITS card's 20 characters keep (CD = 2.75"/px in
    degrees is a repeating decimal: 14 of them)."""
    np.testing.assert_allclose(b.wcs, a.wcs, rtol=1e-13, atol=0)
    return a.equals(replace(b, wcs=a.wcs))


@pytest.fixture(scope="module")
def exported(tmp_path_factory, small_batch):
    root = tmp_path_factory.mktemp("exp")
    src = write_shard(root / "src.h5", small_batch.select(np.arange(40)))
    return src, export(src, root / "layout")


def test_export_then_ingest_round_trips_exactly(tmp_path, exported):
    src, layout = exported
    out = ingest(layout, tmp_path / "back")
    a, b = SheetSet(src).read(), SheetSet(out).read()
    assert same_sheets(a, b)
    assert a.meta["provenance"] == b.meta["provenance"]


def test_layout_is_what_the_docs_say(exported):
    _, layout = exported
    sheets = pq.read_table(layout / "sheets.parquet")
    obs = pq.read_table(layout / "observations.parquet")
    assert sheets.column_names[:2] == ["sheet_id", "label"]
    assert obs.column_names[:7] == ["sheet_id", "obs_index", "mjd", "ra", "dec", "band", "mag"]
    sid = sheets.column("sheet_id")[0].as_py()
    with fits.open(layout / "fits" / f"{sid}.fits") as h:
        assert h[0].header["CHAN1"] == "W1" and h[0].header["CHAN2"] == "W2"
        assert h[0].header["PIXSCALE"] == 2.75
        assert h["OBS001"].data.shape == (2, 15, 15)
        assert h["COMPOSITE"].data.shape == (2, 15, 15)


def test_real_data_without_truth_or_dataset_json(tmp_path, exported):
    _, layout = exported
    d = shutil.copytree(layout, tmp_path / "real")
    for name in ("truth_sheets.parquet", "truth_observations.parquet", "dataset.json"):
        (d / name).unlink()
    # a survey team's tables can be CSV
    pacsv.write_csv(pq.read_table(d / "sheets.parquet"), d / "sheets.csv")
    (d / "sheets.parquet").unlink()
    out = ingest(d, tmp_path / "ds", survey="neowise")
    b = SheetSet(out).read()
    assert b.truth_sheet is None and len(b) == 40
    from neoqa.data.info import summarize

    assert summarize(SheetSet(out))["label_noise_rate"] is None


def _damage_table(name, fn):
    def damage(d):
        t = pq.read_table(d / name)
        pq.write_table(fn(t), d / name)
    return damage


def _set_cell(column, row, value, type_=None):
    def fn(t):
        values = t.column(column).to_pylist()
        if type_ == pa.string():
            values = [str(v) for v in values]
        values[row] = value
        return t.set_column(t.column_names.index(column), column, pa.array(values, type=type_))
    return fn


def _fits_edit(fn):
    def damage(d):
        p = sorted((d / "fits").iterdir())[0]
        with fits.open(p) as h:
            hl = fits.HDUList([x.copy() for x in h])
        fn(hl)
        hl.writeto(p, overwrite=True)
    return damage


@pytest.mark.parametrize("damage, message", [
    (lambda d: [p.unlink() if p.is_file() else shutil.rmtree(p) for p in list(d.iterdir())], "folder is empty"),
    (lambda d: (d / "sheets.parquet").unlink(), "'sheets.parquet' .* is missing"),
    (lambda d: (d / "dataset.json").write_text("{oops"), "dataset.json: not valid JSON"),
    (_damage_table("sheets.parquet", lambda t: t.drop_columns(["label"])), "required column 'label' is missing"),
    (_damage_table("sheets.parquet", lambda t: t.drop_columns(["rate_deg_per_day"])), "column 'rate_deg_per_day' is missing"),
    (_damage_table("sheets.parquet", lambda t: t.append_column("mystery", pa.array(np.zeros(len(t))))), "unknown column 'mystery'"),
    (_damage_table("sheets.parquet", _set_cell("rate_deg_per_day", 3, "fast", pa.string())), "row 5: .* 'rate_deg_per_day' is not a number"),
    (_damage_table("sheets.parquet", lambda t: _set_cell("sheet_id", 2, t.column("sheet_id")[0].as_py())(t)),
     "duplicate sheet_id"),
    (_damage_table("sheets.parquet", _set_cell("label", 1, 5)), "field 'label' is 5"),
    (_damage_table("observations.parquet", _set_cell("mjd", 0, float("nan"))), "row 2: .* 'mjd' is NaN"),
    (_damage_table("observations.parquet", _set_cell("band", 0, "W9")), "'band' has value 'W9'"),
    (lambda d: sorted((d / "fits").iterdir())[0].unlink(), "FITS file for sheet .* is missing"),
    (_fits_edit(lambda h: h.pop(2)), "HDU OBS002 is missing|HDU OBS00. has no row"),
    (_fits_edit(lambda h: h.__setitem__(1, fits.ImageHDU(np.zeros((2, 9, 9), np.float32), name="OBS001"))), "HDU OBS001 has shape"),
])
def test_malformed_input_gets_a_clear_error_and_no_output(tmp_path, exported, damage, message):
    _, layout = exported
    d = shutil.copytree(layout, tmp_path / "bad")
    damage(d)
    with pytest.raises(NeoqaError, match=message) as info:
        ingest(d, tmp_path / "out")
    assert "\n" not in str(info.value)
    assert not (tmp_path / "out").exists()
    assert [p.name for p in tmp_path.iterdir()] == ["bad"]


def test_export_writes_telescope_date_and_unit(exported):
    src, layout = exported
    b = SheetSet(src).read()
    sid = b.sheet_id[0]
    with fits.open(layout / "fits" / f"{sid}.fits") as h:
        assert h[0].header["TELESCOP"] == "WISE" and h[0].header["SURVEY"] == "neowise"
        obs = h["OBS001"].header
        assert obs["BUNIT"] == "DN"                                   # the simulator's pixels
        from astropy.time import Time

        assert Time(obs["DATE-OBS"], format="isot", scale="utc").mjd == pytest.approx(obs["MJD-OBS"], abs=1e-8)


def test_export_writes_each_cutouts_wcs_and_ingest_keeps_a_plain_tan_one(tmp_path, exported, capsys):
    """The WCS export writes places each cutout's linked source, where the simulator truly put it,
    at the detection's RA and Dec (to its measurement error); ingest reads it back, keeps NaN for a
    projection it does not hold, and refuses a malformed one in one line."""
    import warnings

    from astropy.wcs import WCS

    src, layout = exported
    b = SheetSet(src).read()
    S = b.cutouts.shape[-1]
    miss = []
    for i in range(0, b.n_obs, 3):
        sid = b.sheet_id[b.obs_sheet_index()[i]]
        j = i - b.offsets[b.obs_sheet_index()[i]]
        with fits.open(layout / "fits" / f"{sid}.fits") as h, warnings.catch_warnings():
            warnings.simplefilter("ignore")
            w = WCS(h[f"OBS{j + 1:03d}"].header).celestial
        assert list(w.wcs.ctype) == ["RA---TAN", "DEC--TAN"]
        sky = w.pixel_to_world(S // 2 + b.truth_obs["true_x_px"][i], S // 2 + b.truth_obs["true_y_px"][i])
        from astropy.coordinates import SkyCoord

        miss.append(sky.separation(SkyCoord(b.ra[i], b.dec[i], unit="deg")).arcsec / b.meta["pixel_scale_arcsec"])
    assert np.median(miss) < 0.4 and np.quantile(miss, 0.95) < 1.2, (np.median(miss), np.max(miss))
    # a team's SIN projection: not kept (NaN), noted once; a malformed one: refused
    d = shutil.copytree(layout, tmp_path / "sin")
    first = sorted((d / "fits").iterdir())[0]
    with fits.open(first, mode="update") as h:
        h["OBS001"].header["CTYPE1"], h["OBS001"].header["CTYPE2"] = "RA---SIN", "DEC--SIN"
    back = SheetSet(ingest(d, tmp_path / "ds", progress=False)).read()
    assert np.isnan(back.wcs[0]).all() and np.isfinite(back.wcs[1:]).all()
    assert "RA---SIN/DEC--SIN is not a plain TAN projection" in capsys.readouterr().err
    with fits.open(first, mode="update") as h:
        h["OBS001"].header["CTYPE1"] = "RA---XYZ"
    with pytest.raises(NeoqaError, match=r"HDU OBS001: the WCS keywords cannot be read"):
        ingest(d, tmp_path / "bad", progress=False)
    assert not (tmp_path / "bad").exists()


def test_ingest_stacks_a_missing_composite_and_reads_the_survey_keyword(tmp_path, exported):
    """A team need not supply the composite: neoqa stacks it as the simulator does (the cutouts less
    their sky, averaged), and the FITS SURVEY keyword names the survey when dataset.json is absent."""
    src, layout = exported
    d = shutil.copytree(layout, tmp_path / "own")
    (d / "dataset.json").unlink()
    for name in ("truth_sheets.parquet", "truth_observations.parquet"):
        (d / name).unlink()
    files = sorted((d / "fits").glob("*.fits"))
    for p in files[::2]:                                              # half the sheets without a composite
        with fits.open(p) as h:
            kept = fits.HDUList([x.copy() for x in h if x.name != "COMPOSITE"])
        kept.writeto(p, overwrite=True)
    out = ingest(d, tmp_path / "ds")
    a, b = SheetSet(src).read(), SheetSet(out).read()
    assert b.meta["survey"] == "neowise"
    np.testing.assert_allclose(b.composite, a.composite, rtol=1e-5, atol=1e-4)
    np.testing.assert_array_equal(b.composite[1::2], a.composite[1::2])             # given ones kept as they are


def test_columns_named_as_neowise_or_by_a_mapping_file(tmp_path, exported):
    """A team's tables with NEOWISE's source-table names (--columns neowise), or any names mapped
    by a TOML file, ingest to the same dataset; a bad mapping is one line naming table and column."""
    from neoqa.cli import main
    from neoqa.ingest.layout import NEOWISE_COLUMNS

    src, layout = exported
    d = shutil.copytree(layout, tmp_path / "theirs")
    back = {ours: theirs for theirs, ours in NEOWISE_COLUMNS["observations"].items()}
    obs = pq.read_table(d / "observations.parquet")
    pq.write_table(obs.rename_columns([back.get(c, c) for c in obs.column_names]), d / "observations.parquet")
    sheets = pq.read_table(d / "sheets.parquet")
    pq.write_table(sheets.rename_columns(["vetted" if c == "label" else c for c in sheets.column_names]),
                   d / "sheets.parquet")
    (tmp_path / "cols.toml").write_text('[sheets]\nvetted = "label"\n[observations]\n'
                                        + "".join(f'{t} = "{o}"\n' for t, o in NEOWISE_COLUMNS["observations"].items()))
    assert main(["ingest", "--data", str(d), "--columns", str(tmp_path / "cols.toml"), "--out", str(tmp_path / "a")]) == 0
    assert same_sheets(SheetSet(src).read(), SheetSet(tmp_path / "a").read())

    pq.write_table(sheets, d / "sheets.parquet")             # label as neoqa names it: the built-in mapping is enough
    out = ingest(d, tmp_path / "b", columns="neowise")
    assert same_sheets(SheetSet(src).read(), SheetSet(out).read())

    for text, needle in (('[observations]\nw9snr = "snr_ch1"\n', "column 'w9snr' named in the column mapping"),
                         ('[observations]\nw1snr = "mjd"\n', "makes two columns named 'mjd'"),
                         ("[observations\n", "not a readable TOML"),
                         ('[pixels]\nx = "y"\n', "[pixels] is not a mapping table")):
        (tmp_path / "bad.toml").write_text(text)
        with pytest.raises(NeoqaError, match=re.escape(needle)):
            ingest(d, tmp_path / "c", columns=tmp_path / "bad.toml")
        assert not (tmp_path / "c").exists()


def test_ingest_measures_the_sheet_scalars_a_table_lacks(tmp_path, exported):
    """Observation summaries the sheets table lacks are computed by the simulator's own code: the
    same values the simulated dataset holds, named in the provenance."""
    src, layout = exported
    d = shutil.copytree(layout, tmp_path / "few")
    (d / "dataset.json").unlink()
    drop = ["snr_median_ch1", "snr_max_ch2", "detected_fraction_ch1", "chi2_median", "near_star_fraction",
            "color_ch1_ch2", "time_span_hr", "k"]
    t = pq.read_table(d / "sheets.parquet")
    pq.write_table(t.drop_columns(drop), d / "sheets.parquet")
    b = SheetSet(ingest(d, tmp_path / "ds", survey="neowise")).read()
    a = SheetSet(src).read()
    assert sorted(b.meta["provenance"]["derived_at_ingest"]) == sorted(drop)
    for name in drop:
        np.testing.assert_allclose(b.sheet_scalar(name), a.sheet_scalar(name), rtol=1e-5, atol=1e-5, err_msg=name)


STAR_SCALARS = ["near_star_flag", "star_dist_arcsec", "star_mag"]


def test_a_star_catalogue_gives_each_detection_its_nearest_star(tmp_path, exported, without_columns):
    """stars.parquet (e.g. AllWISE sources) in place of the star columns: the nearest catalogued
    star within the cutout, its magnitude, and the flag at 3 PSF FWHM, as the simulator measures."""
    from neoqa.data.sky import deproject, lonlat_to_unit, unit_to_lonlat

    src, layout = exported
    a = SheetSet(src).read()
    d, _ = without_columns(layout, "observations", STAR_SCALARS)
    # A star 5" east of observation 0, one 20" north of observation 3 (beyond 3 x 6.25" but in the
    # 15-pixel cutout), and one 2 degrees away that no cutout reaches.
    here = lonlat_to_unit(a.ra[[0, 3]], a.dec[[0, 3]])
    near = deproject(np.array([-5.0, 0.0]), np.array([0.0, 20.0]), here, 1.0)
    sra, sdec = unit_to_lonlat(near)
    stars = pa.table({"ra": [*sra, (a.ra[0] + 2) % 360], "dec": [*sdec, a.dec[0]], "mag": [9.5, 11.0, 3.0]})
    pq.write_table(stars, d / "stars.parquet")
    b = SheetSet(ingest(d, tmp_path / "ds", progress=False)).read()
    assert set(STAR_SCALARS) <= set(b.meta["provenance"]["derived_at_ingest"])
    dist, mag, flag = (b.obs_scalar(n) for n in ("star_dist_arcsec", "star_mag", "near_star_flag"))
    others = np.ones(len(dist), bool)
    for i, want_d, want_m, want_f in ((0, 5.0, 9.5, 1), (3, 20.0, 11.0, 0)):
        assert dist[i] == pytest.approx(want_d, abs=1e-3) and mag[i] == want_m and flag[i] == want_f
        others[i] = False
    # Every other detection has the nearer of those two if it lies within its cutout, else none.
    cos = np.clip(lonlat_to_unit(a.ra[others], a.dec[others]) @ near.T, -1, 1)
    sep = np.rad2deg(np.arccos(cos)).min(1) * 3600
    in_cutout = sep <= 7.5 * np.sqrt(2) * 2.75
    assert in_cutout.sum() >= 2 and (~in_cutout).sum() > 100
    np.testing.assert_allclose(dist[others][in_cutout], sep[in_cutout], rtol=1e-5)
    assert np.isnan(dist[others][~in_cutout]).all() and (flag[others][~in_cutout] == 0).all()

    pq.write_table(stars.set_column(1, "dec", pa.array([1.0, None, 2.0])), d / "stars.parquet")
    with pytest.raises(NeoqaError, match=r"stars.parquet: row 3: field 'dec' is NaN or empty"):
        ingest(d, tmp_path / "bad", progress=False)
    assert not (tmp_path / "bad").exists()
