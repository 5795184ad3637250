"""Finding sheets: ``neoqa list`` prints a dataset's sheet ids with their label, k and split (on
simulated data the clean truth beside the label) and, given a model, its probability and bucket;
filtered to a split, to one bucket of the model's saved operating point, or to the labelled sheets
the model gets wrong (most confident first). Read shard by shard, so the listing of an archive holds
only the rows it prints. ``neoqa explain`` draws the sheets a listing chooses (``explain_listed``)."""

from __future__ import annotations

import numpy as np

from neoqa.data.splits import SPLIT_NAMES, split_of
from neoqa.data.store import SheetSet
from neoqa.errors import NeoqaError
from neoqa.models import persistence as persist
from neoqa.models.calibration import BUCKETS

SPLITS = (*SPLIT_NAMES, "all")
LABELS = {1: "real", 0: "false", -1: "unvetted"}


def list_sheets(data, model_dir=None, bucket: str | None = None, errors: bool = False, split: str = "all",
                limit: int | None = None) -> list[dict]:
    """The rows ``neoqa list`` prints (see the module doc), in file order, or for ``errors`` the most
    confident mistakes first."""
    if split not in SPLITS:
        raise NeoqaError(f"--split must be one of {', '.join(SPLITS)} (got {split!r})")
    if bucket is not None and bucket not in BUCKETS:
        raise NeoqaError(f"--bucket must be one of {', '.join(BUCKETS)} (got {bucket!r})")
    if limit is not None and limit < 1:
        raise NeoqaError(f"--limit must be at least 1 (got {limit})")
    if (bucket or errors) and model_dir is None:
        raise NeoqaError("--bucket and --errors need --model (the model whose decisions to list)")
    model = info = None
    if model_dir is not None:
        model, info = persist.load(model_dir)
        if bucket is not None and getattr(model, "operating_point", None) is None:
            raise NeoqaError(f"{model_dir}: has no saved operating point to bucket by "
                             "(neoqa triage --model DIR --data LABELLED --recall R --save sets one)")
    rows = []
    for shard in SheetSet(data).iter_shards():
        which = split_of(shard.sheet_id)
        keep = np.ones(len(shard), bool) if split == "all" else which == SPLIT_NAMES.index(split)
        p = b = None
        if model is not None:
            shard = persist.conform(model, info, shard, str(data))
            p = model.predict_proba(shard)[:, 1]
            if getattr(model, "operating_point", None) is not None:
                b = model.operating_point.buckets(p)
            if bucket is not None:
                keep &= b == BUCKETS.index(bucket)
            if errors:
                keep &= (shard.label >= 0) & np.isfinite(p) & ((p >= info["threshold"]) != (shard.label == 1))
        names = np.array(SPLIT_NAMES)[which]
        truth = shard.truth_sheet["clean_label"] if shard.truth_sheet else None      # simulated data only
        for i in np.flatnonzero(keep):
            row = {"sheet_id": str(shard.sheet_id[i]), "label": LABELS[int(shard.label[i])], "k": int(shard.k[i]),
                   "split": str(names[i])}
            if truth is not None:
                row["truth"] = LABELS[int(truth[i])]
            if p is not None:
                row["probability"] = round(float(p[i]), 6)
                row["bucket"] = BUCKETS[int(b[i])] if b is not None else None
            rows.append(row)
        if limit is not None and not errors and len(rows) >= limit:
            break
    if errors:                                      # the model's most confident mistakes first
        rows.sort(key=lambda r: -abs(r["probability"] - float(info["threshold"])))
    return rows[:limit] if limit is not None else rows


def listing_text(rows: list[dict]) -> str:
    """Tab-separated, with a header: for a terminal, ``cut`` and ``awk``."""
    if not rows:
        return ""
    keys = list(rows[0])
    fmt = {"probability": lambda v: f"{v:.4f}", "bucket": lambda v: v or "-"}
    return "\n".join(["\t".join(keys)] + ["\t".join(fmt.get(k, str)(r[k]) for k in keys) for r in rows])


def explain_listed(model_dir, data, out, sheets=(), errors: bool = False, bucket: str | None = None,
                   split: str = "all", limit: int = 20, method: str = "smoothgrad", samples: int = 32, seed: int = 0,
                   overwrite: bool = False):
    """``neoqa explain``: figures for the sheets named (``sheets``), else for those a listing chooses
    (the model's most confident mistakes, one bucket of its operating point, or the first of a
    split), at most ``limit`` of them, into the folder ``out`` with an ``index.csv`` in that order."""
    from neoqa.explain.saliency import explain_many

    if sheets and (errors or bucket):
        raise NeoqaError("name sheets with --sheet, or choose them with --errors or --bucket, not both")
    rows = None
    if not sheets:
        rows = list_sheets(data, model_dir, bucket, errors, split, limit)
        if not rows:
            what = ("mistakes of the model" if errors else f"sheets in the {bucket} bucket" if bucket
                    else "sheets") + ("" if split == "all" else f" in the {split} split")
            raise NeoqaError(f"{data}: no {what} to explain")
        sheets = [r["sheet_id"] for r in rows]
    return explain_many(model_dir, data, out, sheets, rows=rows, method=method, samples=samples, seed=seed,
                        overwrite=overwrite)
