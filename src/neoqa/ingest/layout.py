"""Real data in and out: one FITS file per sheet plus two tables (docs/format.md).

    DIR/sheets.parquet        one row per sheet: sheet_id, label, then sheet scalars
    DIR/observations.parquet  one row per observation: sheet_id, obs_index, mjd, ra, dec,
                              band, mag, then observation scalars
    DIR/fits/<name>.fits      primary HDU (header only), OBS001..OBSnnn and COMPOSITE image
                              HDUs, each a [channel, y, x] cube; <name> is the sheet id where it
                              is a plain file name, else its safe form (outputs.safe_name), and
                              the SHEETID keyword holds the id itself
    DIR/dataset.json          optional: survey, channels, pixel scale, PSF FWHM, cutout size, provenance, and the
                              scalar column lists (then the tables must hold exactly those)
    DIR/stars.parquet         optional: catalogued stars (ra, dec, mag) near the sheets
    DIR/truth_*.parquet       optional simulation truth (never present for real data)
Either table may be CSV (``sheets.csv``, ``observations.csv``) instead of Parquet.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv
import pyarrow.parquet as pq
from astropy.io import fits
from astropy.time import Time

from neoqa.errors import NeoqaError
from neoqa.data.motion import geometry_scalars
from neoqa.data.photometry import (FWHM_PER_SIGMA, composite_noise, composite_snr, near_star_flag, pixel_sigma,
                                   psf_sigma_px, sky_levels)
from neoqa.data.sky import nearest
from neoqa.data.schema import (DEFAULT_DETECT_SNR, OBS_SCALARS, SHEET_SCALARS, TRUTH_OBS_EXTRA, TRUTH_OBS_FIELDS,
                               TRUTH_SHEET_FIELDS)
from neoqa.data.summaries import summarise
from neoqa.outputs import atomic_output, check_output, confined, safe_name
from neoqa.data.sheets import WCS_FIELDS, SheetBatch, composite
from neoqa.data.store import OPTIONAL_META_KEYS, SheetSet, check_finite, write_dataset
from neoqa.outputs import read_json
from neoqa.progress import progress_bar

SHEET_KEYS = ("sheet_id", "label")
OBS_KEYS = ("sheet_id", "obs_index", "mjd", "ra", "dec", "band", "mag")
FINITE_REQUIRED = ("mjd", "ra", "dec")
SHARD_SHEETS = 5_000
TELESCOPES = {"neowise": "WISE", "neosurveyor": "NEO Surveyor"}      # FITS TELESCOP of each simulated survey


# ------------------------------------------------------------------ export
def export(path, out, overwrite: bool = False) -> Path:
    """Write a dataset in the folder layout above (atomically)."""
    ds = SheetSet(path)
    out = Path(out)
    with atomic_output(out, overwrite=overwrite, inputs=(path,), folder=True, kind="export") as tmp:
        (tmp / "fits").mkdir(parents=True)
        sheet_tables, obs_tables, ts_tables, to_tables = [], [], [], []
        bar = progress_bar(total=len(ds), desc="export", unit="sheet")
        for b in ds.iter_shards():
            _export_fits(b, tmp / "fits", ds.meta)
            sheet_tables.append(_sheet_table(b))
            obs_tables.append(_obs_table(b, ds.meta["channels"]))
            if b.truth_sheet is not None:
                ts_tables.append(pa.table({"sheet_id": b.sheet_id, **b.truth_sheet}))
                to_tables.append(pa.table({"sheet_id": np.repeat(b.sheet_id, b.k), **b.truth_obs}))
            bar.update(len(b))
        bar.close()
        pq.write_table(pa.concat_tables(sheet_tables), tmp / "sheets.parquet")
        pq.write_table(pa.concat_tables(obs_tables), tmp / "observations.parquet")
        if ts_tables:
            pq.write_table(pa.concat_tables(ts_tables), tmp / "truth_sheets.parquet")
            pq.write_table(pa.concat_tables(to_tables), tmp / "truth_observations.parquet")
        meta = {key: ds.meta[key] for key in ("survey", "channels", "pixel_scale_arcsec", "provenance",
                                               "cutout_size", "sheet_scalars", "obs_scalars")}
        meta.update({key: ds.meta[key] for key in OPTIONAL_META_KEYS if key in ds.meta})
        (tmp / "dataset.json").write_text(json.dumps(meta, indent=1, sort_keys=True) + "\n")
    return out


def _sheet_table(b: SheetBatch) -> pa.Table:
    cols = {"sheet_id": b.sheet_id, "label": b.label}
    cols.update({name: b.sheet_scalars[:, i] for i, name in enumerate(b.sheet_scalar_names)})
    return pa.table(cols)


def _obs_table(b: SheetBatch, channels) -> pa.Table:
    index = np.concatenate([np.arange(k) for k in b.k]).astype(np.int32)
    cols = {"sheet_id": np.repeat(b.sheet_id, b.k), "obs_index": index, "mjd": b.mjd, "ra": b.ra,
            "dec": b.dec, "band": np.asarray(channels)[b.band], "mag": b.mag}
    cols.update({name: b.obs_scalars[:, i] for i, name in enumerate(b.obs_scalar_names)})
    return pa.table(cols)


def _export_fits(b: SheetBatch, folder: Path, meta: dict) -> None:
    off = b.offsets
    simulated = (meta.get("provenance") or {}).get("generator") == "neoqa.simulate"
    unit = "DN" if simulated else None          # the simulator's pixels are DN (docs/simulator.md); others unknown
    for i, sid in enumerate(b.sheet_id):
        head = fits.Header()
        head["SHEETID"] = sid
        head["SURVEY"] = meta["survey"]
        if meta["survey"] in TELESCOPES:
            head["TELESCOP"] = TELESCOPES[meta["survey"]]
        head["NOBS"] = int(b.k[i])
        head["PIXSCALE"] = (meta["pixel_scale_arcsec"], "arcsec / pixel")
        for c, name in enumerate(meta["channels"]):
            head[f"CHAN{c + 1}"] = (name, f"band of cube plane {c + 1}")
        hdus = [fits.PrimaryHDU(header=head)]
        for j in range(int(b.k[i])):
            h = fits.ImageHDU(b.cutouts[off[i] + j], name=f"OBS{j + 1:03d}")
            mjd = float(b.mjd[off[i] + j])
            h.header["MJD-OBS"] = mjd
            h.header["DATE-OBS"] = (Time(mjd, format="mjd", scale="utc").isot, "UTC, from MJD-OBS")
            if unit:
                h.header["BUNIT"] = unit
            _write_wcs(h.header, b.wcs[off[i] + j])
            hdus.append(h)
        hdus.append(fits.ImageHDU(b.composite[i], name="COMPOSITE"))
        fits.HDUList(hdus).writeto(folder / f"{safe_name(sid)}.fits")


def _write_wcs(header, w: np.ndarray) -> None:
    """A cutout's WCS (``WCS_FIELDS``) as FITS keywords on its celestial axes 1 and 2 (x, y; the
    band axis 3 has none), where it is known."""
    if not np.isfinite(w).all():
        return
    header["CTYPE1"], header["CTYPE2"] = "RA---TAN", "DEC--TAN"
    header["CUNIT1"], header["CUNIT2"] = "deg", "deg"
    header["RADESYS"] = "ICRS"
    for name, value in zip(WCS_FIELDS, w):
        header[name.upper()] = float(value)


# ------------------------------------------------------------------ ingest
# The NEOWISE single-exposure source table's names (IRSA's ``neowiser_p1bs_psd``) for the
# observation scalars neoqa names otherwise: ``--columns neowise``.
NEOWISE_COLUMNS = {"observations": {"w1snr": "snr_ch1", "w2snr": "snr_ch2", "w1mpro": "mag_ch1", "w2mpro": "mag_ch2",
                                    "w1sigmpro": "magerr_ch1", "w2sigmpro": "magerr_ch2", "w1sky": "sky_ch1",
                                    "w2sky": "sky_ch2"}}
BUILT_IN_COLUMNS = {"neowise": NEOWISE_COLUMNS}


def read_columns(spec) -> dict:
    """A column mapping: a built-in one by name (``neowise``) or a TOML file whose ``[sheets]`` and
    ``[observations]`` tables map a team's column names to neoqa's (``w1snr = "snr_ch1"``)."""
    import tomllib

    if spec is None:
        return {}
    if str(spec) in BUILT_IN_COLUMNS:
        return BUILT_IN_COLUMNS[str(spec)]
    path = Path(spec)
    try:
        doc = tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise NeoqaError(f"{path}: no such column-mapping file (or built-in mapping: "
                         f"{', '.join(BUILT_IN_COLUMNS)})") from None
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as e:
        raise NeoqaError(f"{path}: not a readable TOML column mapping ({e})") from None
    for table, names in doc.items():
        if table not in ("sheets", "observations") or not isinstance(names, dict):
            raise NeoqaError(f"{path}: [{table}] is not a mapping table (use [sheets] and [observations])")
        for theirs, ours in names.items():
            if not isinstance(ours, str) or not ours:
                raise NeoqaError(f"{path}: [{table}] {theirs}: must name a neoqa column as a string")
    return doc


def _renamed(path: Path, table: pa.Table, mapping: dict) -> pa.Table:
    """``table`` with its columns renamed by ``mapping`` (theirs -> neoqa's), refused in one line
    where a mapped column is missing or a new name collides with a column already there."""
    missing = [c for c in mapping if c not in table.column_names]
    if missing:
        raise NeoqaError(f"{path}: column {missing[0]!r} named in the column mapping is missing")
    names = [mapping.get(c, c) for c in table.column_names]
    twice = sorted({n for n in names if names.count(n) > 1})
    if twice:
        raise NeoqaError(f"{path}: the column mapping makes two columns named {twice[0]!r}")
    return table.rename_columns(names)


def ingest(folder, out, survey: str | None = None, overwrite: bool = False, progress: bool = True,
           columns=None) -> Path:
    """Read the folder layout above into a validated dataset at ``out``; ``columns`` (``read_columns``)
    renames a team's table columns to neoqa's first."""
    folder = Path(folder)
    check_output(out, overwrite=overwrite, inputs=(folder,), folder=True)     # before minutes of reading
    if not folder.is_dir():
        raise NeoqaError(f"{folder}: no such folder")
    if not any(folder.iterdir()):
        raise NeoqaError(f"{folder}: the folder is empty")
    meta = read_json(folder / "dataset.json")
    mapping = read_columns(columns)
    sheets_path, sheets = _read_table(folder, "sheets")
    obs_path, obs = _read_table(folder, "observations")
    sheets = _renamed(sheets_path, sheets, mapping.get("sheets", {}))
    obs = _renamed(obs_path, obs, mapping.get("observations", {}))
    for path, table in ((sheets_path, sheets), (obs_path, obs)):
        if table.num_rows == 0:
            raise NeoqaError(f"{path}: the table has no rows")
    sheet_scalars = _scalar_columns(sheets_path, sheets, SHEET_KEYS, meta.get("sheet_scalars"))
    obs_scalars = _scalar_columns(obs_path, obs, OBS_KEYS, meta.get("obs_scalars"))

    sid = _strings(sheets_path, sheets, "sheet_id")
    uniq, counts = np.unique(sid, return_counts=True)
    if (counts > 1).any():
        row = int(np.flatnonzero(sid == uniq[counts > 1][0])[1]) + 2
        raise NeoqaError(f"{sheets_path}: row {row}: duplicate sheet_id {uniq[counts > 1][0]!r}")
    label = _numbers(sheets_path, sheets, "label", sid, allow_nan=False)
    bad = np.flatnonzero(~np.isin(label, (-1, 0, 1)))
    if len(bad):
        raise NeoqaError(f"{sheets_path}: sheet {sid[bad[0]]!r}: field 'label' is {label[bad[0]]}, must be -1, 0 or 1")
    S_scal = np.stack([_numbers(sheets_path, sheets, c, sid) for c in sheet_scalars], 1).astype(np.float32) \
        if sheet_scalars else np.zeros((len(sid), 0), np.float32)

    osid = _strings(obs_path, obs, "sheet_id")
    unknown = np.setdiff1d(osid, sid)
    if len(unknown):
        raise NeoqaError(f"{obs_path}: sheet_id {unknown[0]!r} is not in {sheets_path.name}")
    oidx = _numbers(obs_path, obs, "obs_index", osid, allow_nan=False).astype(np.int64)
    pos = {s: i for i, s in enumerate(sid)}
    sheet_pos = np.array([pos[s] for s in osid], dtype=np.int64)
    order = np.lexsort((oidx, sheet_pos))
    k = np.bincount(sheet_pos, minlength=len(sid)).astype(np.int32)
    empty = np.flatnonzero(k == 0)
    if len(empty):
        raise NeoqaError(f"{obs_path}: sheet {sid[empty[0]]!r} has no observations")
    expect = np.concatenate([np.arange(n) for n in k])
    if not np.array_equal(oidx[order], expect):
        first = int(np.flatnonzero(oidx[order] != expect)[0])
        raise NeoqaError(f"{obs_path}: sheet {osid[order][first]!r}: field 'obs_index' must run 0..k-1 without gaps or repeats")

    def ocol(name, allow_nan=True):
        return _numbers(obs_path, obs, name, osid, allow_nan=allow_nan)[order]

    mjd, ra, dec = (ocol(n, allow_nan=False) for n in FINITE_REQUIRED)
    mag = ocol("mag").astype(np.float32)
    O_scal = np.stack([ocol(c) for c in obs_scalars], 1).astype(np.float32) if obs_scalars \
        else np.zeros((len(osid), 0), np.float32)
    bands = _strings(obs_path, obs, "band")[order]

    channels, scale, images, composites, wcs, fits_survey = _read_fits(folder, sid, k, meta, progress)
    bad = np.flatnonzero(~np.isin(bands, channels))
    if len(bad):
        row = int(order[bad[0]]) + 2
        raise NeoqaError(f"{obs_path}: row {row}: sheet {str(osid[order][bad[0]])!r}: field 'band' has value "
                         f"{str(bands[bad[0]])!r}, not one of the channels {channels}")
    band = np.array([channels.index(b) for b in bands], dtype=np.int8)

    composites = _composites(composites, images, O_scal, obs_scalars, k)
    # Scalars the tables lack are measured here by the simulator's own code, so they mean what the
    # benchmark's do: the motion fit and the sheet's place on the sky from the observations' times and
    # positions (data.motion), then the summaries of the observations (data.summaries).
    obs_geo, sheet_geo = geometry_scalars(mjd, ra, dec, k)
    psf = psf_sigma_px({**meta, "pixel_scale_arcsec": scale}, len(channels), required=False,
                       where=str(folder / "dataset.json"))          # PSF sigma in pixels, or None
    obs_geo.update(_star_scalars(folder, scale, images.shape[-1], psf, ra, dec))
    added_obs = [n for n in OBS_SCALARS if n in obs_geo and n not in obs_scalars]
    if added_obs:
        O_scal = np.concatenate([O_scal, np.stack([obs_geo[n] for n in added_obs], 1).astype(np.float32)], 1)
        obs_scalars = [*obs_scalars, *added_obs]
    derived = {**sheet_geo, **summarise({n: O_scal[:, i] for i, n in enumerate(obs_scalars)}, k,
                                        float(meta.get("detect_snr", DEFAULT_DETECT_SNR))),
               **_composite_snr(folder, psf, composites, images, k, sheet_scalars)}
    added = [n for n in SHEET_SCALARS if n in derived and n not in sheet_scalars]
    if added:
        S_scal = np.concatenate([S_scal, np.stack([derived[n] for n in added], 1).astype(np.float32)], 1)
        sheet_scalars = [*sheet_scalars, *added]
    added = added_obs + added
    truth_s, truth_o = _read_truth(folder, sid, order)
    full_meta = {
        "survey": survey or fits_survey or "unknown", "channels": channels, "pixel_scale_arcsec": scale,
        "provenance": {**(meta.get("provenance") or {"generator": "neoqa.ingest.layout", "source": str(folder)}),
                       **({"derived_at_ingest": added} if added else {})},
        **{key: meta[key] for key in OPTIONAL_META_KEYS if meta.get(key) is not None},
    }
    batch = SheetBatch(sheet_id=sid, label=label.astype(np.int8), k=k, composite=composites,
                       sheet_scalars=S_scal, cutouts=images, obs_scalars=O_scal, ra=ra, dec=dec, mjd=mjd,
                       band=band, mag=mag, wcs=wcs, truth_sheet=truth_s, truth_obs=truth_o,
                       sheet_scalar_names=tuple(sheet_scalars), obs_scalar_names=tuple(obs_scalars), meta=full_meta)
    check_finite(folder, {"sheet_id": sid, "k": k, "composite": composites, "cutouts": images, "ra": ra, "dec": dec,
                          "mjd": mjd, "sheet_scalars": S_scal, "obs_scalars": O_scal, "mag": mag, "wcs": wcs})
    shards = (batch.select(np.arange(s, min(s + SHARD_SHEETS, len(batch)))) for s in range(0, len(batch), SHARD_SHEETS))
    return write_dataset(out, shards, overwrite=overwrite, inputs=(folder,))


def _read_table(folder: Path, stem: str):
    for ext, reader in ((".parquet", pq.read_table), (".csv", pacsv.read_csv)):
        p = folder / f"{stem}{ext}"
        if p.exists():
            try:
                return p, reader(p)
            except (pa.ArrowInvalid, OSError) as e:
                raise NeoqaError(f"{p}: cannot be read as {ext[1:].upper()} ({str(e).splitlines()[0]})") from None
    raise NeoqaError(f"{folder}: table '{stem}.parquet' (or '{stem}.csv') is missing")


def _scalar_columns(path: Path, table: pa.Table, keys, declared=None) -> list[str]:
    """The scalar columns in table order; where dataset.json declares them, exactly those."""
    missing = [k for k in list(keys) + list(declared or []) if k not in table.column_names]
    if missing:
        raise NeoqaError(f"{path}: required column '{missing[0]}' is missing")
    found = [c for c in table.column_names if c not in keys]
    if declared is not None:
        unknown = [c for c in found if c not in declared]
        if unknown:
            raise NeoqaError(f"{path}: unknown column '{unknown[0]}' (not in dataset.json's scalar list)")
        return list(declared)
    return found


def _strings(path, table, name) -> np.ndarray:
    col = table.column(name)
    if col.null_count:
        row = int(np.flatnonzero(pc.is_null(col).to_numpy(zero_copy_only=False))[0]) + 2
        raise NeoqaError(f"{path}: row {row}: field '{name}' is empty")
    return np.asarray(col.cast(pa.string()).to_pylist(), dtype=str)


def _numbers(path, table, name, ids, allow_nan=True) -> np.ndarray:
    """A numeric column; ``ids`` name each row's sheet in errors (None: rows that are not sheets')."""
    col = table.column(name)
    if not (pa.types.is_integer(col.type) or pa.types.is_floating(col.type)):
        try:
            col = col.cast(pa.float64())
        except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
            values = col.to_pylist()
            row = next(i for i, v in enumerate(values) if not _is_number(v))
            raise NeoqaError(f"{path}: row {row + 2}: {_whose(ids, row)}field '{name}' is not a number "
                             f"({values[row]!r})") from None
    arr = col.to_numpy(zero_copy_only=False)
    if arr.dtype == object:
        arr = arr.astype(np.float64)
    if not allow_nan:
        bad = np.flatnonzero(~np.isfinite(arr.astype(np.float64)))
        if len(bad):
            raise NeoqaError(f"{path}: row {bad[0] + 2}: {_whose(ids, bad[0])}field '{name}' is NaN or empty "
                             f"but must be a finite number")
    return arr


def _whose(ids, row) -> str:
    return "" if ids is None else f"sheet {ids[row]!r}: "


def _is_number(v) -> bool:
    try:
        float(v)
        return v is not None
    except (TypeError, ValueError):
        return False


def _read_fits(folder: Path, sid, k, meta, progress: bool = True):
    fdir = folder / "fits"
    if not fdir.is_dir():
        raise NeoqaError(f"{folder}: folder 'fits/' with one FITS file per sheet is missing")
    channels, scale = meta.get("channels"), meta.get("pixel_scale_arcsec")
    size = meta.get("cutout_size")
    shape = (len(channels), size, size) if channels and size else None
    images, composites, wcs, survey = [], [], [], meta.get("survey")
    for i, s in enumerate(progress_bar(sid, desc="ingest", unit="sheet", disable=not progress)):
        p = confined(fdir, f"{safe_name(s)}.fits", f"{folder}: sheet {s!r}")
        if not p.is_file():
            raise NeoqaError(f"{p}: FITS file for sheet {s!r} is missing")
        try:
            hdul = fits.open(p, memmap=False)
        except (OSError, ValueError) as e:
            raise NeoqaError(f"{p}: not a readable FITS file ({e})") from None
        with hdul:
            head = hdul[0].header
            chans = [head.get(f"CHAN{c + 1}") for c in range(8) if head.get(f"CHAN{c + 1}")]
            if not chans:
                raise NeoqaError(f"{p}: primary header has no CHAN1.. keywords naming the bands")
            channels = channels or chans
            if chans != list(channels):
                raise NeoqaError(f"{p}: channels {chans} differ from the dataset's {list(channels)}")
            scale = scale if scale is not None else head.get("PIXSCALE")
            for j in range(int(k[i])):
                name = f"OBS{j + 1:03d}"
                data = _hdu(p, hdul, name)
                shape = shape or data.shape
                if data.ndim != 3 or data.shape != shape or data.shape[0] != len(channels) or data.shape[1] != data.shape[2]:
                    raise NeoqaError(f"{p}: HDU {name} has shape {data.shape}, expected "
                                     f"{shape if shape else (len(channels), 'S', 'S')}")
                _check_pixels(p, name, s, data)
                images.append(data.astype(np.float32))
                wcs.append(_read_wcs(p, name, hdul[name].header))
            extra = [h.name for h in hdul[1:] if h.name.startswith("OBS") and h.name[3:].isdigit() and int(h.name[3:]) > k[i]]
            if extra:
                raise NeoqaError(f"{p}: HDU {extra[0]} has no row in observations (sheet has k={k[i]})")
            here = head.get("SURVEY")
            if here is not None and survey is not None and here != survey:
                raise NeoqaError(f"{p}: SURVEY is {here!r} but the other sheets' is {survey!r}")
            survey = survey or here
            if "COMPOSITE" not in hdul:           # neoqa stacks it (below), as the simulator does
                composites.append(None)
                continue
            comp = _hdu(p, hdul, "COMPOSITE")
            if comp.shape != shape:
                raise NeoqaError(f"{p}: HDU COMPOSITE has shape {comp.shape}, expected {shape}")
            _check_pixels(p, "COMPOSITE", s, comp)
            composites.append(comp.astype(np.float32))
    if scale is None:
        raise NeoqaError(f"{folder}: the pixel scale is unknown (PIXSCALE header or dataset.json)")
    return list(channels), float(scale), np.stack(images), composites, np.array(wcs, np.float64), survey


def _read_wcs(p: Path, hdu: str, header) -> list:
    """An observation HDU's celestial WCS as ``WCS_FIELDS`` (NaN where it has none). A plain
    gnomonic projection is kept; another (SIP distortions, other projections) is noted once and
    not kept, since neoqa's WCS holds a TAN projection only."""
    if "CTYPE1" not in header:
        return [np.nan] * len(WCS_FIELDS)
    import warnings

    from astropy.wcs import WCS

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            w = WCS(header).celestial
    except Exception as e:          # astropy raises several kinds for a malformed header
        raise NeoqaError(f"{p}: HDU {hdu}: the WCS keywords cannot be read ({str(e).splitlines()[0]})") from None
    ctype = list(w.wcs.ctype)
    if ctype != ["RA---TAN", "DEC--TAN"] or w.sip is not None or w.wcs.naxis != 2:
        if p.parent not in _NOTED_WCS:
            _NOTED_WCS.add(p.parent)
            print(f"note: {p}: HDU {hdu}: WCS {'/'.join(ctype) or 'without celestial axes'} is not a plain TAN "
                  "projection; the cutouts' WCS is not kept", file=sys.stderr)
        return [np.nan] * len(WCS_FIELDS)
    cd = w.wcs.cd if w.wcs.has_cd() else w.pixel_scale_matrix        # CD as written, else PC x CDELT
    return [*w.wcs.crval, *w.wcs.crpix, *np.ravel(cd)]


