"""Triage: tonight's sheets split into automatic accept, human review and automatic reject.

An operating point (``models.calibration.OperatingPoint``: two thresholds, the targets they were
set for and their bootstrap intervals) is set on the validation split of labelled data, for a
target recall of real sheets kept out of the automatic reject and a target precision of the
automatic accepts, and can be saved in the model folder (``--save``). Unlabelled sheets are then
bucketed by the saved point: no labels are needed at night.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from neoqa.data.labels import labels_from
from neoqa.data.schema import OBJECT_CLASSES
from neoqa.data.splits import SPLIT_NAMES, TEST, VAL, split_of
from neoqa.data.store import SheetSet
from neoqa.errors import NeoqaError
from neoqa.evaluate import tables
from neoqa.evaluate.thresholds import bootstrap_interval, check_rate, precision_threshold, recall_threshold
from neoqa.models import persistence as persist
from neoqa.models.calibration import BUCKETS, OperatingPoint, buckets
from neoqa.outputs import atomic_output, check_output, command, file_mark

# A bucket's row of a triage report (``bucket_report``), as the CLI prints it.
BUCKET_TABLE = (tables.Column("bucket", "bucket"), tables.Column("sheets", "sheets", tables.whole),
                tables.Column("real", "real", tables.whole), tables.Column("false", "false", tables.whole))

__all__ = ["BUCKETS", "BUCKET_TABLE", "buckets", "bucket_report", "set_operating_point", "triage",
           "triage_thresholds"]


def triage_thresholds(y_val, p_val, recall: float, precision: float | None = None):
    """(accept_above, reject_below) from validation labels and scores."""
    precision = recall if precision is None else precision
    t_low = recall_threshold(y_val, p_val, recall)
    return max(precision_threshold(y_val, p_val, precision), t_low), t_low


def set_operating_point(y_val, p_val, recall: float, precision: float | None = None, n_boot: int = 1000,
                        seed: int = 0, set_on: dict | None = None) -> OperatingPoint:
    """The operating point for ``recall`` (and ``precision``, default the recall) on validation
    labels and scores, with 95% bootstrap intervals of both thresholds."""
    precision = recall if precision is None else precision
    hi, lo = triage_thresholds(y_val, p_val, recall, precision)
    arrays = (np.asarray(y_val), np.asarray(p_val))
    return OperatingPoint(
        hi, lo, recall, precision,
        tuple(bootstrap_interval(lambda a, q: triage_thresholds(a, q, recall, precision)[0], arrays, n_boot, seed)),
        tuple(bootstrap_interval(lambda a, q: recall_threshold(a, q, recall), arrays, n_boot, seed)),
        dict(set_on or {}))


def triage(model_dir, data, out=None, recall: float | None = None, precision: float | None = None,
           labels: str = "noisy", save: bool = False, n_boot: int = 1000, seed: int = 0,
           overwrite: bool = False) -> dict:
    """Bucket every sheet of ``data``; write them to ``out`` (Parquet) if given.

    With ``recall``, the operating point is set on ``data``'s validation split (labels from
    ``labels``) and judged on its test split; ``save`` stores it in the model folder. Without, the
    model's saved point buckets the sheets, which need no labels (where some are labelled, the
    report judges the point on them)."""
    if recall is None and (save or precision is not None or labels != "noisy"):
        raise NeoqaError("--save, --precision and --labels set an operating point: give --recall R too")
    if recall is not None:
        check_rate("recall", recall)
        precision = check_rate("precision", recall if precision is None else precision)
    if out is None and not save:
        raise NeoqaError("triage needs --out (the buckets) or --save (the operating point)")
    if out is not None:
        check_output(out, overwrite=overwrite, inputs=(model_dir, data))
    model, info = persist.load(model_dir)
    ds = SheetSet(data)
    batch = ds.read()
    batch = persist.conform(model, info, batch, str(data))
    p = model.predict_proba(batch)[:, 1]
    split = split_of(batch.sheet_id)
    report = {"model": info["model"], "model_id": persist.model_id(model_dir), "data": str(data),
              "data_digest": ds.digest(), "sheets": len(batch)}
    if recall is not None:
        y = labels_from(batch, labels, str(data))
        val = (split == VAL) & (y >= 0)
        if not np.any(y[val] == 1):
            raise NeoqaError(f"{data}: no labelled real sheets in the validation split to set an operating point on "
                             "(apply a saved one: leave out --recall)")
        point = set_operating_point(y[val], p[val], recall, precision, n_boot, seed,
                                    {"data": str(data), "data_digest": report["data_digest"], "labels": labels,
                                     "validation_sheets": int(val.sum())})
        judged = (split == TEST) & (batch.label >= 0)
        where = "test"
    else:
        point = model.operating_point
        if point is None:
            raise NeoqaError(f"{model_dir}: no saved operating point; set one on labelled data with "
                             "neoqa triage --model DIR --data LABELLED --recall R --save")
        judged = batch.label >= 0
        where = "labelled"
    bucket = point.buckets(p)
    report.update(operating_point=point.as_dict(),
                  buckets={name: int(np.sum(bucket == i)) for i, name in enumerate(BUCKETS)},
                  human_load=float(np.mean(bucket == 1)) if len(bucket) else float("nan"))
    if judged.any():
        report[where] = bucket_report(batch.label[judged], bucket[judged])
        if batch.truth_sheet is not None:
            report[f"{where}_clean"] = bucket_report(batch.truth_sheet["clean_label"][judged], bucket[judged],
                                                     batch.truth_sheet["object_class"][judged])
    if out is not None:
        meta = {**file_mark(), "model": info["model"], "model_id": report["model_id"], "data_digest": report["data_digest"],
                "operating_point": json.dumps(point.as_dict()), "command": command()}
        with atomic_output(Path(out), overwrite=overwrite, inputs=(model_dir, data)) as tmp:
            pq.write_table(pa.table({"sheet_id": batch.sheet_id.astype(str),
                                     "split": np.array(SPLIT_NAMES)[split], "probability": p,
                                     "bucket": np.array(BUCKETS)[bucket]},
                                    metadata={k: str(v) for k, v in meta.items()}), tmp)
    if save:                                                   # --save asks to replace them
        report["saved_in"] = str(persist.write_info(model_dir, {**info, "operating_point": point.as_dict()}))
    return report


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
