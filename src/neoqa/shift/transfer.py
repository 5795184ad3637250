"""Transfer to a new survey: zero-shot, fine-tuning on a few labelled sheets, and the same
budget from scratch, so a learning curve shows what pre-training on the old survey buys.

The labelled sheets come from the new data's training split, stratified by class (each
class at least once); the new data's other training sheets serve, without their labels,
to re-fit a set network's input normalisation. A fine-tuned model keeps its parent's
temperature and decision threshold (a handful of labels cannot fit them); one trained from
scratch decides at p >= 0.5.
"""

from __future__ import annotations

import copy
from pathlib import Path

import numpy as np

from neoqa import figures
from neoqa.models import persistence as persist
from neoqa.models.calibration import same_calibration, unwrap
from neoqa.errors import NeoqaError
from neoqa.evaluate import tables
from neoqa.evaluate.metrics import rates_against_truth
from neoqa.models.base import capabilities
from neoqa.models.registry import make
from neoqa.data.splits import TEST, TRAIN, labelled, labelled_rows, split_of
from neoqa.outputs import atomic_output, check_output
from neoqa.data.store import SheetSet
from neoqa.progress import progress_bar

SCRATCH_THRESHOLD = 0.5


def pick_labelled(batch, n: int | None, seed: int = 0):
    """``n`` labelled training-split sheets, stratified by class with each class present
    (``None``: all of them)."""
    idx = labelled_rows(batch, TRAIN)
    if n is None or n >= len(idx):
        return batch.select(idx)
    if n < 2:
        raise NeoqaError("fine-tuning needs at least 2 labelled sheets (one of each class)")
    rng = np.random.default_rng([seed, n])
    pos, neg = idx[batch.label[idx] == 1], idx[batch.label[idx] == 0]
    if len(pos) == 0 or len(neg) == 0:
        raise NeoqaError("the new data's training split needs labelled sheets of both classes")
    n_pos = int(np.clip(round(n * len(pos) / len(idx)), 1, min(n - 1, len(pos))))
    chosen = np.concatenate([rng.choice(pos, n_pos, replace=False), rng.choice(neg, n - n_pos, replace=False)])
    return batch.select(np.sort(chosen))


def unlabelled_pool(batch):
    """The new data's training-split sheets, whose labels fine-tuning does not read."""
    return batch.select(np.flatnonzero(split_of(batch.sheet_id) == TRAIN))


def finetunable(model, name: str):
    base = unwrap(model)
    if "finetune" not in capabilities(base):
        raise NeoqaError(f"model {name!r} cannot be fine-tuned; the set models and gbdt can")
    return base


def finetune(model, name: str, new_batch, n: int | None, seed: int = 0, adapt: bool = True):
    """(a fine-tuned copy of ``model``, the labelled sheets it saw)."""
    base = copy.deepcopy(finetunable(model, name))
    picked = pick_labelled(new_batch, n, seed)
    kwargs = {"unlabelled": unlabelled_pool(new_batch)} if adapt and "adapt_inputs" in capabilities(base) else {}
    return base.finetune(picked, seed=seed, **kwargs), picked


def from_scratch(name: str, new_batch, picked, seed: int = 0):
    """The same model trained on only ``picked`` (set models: the same normalisation, optimiser
    and number of steps as fine-tuning, from random weights)."""
    model = make(name, random_state=seed)
    if "adapt_inputs" in capabilities(model):
        return model.initialise(unlabelled_pool(new_batch)).finetune(picked, lr=1e-3, anchor=0.0, seed=seed)
    return model.fit(picked)


def finetune_path(model_dir, data, labels: int | None, out, seed: int = 0, adapt: bool = True,
                  overwrite: bool = False) -> Path:
    check_output(out, overwrite=overwrite, inputs=(model_dir, data), folder=True)
    model, info = persist.load(model_dir)
    ds = SheetSet(data)
    batch = persist.conform(model, info, ds.read(), str(data))
    tuned, picked = finetune(model, info["model"], batch, labels, seed, adapt)
    extra = {"seed": seed, "n_parameters": int(tuned.n_parameters()), "calibration": info.get("calibration"),
             "finetuned_from": {"model_dir": str(model_dir), "training_data": info.get("training_data"),
                                "labels": len(picked), "adapted_normalisation": bool(adapt)}}
    return persist.save(tuned, out, info["model"], info["threshold"], picked, extra=extra, overwrite=overwrite,
                        inputs=(model_dir, data), source=ds.source())


def _score(model, test, threshold) -> dict:
    return rates_against_truth(test, model.predict_proba(test)[:, 1], threshold)


def learning_curve(model_dir, data, out, labels=(10, 100, 1000), seeds=(0, 1, 2), progress: bool = True,
                   overwrite: bool = False) -> dict:
    """Zero-shot, normalisation-adapted zero-shot, and fine-tuned against from-scratch accuracy
    for each number of labelled new-survey sheets, over several seeded draws of those sheets."""
    check_output(out, overwrite=overwrite, inputs=(model_dir, data), folder=True)
    model, info = persist.load(model_dir)
    name = info["model"]
    batch = SheetSet(data).read()
    batch = persist.conform(model, info, batch, str(data))
    finetunable(model, name)
    test = labelled(batch, TEST)
    result = {"model": name, "model_dir": str(model_dir), "data": str(data), "survey": batch.meta.get("survey"),
              "trained_on": (info.get("training_data") or {}).get("survey"), "test_sheets": len(test),
              "zero_shot": _score(model, test, info["threshold"]), "rows": []}
    base, thr = unwrap(model), info["threshold"]
    if "adapt_inputs" in capabilities(base):     # no labels at all: only the new data's input statistics
        adapted = copy.deepcopy(base).adapt_normalisation(unlabelled_pool(batch))
        result["zero_shot_adapted"] = _score(same_calibration(model, adapted), test, thr)
    jobs = [(n, s) for n in labels for s in seeds]
    for n, s in progress_bar(jobs, desc=f"learning curve {name}", unit="fit", disable=not progress):
        tuned, picked = finetune(model, name, batch, n, s)
        scratch = from_scratch(name, batch, picked, s)
        for how, m, t in (("finetuned", same_calibration(model, tuned), thr), ("scratch", scratch, SCRATCH_THRESHOLD)):
            result["rows"].append({"labels": len(picked), "seed": s, "how": how, **_score(m, test, t)})
    write(result, Path(out), overwrite=overwrite, inputs=(model_dir, data))
    return result


