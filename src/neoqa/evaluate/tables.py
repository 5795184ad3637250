"""One way to write a table: each column declared once (its key in a row, its title, how a value
prints), rendered as Markdown, HTML or plain text with the same titles and formats, and written as
CSV (raw values, the keys as header) and JSON. Every table neoqa writes goes through here: the zoo's
and the report's results, evaluate's summary, robustness, transfer, online learning, suspects and
triage (docs/architecture.md)."""

from __future__ import annotations

import csv
import html as _html
import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from neoqa.outputs import atomic_output, write_text

MISSING = "-"


@dataclass(frozen=True)
class Column:
    key: str
    title: str
    fmt: Callable = str


def percent(digits: int = 1) -> Callable:
    """A fraction printed as a percentage."""
    return lambda v: f"{100 * v:.{digits}f}"


def number(spec: str) -> Callable:
    """A number printed by a format spec (``".3f"``, ``",.0f"``, ``"+.1f"``...)."""
    return lambda v: f"{v:{spec}}"


def whole(v) -> str:
    return f"{int(v):,}"


def cell(column: Column, row: dict) -> str:
    """A row's value in a column, formatted; missing, None and NaN print as ``MISSING``."""
    v = row.get(column.key)
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return MISSING
    return column.fmt(v)


def markdown(columns, rows) -> list[str]:
    """A Markdown table's lines."""
    return (["| " + " | ".join(c.title for c in columns) + " |", "|" + "---|" * len(columns)]
            + ["| " + " | ".join(cell(c, r) for c in columns) + " |" for r in rows])


def html(columns, rows, row_classes=None) -> str:
    """An HTML table; ``row_classes`` gives each row's class attribute (or None)."""
    out = ["<table><tr>" + "".join(f"<th>{_html.escape(c.title)}</th>" for c in columns) + "</tr>"]
    for i, r in enumerate(rows):
        cls = row_classes[i] if row_classes else None
        out.append((f'<tr class="{cls}">' if cls else "<tr>")
                   + "".join(f"<td>{_html.escape(cell(c, r))}</td>" for c in columns) + "</tr>")
    return "".join(out) + "</table>"


def text(columns, row) -> list[str]:
    """One row as aligned ``title  value`` lines (a terminal summary)."""
    width = max(len(c.title) for c in columns) + 2
    return [f"{c.title:<{width}}{cell(c, row)}" for c in columns]


def write_csv(path: Path, columns, rows, **kw) -> None:
    """The rows' raw values, one column per key (the keys as header), atomically (``kw``: for
    ``atomic_output``: overwrite, inputs)."""
    with atomic_output(path, **kw) as tmp, open(tmp, "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=[c.key for c in columns], restval="", extrasaction="ignore")
        w.writeheader()
        w.writerows(rows)


def write_json(path: Path, obj, **kw) -> None:
    write_text(path, json.dumps(obj, indent=1, default=float) + "\n", **kw)


def write_markdown(path: Path, lines) -> None:
    write_text(path, "\n".join(lines) + "\n")


# ------------------------------------------------------------------ the paper's table, and more
# Every metric of a model's evaluation (evaluate.evaluation), declared once; each table picks its keys.
METRICS = {c.key: c for c in (
    Column("model", "model"),
    Column("test_accuracy", "test acc %", percent()),
    Column("test_accuracy_clean", "clean acc %", percent()),
    Column("train_accuracy", "train acc %", percent()),
    Column("overfit", "overfit %", percent()),
    Column("npv", "NPV %", percent()),
    Column("tnr", "TNR %", percent()),
    Column("ppv", "PPV %", percent()),
    Column("tpr", "TPR %", percent()),
    Column("roc_auc", "ROC-AUC %", percent()),
    Column("pr_auc", "PR-AUC %", percent()),
    Column("ece", "ECE", number(".3f")),
    Column("fpr_at_recall_0.99", "FPR@99% recall", percent()),
    Column("fpr_at_recall_0.995", "FPR@99.5% recall", percent()),
    Column("params", "params", whole),
    Column("fit_seconds", "fit s", number(".1f")),
    Column("sheets_per_second", "sheets/s", number(",.0f")),
    Column("paper_test_accuracy", "paper acc %", percent()),
    Column("paper_overfit", "paper overfit %", percent()),
)}


def metric_columns(*keys) -> tuple:
    return tuple(METRICS[k] for k in keys)


# The zoo's table (results.md), its CSV (results.csv), the report's table, evaluate's summary.
ZOO_TABLE = metric_columns("model", "test_accuracy", "test_accuracy_clean", "overfit", "npv", "tnr", "ppv", "tpr",
                           "roc_auc", "pr_auc", "ece", "fpr_at_recall_0.99", "fpr_at_recall_0.995", "params",
                           "fit_seconds", "sheets_per_second", "paper_test_accuracy", "paper_overfit")
ZOO_CSV = metric_columns("model", "test_accuracy", "test_accuracy_clean", "train_accuracy", "overfit", "npv", "tnr",
                         "ppv", "tpr", "roc_auc", "pr_auc", "ece", "fpr_at_recall_0.99", "fpr_at_recall_0.995",
                         "params", "fit_seconds", "sheets_per_second", "paper_test_accuracy", "paper_overfit")
REPORT_TABLE = metric_columns("model", "test_accuracy", "test_accuracy_clean", "train_accuracy", "overfit", "npv",
                              "tnr", "ppv", "tpr", "roc_auc", "pr_auc", "ece", "fpr_at_recall_0.99",
                              "fpr_at_recall_0.995", "params", "fit_seconds", "sheets_per_second",
                              "paper_test_accuracy")
EVALUATE_SUMMARY = metric_columns("test_accuracy", "test_accuracy_clean", "train_accuracy", "overfit", "npv", "tnr",
                                  "ppv", "tpr", "roc_auc", "pr_auc", "ece", "fpr_at_recall_0.99",
                                  "fpr_at_recall_0.995", "params", "fit_seconds", "sheets_per_second")


def model_rows(results: dict, paper: dict) -> list[dict]:
    """One row per model of a zoo's results, with the paper's numbers beside it."""
    return [{"model": name, **r, "paper_test_accuracy": paper.get(name, {}).get("test_accuracy"),
             "paper_overfit": paper.get(name, {}).get("overfit")} for name, r in results.items()]
