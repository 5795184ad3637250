"""Online learning: update a saved model from each new labelled batch without forgetting.

An update fine-tunes the model (``finetune``: more steps for a set network, pulled towards
its current weights; more trees for gbdt) on the new batch mixed with a replay buffer, a
uniform reservoir sample of every labelled sheet the model has learnt from. The buffer
lives in the model folder (``replay/``, a neoqa dataset) with its count of sheets seen, so
each update continues the reservoir where the last one stopped.
"""

from __future__ import annotations

import copy
import dataclasses
from pathlib import Path

import numpy as np

from neoqa import figures
from neoqa.models import persistence as persist
from neoqa.models.base import capabilities
from neoqa.models.calibration import same_calibration, unwrap
from neoqa.errors import NeoqaError
from neoqa.evaluate import tables
from neoqa.evaluate.metrics import rates_against_truth
from neoqa.data.sheets import SheetBatch
from neoqa.data.splits import TEST, TRAIN, labelled, labelled_rows
from neoqa.outputs import atomic_output, check_output, confined
from neoqa.data.store import SheetSet, write_dataset
from neoqa.shift.transfer import finetunable
from neoqa.progress import progress_bar

REPLAY_DIR = "replay"
REPLAY_SIZE = 2000


@dataclasses.dataclass
class Replay:
    """A reservoir sample of the labelled sheets seen so far, kept per survey (each survey's sheets
    are normalised with that survey's statistics)."""

    parts: dict          # survey -> SheetBatch
    seen: int

    @classmethod
    def start(cls, batch: SheetBatch, size: int, seed: int) -> "Replay":
        """A buffer holding a uniform sample of ``batch``'s labelled training sheets."""
        idx = labelled_rows(batch, TRAIN)
        keep = np.sort(np.random.default_rng([seed, 1]).choice(idx, min(size, len(idx)), replace=False))
        return cls({_survey(batch): _plain(batch.select(keep))} if len(keep) else {}, len(idx))

    @property
    def sheets(self) -> int:
        return sum(len(p) for p in self.parts.values())

    def add(self, batch: SheetBatch, size: int, seed: int) -> "Replay":
        """Reservoir sampling (Vitter's algorithm R): every sheet ever seen stays with probability size / seen."""
        rng = np.random.default_rng([seed, self.seen])
        ids = batch.sheet_id.astype(str)
        # a sheet sent again (perhaps relabelled) drops its old copy
        parts = {sv: p.select(np.flatnonzero(~np.isin(p.sheet_id.astype(str), ids))) for sv, p in self.parts.items()}
        pool = [(sv, i) for sv, p in parts.items() for i in range(len(p))]
        for i in range(len(batch)):
            if len(pool) < size:
                pool.append((None, i))
            else:
                j = int(rng.integers(0, self.seen + i + 1))
                if j < size:
                    pool[j] = (None, i)
        out = {}
        for sv, p in parts.items():
            keep = [i for src, i in pool if src == sv]
            if keep:
                out[sv] = p.select(keep)
        new = [i for src, i in pool if src is None]
        if new:
            key, part = _survey(batch), _plain(batch).select(new)
            out[key] = SheetBatch.concat([out[key], part]) if key in out else part
        return Replay(out, self.seen + len(batch))

    def save(self, folder: Path) -> None:
        for i, part in enumerate(self.parts.values()):
            write_dataset(folder / REPLAY_DIR / f"part-{i}", [part])

    @classmethod
    def load(cls, folder: Path, seen: int) -> "Replay":
        parts = {}
        where = folder / REPLAY_DIR
        for d in sorted(p for p in where.iterdir() if p.is_dir()):
            part = SheetSet(confined(where, d.name, f"{where}: replay part"))    # no link leads outside
            part = part.read()
            parts[_survey(part)] = part
        return cls(parts, seen)


def _survey(batch: SheetBatch) -> str:
    return batch.meta.get("survey") or "unknown"


def _plain(batch: SheetBatch) -> SheetBatch:
    """Without simulation truth: a buffer may mix simulated and real sheets."""
    return dataclasses.replace(batch, truth_sheet=None, truth_obs=None,
                               meta={**batch.meta, "provenance": {"generator": "neoqa.shift.online"}})


def labelled_sheets(batch: SheetBatch) -> SheetBatch:
    out = batch.select(np.flatnonzero(batch.label >= 0))
    if len(out) == 0 or len(np.unique(out.label)) < 2:
        raise NeoqaError("an update needs labelled sheets of both classes")
    return out


