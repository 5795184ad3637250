"""Views of a dataset for the models: one module, one way to build each view.

- fixed-length: the composite image (flattened) plus the sheet scalars, the paper's
  "fixed-length dataset";
- per-length: for one k, the k observations' cutouts and scalars concatenated in time order;
- padded sets: observation tensors plus a mask, for the set models.
Missing values stay NaN here; each model's fitted imputer handles them.
"""

from __future__ import annotations

import math

import numpy as np
from numba import njit, prange

from neoqa.data.schema import LABEL_MIN_OBS
from neoqa.data.sheets import SheetBatch, pixel_median


def fixed_length(batch: SheetBatch) -> np.ndarray:
    comp = batch.composite.reshape(len(batch), -1)
    return np.concatenate([comp, batch.sheet_scalars], axis=1).astype(np.float32)


def apply_label_rule(batch: SheetBatch, proba: np.ndarray) -> np.ndarray:
    """Sheets with fewer than 5 observations cannot be real (the label rule): P(real) = 0, whatever
    a model learnt. The linker never makes one, so training never shows one to extrapolate from."""
    proba[batch.k < LABEL_MIN_OBS] = (1.0, 0.0)
    return proba


def padded(batch: SheetBatch, values, fill=np.nan) -> np.ndarray:
    """Per-observation ``values`` [M] as a [sheets, max k] matrix, ``fill`` where a sheet has fewer."""
    sheet = batch.obs_sheet_index()
    out = np.full((len(batch), int(batch.k.max()) if len(batch) else 1), fill, np.float32)
    out[sheet, np.arange(batch.n_obs) - batch.offsets[:-1][sheet]] = values
    return out


SUMMARY_TOP = 6          # the largest per-observation S/N values kept (the rule needs 5)
def needs(view: str) -> frozenset:
    """The observation scalars a view reads by name (the models on it cannot run without them)."""
    return frozenset(SUMMARY_OBS_SCALARS) - SUMMARY_OPTIONAL if view == "summary" else frozenset()


# The stored arrays each view is built from (beside ids, labels, k and band, always read); a view
# not here reads them all. A scorer reads no others from disk (``data.store.read_shard``).
_READS = {"fixed": frozenset({"composite", "sheet_scalars"}),
          "summary": frozenset({"composite", "sheet_scalars", "obs_scalars"})}


def reads(view: str) -> frozenset | None:
    """The arrays ``view`` is built from, or None for all of them."""
    return _READS.get(view)


# The observation summaries after the ranked S/N: (observation scalar, statistic, NumPy function).
SUMMARY_STATS = (("fit_offset_arcsec", "median", np.nanmedian), ("fit_offset_arcsec", "max", np.nanmax),
                 ("psf_chi2", "median", np.nanmedian), ("psf_chi2", "max", np.nanmax), ("mag_ch1", "std", np.nanstd),
                 ("mag_ch2", "std", np.nanstd), ("near_star_flag", "mean", np.nanmean),
                 ("star_dist_arcsec", "min", np.nanmin))
SUMMARY_RANKED = ("snr_ch1", "snr_ch2")
CENTRE = 2           # the composite's central (2 CENTRE + 1)^2 pixels
# The observation scalars the summary view reads by name. Every other view takes whatever scalars a
# dataset has, so a team's own schema trains every model but those on this view.
SUMMARY_OBS_SCALARS = tuple(dict.fromkeys(SUMMARY_RANKED + tuple(name for name, _, _ in SUMMARY_STATS)))
# Of those, the ones a team may not have (they need a star catalogue, docs/own-data.md): absent, their
# summaries are NaN, which the trees send as they learnt to send a sheet with no star known.
SUMMARY_OPTIONAL = frozenset({"near_star_flag", "star_dist_arcsec"})


