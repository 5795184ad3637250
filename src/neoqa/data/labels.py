"""Where the labels to judge or set thresholds by come from: the dataset's own (2% noisy on the
simulated benchmark), the simulation's clean truth, or the labels less the sheets a suspects
table flags (``neoqa suspects``)."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np

from neoqa.errors import NeoqaError

SOURCES = ("noisy", "clean", "a suspects .csv")


def labels_from(batch, labels: str = "noisy", where: str = "data") -> np.ndarray:
    """Per sheet 1 real, 0 false, -1 unknown, from the source ``labels`` (one of ``SOURCES``)."""
    if labels == "clean":
        if batch.truth_sheet is None:
            raise NeoqaError(f"{where}: --labels clean needs simulated data with truth")
        return batch.truth_sheet["clean_label"].astype(np.int8)
    if labels == "noisy":
        return batch.label
    if str(labels).endswith(".csv"):
        flagged = read_flagged(labels)
        return np.where(np.isin(batch.sheet_id.astype(str), list(flagged)), -1, batch.label).astype(np.int8)
    raise NeoqaError(f"unknown labels {labels!r} (noisy, clean or a suspects .csv)")


def read_flagged(path) -> set:
    """The sheet ids a suspects table flags."""
    path = Path(path)
    try:
        with open(path, newline="") as f:
            rows = list(csv.DictReader(f))
    except OSError as e:
        raise NeoqaError(f"{path}: cannot read the suspects table ({e.strerror})") from None
    if not rows or not {"sheet_id", "flagged"} <= set(rows[0]):
        raise NeoqaError(f"{path}: not a suspects table (needs columns sheet_id and flagged)")
    return {r["sheet_id"] for r in rows if r["flagged"] == "1"}
