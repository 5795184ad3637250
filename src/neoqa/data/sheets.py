"""The in-memory QA-sheet container: ragged observations stored flat with offsets."""

from __future__ import annotations

from dataclasses import dataclass, field, fields, replace

import numpy as np
from scipy import sparse

from neoqa.errors import NeoqaError
from neoqa.threads import split_rows
from neoqa.data.schema import OBS_SCALARS, SHEET_SCALARS

# Per-sheet and per-observation arrays (first axis = sheet or observation); the
# HDF5 layout and the FITS/table export are both written from these lists.
SHEET_ARRAYS = ("sheet_id", "label", "k", "composite", "sheet_scalars")
OBS_ARRAYS = ("cutouts", "obs_scalars", "ra", "dec", "mjd", "band", "mag", "wcs")
# A cutout's world coordinates: a gnomonic (FITS ``RA---TAN``/``DEC--TAN``) projection given by
# CRVAL1, CRVAL2 (deg), CRPIX1, CRPIX2 (FITS pixels: 1-based, x along a row) and the CD matrix (deg
# per pixel); NaN where they are not known (data from before 0.8.0, tables without them).
WCS_FIELDS = ("crval1", "crval2", "crpix1", "crpix2", "cd1_1", "cd1_2", "cd2_1", "cd2_2")
# The arrays a reader may leave unread when a model reads none of them (``Model.reads``); ids,
# labels, k and band are always read (they are what a shard is checked by).
OPTIONAL_ARRAYS = ("composite", "sheet_scalars", "cutouts", "obs_scalars", "ra", "dec", "mjd", "mag", "wcs")


def unread(shape, dtype) -> np.ndarray:
    """The stand-in for an array left unread: NaN everywhere, read-only and without memory (one
    value broadcast). A model that read it after all would give NaN, which never becomes a decision."""
    return np.broadcast_to(np.array(np.nan, dtype), tuple(shape))


