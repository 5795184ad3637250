"""Train and evaluate every registered model on one dataset; write the results table and figures."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np

from neoqa import figures
from neoqa.models import persistence as persist
from neoqa.evaluate import tables
from neoqa.evaluate.evaluation import PAPER, evaluate
from neoqa.evaluate.metrics import wilson
from neoqa.models import registry
from neoqa.models.registry import make
from neoqa.outputs import atomic_output, check_output, provenance
from neoqa.data.store import SheetSet
from neoqa.memory import release
from neoqa.train.fit import fit_and_save
from neoqa.progress import progress_bar


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
    source = ds.source()
    results, scores = {}, {}
    t_start = time.perf_counter()
    with atomic_output(out, overwrite=overwrite, inputs=(data,), folder=True, kind="zoo") as tmp:
        bar = progress_bar(names, desc="zoo", unit="model", disable=not progress)
        for name in bar:
            bar.set_description(f"zoo: {name}")           # which model the minutes go to
            fit_and_save(name, batch, tmp / "models" / name, seed=seed, progress=progress, source=source)
            model, info = persist.load(tmp / "models" / name)          # what is scored is what was saved
            res = evaluate(model, info, batch, where=str(data))
            scores[name] = res.scores
            results[name] = res.as_dict()
            del model
            release()                            # what the model's fit freed, before the next one
        best = ranked(results)[0]
        summary = {"models": results, "data": str(data), "survey": batch.meta.get("survey"),
                   "best_model": best, "fast_movers": {"model": best, **(results[best]["fast_movers"] or {})},
                   "sheets": len(batch), "seed": seed, "total_seconds": time.perf_counter() - t_start,
                   "data_digest": source["digest"], "provenance": provenance(),
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
    """``zoo_figures`` written into the run folder ``out``, one PNG each."""
    for name, fig in zoo_figures(results, scores).items():
        figures.save(fig, out / name)


def zoo_figures(results: dict, scores: dict) -> dict:
    """The zoo's figures by file name, matplotlib Figures made to be shown: one look per model in
    every figure (``figures.styles``), legends outside the data, 95% Wilson intervals on every
    binned rate, categories as points, and the ROC against the clean truth beside the noisy labels
    where the data has it."""
    plt = figures.pyplot()
    drawn = {}
    from sklearn.metrics import roc_auc_score, roc_curve

    names = list(results)
    style = figures.styles(names)
    truth = all(scores[n].clean is not None for n in names)
    panels = [("label", "against the labels (2% flipped)")] + ([("clean", "against the clean truth")] if truth else [])
    fig, axes = plt.subplots(1, len(panels), figsize=(5.4 * len(panels), 6.2), constrained_layout=True,
                             squeeze=False)
    for ax, (field, title) in zip(axes[0], panels):
        floor = 1.0
        for name in names:
            s = scores[name]
            y = getattr(s, field)
            fpr, tpr, _ = roc_curve(y, s.p)
            floor = min(floor, float(np.interp(1e-3, fpr, tpr)))
            ax.plot(fpr, tpr, color=style[name]["color"], ls=style[name]["ls"], lw=1.4,
                    label=f"{name} ({roc_auc_score(y, s.p):.4f})")
        # Vetting runs at low false-positive rates, so the rate is drawn on a log axis, and each
        # panel's recall axis starts just below its lowest curve there.
        ax.set_xscale("log"); ax.set_xlim(1e-3, 1); ax.set_ylim(max(0.0, np.floor(50 * floor - 1) / 50), 1.003)
        ax.set_xlabel("false-positive rate (log)"); ax.grid(alpha=0.3, which="both")
        ax.set_title(f"ROC on the test split, {title}", fontsize=10)
        ax.set_ylabel("true-positive rate (recall)")
        ax.legend(title="model (ROC AUC)", fontsize=7, title_fontsize=7, ncol=2, loc="upper center",
                  bbox_to_anchor=(0.5, -0.13), frameon=False)
    drawn["roc.png"] = fig

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
    drawn["confusion.png"] = fig

    # Accuracy by k: one panel per model (13 lines with intervals are unreadable), the best model's
    # points in grey behind each for reference.
    best = ranked(results)[0]
    fig, axes = plt.subplots(rows, cols, figsize=(2.9 * cols, 2.3 * rows + 0.6), constrained_layout=True,
                             squeeze=False, sharex=True, sharey=True)
    for ax, name in zip(axes.flat, names):
        for who, colour, z in ((best, "0.75", 1), (name, style[name]["color"], 2)):
            ks, acc, lo, hi = _binned_rate(results[who]["accuracy_by_k"], "accuracy", int)
            ax.errorbar(ks, acc, yerr=_yerr(acc, lo, hi), fmt=style[who]["marker"], ms=3, color=colour,
                        elinewidth=0.8, capsize=0, zorder=z)
        ax.set_title(name, fontsize=9); ax.grid(alpha=0.3)
    for ax in list(axes.flat)[len(names):]:
        ax.axis("off")
    fig.supxlabel("k (observations in the sheet; bins of at least 30 test sheets)", fontsize=9)
    fig.supylabel("test accuracy % (labels), 95% Wilson interval", fontsize=9)
    fig.suptitle(f"Accuracy by k (grey: {best}, the best model)", fontsize=10)
    drawn["accuracy_by_k.png"] = fig

    fig, ax = plt.subplots(figsize=(7.6, 5.2), constrained_layout=True)
    edges = np.linspace(0, 1, 11)
    for name in names:
        s = scores[name]
        idx = np.clip(np.digitize(s.p, edges) - 1, 0, 9)
        have = [b for b in range(10) if (idx == b).sum() >= 10]
        x = np.array([s.p[idx == b].mean() for b in have])
        real = [(int((s.label[idx == b] == 1).sum()), int((idx == b).sum())) for b in have]
        y = np.array([k / n for k, n in real])
        lo, hi = np.array([wilson(k, n) for k, n in real]).T.reshape(2, -1) if real else (y, y)
        ax.errorbar(x, y, yerr=_yerr(y, lo, hi), color=style[name]["color"], ls=style[name]["ls"],
                    marker=style[name]["marker"], ms=3, lw=1, elinewidth=0.6, label=f"{name} ({results[name]['ece']:.3f})")
    ax.plot([0, 1], [0, 1], color="0.6", ls="--", lw=0.8)
    ax.set_xlabel("predicted probability (bins of at least 10 test sheets)")
    ax.set_ylabel("fraction labelled real, 95% Wilson interval"); ax.set_title("Reliability on the test split")
    figures.legend_outside(ax, title="model (ECE)")
    ax.grid(alpha=0.3)
    drawn["reliability.png"] = fig

    groups = [g for g in ("rate_deg_per_day", "true_snr", "object_class") if g in results[names[0]]["by"]]
    fig, axes = plt.subplots(1, len(groups), figsize=(4.6 * len(groups) + 1.8, 4.2), constrained_layout=True,
                             squeeze=False)
    titles = {"rate_deg_per_day": "rate of motion (deg/day, measured)", "true_snr": "object's true S/N",
              "object_class": "object class (truth)"}
    width = 0.8 / max(len(names), 1)
    for ax, g in zip(axes[0], groups):
        first = results[names[0]]["by"][g]
        keys = [k for k in first if first[k]["sheets"] >= 30]
        key = "accuracy_clean" if "accuracy_clean" in first[keys[0]] else "accuracy"
        for i, name in enumerate(names):            # categories as points, each model a little apart
            _, acc, lo, hi = _binned_rate({k: results[name]["by"][g][k] for k in keys}, key)
            x = np.arange(len(keys)) - 0.4 + width * (i + 0.5)
            ax.errorbar(x, acc, yerr=_yerr(acc, lo, hi), fmt=style[name]["marker"], ms=3,
                        color=style[name]["color"], elinewidth=0.7, capsize=0, label=name)
        ax.set_xticks(range(len(keys)), [f"{k}\n({first[k]['sheets']:,})" for k in keys], fontsize=8)
        ax.set_title(titles[g], fontsize=10); ax.grid(alpha=0.3, axis="y")
        ax.set_ylabel(f"test {'accuracy against the clean truth' if key == 'accuracy_clean' else 'accuracy'} %",
                      fontsize=9)
    figures.legend_outside(axes[0][-1], title="model")
    fig.suptitle("Accuracy by group (test sheets per group in brackets; 95% Wilson intervals)", fontsize=10)
    drawn["accuracy_by.png"] = fig
    return drawn


def _yerr(v, lo, hi):
    """Error-bar lengths from an interval (never negative: a rate at an interval's edge in float rounding)."""
    return [np.clip(v - lo, 0, None), np.clip(hi - v, 0, None)]


def _binned_rate(by: dict, key: str, cast=str, least: int = 30):
    """(bins, rate, interval low, high) of a breakdown's bins holding at least ``least`` sheets."""
    keys = [k for k in by if by[k]["sheets"] >= least]
    n = np.array([by[k]["sheets"] for k in keys])
    rate = np.array([by[k][key] for k in keys])
    lo, hi = (np.array([wilson(round(r * m), m) for r, m in zip(rate, n)]).T if keys else (rate, rate))
    return np.array([cast(k) for k in keys]), 100 * rate, 100 * lo, 100 * hi