def summary(batch: SheetBatch) -> np.ndarray:
    """Engineered features: sheet scalars, the composite's central 5 x 5 pixels, and per-observation
    summaries a vetter reasons with (the 1st..6th largest S/N in each band, so the 5th-largest is
    there; spread of magnitudes; offsets from the motion fit; PSF chi-square; star proximity).
    ``summary_names`` names its columns."""
    N = len(batch)
    cols = [batch.sheet_scalars]
    c = batch.composite.shape[-1] // 2
    cols.append(batch.composite[:, :, c - CENTRE:c + CENTRE + 1, c - CENTRE:c + CENTRE + 1].reshape(N, -1))
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        for name in SUMMARY_RANKED:
            top = -np.sort(-np.nan_to_num(padded(batch, batch.obs_scalar(name)), nan=-np.inf), axis=1)[:, :SUMMARY_TOP]
            top = np.where(np.isfinite(top), top, np.nan)
            if top.shape[1] < SUMMARY_TOP:
                top = np.pad(top, ((0, 0), (0, SUMMARY_TOP - top.shape[1])), constant_values=np.nan)
            cols.append(top)
        for name, _, fn in SUMMARY_STATS:
            if name not in batch.obs_scalar_names and name in SUMMARY_OPTIONAL:
                cols.append(np.full((N, 1), np.nan, np.float32))
                continue
            cols.append(fn(padded(batch, batch.obs_scalar(name)), axis=1)[:, None])
    return np.concatenate(cols, axis=1).astype(np.float32)


def summary_names(sheet_scalar_names, channels) -> list[str]:
    """The names of ``summary``'s columns, in its order."""
    offsets = range(-CENTRE, CENTRE + 1)
    return (list(sheet_scalar_names)
            + [f"composite {ch} pixel ({dy:+d},{dx:+d})" for ch in channels for dy in offsets for dx in offsets]
            + [f"{name}, {_ordinal(r)} largest" for name in SUMMARY_RANKED for r in range(1, SUMMARY_TOP + 1)]
            + [f"{name}, {stat}" for name, stat, _ in SUMMARY_STATS])


def _ordinal(r: int) -> str:
    return f"{r}{'th' if 10 <= r % 100 <= 20 else {1: 'st', 2: 'nd', 3: 'rd'}.get(r % 10, 'th')}"


def time_order(batch: SheetBatch) -> np.ndarray:
    """Observation rows sorted by time within each sheet (sheets stay in order)."""
    return np.lexsort((batch.mjd, batch.obs_sheet_index()))


def per_length(batch: SheetBatch, k: int, extra: int = 0):
    """(sheet indices with exactly k observations, their [n, k * per-obs features + extra] float32
    matrix: each observation's cutout then scalars, in time order, then ``extra`` zero columns for
    the caller). Built in place: the matrix and one observation-sized temporary, not copies of the
    sub-batch: multi_linear's fit on the default benchmark peaked at 2.90 GiB, not 3.62)."""
    idx = np.flatnonzero(batch.k == k)
    width = _obs_width(batch)
    X = np.zeros((len(idx), k * width + extra), np.float32)
    if len(idx) == 0:
        return idx, X
    # each sheet's k rows in time order (a stable sort, as time_order's), sorting only these sheets'
    rows = batch.offsets[idx][:, None] + np.arange(k)
    rows = np.take_along_axis(rows, np.argsort(batch.mjd[rows], axis=1, kind="stable"), axis=1).ravel()
    obs = X[:, :k * width].reshape(len(idx) * k, width)
    P = width - batch.obs_scalars.shape[1]
    obs[:, :P] = batch.cutouts.reshape(batch.n_obs, -1)[rows]
    obs[:, P:] = batch.obs_scalars[rows]
    return idx, X


def _obs_width(batch: SheetBatch) -> int:
    return int(np.prod(batch.cutouts.shape[1:])) + batch.obs_scalars.shape[1]


