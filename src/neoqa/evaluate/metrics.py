"""The paper's table metrics and more, from labels and probabilities."""

from __future__ import annotations

import numpy as np
from sklearn.metrics import average_precision_score, roc_auc_score


def expected_calibration_error(y, p, bins=15) -> float:
    edges = np.linspace(0, 1, bins + 1)
    idx = np.clip(np.digitize(p, edges) - 1, 0, bins - 1)
    total = 0.0
    for b in range(bins):
        sel = idx == b
        if sel.any():
            total += sel.mean() * abs(p[sel].mean() - y[sel].mean())
    return float(total)


def _safe(num, den):
    return float(num / den) if den else float("nan")


def classification_metrics(y, p, threshold: float) -> dict:
    """Accuracy, NPV, TNR, PPV, TPR at ``threshold``; ROC-AUC, PR-AUC and ECE from ``p``."""
    y = np.asarray(y).astype(int)
    d = (np.asarray(p) >= threshold).astype(int)
    tp = int(((d == 1) & (y == 1)).sum()); tn = int(((d == 0) & (y == 0)).sum())
    fp = int(((d == 1) & (y == 0)).sum()); fn = int(((d == 0) & (y == 1)).sum())
    both = len(np.unique(y)) == 2
    return {
        "accuracy": _safe(tp + tn, len(y)), "npv": _safe(tn, tn + fn), "tnr": _safe(tn, tn + fp),
        "ppv": _safe(tp, tp + fp), "tpr": _safe(tp, tp + fn),
        "roc_auc": float(roc_auc_score(y, p)) if both else float("nan"),
        "pr_auc": float(average_precision_score(y, p)) if both else float("nan"),
        "ece": expected_calibration_error(y, np.asarray(p)),
        "confusion": {"tp": tp, "tn": tn, "fp": fp, "fn": fn},
    }


RATES = ("accuracy", "tpr", "tnr", "roc_auc")


def rates_against_truth(batch, p, threshold: float) -> dict:
    """Accuracy, TPR, TNR and ROC-AUC of scores ``p`` on ``batch`` against its labels and, where the
    data has simulation truth, against the clean truth too (keys ending ``_clean``)."""
    m = classification_metrics(batch.label, p, threshold)
    out = {k: m[k] for k in RATES}
    if batch.truth_sheet is not None:
        c = classification_metrics(batch.truth_sheet["clean_label"], p, threshold)
        out.update({f"{k}_clean": c[k] for k in RATES})
    return out


def wilson(k: int, n: int, z: float = 1.959964) -> list:
    """The Wilson score interval (95% by default) of the proportion k / n; NaN where n is 0. It
    stays inside [0, 1] and keeps its coverage at rates near 1, where the normal approximation
    collapses (a model at 99.9% on 700 sheets)."""
    if n == 0:
        return [float("nan"), float("nan")]
    phat = k / n
    centre = (phat + z * z / (2 * n)) / (1 + z * z / n)
    half = z * np.sqrt(phat * (1 - phat) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return [float(max(0.0, centre - half)), float(min(1.0, centre + half))]