def update(model, name: str, batch: SheetBatch, replay: Replay | None, size: int = REPLAY_SIZE, seed: int = 0,
           unlabelled: SheetBatch | None = None, **finetune):
    """(the updated copy of ``model``'s base, the new replay buffer or None) after learning ``batch``.

    A set network meeting a survey for the first time first fits that survey's input statistics
    on ``unlabelled`` sheets of it (labels unused), else on the batch; it keeps every earlier
    survey's for their sheets."""
    base = copy.deepcopy(finetunable(model, name))
    new = labelled_sheets(batch)
    parts = [new] + (list(replay.parts.values()) if replay is not None else [])
    if unlabelled is not None and _survey(unlabelled) != _survey(batch):
        raise NeoqaError(f"the unlabelled sheets are of survey {_survey(unlabelled)!r}, the batch of {_survey(batch)!r}")
    if "adapt_inputs" in capabilities(base) and not base.knows_survey(batch.meta.get("survey")):
        base.adapt_normalisation(unlabelled if unlabelled is not None else batch)
    base.finetune(parts, seed=seed, **finetune)
    return base, (replay.add(new, size, seed) if replay is not None else None)


def update_path(model_dir, data, out, replay_from=None, size: int = REPLAY_SIZE, seed: int = 0,
                unlabelled=None, overwrite: bool = False) -> dict:
    if size < 1:
        raise NeoqaError(f"--replay-size must be at least 1 (got {size})")
    inputs = (model_dir, data, replay_from, unlabelled)
    check_output(out, overwrite=overwrite, inputs=inputs, folder=True)
    model, info = persist.load(model_dir)
    ds = SheetSet(data)
    batch = persist.conform(model, info, ds.read(), str(data))
    state = info.get("online", {"updates": 0})
    fields = ("updates", "replay_seen") if (Path(model_dir) / REPLAY_DIR).exists() else ("updates",)
    if not isinstance(state, dict) or not all(isinstance(state.get(k), int) and state[k] >= 0 for k in fields):
        raise NeoqaError(f"{Path(model_dir) / persist.MODEL_JSON}: field 'online' must hold whole numbers "
                         f"{', '.join(fields)}")
    if (Path(model_dir) / REPLAY_DIR).exists():
        replay = Replay.load(Path(model_dir), int(state["replay_seen"]))
    elif replay_from is not None:
        replay = Replay.start(SheetSet(replay_from).read(), size, seed)
    else:
        replay = Replay({}, 0)
    pool = SheetSet(unlabelled).read() if unlabelled is not None else None
    base, replay = update(model, info["model"], batch, replay, size, seed, unlabelled=pool)
    state = {"updates": int(state["updates"]) + 1, "replay_seen": replay.seen, "replay_sheets": replay.sheets}
    extra = {"seed": seed, "n_parameters": int(base.n_parameters()), "calibration": info.get("calibration"),
             "online": state, "updated_from": str(model_dir)}
    persist.save(base, out, info["model"], info["threshold"], labelled_sheets(batch), extra=extra, attach=replay.save,
                 overwrite=overwrite, inputs=inputs, source=ds.source())
    return state


# ---------------------------------------------------------------- the stream experiment
def _accuracy(model, test, threshold) -> float:
    """Against the clean truth where the data has it, else the labels."""
    r = rates_against_truth(test, model.predict_proba(test)[:, 1], threshold)
    return r.get("accuracy_clean", r["accuracy"])


VARIANTS = {"replay": "replay buffer + weight anchor", "anchor": "weight anchor only", "naive": "plain fine-tuning"}


