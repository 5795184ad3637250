"""The on-disk format (docs/format.md): HDF5 shards plus a JSON manifest.

A dataset is either one ``.h5`` shard or a folder holding ``manifest.json`` and
its shards. Everything is validated on open; every write goes to a temporary
name first and is renamed into place, so an interrupted run leaves nothing that
looks complete.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import tempfile
from pathlib import Path

import h5py
import numpy as np

from .errors import NeoqaError
from .schema import FORMAT_NAME, FORMAT_VERSION, TRUTH_OBS_FIELDS, TRUTH_SHEET_FIELDS
from .sheets import OBS_ARRAYS, SHEET_ARRAYS, SheetBatch

MANIFEST = "manifest.json"
# Dataset meta keys every shard and manifest carry.
META_KEYS = ("survey", "channels", "pixel_scale_arcsec", "cutout_size", "sheet_scalars",
             "obs_scalars", "provenance", "has_truth")
OPTIONAL_META_KEYS = ("psf_fwhm_arcsec", "detect_snr")   # instrument facts the robustness tests use

_DTYPES = {
    "label": np.int8, "k": np.int32, "composite": np.float32, "sheet_scalars": np.float32,
    "cutouts": np.float32, "obs_scalars": np.float32, "ra": np.float64, "dec": np.float64,
    "mjd": np.float64, "band": np.int8, "mag": np.float32,
}
_GROUP = {**{n: "sheets" for n in SHEET_ARRAYS}, **{n: "obs" for n in OBS_ARRAYS}}
_TRUTH_DTYPES = {"clean_label": np.int8, "scenario": np.int8, "object_class": np.int8,
                 "n_object_obs": np.int16, "source_kind": np.int8, "object_id": np.int16}


# ---------------------------------------------------------------- writing
@contextlib.contextmanager
def atomic_path(final: Path, is_dir: bool = False):
    """Yield a temporary sibling path; rename it onto ``final`` only on success."""
    final = Path(final)
    final.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{final.name}.", suffix=".partial", dir=final.parent))
    target = tmp if is_dir else tmp / final.name
    try:
        yield target
        if final.exists():
            shutil.rmtree(final) if final.is_dir() else final.unlink()
        os.replace(target, final)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def _meta_from(batch: SheetBatch) -> dict:
    meta = {key: batch.meta.get(key) for key in META_KEYS}
    meta.update({key: batch.meta[key] for key in OPTIONAL_META_KEYS if batch.meta.get(key) is not None})
    meta["sheet_scalars"] = list(batch.sheet_scalar_names)
    meta["obs_scalars"] = list(batch.obs_scalar_names)
    meta["cutout_size"] = int(batch.composite.shape[-1])
    meta["has_truth"] = batch.truth_sheet is not None
    return meta


def write_shard_file(path: Path, batch: SheetBatch) -> None:
    """Write one shard to ``path`` (not atomic by itself: see ``write_shard``).

    Images are stored uncompressed: sky noise in float32 does not compress (LZF saved
    0.5% of the bytes and took 90% of the write time), and readers decompress any
    HDF5 filter transparently, so older LZF shards still open.
    """
    meta = _meta_from(batch)
    with h5py.File(path, "w", track_order=False) as f:
        f.attrs["format"] = FORMAT_NAME
        f.attrs["format_version"] = FORMAT_VERSION
        f.attrs["meta"] = json.dumps(meta, sort_keys=True)
        for name in SHEET_ARRAYS + OBS_ARRAYS:
            arr = getattr(batch, name)
            arr = encode_ids(arr) if name == "sheet_id" else arr.astype(_DTYPES[name], copy=False)
            _dataset(f, f"{_GROUP[name]}/{name}", arr)
        if batch.truth_sheet is not None:
            for name in TRUTH_SHEET_FIELDS:
                _dataset(f, f"truth/sheets/{name}", _truth(name, batch.truth_sheet[name]))
            for name in TRUTH_OBS_FIELDS:
                _dataset(f, f"truth/obs/{name}", _truth(name, batch.truth_obs[name]))


def encode_ids(ids) -> np.ndarray:
    """Sheet ids as UTF-8 bytes, as wide as the longest (never truncated)."""
    raw = [str(s).encode("utf-8") for s in ids]
    return np.array(raw, dtype=f"S{max([len(r) for r in raw] + [1])}")


def decode_ids(raw) -> np.ndarray:
    return np.array([r.decode("utf-8") for r in raw], dtype=str) if len(raw) else np.zeros(0, dtype=str)


def _truth(name, values):
    return np.asarray(values).astype(_TRUTH_DTYPES.get(name, np.float32), copy=False)


def _dataset(f, key, arr):
    chunks = None
    if arr.ndim >= 3 and arr.shape[0] > 0:
        chunks = (min(256, arr.shape[0]),) + arr.shape[1:]
    f.create_dataset(key, data=arr, chunks=chunks, track_times=False)


def write_shard(path, batch: SheetBatch) -> Path:
    path = Path(path)
    with atomic_path(path) as tmp:
        write_shard_file(tmp, batch)
    return path


def shard_name(i: int) -> str:
    return f"shard-{i:05d}.h5"


def write_manifest(folder: Path, meta: dict, counts: list[int]) -> None:
    manifest = {"format": FORMAT_NAME, "format_version": FORMAT_VERSION, **meta,
                "shards": [{"file": shard_name(i), "sheets": int(n)} for i, n in enumerate(counts)]}
    (Path(folder) / MANIFEST).write_text(json.dumps(manifest, indent=1, sort_keys=True) + "\n")


def write_dataset(path, batches) -> Path:
    """Write an iterable of SheetBatch as the shards of one dataset folder, atomically."""
    path = Path(path)
    with atomic_path(path, is_dir=True) as tmp:
        tmp.mkdir(exist_ok=True)
        counts, meta = [], None
        for i, batch in enumerate(batches):
            write_shard_file(tmp / shard_name(i), batch)
            counts.append(len(batch))
            meta = meta or _meta_from(batch)
        if meta is None:
            raise NeoqaError(f"{path}: no sheets to write")
        write_manifest(tmp, meta, counts)
    return path


# ---------------------------------------------------------------- reading
class SheetSet:
    """A validated dataset on disk: one shard file or a folder of shards."""

    def __init__(self, path):
        self.path = Path(path)
        if not self.path.exists():
            raise NeoqaError(f"{self.path}: no such file or folder")
        if self.path.is_dir():
            self.shard_paths, self.counts, self.meta = _open_folder(self.path)
        else:
            meta, n = _validate_shard(self.path)
            self.shard_paths, self.counts, self.meta = [self.path], [n], meta

    def __len__(self) -> int:
        return int(sum(self.counts))

    @property
    def survey(self) -> str:
        return self.meta["survey"]

    def iter_shards(self):
        for p in self.shard_paths:
            yield read_shard(p)

    def read(self) -> SheetBatch:
        return SheetBatch.concat(list(self.iter_shards()))


def read_json(path: Path, missing: str | None = None) -> dict:
    """A JSON file as a dict; a missing or malformed file is one clear line.

    ``missing`` is the message for an absent file; without it an absent file gives {}.
    """
    if not path.exists():
        if missing is None:
            return {}
        raise NeoqaError(f"{path.parent}: {missing}")
    try:
        value = json.loads(path.read_text())
    except json.JSONDecodeError as e:
        raise NeoqaError(f"{path}: not valid JSON ({e.msg} at line {e.lineno})") from None
    if not isinstance(value, dict):
        raise NeoqaError(f"{path}: expected a JSON object")
    return value


def _open_folder(path: Path):
    mf = path / MANIFEST
    manifest = read_json(mf, f"not a neoqa dataset (no {MANIFEST})")
    _check_format(mf, manifest.get("format"), manifest.get("format_version"))
    shards = manifest.get("shards")
    if not isinstance(shards, list) or not shards:
        raise NeoqaError(f"{mf}: field 'shards' is missing or empty")
    paths, counts = [], []
    for entry in shards:
        p = path / str(entry.get("file"))
        meta, n = _validate_shard(p)
        if n != entry.get("sheets"):
            raise NeoqaError(f"{p}: holds {n} sheets but {MANIFEST} says {entry.get('sheets')}")
        for key in ("survey", "channels", "sheet_scalars", "obs_scalars", "cutout_size"):
            if meta.get(key) != manifest.get(key):
                raise NeoqaError(f"{p}: field '{key}' differs from {MANIFEST}")
        paths.append(p)
        counts.append(n)
    optional = {k: manifest[k] for k in OPTIONAL_META_KEYS if k in manifest}
    return paths, counts, {**{k: manifest.get(k) for k in META_KEYS}, **optional}


def _check_format(where, fmt, version):
    if fmt != FORMAT_NAME:
        raise NeoqaError(f"{where}: not a neoqa dataset (format is {fmt!r}, expected {FORMAT_NAME!r})")
    if version != FORMAT_VERSION:
        raise NeoqaError(f"{where}: format version {version} is not supported (this neoqa reads {FORMAT_VERSION})")


def _validate_shard(path: Path):
    """Check layout and schema without reading the images; return (meta, n_sheets)."""
    if not path.exists():
        raise NeoqaError(f"{path}: shard file is missing")
    try:
        f = h5py.File(path, "r")
    except OSError:
        raise NeoqaError(f"{path}: not a readable HDF5 file (truncated or not HDF5)") from None
    with f:
        _check_format(path, _attr(f, "format"), _attr(f, "format_version"))
        try:
            meta = json.loads(f.attrs["meta"])
        except (KeyError, json.JSONDecodeError):
            raise NeoqaError(f"{path}: attribute 'meta' is missing or not JSON") from None
        for key in META_KEYS:
            if key not in meta:
                raise NeoqaError(f"{path}: meta field '{key}' is missing")
        n_ch, size = len(meta["channels"]), meta["cutout_size"]
        ns, no = len(meta["sheet_scalars"]), len(meta["obs_scalars"])
        expect = {"sheet_id": (None,), "label": (None,), "k": (None,), "composite": (None, n_ch, size, size),
                  "sheet_scalars": (None, ns), "cutouts": (None, n_ch, size, size), "obs_scalars": (None, no),
                  "ra": (None,), "dec": (None,), "mjd": (None,), "band": (None,), "mag": (None,)}
        lengths = {}
        for name, shape in expect.items():
            key = f"{_GROUP[name]}/{name}"
            if key not in f:
                raise NeoqaError(f"{path}: dataset '{key}' is missing")
            ds = f[key]
            if len(ds.shape) != len(shape) or any(s is not None and s != d for s, d in zip(shape, ds.shape)):
                raise NeoqaError(f"{path}: dataset '{key}' has shape {ds.shape}, expected {_fmt(shape)}")
            lengths.setdefault(_GROUP[name], set()).add(ds.shape[0])
        for group, sizes in lengths.items():
            if len(sizes) != 1:
                raise NeoqaError(f"{path}: the datasets under '{group}/' differ in length {sorted(sizes)}")
        n, m = lengths["sheets"].pop(), lengths["obs"].pop()
        k = f["sheets/k"][()]
        if n and k.min() < 1:
            raise NeoqaError(f"{path}: sheet {_sid(f, int(np.argmin(k)))}: field 'k' is {k.min()}, must be >= 1")
        if int(k.sum()) != m:
            raise NeoqaError(f"{path}: field 'k' sums to {int(k.sum())} but there are {m} observations")
        labels = f["sheets/label"][()]
        bad = np.flatnonzero(~np.isin(labels, (-1, 0, 1)))
        if len(bad):
            raise NeoqaError(f"{path}: sheet {_sid(f, bad[0])}: field 'label' is {labels[bad[0]]}, must be -1, 0 or 1")
        ids = f["sheets/sheet_id"][()]
        uniq, counts = np.unique(ids, return_counts=True)
        if (counts > 1).any():
            raise NeoqaError(f"{path}: sheet id {uniq[counts > 1][0].decode('utf-8')!r} appears more than once")
        if meta["has_truth"]:
            for name in TRUTH_SHEET_FIELDS:
                if f"truth/sheets/{name}" not in f or f[f"truth/sheets/{name}"].shape != (n,):
                    raise NeoqaError(f"{path}: truth dataset 'truth/sheets/{name}' is missing or of wrong length")
            for name in TRUTH_OBS_FIELDS:
                if f"truth/obs/{name}" not in f or f[f"truth/obs/{name}"].shape != (m,):
                    raise NeoqaError(f"{path}: truth dataset 'truth/obs/{name}' is missing or of wrong length")
    return meta, n


def _attr(f, name):
    v = f.attrs.get(name)
    return v.item() if isinstance(v, np.generic) else v


def _sid(f, i) -> str:
    return repr(f["sheets/sheet_id"][int(i)].decode("utf-8"))


def _fmt(shape) -> str:
    return "(" + ", ".join("N" if s is None else str(s) for s in shape) + ")"


def read_shard(path: Path) -> SheetBatch:
    meta, _ = _validate_shard(path)
    with h5py.File(path, "r") as f:
        kw = {name: f[f"{_GROUP[name]}/{name}"][()] for name in SHEET_ARRAYS + OBS_ARRAYS}
        kw["sheet_id"] = decode_ids(kw["sheet_id"])
        if meta["has_truth"]:
            kw["truth_sheet"] = {n: f[f"truth/sheets/{n}"][()] for n in TRUTH_SHEET_FIELDS}
            kw["truth_obs"] = {n: f[f"truth/obs/{n}"][()] for n in TRUTH_OBS_FIELDS}
    return SheetBatch(**kw, sheet_scalar_names=tuple(meta["sheet_scalars"]),
                      obs_scalar_names=tuple(meta["obs_scalars"]), meta=meta)
