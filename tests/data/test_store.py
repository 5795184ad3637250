"""The on-disk format: validation on open, clear errors, atomic writes."""

import json
import shutil
from dataclasses import replace

import h5py
import numpy as np
import pytest

from neoqa.errors import NeoqaError
from neoqa.simulate import simulate, runner
from neoqa.data.sheets import SheetBatch
from neoqa.data.store import SheetSet, read_shard, write_shard


def test_open_reads_what_was_written(small_neowise, small_batch):
    ds = SheetSet(small_neowise)
    assert len(ds) == 700 and len(ds.shard_paths) == 2
    assert ds.survey == "neowise"
    assert small_batch.n_obs == int(small_batch.k.sum())
    assert small_batch.cutouts.shape[1:] == (2, 15, 15)
    assert small_batch.composite.shape == (700, 2, 15, 15)
    assert len(set(small_batch.sheet_id)) == 700


def test_single_shard_file_opens(tmp_path, small_batch):
    part = small_batch.select(np.arange(20))
    path = write_shard(tmp_path / "one.h5", part)
    back = SheetSet(path).read()
    assert back.equals(part)


def test_select_keeps_observations_with_their_sheet(small_batch):
    part = small_batch.select([5, 2])
    off = small_batch.offsets
    np.testing.assert_array_equal(part.cutouts[: small_batch.k[5]], small_batch.cutouts[off[5]:off[6]])
    assert list(part.sheet_id) == [small_batch.sheet_id[5], small_batch.sheet_id[2]]


def _copy(src, dst):
    shutil.copytree(src, dst)
    return dst


@pytest.mark.parametrize("damage, message", [
    (lambda d: (d / "manifest.json").unlink(), "no manifest.json"),
    (lambda d: (d / "manifest.json").write_text("{"), "not valid JSON"),
    (lambda d: (d / "shard-00001.h5").unlink(), "shard file is missing"),
    (lambda d: (d / "shard-00000.h5").write_bytes((d / "shard-00000.h5").read_bytes()[:5000]), "not a readable HDF5"),
    (lambda d: _edit_h5(d, lambda f: f.attrs.__setitem__("format", "other")), "not a neoqa dataset"),
    (lambda d: _edit_h5(d, lambda f: f.attrs.__setitem__("format_version", 99)), "format version 99"),
    (lambda d: _edit_h5(d, lambda f: f.__delitem__("obs/cutouts")), "dataset 'obs/cutouts' is missing"),
    (lambda d: _edit_h5(d, _wrong_shape), "has shape"),
    (lambda d: _edit_h5(d, _duplicate_id), "appears more than once"),
    (lambda d: _edit_h5(d, _bad_label), "field 'label' is 7"),
    (lambda d: _edit_manifest(d, lambda m: m["shards"][0].__setitem__("sheets", 3)), "holds 400 sheets"),
])
def test_bad_files_give_one_clear_line(tmp_path, small_neowise, damage, message):
    d = _copy(small_neowise, tmp_path / "ds")
    damage(d)
    with pytest.raises(NeoqaError, match=message) as info:
        SheetSet(d)
    text = str(info.value)
    assert "\n" not in text and str(d) in text


def _edit_h5(d, fn):
    with h5py.File(d / "shard-00000.h5", "r+") as f:
        fn(f)


def _edit_manifest(d, fn):
    m = json.loads((d / "manifest.json").read_text())
    fn(m)
    (d / "manifest.json").write_text(json.dumps(m))


def _wrong_shape(f):
    data = f["sheets/composite"][()]
    del f["sheets/composite"]
    f["sheets/composite"] = data[:, :, :10, :10]


def _duplicate_id(f):
    ids = f["sheets/sheet_id"][()]
    ids[1] = ids[0]
    f["sheets/sheet_id"][...] = ids


def _bad_label(f):
    lab = f["sheets/label"][()]
    lab[4] = 7
    f["sheets/label"][...] = lab


