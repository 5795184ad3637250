"""The in-memory QA-sheet container: ragged observations stored flat with offsets."""

from __future__ import annotations

from dataclasses import dataclass, field, fields

import numpy as np

from .errors import NeoqaError
from .schema import OBS_SCALARS, SHEET_SCALARS

# Per-sheet and per-observation arrays (first axis = sheet or observation); the
# HDF5 layout and the FITS/table export are both written from these lists.
SHEET_ARRAYS = ("sheet_id", "label", "k", "composite", "sheet_scalars")
OBS_ARRAYS = ("cutouts", "obs_scalars", "ra", "dec", "mjd", "band", "mag")


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
    truth_sheet: dict | None = None   # name -> [N]
    truth_obs: dict | None = None     # name -> [M]
    sheet_scalar_names: tuple = SHEET_SCALARS
    obs_scalar_names: tuple = OBS_SCALARS
    meta: dict = field(default_factory=dict)

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
        off = self.offsets
        obs = np.concatenate([np.arange(off[i], off[i + 1]) for i in idx]) if len(idx) else np.zeros(0, np.int64)
        return self._take(idx, obs)

    def _take(self, sheets: np.ndarray, obs: np.ndarray) -> "SheetBatch":
        kw = {name: getattr(self, name)[sheets] for name in SHEET_ARRAYS}
        kw.update({name: getattr(self, name)[obs] for name in OBS_ARRAYS})
        if self.truth_sheet is not None:
            kw["truth_sheet"] = {n: v[sheets] for n, v in self.truth_sheet.items()}
            kw["truth_obs"] = {n: v[obs] for n, v in self.truth_obs.items()}
        return SheetBatch(**kw, sheet_scalar_names=self.sheet_scalar_names,
                          obs_scalar_names=self.obs_scalar_names, meta=dict(self.meta))

    def sheet_scalar(self, name: str) -> np.ndarray:
        return self.sheet_scalars[:, self.sheet_scalar_names.index(name)]

    def obs_scalar(self, name: str) -> np.ndarray:
        return self.obs_scalars[:, self.obs_scalar_names.index(name)]

    def index_of(self, sheet_id: str) -> int:
        hits = np.flatnonzero(self.sheet_id == sheet_id)
        if len(hits) == 0:
            raise NeoqaError(f"sheet {sheet_id!r} not found")
        return int(hits[0])

    @staticmethod
    def concat(batches: list["SheetBatch"]) -> "SheetBatch":
        if not batches:
            raise ValueError("nothing to concatenate")
        first = batches[0]
        kw = {name: np.concatenate([getattr(b, name) for b in batches]) for name in SHEET_ARRAYS + OBS_ARRAYS}
        if first.truth_sheet is not None:
            kw["truth_sheet"] = {n: np.concatenate([b.truth_sheet[n] for b in batches]) for n in first.truth_sheet}
            kw["truth_obs"] = {n: np.concatenate([b.truth_obs[n] for b in batches]) for n in first.truth_obs}
        return SheetBatch(**kw, sheet_scalar_names=first.sheet_scalar_names,
                          obs_scalar_names=first.obs_scalar_names, meta=dict(first.meta))

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

