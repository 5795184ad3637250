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
from neoqa.evaluate.metrics import classification_metrics, wilson
from neoqa.evaluate.thresholds import bootstrap_interval, fpr_at_recall
from neoqa.data.splits import TEST, TRAIN, VAL, labelled
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
    """The test split's labels, scores and lengths, for curves and figures; ``clean``, the clean
    truth, on simulated data."""
    label: np.ndarray
    p: np.ndarray
    k: np.ndarray
    clean: np.ndarray | None = None


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
    by_k = accuracy_by_k(test, decided)
    by = breakdowns(test, decided)
    clean = test.truth_sheet["clean_label"] if test.truth_sheet is not None else None
    return Evaluation(out, by_k, by, Scores(test.label, p_test, test.k, clean), fast_movers({"by": by}))


RATE_BINS = (0.0, 0.1, 0.2, 0.4, 0.8, 1.6, np.inf)
SNR_BINS = (0.0, 4.0, 6.0, 10.0, 20.0, np.inf)
# NEOs at NEOWISE's geometry move 0.5-1.4 deg/day (docs/simulator.md): the fast ones must not be lost.
NEO_RATE_BINS = (0.0, 0.5, 1.0, 1.4, np.inf)
FAST_MOVER_LIMIT_POINTS = 1.0      # recall for real NEO sheets at most this far below main-belt's


def accuracy_by_k(sheets, decided) -> dict:
    """Sheets and accuracy (against the labels) for each number of observations k."""
    return {str(int(k)): {"sheets": int((sheets.k == k).sum()),
                          "accuracy": float(np.mean(decided[sheets.k == k] == (sheets.label[sheets.k == k] == 1)))}
            for k in np.unique(sheets.k)}


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


SPLITS = {"test": TEST, "validation": VAL, "train": TRAIN, "all": None}
PROPORTIONS = {"accuracy": ("tp", "tn", "all"), "tpr": ("tp", "tp", "fn"), "tnr": ("tn", "tn", "fp"),
               "ppv": ("tp", "tp", "fp"), "npv": ("tn", "tn", "fn")}          # name: (hits..., misses)


def rates_with_intervals(y, p, threshold: float, resamples: int, seed: int) -> dict:
    """Every rate with its 95% interval: Wilson's for the proportions at the threshold (accuracy,
    recall, specificity, precision, NPV), a stratified bootstrap of ``resamples`` for those of the
    whole ranking (ROC and PR AUC, the false-positive rate at 99% and 99.5% recall). Each entry:
    value, ci95, and the sheets it is a proportion of."""
    from sklearn.metrics import average_precision_score, roc_auc_score

    m = classification_metrics(y, p, threshold)
    c = m["confusion"]
    out = {}
    for name, parts in PROPORTIONS.items():
        k = c["tp"] + c["tn"] if name == "accuracy" else c[parts[1]]
        n = len(y) if name == "accuracy" else c[parts[1]] + c[parts[2]]
        out[name] = {"value": m[name], "ci95": wilson(k, n), "of": int(n)}
    whole = {"roc_auc": roc_auc_score, "pr_auc": average_precision_score,
             "fpr_at_recall_0.99": lambda a, b: fpr_at_recall(a, b, 0.99),
             "fpr_at_recall_0.995": lambda a, b: fpr_at_recall(a, b, 0.995)}
    y, p = np.asarray(y).astype(int), np.asarray(p)
    for name, fn in whole.items():
        out[name] = {"value": float(fn(y, p)), "ci95": bootstrap_interval(fn, (y, p), resamples, seed) if resamples
                     else [float("nan")] * 2, "of": len(y)}
    out["ece"] = {"value": m["ece"], "ci95": [float("nan")] * 2, "of": len(y)}
    return {"rates": out, "confusion": c}


