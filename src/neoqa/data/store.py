"""The on-disk format (docs/format.md): HDF5 shards plus a JSON manifest.

A dataset is either one ``.h5`` shard or a folder holding ``manifest.json`` and
its shards. Everything is validated on open; every write goes to a temporary
name first and is renamed into place, so an interrupted run leaves nothing that
looks complete.
"""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path

import blake3
import h5py
import numpy as np

from neoqa.errors import NeoqaError
from neoqa.outputs import atomic_output, confined, read_json
from neoqa.data.schema import FORMAT_NAME, FORMAT_VERSION, TRUTH_OBS_EXTRA, TRUTH_OBS_FIELDS, TRUTH_SHEET_FIELDS
from neoqa.data.sheets import OBS_ARRAYS, OPTIONAL_ARRAYS, SHEET_ARRAYS, WCS_FIELDS, SheetBatch, unread

MANIFEST = "manifest.json"
# Dataset meta keys every shard and manifest carry.
META_KEYS = ("survey", "channels", "pixel_scale_arcsec", "cutout_size", "sheet_scalars",
             "obs_scalars", "provenance", "has_truth")
OPTIONAL_META_KEYS = ("psf_fwhm_arcsec", "detect_snr")   # instrument facts the robustness tests use

_DTYPES = {
    "label": np.int8, "k": np.int32, "composite": np.float32, "sheet_scalars": np.float32,
    "cutouts": np.float32, "obs_scalars": np.float32, "ra": np.float64, "dec": np.float64,
    "mjd": np.float64, "band": np.int8, "mag": np.float32, "wcs": np.float64,
}
_GROUP = {**{n: "sheets" for n in SHEET_ARRAYS}, **{n: "obs" for n in OBS_ARRAYS}}
UNSTORED_BEFORE = {"wcs": "0.8.0"}        # arrays a shard written before that version lacks (read as NaN)
_TRUTH_DTYPES = {"clean_label": np.int8, "scenario": np.int8, "object_class": np.int8,
                 "n_object_obs": np.int16, "source_kind": np.int8, "object_id": np.int16,
                 "observer_x_au": np.float64, "observer_y_au": np.float64, "observer_z_au": np.float64}


# ---------------------------------------------------------------- writing
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
    try:
        _write_h5(path, batch, meta, in_memory=_check_space(path, batch))
    except OSError as e:
        raise NeoqaError(f"{path}: cannot write the shard ({e})") from None


def _shard_bytes(batch: SheetBatch) -> int:
    """About the size of the shard file: its arrays plus room for HDF5's own structures."""
    arrays = sum(np.asarray(getattr(batch, n)).nbytes for n in SHEET_ARRAYS + OBS_ARRAYS)
    truth = sum(np.asarray(v).nbytes for t in (batch.truth_sheet, batch.truth_obs) if t for v in t.values())
    return int(arrays + truth) + (1 << 20)


# Free space below this many shards (several workers may be writing at once) counts as tight.
_TIGHT_SHARDS = 4


def _check_space(path: Path, batch: SheetBatch) -> bool:
    """Refuse a shard the disk cannot hold, before any of it is written; True where space is tight."""
    need = _shard_bytes(batch)
    free = shutil.disk_usage(Path(path).parent).free
    if free < 1.05 * need + (16 << 20):
        raise NeoqaError(f"{Path(path).parent}: not enough free disk space for {Path(path).name} "
                         f"(needs about {need / 2**20:.0f} MB, {free / 2**20:.0f} MB free)")
    return free < _TIGHT_SHARDS * need + (64 << 20)


def _write_h5(path: Path, batch: SheetBatch, meta: dict, in_memory: bool = False) -> None:
    """Write the shard with HDF5 straight to disk, or, where the disk may fill while writing, build
    it in memory (HDF5's core driver) and write the bytes with ordinary file I/O. HDF5 that meets a
    full disk itself raises in its destructors and then crashes the interpreter (seen: a segfault
    in ``simulate``); a plain write fails with a clean OSError. Both give the same bytes; the
    in-memory way costs 15-25% of simulation speed, so it is kept for a tight disk."""
    if not in_memory:
        with h5py.File(path, "w", track_order=False) as f:
            _fill(f, batch, meta)
        return
    with h5py.File(f"{path}.image", "w", driver="core", backing_store=False, block_size=_shard_bytes(batch),
                   track_order=False) as f:
        _fill(f, batch, meta)
        f.flush()
        image = f.id.get_file_image()
    with open(path, "wb") as out:
        out.write(image)


