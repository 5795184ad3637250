"""Evaluation on the test split: the paper's table metrics and more.

Evaluation never imports training code: it reads a saved model and the data.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import numpy as np

from neoqa.models import persistence as persist
from neoqa.errors import NeoqaError
from neoqa.data.schema import OBJECT_CLASSES
from neoqa.evaluate.metrics import classification_metrics
from neoqa.evaluate.thresholds import fpr_at_recall
from neoqa.data.splits import TEST, TRAIN, labelled
from neoqa.data.store import SheetSet

PAPER = {  # Blair & Masiero 2019, measured on the paper's real NEOWISE QA sheets
    "ridge": {"test_accuracy": 0.946, "overfit": 0.03, "npv": 0.96, "tnr": 0.95, "ppv": 0.84, "tpr": 0.88},
    "quadratic": {"test_accuracy": 0.90, "overfit": 0.09},
    "rbf": {"test_accuracy": 0.87, "overfit": 0.12},
    "rff": {"test_accuracy": 0.916, "overfit": 0.057},
    "mlp": {"test_accuracy": 0.95, "overfit": 0.042, "npv": 0.96, "tnr": 0.98, "ppv": 0.92, "tpr": 0.80},
    "multi_linear": {"test_accuracy": 0.88, "overfit": 0.09},
    "multi_mlp": {"test_accuracy": 0.87, "overfit": 0.10},
    "basic_sneon": {"test_accuracy": 0.95, "overfit": 0.034},
    "sneon": {"test_accuracy": 0.80},
}


@dataclass
class Scores:
    """The test split's labels, scores and lengths, for curves and figures."""
    label: np.ndarray
    p: np.ndarray
    k: np.ndarray


@dataclass
class Evaluation:
    """A model's evaluation on the test split: the table's ``metrics`` (a dict keyed as the tables
    are), accuracy by k and the breakdowns (``by``: rate, true S/N, object class, NEO rate), the
    fast-mover check where truth is known, and the ``scores`` behind the curves."""
    metrics: dict
    accuracy_by_k: dict
    by: dict
    scores: Scores
    fast_movers: dict | None = field(default=None)

    def as_dict(self) -> dict:
        """Everything but the scores, as the JSON outputs hold it."""
        return {**self.metrics, "accuracy_by_k": self.accuracy_by_k, "by": self.by, "fast_movers": self.fast_movers}


def evaluate(model, info: dict, batch, where="data") -> Evaluation:
    batch = persist.conform(model, info, batch, where)
    test, train = labelled(batch, TEST), labelled(batch, TRAIN)
    if len(test) == 0 or len(np.unique(test.label)) < 2:
        raise NeoqaError(f"{where}: the test split has no labelled sheets of both classes to evaluate on")
    thr = info["threshold"]
    t0 = time.perf_counter()
    p_test = model.predict_proba(test)[:, 1]
    speed = len(test) / max(time.perf_counter() - t0, 1e-9)
    p_train = model.predict_proba(train)[:, 1]
    m = classification_metrics(test.label, p_test, thr)
    train_acc = float(np.mean((p_train >= thr) == (train.label == 1)))
    out = {
        "test_accuracy": m["accuracy"], "train_accuracy": train_acc, "overfit": train_acc - m["accuracy"],
        "npv": m["npv"], "tnr": m["tnr"], "ppv": m["ppv"], "tpr": m["tpr"], "roc_auc": m["roc_auc"],
        "pr_auc": m["pr_auc"], "ece": m["ece"], "params": info.get("n_parameters"),
        "fit_seconds": info.get("fit_seconds"), "sheets_per_second": speed, "threshold": thr,
        "confusion": m["confusion"], "test_sheets": len(test),
        "fpr_at_recall_0.99": fpr_at_recall(test.label, p_test, 0.99),
        "fpr_at_recall_0.995": fpr_at_recall(test.label, p_test, 0.995),
        "test_accuracy_clean": None,
    }
    decided = p_test >= thr
    if test.truth_sheet is not None:
        clean = test.truth_sheet["clean_label"]
        out["test_accuracy_clean"] = float(np.mean(decided == (clean == 1)))
    by_k = {str(int(k)): {"sheets": int((test.k == k).sum()),
                          "accuracy": float(np.mean(decided[test.k == k] == (test.label[test.k == k] == 1)))}
            for k in np.unique(test.k)}
    by = breakdowns(test, decided)
    return Evaluation(out, by_k, by, Scores(test.label, p_test, test.k), fast_movers({"by": by}))