_NOTED_WCS: set = set()


def _composites(given: list, images: np.ndarray, obs: np.ndarray, obs_names, k) -> np.ndarray:
    """Each sheet's composite: the COMPOSITE HDU where its FITS file has one, else the stack neoqa's
    simulator makes (``data.sheets.composite``: the mean of the cutouts, each less its sky), the sky
    being the ``sky_ch1``.. observation scalars where the tables have them, else each cutout's median."""
    missing = [i for i, c in enumerate(given) if c is None]
    if not missing:
        return np.stack(given)
    stacked = composite(images, sky_levels(images, obs, obs_names), k)
    return np.stack([stacked[i] if c is None else c for i, c in enumerate(given)])


def _composite_snr(folder: Path, psf, composites, images, k, have) -> dict:
    """``composite_snr_ch1``.. where the sheets table lacks them, measured as the simulator measures
    them (``data.photometry``), with each cutout's noise estimated from its pixels (the layout
    carries no uncertainty images); nothing where the PSF's width ``psf`` is unknown (noted)."""
    names = [f"composite_snr_ch{c + 1}" for c in range(composites.shape[1])]
    if all(n in have for n in names):
        return {}
    if psf is None:
        print(f"note: {folder}: composite_snr_ch1.. not measured: dataset.json gives no psf_fwhm_arcsec",
              file=sys.stderr)
        return {}
    snr = composite_snr(composites, psf, composite_noise(pixel_sigma(images), k))
    return {n: snr[:, c] for c, n in enumerate(names)}


