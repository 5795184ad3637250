"""Train and evaluate every registered model on one dataset; write the results table and figures."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
from tqdm import tqdm

from neoqa import figures
from neoqa.models import persistence as persist
from neoqa.evaluate import tables
from neoqa.evaluate.evaluation import PAPER, evaluate
from neoqa.models import registry
from neoqa.models.registry import make
from neoqa.outputs import atomic_output, check_output, provenance
from neoqa.data.store import SheetSet
from neoqa.train.fit import fit_and_save

def run_zoo(data, out, models=None, seed: int = 0, progress: bool = True, overwrite: bool = False) -> dict:
    """Every model (or ``models``) trained, saved under ``out/models`` and evaluated; the folder
    ``out`` appears complete, tables and figures included, or not at all."""
    out = Path(out)
    names = list(models or registry.names())
    for name in names:
        make(name)                               # an unknown name fails before anything is read
    check_output(out, overwrite=overwrite, inputs=(data,), folder=True)
    ds = SheetSet(data)
    batch = ds.read()
    results, scores = {}, {}
    t_start = time.perf_counter()
    with atomic_output(out, overwrite=overwrite, inputs=(data,), folder=True, kind="zoo") as tmp:
        bar = tqdm(names, desc="zoo", unit="model", disable=not progress)
        for name in bar:
            bar.set_description(f"zoo: {name}")           # which model the minutes go to
            fit_and_save(name, batch, tmp / "models" / name, seed=seed, progress=progress)
            model, info = persist.load(tmp / "models" / name)          # what is scored is what was saved
            res = evaluate(model, info, batch, where=str(data))
            scores[name] = res.scores
            results[name] = res.as_dict()
        best = ranked(results)[0]
        summary = {"models": results, "data": str(data), "survey": batch.meta.get("survey"),
                   "best_model": best, "fast_movers": {"model": best, **(results[best]["fast_movers"] or {})},
                   "sheets": len(batch), "seed": seed, "total_seconds": time.perf_counter() - t_start,
                   "data_digest": ds.digest(), "provenance": provenance(),
                   "paper": {n: PAPER[n] for n in names if n in PAPER}}
        write_tables(summary, tmp)
        write_figures(results, scores, tmp)
    return summary


def ranked(results: dict) -> list[str]:
    """Model names, best first: by test accuracy, then ROC-AUC (the report and the checks agree)."""
    return sorted(results, key=lambda n: (results[n]["test_accuracy"], results[n]["roc_auc"]), reverse=True)


def write_tables(summary: dict, out: Path) -> None:
    rows = tables.model_rows(summary["models"], PAPER)
    tables.write_json(out / "results.json", summary)                       # models in registry order
    tables.write_csv(out / "results.csv", tables.ZOO_CSV, rows)
    lines = [f"# Model zoo on {summary['data']} ({summary['sheets']:,} {summary['survey']} sheets)", "",
             "Percentages on the test split; accuracy against the noisy labels (as the paper) and against the "
             "clean truth. The paper's columns were measured on the paper's real NEOWISE QA sheets, not on "
             "this data.", ""]
    lines += tables.markdown(tables.ZOO_TABLE, rows)
    lines += fast_mover_lines(summary)
    lines += ["", f"Zoo run time: {summary['total_seconds']:.0f} s."]
    tables.write_markdown(out / "results.md", lines)


def fast_mover_lines(summary: dict) -> list[str]:
    """The fast-mover check in words (simulated data only: it needs the object class)."""
    f = summary.get("fast_movers") or {}
    if "gap_points" not in f:
        return []
    fast = f["recall_neo_above_1_deg_per_day"]
    verdict = "PASSED" if f["passed"] else "FAILED"
    return ["", f"Fast movers ({verdict}): the best model, {f['model']}, recalls {100 * f['recall_neo']:.1f}% of real "
            f"NEO sheets against {100 * f['recall_mba']:.1f}% of real main-belt ones (clean truth; "
            f"{f['gap_points']:+.1f} points, the limit is {f['limit_points']:.0f})"
            + (f", and {100 * fast:.1f}% of real NEOs moving faster than 1 deg/day." if fast is not None else ".")]


def write_figures(results: dict, scores: dict, out: Path) -> None:
    plt = figures.pyplot()
    from sklearn.metrics import roc_curve

    names = list(results)
    fig, ax = plt.subplots(figsize=(6, 5.2), constrained_layout=True)
    for name in names:
        s = scores[name]
        fpr, tpr, _ = roc_curve(s.label, s.p)
        ax.plot(fpr, tpr, label=f"{name} (AUC {results[name]['roc_auc']:.3f})")
    # Vetting runs at low false-positive rates, so the rate is drawn on a log axis.
    ax.set_xscale("log"); ax.set_xlim(1e-3, 1); ax.set_ylim(0.4, 1.0)
    ax.set_xlabel("false-positive rate (log)"); ax.set_ylabel("true-positive rate (recall)")
    ax.set_title("ROC on the test split"); ax.legend(fontsize=7, loc="lower right"); ax.grid(alpha=0.3, which="both")
    figures.save(fig, out / "roc.png")

    cols = min(len(names), 5)
    rows = int(np.ceil(len(names) / cols))
    fig, axes = plt.subplots(rows, cols, figsize=(2.6 * cols, 2.5 * rows), constrained_layout=True, squeeze=False)
    for ax, name in zip(axes.flat, names):
        c = results[name]["confusion"]
        m = np.array([[c["tn"], c["fp"]], [c["fn"], c["tp"]]])
        ax.imshow(m / m.sum(1, keepdims=True), cmap="Blues", vmin=0, vmax=1)
        for i in range(2):
            for j in range(2):
                ax.text(j, i, f"{m[i, j]}\n{m[i, j] / max(m[i].sum(), 1):.1%}", ha="center", va="center", fontsize=8,
                        color="white" if m[i, j] / max(m[i].sum(), 1) > 0.5 else "black")
        ax.set_xticks([0, 1], ["false", "real"]); ax.set_yticks([0, 1], ["false", "real"])
        ax.set_xlabel("predicted", fontsize=8); ax.set_ylabel("label", fontsize=8); ax.set_title(name, fontsize=9)
    for ax in list(axes.flat)[len(names):]:
        ax.axis("off")
    figures.save(fig, out / "confusion.png")

    fig, ax = plt.subplots(figsize=(7, 4.2), constrained_layout=True)
    for name in names:
        by = results[name]["accuracy_by_k"]
        ks = np.array([int(k) for k in by]); acc = np.array([by[k]["accuracy"] for k in by])
        n = np.array([by[k]["sheets"] for k in by])
        keep = n >= 30
        ax.plot(ks[keep], 100 * acc[keep], marker="o", ms=3, label=name)
    ax.set_xlabel("k (observations in the sheet; bins with at least 30 test sheets)")
    ax.set_ylabel("test accuracy %"); ax.set_title("Accuracy by k"); ax.grid(alpha=0.3)
    ax.legend(fontsize=7, ncol=2)
    figures.save(fig, out / "accuracy_by_k.png")


    fig, ax = plt.subplots(figsize=(5.6, 5.2), constrained_layout=True)
    edges = np.linspace(0, 1, 11)
    for name in names:
        s = scores[name]
        idx = np.clip(np.digitize(s.p, edges) - 1, 0, 9)
        have = [b for b in range(10) if (idx == b).sum() >= 10]
        ax.plot([s.p[idx == b].mean() for b in have], [(s.label[idx == b] == 1).mean() for b in have],
                marker="o", ms=3, label=f"{name} (ECE {results[name]['ece']:.3f})")
    ax.plot([0, 1], [0, 1], color="0.6", ls="--", lw=0.8)
    ax.set_xlabel("predicted probability (bins with at least 10 test sheets)")
    ax.set_ylabel("fraction labelled real"); ax.set_title("Reliability on the test split")
    ax.legend(fontsize=7); ax.grid(alpha=0.3)
    figures.save(fig, out / "reliability.png")

    groups = [g for g in ("rate_deg_per_day", "true_snr", "object_class") if g in results[names[0]]["by"]]
    fig, axes = plt.subplots(1, len(groups), figsize=(5 * len(groups), 4), constrained_layout=True, squeeze=False)
    titles = {"rate_deg_per_day": "rate of motion (deg/day, measured)", "true_snr": "object's true S/N",
              "object_class": "object class (truth)"}
    for ax, g in zip(axes[0], groups):
        for i, name in enumerate(names):
            by = results[name]["by"][g]
            keys = [k for k in by if by[k]["sheets"] >= 30]
            key = "accuracy_clean" if "accuracy_clean" in by[keys[0]] else "accuracy"
            ax.plot(range(len(keys)), [100 * by[k][key] for k in keys], marker="o", ms=3, label=name)
        ax.set_xticks(range(len(keys)), keys, rotation=30, fontsize=8)
        ax.set_title(titles[g], fontsize=10); ax.set_ylabel(f"test {key.replace('_', ' ')} %"); ax.grid(alpha=0.3)
    axes[0][0].legend(fontsize=7, ncol=2)
    figures.save(fig, out / "accuracy_by.png")