def _fill(f, batch: SheetBatch, meta: dict) -> None:
    """The shard's layout (docs/format.md) into an open HDF5 file."""
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
        for name in TRUTH_OBS_FIELDS + TRUTH_OBS_EXTRA:
            if name in batch.truth_obs:
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


def write_shard(path, batch: SheetBatch, overwrite: bool = False) -> Path:
    path = Path(path)
    with atomic_output(path, overwrite=overwrite) as tmp:
        write_shard_file(tmp, batch)
    return path


def shard_name(i: int) -> str:
    return f"shard-{i:05d}.h5"


def write_manifest(folder: Path, meta: dict, counts: list[int]) -> None:
    manifest = {"format": FORMAT_NAME, "format_version": FORMAT_VERSION, **meta,
                "shards": [{"file": shard_name(i), "sheets": int(n)} for i, n in enumerate(counts)]}
    (Path(folder) / MANIFEST).write_text(json.dumps(manifest, indent=1, sort_keys=True) + "\n")


def write_dataset(path, batches, overwrite: bool = False, inputs=()) -> Path:
    """Write an iterable of SheetBatch as the shards of one dataset folder, atomically."""
    path = Path(path)
    with atomic_output(path, overwrite=overwrite, inputs=inputs, folder=True, kind="dataset") as tmp:
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
def file_digest(path: Path) -> str:
    """The BLAKE3 digest of a file's bytes (hex): a cryptographic hash 2.5 times as fast as SHA-256
    here (docs/performance.md, third round), which matters because a scorer hashes every shard it reads.
    One thread (the thread budget counts it); the file is read in 4 MiB blocks."""
    h = blake3.blake3()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 22), b""):
            h.update(block)
    return h.hexdigest()


def dataset_digest(shard_digests) -> str:
    """``SheetSet.digest`` from its shards' digests, in order (for a caller that has them already)."""
    h = hashlib.sha256()
    for d in shard_digests:
        h.update(d.encode())
    return h.hexdigest()[:16]


class SheetSet:
    """A validated dataset on disk: one shard file or a folder of shards."""

    def __init__(self, path):
        self.path = Path(path)
        if not self.path.exists():
            raise NeoqaError(f"{self.path}: no such file or folder")
        if self.path.is_dir():
            self.shard_paths, self.counts, self.meta = _open_folder(self.path)
        else:
            meta, n, _ = _validate_shard(self.path)
            self.shard_paths, self.counts, self.meta = [self.path], [n], meta
        if len(self) == 0:
            raise NeoqaError(f"{self.path}: the dataset holds no sheets")

    def __len__(self) -> int:
        return int(sum(self.counts))

    @property
    def survey(self) -> str:
        return self.meta["survey"]

    def iter_shards(self):
        for p in self.shard_paths:
            yield read_shard(p)

    def digest(self) -> str:
        """A digest of the dataset's bytes: each shard's (``file_digest``), in order."""
        return dataset_digest(file_digest(p) for p in self.shard_paths)

    def read(self) -> SheetBatch:
        return SheetBatch.concat(list(self.iter_shards()))

    def source(self) -> dict:
        """Where data came from, for what is made of it (a model's training data): path and digest."""
        return {"path": str(self.path.resolve()), "digest": self.digest()}


def _open_folder(path: Path):
    mf = path / MANIFEST
    manifest = read_json(mf, f"not a neoqa dataset (no {MANIFEST})")
    _check_format(mf, manifest.get("format"), manifest.get("format_version"))
    shards = manifest.get("shards")
    if not isinstance(shards, list) or not shards:
        raise NeoqaError(f"{mf}: field 'shards' is missing or empty")
    paths, counts, seen = [], [], {}
    for i, entry in enumerate(shards):
        if not isinstance(entry, dict) or not isinstance(entry.get("file"), str):
            raise NeoqaError(f"{mf}: shards[{i}]: field 'file' is missing or not a string")
        p = confined(path, entry["file"], f"{mf}: shards[{i}]")
        meta, n, ids = _validate_shard(p)
        for sid in ids:
            if sid in seen:
                raise NeoqaError(f"{p}: sheet id {sid.decode('utf-8')!r} is also in {seen[sid].name}; "
                                 "sheet ids must be unique across the dataset")
            seen[sid] = p
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
    """Check layout and schema without reading the images; return (meta, n_sheets, sheet ids as bytes)."""
    with _open_shard(path) as f:
        meta, n, read = _validate(f, path)
    return meta, n, read["sheet_id"]