def stream(model_dir, new_data, old_data, out, batches: int = 5, batch_size: int = 500, size: int = REPLAY_SIZE,
           seed: int = 0, progress: bool = True, overwrite: bool = False) -> dict:
    """Feed the new survey's labelled training sheets as a stream of batches to three learners
    (replay, anchor only, plain) and track test accuracy on both surveys after every update."""
    if batches < 1 or batch_size < 2:
        raise NeoqaError("a stream needs at least 1 batch of at least 2 sheets")
    if size < 1:
        raise NeoqaError(f"--replay-size must be at least 1 (got {size})")
    inputs = (model_dir, new_data, old_data)
    check_output(out, overwrite=overwrite, inputs=inputs, folder=True)
    model, info = persist.load(model_dir)
    name, thr = info["model"], info["threshold"]
    new, old = SheetSet(new_data).read(), SheetSet(old_data).read()
    new, old = (persist.conform(model, info, b, str(where)) for b, where in ((new, new_data), (old, old_data)))
    finetunable(model, name)
    tests = {"new": labelled(new, TEST), "old": labelled(old, TEST)}
    pool = labelled_rows(new, TRAIN)
    order = np.random.default_rng([seed, 2]).permutation(pool)[:batches * batch_size]
    chunks = [new.select(np.sort(order[i:i + batch_size])) for i in range(0, len(order), batch_size)]
    start = {k: _accuracy(model, t, thr) for k, t in tests.items()}
    rows = [{"variant": v, "batch": 0, "sheets_seen": 0, **{f"accuracy_{k}": a for k, a in start.items()}}
            for v in VARIANTS]
    bar = progress_bar(total=len(VARIANTS) * len(chunks), desc=f"online {name}", unit="update", disable=not progress)
    for variant in VARIANTS:
        current = unwrap(model)
        replay = Replay.start(old, size, seed) if variant == "replay" else None
        for i, chunk in enumerate(chunks, 1):
            current, replay = update(current, name, chunk, replay, size, seed + i,
                                     **({"anchor": 0.0} if variant == "naive" else {}))
            scorer = same_calibration(model, current)
            rows.append({"variant": variant, "batch": i, "sheets_seen": i * batch_size,
                         **{f"accuracy_{k}": _accuracy(scorer, t, thr) for k, t in tests.items()}})
            bar.update()
    bar.close()
    result = {"model": name, "new_data": str(new_data), "old_data": str(old_data),
              "new_survey": new.meta.get("survey"), "old_survey": old.meta.get("survey"), "batch_size": batch_size,
              "replay_size": size, "seed": seed, "truth": "clean" if new.truth_sheet is not None else "labels",
              "rows": rows, "forgetting": {}}
    for v in VARIANTS:
        acc = [r["accuracy_old"] for r in rows if r["variant"] == v]
        result["forgetting"][v] = {"max_drop": float(acc[0] - min(acc[1:])), "final_drop": float(acc[0] - acc[-1]),
                                   "new_gain": float([r["accuracy_new"] for r in rows if r["variant"] == v][-1]
                                                     - start["new"])}
    write_stream(result, Path(out), overwrite=overwrite, inputs=inputs)
    return result


def write_stream(result: dict, out: Path, overwrite: bool = False, inputs=()) -> None:
    """stream.{json,csv,md,png} into the folder ``out``, which appears complete or not at all."""
    with atomic_output(out, overwrite=overwrite, inputs=inputs, folder=True, kind="stream") as tmp:
        _write_into(result, tmp)


STREAM_CSV = tuple(tables.Column(k, k) for k in ("variant", "batch", "sheets_seen", "accuracy_new", "accuracy_old"))


def _write_into(result: dict, out: Path) -> None:
    tables.write_json(out / "stream.json", result)
    tables.write_csv(out / "stream.csv", STREAM_CSV, result["rows"])
    rows = result["rows"]
    n = max(r["batch"] for r in rows)
    lines = [f"# Online learning: {result['model']} from {result['old_survey']} to {result['new_survey']}", "",
             f"{n} batches of {result['batch_size']} labelled {result['new_survey']} sheets; replay buffer of "
             f"{result['replay_size']} sheets. Test accuracy % ({result['truth']}) on each survey after each update.",
             ""]
    columns = ([tables.Column("learner", "learner")]
               + [tables.Column(i, f"after {i}", tables.percent()) for i in range(n + 1)]
               + [tables.Column("forgetting", "forgetting (max drop)", tables.percent())])
    table = []
    for v, title in VARIANTS.items():
        sub = [r for r in rows if r["variant"] == v]
        table.append({"learner": f"{title}: {result['new_survey']}", **{r["batch"]: r["accuracy_new"] for r in sub}})
        table.append({"learner": f"{title}: {result['old_survey']}", **{r["batch"]: r["accuracy_old"] for r in sub},
                      "forgetting": result["forgetting"][v]["max_drop"]})
    tables.write_markdown(out / "stream.md", lines + tables.markdown(columns, table))
    figures.save(stream_figure(result), out / "stream.png")


def stream_figure(result: dict):
    """Each learner's accuracy on the new and the old survey as batches arrive: a matplotlib Figure."""
    rows = result["rows"]
    plt = figures.pyplot()
    fig, axes = plt.subplots(1, 2, figsize=(10, 3.8), constrained_layout=True)
    for ax, key, survey in ((axes[0], "accuracy_new", result["new_survey"]),
                            (axes[1], "accuracy_old", result["old_survey"])):
        for v, title in VARIANTS.items():
            sub = [r for r in rows if r["variant"] == v]
            ax.plot([r["sheets_seen"] for r in sub], [100 * r[key] for r in sub], marker="o", label=title)
        ax.set_title(f"{survey} test accuracy ({result['truth']})")
        ax.set_xlabel(f"labelled {result['new_survey']} sheets learnt")
        ax.set_ylabel("accuracy %")
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize=8)
    fig.suptitle(f"Online learning of {result['model']}: new survey gained, old survey kept")
    return fig
