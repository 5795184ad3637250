"""Views of a dataset for the models: one module, one way to build each view.

- fixed-length: the composite image (flattened) plus the sheet scalars, the paper's
  "fixed-length dataset";
- per-length: for one k, the k observations' cutouts and scalars concatenated in time order;
- padded sets: observation tensors plus a mask, for the set models.
Missing values stay NaN here; each model's fitted imputer handles them.
"""

from __future__ import annotations

import numpy as np

from .sheets import SheetBatch


def fixed_length(batch: SheetBatch) -> np.ndarray:
    comp = batch.composite.reshape(len(batch), -1)
    return np.concatenate([comp, batch.sheet_scalars], axis=1).astype(np.float32)


def fixed_length_names(batch: SheetBatch) -> list[str]:
    C, S = batch.composite.shape[1], batch.composite.shape[-1]
    pix = [f"composite_c{c}_y{y}_x{x}" for c in range(C) for y in range(S) for x in range(S)]
    return pix + list(batch.sheet_scalar_names)


def time_order(batch: SheetBatch) -> np.ndarray:
    """Observation rows sorted by time within each sheet (sheets stay in order)."""
    return np.lexsort((batch.mjd, batch.obs_sheet_index()))


def per_length(batch: SheetBatch, k: int):
    """(sheet indices with exactly k observations, their [n, k * per-obs features] matrix)."""
    idx = np.flatnonzero(batch.k == k)
    if len(idx) == 0:
        return idx, np.zeros((0, k * _obs_width(batch)), np.float32)
    sub = batch.select(idx)
    rows = time_order(sub)
    obs = np.concatenate([sub.cutouts.reshape(sub.n_obs, -1), sub.obs_scalars], axis=1)[rows]
    return idx, obs.reshape(len(idx), -1).astype(np.float32)


def _obs_width(batch: SheetBatch) -> int:
    return int(np.prod(batch.cutouts.shape[1:])) + batch.obs_scalars.shape[1]


def padded_sets(batch: SheetBatch, max_k: int | None = None) -> dict:
    """Observation tensors [N, K, C, S, S] and scalars [N, K, n_obs] with a mask [N, K].

    Observations beyond ``max_k`` (the brightest kept first would bias; we keep time order)
    are dropped; padding is zero and masked.
    """
    N = len(batch)
    K = int(batch.k.max()) if max_k is None else int(max_k)
    rows = time_order(batch)
    sheet = batch.obs_sheet_index()[rows]
    pos = np.arange(len(rows)) - batch.offsets[:-1][sheet]
    keep = pos < K
    rows, sheet, pos = rows[keep], sheet[keep], pos[keep]
    C, S = batch.cutouts.shape[1], batch.cutouts.shape[-1]
    images = np.zeros((N, K, C, S, S), np.float32)
    scalars = np.full((N, K, batch.obs_scalars.shape[1]), np.nan, np.float32)
    mask = np.zeros((N, K), bool)
    images[sheet, pos] = batch.cutouts[rows]
    scalars[sheet, pos] = batch.obs_scalars[rows]
    mask[sheet, pos] = True
    return {"images": images, "scalars": scalars, "mask": mask, "fixed": fixed_length(batch)}