def _open_shard(path: Path):
    if not path.exists():
        raise NeoqaError(f"{path}: shard file is missing")
    try:
        return h5py.File(path, "r")
    except OSError:
        raise NeoqaError(f"{path}: not a readable HDF5 file (truncated or not HDF5)") from None


def _validate(f, path: Path):
    """``_validate_shard`` on the open file ``f``: (meta, n_sheets, the small arrays it read to check
    them: k, band, label and the ids as bytes, which a reader need not read again)."""
    _check_format(path, _attr(f, "format"), _attr(f, "format_version"))
    try:
        meta = json.loads(f.attrs["meta"])
    except (KeyError, json.JSONDecodeError):
        raise NeoqaError(f"{path}: attribute 'meta' is missing or not JSON") from None
    _check_meta(path, meta)
    n_ch, size = len(meta["channels"]), meta["cutout_size"]
    ns, no = len(meta["sheet_scalars"]), len(meta["obs_scalars"])
    expect = {"sheet_id": (None,), "label": (None,), "k": (None,), "composite": (None, n_ch, size, size),
              "sheet_scalars": (None, ns), "cutouts": (None, n_ch, size, size), "obs_scalars": (None, no),
              "ra": (None,), "dec": (None,), "mjd": (None,), "band": (None,), "mag": (None,),
              "wcs": (None, len(WCS_FIELDS))}
    lengths = {}
    for name, shape in expect.items():
        key = f"{_GROUP[name]}/{name}"
        if key not in f and name in UNSTORED_BEFORE:
            continue
        if key not in f:
            raise NeoqaError(f"{path}: dataset '{key}' is missing")
        ds = f[key]
        if len(ds.shape) != len(shape) or any(s is not None and s != d for s, d in zip(shape, ds.shape)):
            raise NeoqaError(f"{path}: dataset '{key}' has shape {ds.shape}, expected {_fmt(shape)}")
        if ds.dtype.kind not in _KINDS[name]:
            raise NeoqaError(f"{path}: dataset '{key}' has type {ds.dtype}, expected "
                             f"{'an integer' if _KINDS[name] == 'iu' else 'a float' if _KINDS[name] == 'f' else 'a byte-string'} type")
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
    band = f["obs/band"][()]
    if m and (band.min() < 0 or band.max() >= n_ch):
        raise NeoqaError(f"{path}: field 'band' holds {int(band.max() if band.max() >= n_ch else band.min())}, "
                         f"not a channel index 0..{n_ch - 1}")
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
        for name in TRUTH_OBS_EXTRA:           # optional: data from before 0.4.0 lacks them
            if f"truth/obs/{name}" in f and f[f"truth/obs/{name}"].shape != (m,):
                raise NeoqaError(f"{path}: truth dataset 'truth/obs/{name}' is of wrong length")
    return meta, n, {"k": k, "band": band, "label": labels, "sheet_id": ids}


# numpy dtype kinds each stored array may have: fractional k or labels are refused on open
_KINDS = {"sheet_id": "S", "label": "iu", "k": "iu", "band": "iu", "composite": "f", "sheet_scalars": "f",
          "cutouts": "f", "obs_scalars": "f", "ra": "f", "dec": "f", "mjd": "f", "mag": "f", "wcs": "f"}


def _check_meta(path, meta) -> None:
    """The meta attribute's fields, with the types the rest of neoqa relies on."""
    if not isinstance(meta, dict):
        raise NeoqaError(f"{path}: attribute 'meta' is not a JSON object")
    for key in META_KEYS:
        if key not in meta:
            raise NeoqaError(f"{path}: meta field '{key}' is missing")
    for key in ("channels", "sheet_scalars", "obs_scalars"):
        v = meta[key]
        if not isinstance(v, list) or not all(isinstance(x, str) for x in v):
            raise NeoqaError(f"{path}: meta field '{key}' must be a list of names")
    if not meta["channels"]:
        raise NeoqaError(f"{path}: meta field 'channels' is empty")
    if isinstance(meta["cutout_size"], bool) or not isinstance(meta["cutout_size"], int) or meta["cutout_size"] < 1:
        raise NeoqaError(f"{path}: meta field 'cutout_size' must be a positive integer")
    if not isinstance(meta["survey"], str):
        raise NeoqaError(f"{path}: meta field 'survey' must be a name")
    if not isinstance(meta["has_truth"], bool):
        raise NeoqaError(f"{path}: meta field 'has_truth' must be true or false")