@dataclass
class SheetBatch:
    """A set of QA sheets held in memory.

    Observation ``j`` of sheet ``i`` is row ``offsets[i] + j`` of every observation
    array, with ``offsets = concat([0], cumsum(k))``. Truth arrays are ``None`` for
    real data.
    """

    sheet_id: np.ndarray          # [N] str
    label: np.ndarray             # [N] int8: 1 real, 0 false, -1 unknown
    k: np.ndarray                 # [N] int32
    composite: np.ndarray         # [N, C, S, S] float32
    sheet_scalars: np.ndarray     # [N, n_sheet] float32
    cutouts: np.ndarray           # [M, C, S, S] float32
    obs_scalars: np.ndarray       # [M, n_obs] float32
    ra: np.ndarray                # [M] float64 deg
    dec: np.ndarray               # [M] float64 deg
    mjd: np.ndarray               # [M] float64
    band: np.ndarray              # [M] int8 index into channels: the detecting band
    mag: np.ndarray               # [M] float32 magnitude in that band
    wcs: np.ndarray | None = None     # [M, 8] float64 each cutout's WCS_FIELDS; None: unknown (NaN)
    truth_sheet: dict | None = None   # name -> [N]
    truth_obs: dict | None = None     # name -> [M]
    sheet_scalar_names: tuple = SHEET_SCALARS
    obs_scalar_names: tuple = OBS_SCALARS
    meta: dict = field(default_factory=dict)

    def __post_init__(self):
        if self.wcs is None:
            self.wcs = unread((len(self.mjd), len(WCS_FIELDS)), np.float64)

    def __len__(self) -> int:
        return int(self.sheet_id.shape[0])

    @property
    def offsets(self) -> np.ndarray:
        return np.concatenate([[0], np.cumsum(self.k, dtype=np.int64)])

    @property
    def n_obs(self) -> int:
        return int(self.cutouts.shape[0])

    def obs_sheet_index(self) -> np.ndarray:
        return np.repeat(np.arange(len(self)), self.k)

    def select(self, idx) -> "SheetBatch":
        """The sheets at positions ``idx`` (in that order), with their observations."""
        idx = np.asarray(idx, dtype=np.int64)
        return self._take(idx, self._obs_rows(idx))

    def slice(self, start: int, stop: int) -> "SheetBatch":
        """Sheets ``start`` to ``stop - 1`` as views of this batch's arrays: no copy, the cheap way
        to walk a batch in chunks (do not write into them)."""
        o = self.offsets
        return self._take(slice(start, stop), slice(int(o[start]), int(o[stop])))

    def _obs_rows(self, idx: np.ndarray) -> np.ndarray:
        """The observation rows of sheets ``idx``, sheet after sheet (one vectorised pass:
        each sheet's first row plus 0..k-1)."""
        k = self.k[idx].astype(np.int64)
        return np.arange(int(k.sum()), dtype=np.int64) + np.repeat(self.offsets[idx] - (np.cumsum(k) - k), k)

    def _take(self, sheets: np.ndarray, obs: np.ndarray) -> "SheetBatch":
        return self._assemble(lambda get: get(self)[sheets], lambda get: get(self)[obs])

    def _assemble(self, per_sheet, per_obs) -> "SheetBatch":
        """A batch named like this one, each array built by ``per_sheet(get)`` or ``per_obs(get)``
        from ``get(b)``, which reads that array (or truth field) of a batch b."""
        kw = {name: per_sheet(lambda b, n=name: getattr(b, n)) for name in SHEET_ARRAYS}
        kw.update({name: per_obs(lambda b, n=name: getattr(b, n)) for name in OBS_ARRAYS})
        if self.truth_sheet is not None:
            kw["truth_sheet"] = {n: per_sheet(lambda b, n=n: b.truth_sheet[n]) for n in self.truth_sheet}
            kw["truth_obs"] = {n: per_obs(lambda b, n=n: b.truth_obs[n]) for n in self.truth_obs}
        return SheetBatch(**kw, sheet_scalar_names=self.sheet_scalar_names,
                          obs_scalar_names=self.obs_scalar_names, meta=dict(self.meta))

    def keeping(self, arrays) -> "SheetBatch":
        """This batch with only ``arrays`` of ``OPTIONAL_ARRAYS`` (and those always read) real, the
        rest ``unread``: what a reader that reads only ``arrays`` gives (all of them for None)."""
        if arrays is None:
            return self
        return replace(self, **{n: unread(getattr(self, n).shape, getattr(self, n).dtype)
                                for n in OPTIONAL_ARRAYS if n not in arrays})

    def sheet_scalar(self, name: str) -> np.ndarray:
        return self.sheet_scalars[:, self.sheet_scalar_names.index(name)]

    def obs_scalar(self, name: str) -> np.ndarray:
        return self.obs_scalars[:, self.obs_scalar_names.index(name)]

    def to_pandas(self, observations: bool = False):
        """The scalars as a pandas DataFrame (pixels stay arrays): one row per sheet, indexed by
        ``sheet_id``, with ``label``, ``k``, every sheet scalar and, on simulated data, the truth
        as ``truth_*`` columns; or with ``observations=True`` one row per observation, indexed by
        (``sheet_id``, ``obs``: its place in the sheet), with time, position, band, magnitude,
        every observation scalar and the observation truth."""
        import pandas as pd

        if observations:
            sheet = self.obs_sheet_index()
            cols = {"mjd": self.mjd, "ra": self.ra, "dec": self.dec, "band": self.band, "mag": self.mag,
                    **{n: self.obs_scalars[:, i] for i, n in enumerate(self.obs_scalar_names)},
                    **{f"truth_{n}": v for n, v in (self.truth_obs or {}).items()}}
            index = pd.MultiIndex.from_arrays([self.sheet_id.astype(str)[sheet],
                                               np.arange(self.n_obs) - self.offsets[sheet]], names=["sheet_id", "obs"])
            return pd.DataFrame(cols, index=index)
        cols = {"label": self.label, "k": self.k,
                **{n: self.sheet_scalars[:, i] for i, n in enumerate(self.sheet_scalar_names)},
                **{f"truth_{n}": v for n, v in (self.truth_sheet or {}).items()}}
        return pd.DataFrame(cols, index=pd.Index(self.sheet_id.astype(str), name="sheet_id"))

    def index_of(self, sheet_id: str) -> int:
        hits = np.flatnonzero(self.sheet_id == sheet_id)
        if len(hits) == 0:
            raise NeoqaError(f"sheet {sheet_id!r} not found")
        return int(hits[0])

    @staticmethod
    def concat(batches: list["SheetBatch"]) -> "SheetBatch":
        if not batches:
            raise ValueError("nothing to concatenate")
        join = lambda get: np.concatenate([get(b) for b in batches])      # noqa: E731
        return batches[0]._assemble(join, join)

    @staticmethod
    def gather(batches: list["SheetBatch"], which: np.ndarray, rows: np.ndarray) -> "SheetBatch":
        """Sheet ``rows[i]`` of ``batches[which[i]]`` for every i, in that order.

        The same as ``concat(batches).select(...)`` but each array is copied once.
        """
        first = batches[0]
        which, rows = np.asarray(which, np.int64), np.asarray(rows, np.int64)
        parts = [(b, np.flatnonzero(which == i)) for i, b in enumerate(batches)]
        k = np.zeros(len(rows), np.int64)
        for b, dest in parts:
            k[dest] = b.k[rows[dest]]
        start = np.concatenate([[0], np.cumsum(k)[:-1]])
        moves = []                      # (batch, sheet dest, sheet src, obs dest, obs src)
        for b, dest in parts:
            src = rows[dest]
            obs_src = b._obs_rows(src)
            moves.append((b, dest, src, obs_src + np.repeat(start[dest] - b.offsets[src], k[dest]), obs_src))

        def take(get, n_out, obs):
            like = get(first)
            out = np.empty((n_out,) + like.shape[1:], like.dtype)
            for b, dest, src, obs_dest, obs_src in moves:
                out[obs_dest if obs else dest] = get(b)[obs_src if obs else src]
            return out

        M = int(k.sum())
        return first._assemble(lambda get: take(get, len(rows), False), lambda get: take(get, M, True))

    def equals(self, other: "SheetBatch") -> bool:
        """Exact equality of every array (NaN equal to NaN) and of the names."""
        for f in fields(self):
            a, b = getattr(self, f.name), getattr(other, f.name)
            if f.name == "meta":
                continue
            if isinstance(a, dict) or a is None:
                if (a is None) != (b is None):
                    return False
                if a is not None and (a.keys() != b.keys() or not all(_same(a[n], b[n]) for n in a)):
                    return False
            elif isinstance(a, tuple):
                if tuple(a) != tuple(b):
                    return False
            elif not _same(a, b):
                return False
        return True