def _curve(rows, how, key):
    """(labels, mean, std) of ``key`` over seeds for one kind of model."""
    ns = sorted({r["labels"] for r in rows if r["how"] == how})
    vals = [[r[key] for r in rows if r["how"] == how and r["labels"] == n] for n in ns]
    return np.array(ns), np.array([np.mean(v) for v in vals]), np.array([np.std(v) for v in vals])


def _acc(r: dict) -> str:
    """Accuracy %, with the clean-truth accuracy in brackets where known."""
    return f"{100 * r['accuracy']:.1f}" + (f" ({100 * r['accuracy_clean']:.1f} clean)" if "accuracy_clean" in r else "")


CURVE_CSV = tuple(tables.Column(k, k) for k in ("labels", "seed", "how", "accuracy", "tpr", "tnr", "roc_auc",
                                                "accuracy_clean", "tpr_clean", "tnr_clean", "roc_auc_clean"))
_MEAN_STD = lambda ms: f"{100 * ms[0]:.1f} ± {100 * ms[1]:.1f}"      # noqa: E731
CURVE_TABLE = (tables.Column("labels", "labelled sheets", tables.whole),
               tables.Column("finetuned accuracy", "fine-tuned", _MEAN_STD),
               tables.Column("scratch accuracy", "from scratch", _MEAN_STD),
               tables.Column("finetuned accuracy_clean", "fine-tuned (clean)", _MEAN_STD),
               tables.Column("scratch accuracy_clean", "from scratch (clean)", _MEAN_STD))


def write(result: dict, out: Path, overwrite: bool = False, inputs=()) -> None:
    """learning_curve.{json,csv,md,png} into the folder ``out``, which appears complete or not at all."""
    with atomic_output(out, overwrite=overwrite, inputs=inputs, folder=True, kind="learning-curve") as tmp:
        _write_into(result, tmp)


def _write_into(result: dict, out: Path) -> None:
    rows = result["rows"]
    tables.write_json(out / "learning_curve.json", result)
    tables.write_csv(out / "learning_curve.csv", CURVE_CSV, rows)
    key = "accuracy_clean" if "accuracy_clean" in result["zero_shot"] else "accuracy"
    lines = [f"# Transfer of {result['model']} ({result['trained_on']}) to {result['survey']}", "",
             f"Test split of {result['data']}: {result['test_sheets']:,} sheets. Accuracy % against the labels "
             f"(and against the clean truth where known), mean ± std over {len({r['seed'] for r in rows})} "
             "seeded draws of the labelled sheets.", "",
             f"- zero-shot (unchanged model, its saved threshold): {_acc(result['zero_shot'])}"]
    if "zero_shot_adapted" in result:
        lines.append("- zero-shot with the input normalisation re-fitted on unlabelled new sheets: "
                     + _acc(result["zero_shot_adapted"]))
    table = []
    for i, n in enumerate(_curve(rows, "finetuned", "accuracy")[0]):
        row = {"labels": n}
        for k in ("accuracy", "accuracy_clean"):
            for how in ("finetuned", "scratch"):
                if k in rows[0]:
                    _, m, s = _curve(rows, how, k)
                    row[f"{how} {k}"] = (m[i], s[i])
        table.append(row)
    lines += [""] + tables.markdown(CURVE_TABLE, table)
    tables.write_markdown(out / "learning_curve.md", lines)
    figures.save(learning_curve_figure(result, key), out / "learning_curve.png")


def learning_curve_figure(result: dict, key: str):
    """Fine-tuned against from-scratch accuracy by the number of labelled sheets, with the
    zero-shot levels: a matplotlib Figure."""
    plt = figures.pyplot()
    fig, ax = plt.subplots(figsize=(6, 4.2), constrained_layout=True)
    for how, colour in (("finetuned", "C0"), ("scratch", "C1")):
        n, m, s = _curve(result["rows"], how, key)
        label = f"fine-tuned from {result['trained_on']}" if how == "finetuned" else "from scratch (same labels)"
        ax.errorbar(n, 100 * m, yerr=100 * s, marker="o", capsize=3, color=colour, label=label)
    ax.axhline(100 * result["zero_shot"][key], color="C2", ls="--", label="zero-shot")
    if "zero_shot_adapted" in result:
        ax.axhline(100 * result["zero_shot_adapted"][key], color="C3", ls=":",
                   label="zero-shot, normalisation re-fitted (no labels)")
    ax.set_xscale("log")
    ax.set_xlabel(f"labelled {result['survey']} sheets")
    ax.set_ylabel(f"test {key.replace('_', ' ')} %")
    ax.set_title(f"{result['model']}: {result['trained_on']} to {result['survey']}")
    ax.grid(alpha=0.3, which="both")
    ax.legend(fontsize=8)
    return fig
