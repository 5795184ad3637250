"""Operating points and triage: thresholds chosen for a target recall on validation data,
with bootstrap intervals, and the three-way split of sheets into automatic accept, human
review and automatic reject."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from . import persist
from .errors import NeoqaError
from .schema import OBJECT_CLASSES
from .splits import TEST, VAL, split_of
from .outputs import atomic_output, check_output, file_mark
from .store import SheetSet

BUCKETS = ("accept", "review", "reject")


def check_rate(name: str, value) -> float:
    """A recall or precision target: a number in (0, 1]."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 < value <= 1:
        raise NeoqaError(f"--{name} must be in (0, 1], not {value!r}")
    return float(value)


def recall_threshold(y, p, recall: float) -> float:
    """The largest threshold t whose decisions p >= t keep at least ``recall`` of the positives."""
    pos = np.sort(np.asarray(p)[np.asarray(y) == 1])
    if len(pos) == 0:
        raise NeoqaError("no real sheets to set a recall threshold on")
    m = math.ceil(recall * len(pos) - 1e-9)
    return float(pos[len(pos) - m]) if m > 0 else float("inf")


def precision_threshold(y, p, precision: float) -> float:
    """The smallest threshold whose accepted sheets (p >= t) reach ``precision`` (inf if none)."""
    order = np.argsort(-np.asarray(p), kind="stable")
    ys, ps = np.asarray(y)[order], np.asarray(p)[order]
    prec = np.cumsum(ys == 1) / np.arange(1, len(ys) + 1)
    ends = np.r_[ps[1:] != ps[:-1], True]          # tied scores are accepted together
    ok = np.flatnonzero(ends & (prec >= precision))
    return float(ps[ok[-1]]) if len(ok) else float("inf")


def rates(y, p, t) -> dict:
    y, d = np.asarray(y) == 1, np.asarray(p) >= t
    return {"recall": float(d[y].mean()) if y.any() else float("nan"),
            "fpr": float(d[~y].mean()) if (~y).any() else float("nan")}


def fpr_at_recall(y, p, recall: float) -> float:
    return rates(y, p, recall_threshold(y, p, recall))["fpr"]


def _bootstrap(fn, arrays, n: int, seed: int):
    rng = np.random.default_rng(seed)
    size = len(arrays[0])
    vals = [fn(*(a[idx] for a in arrays)) for idx in (rng.integers(0, size, size) for _ in range(n))]
    return [float(np.percentile(vals, 2.5)), float(np.percentile(vals, 97.5))]


def _scored(model_dir, data, labels="noisy"):
    """Model, info, sheets, scores, splits and the labels to set thresholds with.

    ``labels="clean"`` uses the simulation truth instead of the (2% noisy) labels: what a survey
    gets once its label set is cleaned. ``labels`` may also name a suspects table
    (``neoqa suspects``): the labels, less the sheets it flags.
    """
    model, info = persist.load(model_dir)
    batch = SheetSet(data).read()
    persist.check_schema(info, batch, str(data))
    if labels == "clean":
        if batch.truth_sheet is None:
            raise NeoqaError(f"{data}: --labels clean needs simulated data with truth")
        y = batch.truth_sheet["clean_label"].astype(np.int8)
    elif labels == "noisy":
        y = batch.label
    elif str(labels).endswith(".csv"):
        from .suspects import read_flagged

        flagged = read_flagged(labels)
        y = np.where(np.isin(batch.sheet_id.astype(str), list(flagged)), -1, batch.label).astype(np.int8)
    else:
        raise NeoqaError(f"unknown labels {labels!r} (noisy, clean or a suspects .csv)")
    p = model.predict_proba(batch)[:, 1]
    return model, info, batch, p, split_of(batch.sheet_id), y


