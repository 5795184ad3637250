"""Robustness to shift: saved models scored on corrupted copies of a dataset's test split.

For each corruption in ``corrupt.CORRUPTIONS`` and each of its severities (0 = unchanged),
every model's accuracy, TPR and TNR at its saved threshold, against the labels and, on
simulated data, the clean truth. Evaluation only: nothing here trains.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from neoqa import figures
from neoqa.models import persistence as persist
from neoqa.shift.corrupt import CORRUPTIONS, corrupt
from neoqa.errors import NeoqaError
from neoqa.evaluate import tables
from neoqa.evaluate.metrics import rates_against_truth
from neoqa.data.splits import TEST, labelled_rows
from neoqa.outputs import atomic_output, check_output
from neoqa.data.store import SheetSet
from neoqa.progress import progress_bar

CSV_COLUMNS = tuple(tables.Column(k, k) for k in (
    "model", "corruption", "severity", "unit", "sheets", "accuracy", "tpr", "tnr", "roc_auc", "accuracy_clean",
    "tpr_clean", "tnr_clean", "roc_auc_clean"))


def test_sheets(batch, max_sheets: int | None = None, seed: int = 0):
    """The labelled test sheets, or a seeded subset of ``max_sheets`` of them."""
    idx = labelled_rows(batch, TEST)
    if max_sheets and len(idx) > max_sheets:
        idx = np.sort(np.random.default_rng(seed).choice(idx, max_sheets, replace=False))
    if len(idx) == 0:
        raise NeoqaError("the data has no labelled sheets in the test split")
    return batch.select(idx)


def load_models(model_dirs, batch, where) -> dict:
    """name -> (model, info) for each folder; names are the registry's, the folder's where two clash."""
    loaded = {}
    for d in model_dirs:
        model, info = persist.load(d)
        if persist.conform(model, info, batch, where) is not batch:      # corruptions act on the data as it is
            raise NeoqaError(f"{where}: robustness needs the schema {d} was trained on (its scalars, in its order)")
        name = info["model"] if info["model"] not in loaded else Path(d).name
        loaded[name] = (model, info)
    return loaded


def run_robustness(model_dirs, data, out, corruptions=None, seed: int = 0, max_sheets: int | None = None,
                   progress: bool = True, overwrite: bool = False) -> list[dict]:
    """Every model under every corruption; robustness.{json,csv,md,png} into the folder ``out``,
    which appears complete or not at all."""
    if max_sheets is not None and max_sheets < 1:
        raise NeoqaError(f"--sheets must be at least 1 (got {max_sheets})")
    inputs = (data, *model_dirs)
    check_output(out, overwrite=overwrite, inputs=inputs, folder=True)
    batch = SheetSet(data).read()
    models = load_models(model_dirs, batch, str(data))
    test = test_sheets(batch, max_sheets, seed)
    names = list(corruptions or CORRUPTIONS)
    unknown = [n for n in names if n not in CORRUPTIONS]
    if unknown:
        raise NeoqaError(f"unknown corruption {unknown[0]!r}; choose from {', '.join(CORRUPTIONS)}")
    # a corruption the data cannot support: an error if asked for by name, else skipped and recorded
    skipped = {n: why for n in names if (why := CORRUPTIONS[n].missing(test))}
    if skipped and corruptions:
        name, why = next(iter(skipped.items()))
        raise NeoqaError(f"corruption {name!r} cannot run: {why}")
    names = [n for n in names if n not in skipped]
    # severity 0 is the same data for every corruption: scored once
    unchanged = {mname: model.predict_proba(test)[:, 1] for mname, (model, _) in models.items()}
    rows = []
    steps = [(c, s) for c in names for s in (0.0,) + CORRUPTIONS[c].severities]
    for cname, sev in progress_bar(steps, desc="robustness", unit="test", disable=not progress):
        data_c = corrupt(test, cname, sev, seed)
        for mname, (model, info) in models.items():
            p = unchanged[mname] if sev == 0 else model.predict_proba(data_c)[:, 1]
            rows.append({"model": mname, "corruption": cname, "severity": sev, "unit": CORRUPTIONS[cname].unit,
                         "sheets": len(data_c), **rates_against_truth(data_c, p, info["threshold"])})
    with atomic_output(out, overwrite=overwrite, inputs=inputs, folder=True, kind="robustness") as tmp:
        write_tables(rows, tmp, str(data), len(test), seed, skipped)
        figures.save(robustness_figure(rows), tmp / "robustness.png")
    return rows


def write_tables(rows, out: Path, data: str, n_test: int, seed: int, skipped: dict) -> None:
    tables.write_json(out / "robustness.json", {"data": data, "test_sheets": n_test, "seed": seed,
                                                "skipped": skipped, "rows": rows})
    tables.write_csv(out / "robustness.csv", CSV_COLUMNS, rows)
    lines = [f"# Robustness on {data} ({n_test:,} test sheets, seed {seed})", "",
             "Accuracy % at each model's saved threshold against the labels (clean-truth accuracy in brackets "
             "where known), per corruption and severity; severity 0 is the data unchanged. What each "
             "corruption does: docs/robustness.md.", ""]
    lines += [f"Skipped {name}: {why}." for name, why in skipped.items()] + ([""] if skipped else [])
    for cname in dict.fromkeys(r["corruption"] for r in rows):
        sub = [r for r in rows if r["corruption"] == cname]
        sevs = list(dict.fromkeys(r["severity"] for r in sub))
        columns = [tables.Column("model", "model")] + [tables.Column(s, f"{s:g}", _accuracy_cell) for s in sevs]
        table = [{"model": m, **{r["severity"]: r for r in sub if r["model"] == m}}
                 for m in dict.fromkeys(r["model"] for r in sub)]
        lines += [f"## {cname} ({sub[0]['unit']})", ""] + tables.markdown(columns, table) + [""]
    tables.write_markdown(out / "robustness.md", lines[:-1])          # the last section's blank line ends the file


def _accuracy_cell(r: dict) -> str:
    """Accuracy %, with the clean truth's in brackets where known."""
    clean = f" ({100 * r['accuracy_clean']:.1f})" if "accuracy_clean" in r else ""
    return f"{100 * r['accuracy']:.1f}{clean}"


def robustness_figure(rows):
    """Accuracy against severity, one panel per corruption, one line per model: a matplotlib Figure."""
    plt = figures.pyplot()
    corr = list(dict.fromkeys(r["corruption"] for r in rows))
    models = list(dict.fromkeys(r["model"] for r in rows))
    key = "accuracy_clean" if "accuracy_clean" in rows[0] else "accuracy"
    ncol = min(4, len(corr))
    nrow = -(-len(corr) // ncol)
    fig, axes = plt.subplots(nrow, ncol, figsize=(3.3 * ncol, 2.9 * nrow), squeeze=False, constrained_layout=True)
    for ax, cname in zip(axes.flat, corr):
        for mname in models:
            sub = [r for r in rows if r["corruption"] == cname and r["model"] == mname]
            ax.plot([r["severity"] for r in sub], [100 * r[key] for r in sub], marker="o", ms=3, label=mname)
        ax.set_title(cname, fontsize=10)
        ax.set_xlabel(sub[0]["unit"], fontsize=8)
        ax.grid(alpha=0.3)
    for ax in axes[:, 0]:
        ax.set_ylabel(f"test {key.replace('_', ' ')} %", fontsize=8)
    for ax in list(axes.flat)[len(corr):]:
        ax.axis("off")
    axes.flat[0].legend(fontsize=7)
    fig.suptitle("Accuracy against corruption severity" + (" (clean truth)" if key.endswith("clean") else ""))
    return fig