RATE_BINS = (0.0, 0.1, 0.2, 0.4, 0.8, 1.6, np.inf)
SNR_BINS = (0.0, 4.0, 6.0, 10.0, 20.0, np.inf)
# NEOs at NEOWISE's geometry move 0.5-1.4 deg/day (docs/simulator.md): the fast ones must not be lost.
NEO_RATE_BINS = (0.0, 0.5, 1.0, 1.4, np.inf)
FAST_MOVER_LIMIT_POINTS = 1.0      # recall for real NEO sheets at most this far below main-belt's


def breakdowns(test, decided) -> dict:
    """Accuracy (and, with truth, clean accuracy and recall) by measured rate of motion and,
    on simulated data, by the object's true S/N and class."""
    groups = {"rate_deg_per_day": _binned(test.sheet_scalar("rate_deg_per_day"), RATE_BINS)}
    if test.truth_sheet is not None:
        t = test.truth_sheet
        groups["true_snr"] = _binned(t["true_snr"], SNR_BINS, missing="no object")
        groups["object_class"] = np.array(["none", "mba", "neo"])[t["object_class"]]
        neo = t["object_class"] == OBJECT_CLASSES.index("neo")
        groups["neo_true_rate"] = np.where(neo, _binned(t["true_rate_deg_per_day"], NEO_RATE_BINS), "not a NEO")
    out = {}
    for name, keys in groups.items():
        out[name] = {}
        for key in dict.fromkeys(keys):            # first-seen order is bin order for the binned ones
            sel = keys == key
            row = {"sheets": int(sel.sum()), "accuracy": float(np.mean(decided[sel] == (test.label[sel] == 1)))}
            if test.truth_sheet is not None:
                clean = test.truth_sheet["clean_label"][sel] == 1
                row["accuracy_clean"] = float(np.mean(decided[sel] == clean))
                row["recall_clean"] = float(decided[sel][clean].mean()) if clean.any() else None
                row["real_clean"] = int(clean.sum())
            out[name][str(key)] = row
        out[name] = dict(sorted(out[name].items(), key=lambda kv: _order(kv[0])))
    return out


def fast_movers(res: dict) -> dict | None:
    """The fast-mover check: recall (clean truth) for real NEO sheets against real main-belt ones,
    and for NEOs above 1 deg/day; passed when NEOs are at most FAST_MOVER_LIMIT_POINTS behind."""
    by = res.get("by", {})
    cls, rate = by.get("object_class", {}), by.get("neo_true_rate", {})
    neo, mba = (cls.get(c, {}).get("recall_clean") for c in ("neo", "mba"))
    if neo is None or mba is None:
        return None
    fast = [(r["recall_clean"], r["real_clean"]) for key, r in rate.items()
            if key in ("1-1.4", ">1.4") and r.get("recall_clean") is not None]
    gap = 100.0 * (mba - neo)
    return {"recall_neo": neo, "recall_mba": mba, "gap_points": gap, "limit_points": FAST_MOVER_LIMIT_POINTS,
            "recall_neo_above_1_deg_per_day": (sum(r * n for r, n in fast) / sum(n for _, n in fast)) if fast else None,
            "passed": bool(gap <= FAST_MOVER_LIMIT_POINTS)}


def _binned(values, edges, missing="n/a"):
    values = np.asarray(values, dtype=float)
    idx = np.digitize(values, edges) - 1
    labels = [f"{edges[i]:g}-{edges[i + 1]:g}" if np.isfinite(edges[i + 1]) else f">{edges[i]:g}"
              for i in range(len(edges) - 1)]
    return np.array([labels[i] if np.isfinite(v) and 0 <= i < len(labels) else missing for v, i in zip(values, idx)])


def _order(label: str):
    head = label.lstrip(">").split("-")[0]
    try:
        return (0, float(head))
    except ValueError:
        return (1, {"none": 0, "mba": 1, "neo": 2, "not a NEO": 4}.get(label, 3), label)


def evaluate_path(model_dir, data) -> dict:
    model, info = persist.load(model_dir)
    ds = SheetSet(data)
    return {**evaluate(model, info, ds.read(), where=str(data)).as_dict(), "model": info["model"]}
