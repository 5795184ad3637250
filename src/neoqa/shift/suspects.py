"""Suspect labels: rank sheets whose human label is likely wrong.

Every labelled sheet is scored by a model that never saw it (K-fold cross-validation with
folds drawn from the sheet ids), and confident learning (cleanlab) compares those scores
with the labels: it estimates how many labels are wrong and flags that many of the most
confidently contradicted, and ranks all sheets by label quality (the cross-validated
probability of the label given, low first). On simulated data the ranking is scored
against the clean truth.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from neoqa import figures
from neoqa.errors import NeoqaError
from neoqa.evaluate import tables
from neoqa.models.base import capabilities
from neoqa.models.registry import make
from neoqa.data.splits import fold_of
from neoqa.outputs import SUSPECTS_HEADER, check_output, file_mark
from neoqa.data.store import SheetSet, write_dataset
from neoqa.progress import progress_bar

FOLDS = 5
# suspects.csv: the header starts as outputs.SUSPECTS_HEADER says (its mark of having been written by neoqa)
SUSPECT_COLUMNS = tuple(tables.Column(k, k.replace("_", " ")) for k in (*SUSPECTS_HEADER.split(","), "label_quality",
                                                                        "flagged"))


def out_of_fold(batch, name: str = "gbdt", folds: int = FOLDS, seed: int = 0, progress: bool = True) -> np.ndarray:
    """P(real) of each sheet from a model trained on the other folds."""
    fold = fold_of(batch.sheet_id, folds)
    p = np.full(len(batch), np.nan)
    for f in progress_bar(range(folds), desc=f"cross-validated {name}", unit="fold", disable=not progress):
        model = make(name, random_state=seed)
        train = np.flatnonzero(fold != f)
        if "validation" in capabilities(model):          # early stopping on another training fold, never on f
            v = (f + 1) % folds
            model.fit(batch.select(train[fold[train] != v]), validation=batch.select(np.flatnonzero(fold == v)))
        else:
            model.fit(batch.select(train))
        held = np.flatnonzero(fold == f)
        p[held] = model.predict_proba(batch.select(held))[:, 1]
    return p


def rank_suspects(labels, p_real) -> dict:
    """Confident learning on cross-validated probabilities: label quality per sheet, the order
    from most to least suspect, and the flagged set (as many as the estimated number of errors)."""
    from cleanlab.filter import find_label_issues
    from cleanlab.rank import get_label_quality_scores

    probs = np.stack([1 - p_real, p_real], axis=1)
    quality = get_label_quality_scores(labels, probs, method="self_confidence")
    # n_jobs=1: cleanlab otherwise forks a multiprocessing.Pool from a process whose thread pools
    # (torch, LightGBM's OpenMP, numba) may hold a lock at the fork; the child then waits on it
    # forever (a CI run hung so in test_suspects_find_the_flipped_labels). Two classes gain nothing
    # from the parallel prune.
    flagged = find_label_issues(labels, probs, filter_by="prune_by_noise_rate", n_jobs=1)
    order = np.lexsort((np.arange(len(labels)), quality))       # ties broken by position: deterministic
    return {"quality": quality, "order": order, "flagged": flagged}


def precision_recall(wrong: np.ndarray, order: np.ndarray, flagged: np.ndarray) -> dict:
    """How well the ranking finds the truly wrong labels."""
    from sklearn.metrics import average_precision_score

    hits = np.cumsum(wrong[order])
    n_wrong = int(wrong.sum())
    at = {str(k): {"precision": float(hits[k - 1] / k), "recall": float(hits[k - 1] / max(n_wrong, 1))}
          for k in (50, 100, 200, 500, n_wrong) if 0 < k <= len(order)}
    tp = int((flagged & wrong).sum())
    return {
        "wrong_labels": n_wrong, "flagged": int(flagged.sum()),
        "flagged_precision": tp / max(int(flagged.sum()), 1), "flagged_recall": tp / max(n_wrong, 1),
        "average_precision": float(average_precision_score(wrong, -np.argsort(order))) if n_wrong else float("nan"),
        "at_k": at,
    }


def find_suspects(data, out, name: str = "gbdt", folds: int = FOLDS, seed: int = 0, progress: bool = True,
                  prune=None, overwrite: bool = False) -> dict:
    """Rank and flag; ``prune``: also write the dataset without the flagged sheets (to train on).

    Every output (the table, its .json summary and .png beside it, the pruned dataset) is checked
    before any work; the table is written last, so a complete table means a complete run.
    """
    out = Path(out)
    if folds < 2:
        raise NeoqaError(f"cross-validation needs at least 2 folds, not {folds}")
    if out.suffix.lower() != ".csv":
        raise NeoqaError(f"{out}: the suspects table is a .csv file")
    make(name)
    kw = {"overwrite": overwrite, "inputs": (data,)}
    for path in (out, out.with_suffix(".json"), out.with_suffix(".png")):
        check_output(path, **kw)
    if prune is not None:
        check_output(prune, folder=True, **kw)
    full = SheetSet(data).read()
    batch = full.select(np.flatnonzero(full.label >= 0))
    if len(batch) < 10 * folds or len(np.unique(batch.label)) < 2:
        raise NeoqaError(f"{data}: needs at least {10 * folds} labelled sheets of both classes")
    p = out_of_fold(batch, name, folds, seed, progress)
    r = rank_suspects(batch.label.astype(int), p)
    wrong = None
    if batch.truth_sheet is not None:
        wrong = batch.label != batch.truth_sheet["clean_label"]
    summary = {**file_mark(), "data": str(data), "model": name, "folds": folds, "seed": seed, "sheets": len(batch),
               "flagged": int(r["flagged"].sum())}
    if wrong is not None:
        summary["against_truth"] = precision_recall(wrong, r["order"], r["flagged"])
        figures.save(suspects_figure(wrong, r["order"], r["flagged"]), out.with_suffix(".png"), **kw)
    if prune is not None:
        drop = set(batch.sheet_id[r["flagged"]].astype(str))
        kept = full.select(np.flatnonzero([str(s) not in drop for s in full.sheet_id]))
        kept.meta = {**full.meta, "provenance": {**(full.meta.get("provenance") or {}),
                                                  "pruned": {"from": str(data), "removed": len(drop),
                                                             "by": f"neoqa suspects ({name}, {folds} folds)"}}}
        write_dataset(prune, (kept.select(np.arange(s, min(s + 5000, len(kept)))) for s in range(0, len(kept), 5000)),
                      **kw)
        summary["pruned"] = {"path": str(prune), "sheets": len(kept), "removed": len(drop)}
    tables.write_json(out.with_suffix(".json"), summary, **kw)
    columns = SUSPECT_COLUMNS + ((tables.Column("label_wrong_in_truth", "label wrong in truth"),) if wrong is not None else ())
    tables.write_csv(out, columns, [
        {"rank": rank, "sheet_id": batch.sheet_id[i], "label": int(batch.label[i]),
         "p_real_cross_validated": f"{p[i]:.6f}", "label_quality": f"{r['quality'][i]:.6f}",
         "flagged": int(r["flagged"][i]), **({"label_wrong_in_truth": int(wrong[i])} if wrong is not None else {})}
        for rank, i in enumerate(r["order"], 1)], **kw)
    return summary


def suspects_figure(wrong, order, flagged):
    """Precision and recall of the top of the ranking against the clean truth, a matplotlib Figure."""
    plt = figures.pyplot()
    hits = np.cumsum(wrong[order])
    k = np.arange(1, len(order) + 1)
    top = min(len(order), max(4 * int(wrong.sum()), 200))
    fig, ax = plt.subplots(figsize=(6, 4), constrained_layout=True)
    ax.plot(k[:top], 100 * hits[:top] / k[:top], label="precision of the top k")
    ax.plot(k[:top], 100 * hits[:top] / max(int(wrong.sum()), 1), label="recall of the wrong labels")
    ax.axvline(int(flagged.sum()), color="k", ls="--", lw=1, label=f"flagged by confident learning ({int(flagged.sum())})")
    ax.axvline(int(wrong.sum()), color="C3", ls=":", lw=1, label=f"truly wrong labels ({int(wrong.sum())})")
    ax.set_xlabel("sheets reviewed, most suspect first (k)")
    ax.set_ylabel("%")
    ax.set_ylim(0, 102)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    ax.set_title("Suspect-label ranking against the clean truth")
    return fig
