"""Operating points: thresholds chosen for a target recall (or precision) on validation data, with
bootstrap intervals, and the rates they give."""

from __future__ import annotations

import math
from decimal import ROUND_FLOOR, Decimal

import numpy as np

from neoqa.models import persistence as persist
from neoqa.data.labels import labels_from
from neoqa.errors import NeoqaError
from neoqa.data.splits import TEST, VAL, split_of
from neoqa.data.store import SheetSet

def check_rate(name: str, value) -> float:
    """A recall or precision target: a number in (0, 1]."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 < value <= 1:
        raise NeoqaError(f"--{name} must be in (0, 1], not {value!r}")
    return float(value)


def decimal_cut(t: float, p) -> float:
    """The shortest decimal that decides the sheets ``p`` exactly as ``t`` does: the threshold as
    what it means (a cut between two validation scores), 0.0123 rather than 0.012318840487301350."""
    if not math.isfinite(t) or t <= 0:
        return float(t)
    p = np.asarray(p, dtype=float)
    below = p[p < t]
    lo = float(below.max()) if below.size else 0.0
    exact = Decimal(repr(float(t)))
    for digits in range(1, 18):
        x = float(exact.quantize(Decimal(1).scaleb(-digits), rounding=ROUND_FLOOR))
        if lo < x <= t:
            return x
    return float(t)


def recall_threshold(y, p, recall: float) -> float:
    """The largest threshold t whose decisions p >= t keep at least ``recall`` of the positives
    (as its shortest decimal: ``decimal_cut``)."""
    pos = np.sort(np.asarray(p)[np.asarray(y) == 1])
    if len(pos) == 0:
        raise NeoqaError("no real sheets to set a recall threshold on")
    m = math.ceil(recall * len(pos) - 1e-9)
    return decimal_cut(float(pos[len(pos) - m]), p) if m > 0 else float("inf")


def precision_threshold(y, p, precision: float) -> float:
    """The smallest threshold whose accepted sheets (p >= t) reach ``precision`` (inf if none), as
    its shortest decimal."""
    order = np.argsort(-np.asarray(p), kind="stable")
    ys, ps = np.asarray(y)[order], np.asarray(p)[order]
    prec = np.cumsum(ys == 1) / np.arange(1, len(ys) + 1)
    ends = np.r_[ps[1:] != ps[:-1], True]          # tied scores are accepted together
    ok = np.flatnonzero(ends & (prec >= precision))
    return decimal_cut(float(ps[ok[-1]]), p) if len(ok) else float("inf")


def rates(y, p, t) -> dict:
    y, d = np.asarray(y) == 1, np.asarray(p) >= t
    return {"recall": float(d[y].mean()) if y.any() else float("nan"),
            "fpr": float(d[~y].mean()) if (~y).any() else float("nan")}


def fpr_at_recall(y, p, recall: float) -> float:
    return rates(y, p, recall_threshold(y, p, recall))["fpr"]


def bootstrap_interval(fn, arrays, n: int, seed: int):
    """The 95% bootstrap interval of ``fn(*arrays)``: ``n`` seeded resamples, stratified by the
    labels ``arrays[0]`` (each resample keeps the count of each class, so a small validation set
    never yields a resample without real sheets to set a recall on)."""
    rng = np.random.default_rng(seed)
    groups = [np.flatnonzero(arrays[0] == c) for c in np.unique(arrays[0])]

    def resample():
        return np.concatenate([g[rng.integers(0, len(g), len(g))] for g in groups])

    vals = np.array([fn(*(a[idx] for a in arrays)) for idx in (resample() for _ in range(n))], dtype=float)
    # A threshold no resample can reach is inf: interpolating between two of them is nan, so then
    # the interval takes sample values as they are.
    method = "linear" if np.all(np.isfinite(vals)) else "inverted_cdf"
    return [float(np.percentile(vals, 2.5, method=method)), float(np.percentile(vals, 97.5, method=method))]


def scored(model_dir, data, labels="noisy"):
    """Model, info, sheets, scores, splits and the labels to set thresholds with.

    ``labels="clean"`` uses the simulation truth instead of the (2% noisy) labels: what a survey
    gets once its label set is cleaned. ``labels`` may also name a suspects table
    (``neoqa suspects``): the labels, less the sheets it flags.
    """
    model, info = persist.load(model_dir)
    batch = SheetSet(data).read()
    batch = persist.conform(model, info, batch, str(data))
    y = labels_from(batch, labels, str(data))
    p = model.predict_proba(batch)[:, 1]
    return model, info, batch, p, split_of(batch.sheet_id), y


def operating_point(model_dir, data, recall: float, n_boot: int = 1000, seed: int = 0, save: bool = False,
                    labels: str = "noisy") -> dict:
    check_rate("recall", recall)
    if n_boot < 1:
        raise NeoqaError(f"--bootstrap must be at least 1 (got {n_boot})")
    _, info, batch, p, split, y = scored(model_dir, data, labels)
    val = (split == VAL) & (y >= 0)
    test = (split == TEST) & (y >= 0)
    yv, pv = y[val], p[val]
    t = recall_threshold(yv, pv, recall)
    out = {"target_recall": recall, "labels": labels, "threshold": t,
           "threshold_ci95": bootstrap_interval(lambda a, q: recall_threshold(a, q, recall), (yv, pv), n_boot, seed),
           "validation": rates(yv, pv, t),
           "test": rates(batch.label[test], p[test], t),
           "test_fpr_ci95": bootstrap_interval(lambda a, q: rates(a, q, t)["fpr"], (y[test], p[test]), n_boot, seed)}
    if batch.truth_sheet is not None:
        out["test_clean"] = rates(batch.truth_sheet["clean_label"][test], p[test], t)
    if save:                                                   # --save asks to replace them
        persist.write_info(model_dir, {**info, "threshold": t, "threshold_target_recall": recall})
    return out