def _star_scalars(folder: Path, scale: float, size: int, psf, ra, dec) -> dict:
    """``star_dist_arcsec``, ``star_mag`` and ``near_star_flag`` of each detection from the layout's
    optional star catalogue (``stars.parquet`` or ``.csv``: ``ra``, ``dec`` in degrees and, if known,
    ``mag``, e.g. AllWISE sources near the sheets): the nearest catalogued star within the cutout
    (half its diagonal), as the simulator measures them; the flag needs the PSF's width ``psf``."""
    if not any((folder / f"stars{ext}").exists() for ext in (".parquet", ".csv")):
        return {}
    path, table = _read_table(folder, "stars")
    for name in ("ra", "dec"):
        if name not in table.column_names:
            raise NeoqaError(f"{path}: required column '{name}' is missing")
    sra, sdec = (_numbers(path, table, n, None, allow_nan=False).astype(np.float64) for n in ("ra", "dec"))
    smag = _numbers(path, table, "mag", None).astype(np.float64) if "mag" in table.column_names \
        else np.full(len(sra), np.nan)
    dist, idx = nearest(ra, dec, sra, sdec, size / 2 * np.sqrt(2) * scale)
    out = {"star_dist_arcsec": dist, "star_mag": np.where(idx >= 0, smag[idx], np.nan)}
    if psf is not None:
        out["near_star_flag"] = near_star_flag(dist, psf * scale * FWHM_PER_SIGMA)
    return out