def operating_point(model_dir, data, recall: float, n_boot: int = 1000, seed: int = 0, save: bool = False,
                    labels: str = "noisy") -> dict:
    check_rate("recall", recall)
    if n_boot < 1:
        raise NeoqaError(f"--bootstrap must be at least 1 (got {n_boot})")
    _, info, batch, p, split, y = _scored(model_dir, data, labels)
    val = (split == VAL) & (y >= 0)
    test = (split == TEST) & (y >= 0)
    yv, pv = y[val], p[val]
    t = recall_threshold(yv, pv, recall)
    out = {"target_recall": recall, "labels": labels, "threshold": t,
           "threshold_ci95": _bootstrap(lambda a, q: recall_threshold(a, q, recall), (yv, pv), n_boot, seed),
           "validation": rates(yv, pv, t),
           "test": rates(batch.label[test], p[test], t),
           "test_fpr_ci95": _bootstrap(lambda a, q: rates(a, q, t)["fpr"], (y[test], p[test]), n_boot, seed)}
    if batch.truth_sheet is not None:
        out["test_clean"] = rates(batch.truth_sheet["clean_label"][test], p[test], t)
    if save:
        path = Path(model_dir) / persist.MODEL_JSON
        info["threshold"] = t
        info["threshold_target_recall"] = recall
        with atomic_output(path, overwrite=True) as tmp:      # --save asks to replace it
            tmp.write_text(json.dumps(info, indent=1, sort_keys=True) + "\n")
    return out


def triage(model_dir, data, out, recall: float = 0.995, precision: float | None = None, labels: str = "noisy",
           overwrite: bool = False) -> dict:
    """Accept above a precision threshold, reject below a recall threshold, review between.

    Both thresholds come from the validation split: rejecting only below the recall threshold
    keeps at least ``recall`` of real tracklets out of the automatic reject; accepting only
    above the precision threshold keeps automatic accepts at least ``precision`` pure
    (``precision`` defaults to ``recall``). The report is measured on the test split.
    """
    precision = check_rate("precision", recall if precision is None else precision)
    check_rate("recall", recall)
    check_output(out, overwrite=overwrite, inputs=(model_dir, data))
    _, info, batch, p, split, y = _scored(model_dir, data, labels)
    val = (split == VAL) & (y >= 0)
    t_high, t_low = triage_thresholds(y[val], p[val], recall, precision)
    bucket = buckets(p, t_high, t_low)
    out = Path(out)
    with atomic_output(out, overwrite=overwrite, inputs=(model_dir, data)) as tmp:
        pq.write_table(pa.table({"sheet_id": batch.sheet_id.astype(str), "probability": p,
                                 "bucket": np.array(BUCKETS)[bucket]}, metadata=file_mark()), tmp)
    test = (split == TEST) & (batch.label >= 0)
    report = {"target_recall": recall, "target_precision": precision, "labels": labels, "accept_above": t_high,
              "reject_below": t_low,
              "test": bucket_report(batch.label[test], bucket[test])}
    if batch.truth_sheet is not None:
        report["test_clean"] = bucket_report(batch.truth_sheet["clean_label"][test], bucket[test],
                                             batch.truth_sheet["object_class"][test])
    return report


def triage_thresholds(y_val, p_val, recall: float, precision: float | None = None):
    """(accept_above, reject_below) from validation labels and scores."""
    precision = recall if precision is None else precision
    t_low = recall_threshold(y_val, p_val, recall)
    return max(precision_threshold(y_val, p_val, precision), t_low), t_low


def buckets(p, accept_above, reject_below) -> np.ndarray:
    """0 accept, 1 review, 2 reject; a probability that is not finite goes to review, never to a decision."""
    p = np.asarray(p)
    b = np.where(p >= accept_above, 0, np.where(p >= reject_below, 1, 2)).astype(np.int8)
    b[~np.isfinite(p)] = 1
    return b


def bucket_report(y, bucket, object_class=None) -> dict:
    """Sheets, real and false per bucket, the human load, the recall kept out of the automatic
    reject and the accepts' precision; with the truth's ``object_class``, that recall for real
    main-belt and real NEO sheets apart (the NEOs are what the survey is for)."""
    y = np.asarray(y) == 1
    n = len(y)
    r = {"sheets": int(n), "human_load": float(np.mean(bucket == 1)) if n else float("nan")}
    for code, name in enumerate(BUCKETS):
        sel = bucket == code
        r[name] = {"sheets": int(sel.sum()), "real": int(y[sel].sum()), "false": int((~y[sel]).sum())}
    auto_kept = y[bucket != 2].sum()
    r["recall_outside_reject"] = float(auto_kept / y.sum()) if y.any() else float("nan")
    acc = bucket == 0
    r["accept_precision"] = float(y[acc].mean()) if acc.any() else float("nan")
    if object_class is not None:
        r["recall_outside_reject_by_class"] = {
            name: float(np.mean(bucket[y & (np.asarray(object_class) == code)] != 2))
            for code, name in enumerate(OBJECT_CLASSES) if name != "none" and (y & (np.asarray(object_class) == code)).any()}
    return r