def flat_sets(batch: SheetBatch) -> dict:
    """Observations flat and time-ordered within each sheet, with per-sheet offsets.

    The compact form of the set view: ``padded_batch`` pads any subset of sheets on demand,
    so a DataLoader never holds the whole padded tensor (28,000 sheets x 50 x 2 x 15 x 15).
    """
    rows = time_order(batch)
    if np.array_equal(rows, np.arange(len(rows))):     # stored in time order (neoqa writes so): views, no copies
        rows = slice(None)
    return {"images": batch.cutouts[rows], "scalars": batch.obs_scalars[rows], "offsets": batch.offsets,
            "fixed": fixed_length(batch)}


def standardised_cutouts(images: np.ndarray, scale: np.ndarray, limit: float) -> np.ndarray:
    """The set models' cutouts, float32 [N, C, S, S]: each channel less its median pixel, over the
    channel's ``scale``, clipped to +-``limit``. The same float32 values as the NumPy expression
    ``clip((images - pixel_median(images)) / scale, -limit, limit)`` (tested): the median by NumPy's
    vectorised partition, the rest in one compiled pass, parallel over the thread budget's numba
    threads (the expression made four passes and three temporaries of every pixel)."""
    images = np.ascontiguousarray(images, np.float32)
    scale = np.ascontiguousarray(scale, np.float32)
    med = pixel_median(images)
    flat = images.reshape(*images.shape[:2], -1)
    out = np.empty_like(flat)
    _standardise(flat, np.ascontiguousarray(med, np.float32), scale, np.float32(limit), out)
    return out.reshape(images.shape)


@njit(parallel=True, cache=True)
def _standardise(flat, med, scale, limit, out):
    n, c, p = flat.shape
    for i in prange(n):
        for ch in range(c):
            m, s = med[i, ch], scale[ch]
            for j in range(p):
                v = (flat[i, ch, j] - m) / s
                out[i, ch, j] = v if math.isnan(v) else min(max(v, -limit), limit)     # clip keeps NaN


def padded_rows(offsets, idx, min_k: int = 1):
    """Where sheets ``idx``'s observations go when padded: (mask [B, K], the flat rows of the real
    places in mask order); K is the largest k among them, at least ``min_k``."""
    idx = np.asarray(idx)
    starts, ks = offsets[idx], offsets[idx + 1] - offsets[idx]
    K = max(int(ks.max()) if len(ks) else 0, min_k)
    pos = np.arange(K)[None, :]
    mask = pos < ks[:, None]
    return mask, (starts[:, None] + pos)[mask]


def padded_batch(images, scalars, offsets, fixed, idx, min_k: int = 1):
    """Padded set view of sheets ``idx``: images [B, K, ...], scalars [B, K, n], mask [B, K], fixed [B, F].

    Works on NumPy arrays or torch tensors (the flat arrays of ``flat_sets``); padding is
    zero and masked; K is the largest k among the sheets (at least ``min_k``).
    """
    idx = np.asarray(idx)
    mask, rows = padded_rows(offsets, idx, min_k)
    K = mask.shape[1]
    lib = _lib(images)
    img = lib.zeros((len(idx), K) + tuple(images.shape[1:]), dtype=images.dtype)
    sc = lib.zeros((len(idx), K) + tuple(scalars.shape[1:]), dtype=scalars.dtype)
    m = lib.from_numpy(mask) if lib is not np else mask
    img[m] = images[rows]
    sc[m] = scalars[rows]
    return img, sc, m, fixed[idx]


def _lib(arr):
    if isinstance(arr, np.ndarray):
        return np
    import torch

    return torch


def padded_sets(batch: SheetBatch) -> dict:
    """The padded set view of a whole batch (small batches; see ``flat_sets`` for large ones)."""
    f = flat_sets(batch)
    img, sc, mask, fixed = padded_batch(f["images"], f["scalars"], f["offsets"], f["fixed"], np.arange(len(batch)))
    return {"images": img, "scalars": sc, "mask": mask, "fixed": fixed}