def _check_pixels(p, hdu, sheet, data) -> None:
    if not np.issubdtype(data.dtype, np.number):
        raise NeoqaError(f"{p}: HDU {hdu}: sheet {sheet!r}: field 'cutouts' is not numeric ({data.dtype})")
    if not np.isfinite(data).all():
        field = "composite" if hdu == "COMPOSITE" else "cutouts"
        raise NeoqaError(f"{p}: HDU {hdu}: sheet {sheet!r}: field '{field}' holds NaN or infinite pixels")


def _hdu(p, hdul, name):
    try:
        data = hdul[name].data
    except KeyError:
        raise NeoqaError(f"{p}: HDU {name} is missing") from None
    if data is None:
        raise NeoqaError(f"{p}: HDU {name} holds no image")
    return np.asarray(data)


def _read_truth(folder: Path, sid, order):
    ts, to = folder / "truth_sheets.parquet", folder / "truth_observations.parquet"
    if not (ts.exists() and to.exists()):
        return None, None
    try:
        t1, t2 = pq.read_table(ts), pq.read_table(to)
    except (pa.ArrowInvalid, OSError) as e:
        raise NeoqaError(f"{ts.parent}: a truth table cannot be read ({str(e).splitlines()[0]})") from None
    for path, table, names in ((ts, t1, ("sheet_id",) + TRUTH_SHEET_FIELDS), (to, t2, TRUTH_OBS_FIELDS)):
        missing = [n for n in names if n not in table.column_names]
        if missing:
            raise NeoqaError(f"{path}: required column '{missing[0]}' is missing")
    if t2.num_rows != len(order):
        raise NeoqaError(f"{to}: holds {t2.num_rows} rows but there are {len(order)} observations")
    if not np.array_equal(np.asarray(t1.column("sheet_id").to_pylist(), dtype=str), sid):
        raise NeoqaError(f"{ts}: sheet order differs from sheets table")
    truth_s = {n: t1.column(n).to_numpy() for n in TRUTH_SHEET_FIELDS}
    truth_o = {n: t2.column(n).to_numpy()[order] for n in TRUTH_OBS_FIELDS}
    truth_o.update({n: t2.column(n).to_numpy()[order] if n in t2.column_names else np.full(len(order), np.nan)
                    for n in TRUTH_OBS_EXTRA})          # optional: exports from before 0.4.0 lack them
    return truth_s, truth_o