def evaluate_split(model, info: dict, batch, split: str = "test", where="data", resamples: int = 200,
                   seed: int = 0) -> dict:
    """A saved model on the labelled sheets of one split of ``batch`` (or ``all`` of them): every
    rate with a 95% interval, against the labels and, on simulated data, the clean truth; whether
    the sheets include those the model was trained on."""
    if split not in SPLITS:
        raise NeoqaError(f"--split must be one of {', '.join(SPLITS)} (got {split!r})")
    if resamples < 0:
        raise NeoqaError(f"--bootstrap must be 0 or more resamples (got {resamples})")
    batch = persist.conform(model, info, batch, where)
    which = SPLITS[split]
    sheets = labelled(batch, which) if which is not None else batch.select(np.flatnonzero(batch.label >= 0))
    if len(sheets) == 0 or len(np.unique(sheets.label)) < 2:
        what = "no labelled sheets" if len(sheets) == 0 else "labelled sheets of one class only"
        raise NeoqaError(f"{where}: the {split} split holds {what}; evaluate needs real and false sheets "
                         "(to bucket unlabelled sheets: neoqa triage or neoqa score)")
    p = model.predict_proba(sheets)[:, 1]
    bad = ~np.isfinite(p)
    if bad.any():                     # never a silent decision: named, and left out of every rate
        i = int(np.flatnonzero(bad)[0])
        raise NeoqaError(f"{where}: sheet {sheets.sheet_id[i]!r}: the model's probability is not finite "
                         f"({int(bad.sum())} such sheets)")
    thr = float(info["threshold"])
    train_fp = (info.get("training_data") or {}).get("fingerprint")
    trained_on = split in ("train", "all") and train_fp == persist.data_fingerprint(labelled(batch, TRAIN))
    out = {"model": info["model"], "data": str(where), "split": split, "sheets": len(sheets),
           "real": int((sheets.label == 1).sum()), "threshold": thr, "resamples": resamples, "seed": seed,
           "includes_training_sheets": bool(trained_on),
           "labels": rates_with_intervals(sheets.label, p, thr, resamples, seed), "clean": None}
    if sheets.truth_sheet is not None:
        out["clean"] = rates_with_intervals(sheets.truth_sheet["clean_label"], p, thr, resamples, seed)
    decided = p >= thr
    out["accuracy_by_k"] = accuracy_by_k(sheets, decided)
    out["by"] = breakdowns(sheets, decided)
    return out


EVALUATE_ROWS = (("accuracy", "accuracy"), ("tpr", "recall (TPR)"), ("tnr", "specificity (TNR)"),
                 ("ppv", "precision (PPV)"), ("npv", "NPV"), ("roc_auc", "ROC AUC"), ("pr_auc", "PR AUC"),
                 ("fpr_at_recall_0.99", "FPR at 99% recall"), ("fpr_at_recall_0.995", "FPR at 99.5% recall"),
                 ("ece", "calibration error (ECE)"))


def evaluation_text(res: dict) -> list[str]:
    """``evaluate_split``'s result as a terminal table: rounded values with their intervals."""
    cols = [("labels", "against the labels")] + ([("clean", "against clean truth")] if res["clean"] else [])
    lines = [f"{res['model']} on {res['data']}, {res['split']} split: {res['sheets']:,} labelled sheets "
             f"({res['real']:,} real), threshold {res['threshold']:.3f}",
             f"95% intervals: Wilson for rates at the threshold, {res['resamples']} stratified bootstrap resamples "
             "for the rest"]
    if res["includes_training_sheets"]:
        lines.append("note: these sheets include the model's own training sheets; the rates flatter it")
    lines.append(f"{'':<26}" + "".join(f"{title:<30}" for _, title in cols))
    for key, title in EVALUATE_ROWS:
        cells = []
        for col, _ in cols:
            r = res[col]["rates"][key]
            cells.append(f"{_value(key, r):<30}")
        lines.append(f"{title:<26}" + "".join(cells))
    c = res["labels"]["confusion"]
    lines.append(f"{'confusion (labels)':<26}TP {c['tp']:,}  FP {c['fp']:,}  TN {c['tn']:,}  FN {c['fn']:,}")
    return lines


def _value(key: str, r: dict) -> str:
    v, (lo, hi) = r["value"], r["ci95"]
    if not np.isfinite(v):
        return "n/a"
    if key in ("roc_auc", "pr_auc", "ece"):
        body = f"{v:.4f}"
        return body + (f" [{lo:.4f}, {hi:.4f}]" if np.isfinite(lo) else "")
    return f"{100 * v:.2f}%" + (f" [{100 * lo:.2f}, {100 * hi:.2f}]" if np.isfinite(lo) else "")


def evaluate_path(model_dir, data, split: str = "test", resamples: int = 200, seed: int = 0) -> dict:
    model, info = persist.load(model_dir)
    return evaluate_split(model, info, SheetSet(data).read(), split, str(data), resamples, seed)