def _same(a, b) -> bool:
    a, b = np.asarray(a), np.asarray(b)
    if a.shape != b.shape:
        return False
    if a.dtype.kind in "fc":
        return bool(np.array_equal(a, b, equal_nan=True))
    return bool(np.array_equal(a, b))


def composite(cutouts: np.ndarray, sky: np.ndarray, k: np.ndarray) -> np.ndarray:
    """Each sheet's composite: the mean of its background-subtracted cutouts [N, C, S, S].

    Cutouts [M, C, S, S] are already centred on the fitted motion, so the mean stacks
    the object; sky [M, C]; k [N] cutouts per sheet, in row order. A sparse averaging
    matrix does it in one product (12x faster than ``np.add.reduceat`` here).
    """
    M, C, S, _ = cutouts.shape
    k = np.asarray(k, np.int64)
    weights = np.repeat(1.0 / np.maximum(k, 1), k).astype(np.float32)
    mean = sparse.csr_matrix((weights, np.arange(M), np.concatenate([[0], np.cumsum(k)])), shape=(len(k), M))
    out = (mean @ cutouts.reshape(M, -1)).reshape(len(k), C, S, S)
    out -= (mean @ np.asarray(sky, np.float32))[:, :, None, None]
    return out.astype(np.float32, copy=False)


def pixel_median(images: np.ndarray) -> np.ndarray:
    """Each cutout channel's median pixel, [N, C] from [N, C, S, S]: np.median's values, four
    times faster (a partition at the middle only, over the thread budget; the data contract keeps
    pixels finite, and anything else goes to np.median, which propagates NaN)."""
    flat = images.reshape(*images.shape[:2], -1)
    n = flat.shape[-1]
    if n == 0 or not np.isfinite(flat).all():
        return np.median(flat, axis=-1)
    return split_rows(_middle, flat)           # over the thread budget: a partition leaves the GIL


def _middle(flat: np.ndarray) -> np.ndarray:
    n = flat.shape[-1]
    if n % 2:
        return np.partition(flat, n // 2, axis=-1)[..., n // 2]
    part = np.partition(flat, (n // 2 - 1, n // 2), axis=-1)
    return np.mean(part[..., n // 2 - 1:n // 2 + 1], axis=-1)