# Missing values are NaN by contract; infinities never are, and pixels and positions are never missing.
_FINITE = ("composite", "cutouts", "ra", "dec", "mjd")
_NO_INF = ("sheet_scalars", "obs_scalars", "mag", "wcs")


def check_finite(where, arrays: dict) -> None:
    """Refuse non-finite pixels, times and positions and infinite scalars, naming sheet and field.

    A NaN pixel would make a model's probability NaN, and a NaN must never become a decision.
    """
    for name in _FINITE + _NO_INF:
        if name not in arrays:          # left unread
            continue
        a = arrays[name]
        bad = ~np.isfinite(a) if name in _FINITE else np.isinf(a)
        if not bad.any():
            continue
        row = int(np.flatnonzero(bad.reshape(len(a), -1).any(axis=1))[0])
        if name in SHEET_ARRAYS:
            sheet, what = row, ""
        else:
            sheet = int(np.searchsorted(np.cumsum(arrays["k"]), row, side="right"))
            what = f" (observation {row - int(np.sum(arrays['k'][:sheet]))})"
        sid = arrays["sheet_id"][sheet] if sheet < len(arrays["sheet_id"]) else "?"
        kind = "infinite" if name in _NO_INF else "NaN or infinite"
        raise NeoqaError(f"{where}: sheet {str(sid)!r}{what}: field '{name}' holds {kind} values")


def _attr(f, name):
    v = f.attrs.get(name)
    return v.item() if isinstance(v, np.generic) else v


def _sid(f, i) -> str:
    return repr(f["sheets/sheet_id"][int(i)].decode("utf-8"))


def _fmt(shape) -> str:
    return "(" + ", ".join("N" if s is None else str(s) for s in shape) + ")"


def read_shard(path: Path, truth: bool = True, arrays=None) -> SheetBatch:
    """A shard's sheets, validated (one line naming file, sheet and field otherwise); without
    ``truth``, the simulation truth is left unread (scoring never reads it). ``arrays`` (a model's
    ``reads()``) names the ``OPTIONAL_ARRAYS`` to read; the others are left on disk, ``unread``
    stand-ins in the batch, and not checked (a scorer of summaries never reads the pixels)."""
    with _open_shard(path) as f:
        meta, _, kw = _validate(f, path)
        skip = () if arrays is None else [n for n in OPTIONAL_ARRAYS if n not in arrays]
        kw.update({name: f[f"{_GROUP[name]}/{name}"][()] for name in SHEET_ARRAYS + OBS_ARRAYS
                   if name not in kw and name not in skip and f"{_GROUP[name]}/{name}" in f})
        try:
            kw["sheet_id"] = decode_ids(kw["sheet_id"])
        except UnicodeDecodeError:
            raise NeoqaError(f"{path}: dataset 'sheets/sheet_id' holds an id that is not UTF-8") from None
        check_finite(path, kw)
        for name in skip:
            if f"{_GROUP[name]}/{name}" in f:
                kw[name] = unread(f[f"{_GROUP[name]}/{name}"].shape, _DTYPES[name])
        if meta["has_truth"] and truth:
            kw["truth_sheet"] = {n: f[f"truth/sheets/{n}"][()] for n in TRUTH_SHEET_FIELDS}
            m = len(kw["mjd"])
            kw["truth_obs"] = {n: f[f"truth/obs/{n}"][()] if f"truth/obs/{n}" in f else
                               np.full(m, np.nan, _TRUTH_DTYPES.get(n, np.float32))
                               for n in TRUTH_OBS_FIELDS + TRUTH_OBS_EXTRA}
    return SheetBatch(**kw, sheet_scalar_names=tuple(meta["sheet_scalars"]),
                      obs_scalar_names=tuple(meta["obs_scalars"]), meta=meta)