def test_interrupted_simulation_leaves_nothing(tmp_path, monkeypatch):
    calls = []

    def failing(*args, **kwargs):
        calls.append(1)
        if len(calls) == 2:
            raise KeyboardInterrupt
        return original(*args, **kwargs)

    original = runner.write_shard_file
    monkeypatch.setattr(runner, "write_shard_file", failing)
    monkeypatch.setattr(runner, "SHARD_SIZE", 50)
    with pytest.raises(KeyboardInterrupt):
        simulate(tmp_path / "out", 150, seed=1, progress=False)
    assert list(tmp_path.iterdir()) == []


def test_read_shard_restores_names_and_meta(small_neowise):
    b = read_shard(SheetSet(small_neowise).shard_paths[0])
    assert b.meta["channels"] == ["W1", "W2"]
    assert b.meta["provenance"]["seed"] == 11
    assert "rate_deg_per_day" in b.sheet_scalar_names


def test_a_reader_of_some_arrays_leaves_the_rest_on_disk(tmp_path, small_batch):
    part = small_batch.select(np.arange(30))
    part.cutouts = part.cutouts.copy()
    part.cutouts[7, 0, 3, 3] = np.nan                   # a bad pixel only a pixel reader meets
    path = write_shard(tmp_path / "s.h5", part)
    some = read_shard(path, arrays={"composite", "sheet_scalars"})
    np.testing.assert_array_equal(some.composite, part.composite)
    np.testing.assert_array_equal(some.sheet_scalars, part.sheet_scalars)
    np.testing.assert_array_equal(some.k, part.k)
    for name in ("cutouts", "obs_scalars", "ra", "mjd", "mag"):        # stand-ins: NaN, read-only, no memory
        a, full = getattr(some, name), getattr(part, name)
        assert a.shape == full.shape and np.isnan(a).all() and not a.flags.writeable and a.strides[0] == 0
    assert some.n_obs == part.n_obs and len(some.slice(3, 9)) == 6
    with pytest.raises(NeoqaError, match="field 'cutouts' holds NaN"):
        read_shard(path)
    assert part.keeping(None) is part
    kept = part.keeping({"obs_scalars"})
    assert np.isnan(kept.composite).all() and np.array_equal(kept.obs_scalars, part.obs_scalars, equal_nan=True)


def test_a_shard_from_before_the_wcs_reads_it_as_unknown(tmp_path, small_batch):
    """obs/wcs came in 0.8.0: a shard without it opens, its WCS NaN; a wrong shape or an infinite
    value is refused in one line."""
    part = small_batch.select(np.arange(10))
    assert np.isfinite(part.wcs).all() and part.wcs.shape == (part.n_obs, 8)       # the simulator's
    path = write_shard(tmp_path / "s.h5", part)
    with h5py.File(path, "a") as f:
        del f["obs/wcs"]
    old = SheetSet(path).read()
    assert old.wcs.shape == (part.n_obs, 8) and np.isnan(old.wcs).all()
    from neoqa.data.info import format_text, summarize

    assert "cutouts' WCS: not recorded" in format_text(summarize(SheetSet(path)))
    assert old.equals(replace(part, wcs=old.wcs))                                   # the rest as written
    assert np.isnan(old.select([2, 0]).wcs).all() and np.isnan(SheetBatch.concat([old, old]).wcs).all()
    for bad, message in ((np.zeros((part.n_obs, 7)), "dataset 'obs/wcs' has shape"),
                         (np.full((part.n_obs, 8), np.inf), "field 'wcs' holds infinite values")):
        with h5py.File(path, "a") as f:
            f.pop("obs/wcs", None)
            f["obs/wcs"] = bad
        with pytest.raises(NeoqaError, match=message):
            SheetSet(path).read()


def test_long_and_non_ascii_sheet_ids_survive(tmp_path, small_batch):
    part = small_batch.select(np.arange(3))
    part.sheet_id = np.array(["x" * 120, "C009wuj-ÅÖ", "NEOWISE/2016-03-01/tracklet-77"])
    back = SheetSet(write_shard(tmp_path / "ids.h5", part)).read()
    assert list(back.sheet_id) == list(part.sheet_id)
