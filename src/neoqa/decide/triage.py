"""Triage: the three-way split of sheets into automatic accept, human review and automatic reject,
by two thresholds set on validation data (``evaluate.thresholds``)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from neoqa.data.schema import OBJECT_CLASSES
from neoqa.data.splits import TEST, VAL
from neoqa.evaluate import tables
from neoqa.evaluate.thresholds import check_rate, precision_threshold, recall_threshold, scored
from neoqa.outputs import atomic_output, check_output, file_mark

BUCKETS = ("accept", "review", "reject")
# A bucket's row of a triage report (``bucket_report``), as the CLI prints it.
BUCKET_TABLE = (tables.Column("bucket", "bucket"), tables.Column("sheets", "sheets", tables.whole),
                tables.Column("real", "real", tables.whole), tables.Column("false", "false", tables.whole))


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
    _, info, batch, p, split, y = scored(model_dir, data, labels)
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
