"""Suspect labels: cross-validated confident learning, pruning, and thresholds without the flagged sheets."""

import csv
import json

import numpy as np

from neoqa.cli import main
from neoqa.data.splits import fold_of, split_of
from neoqa.data.store import SheetSet


def test_fold_of_is_balanced_and_independent_of_split(small_batch):
    f = fold_of(small_batch.sheet_id, 5)
    assert set(f) == set(range(5)) and np.bincount(f).min() > 0.6 * len(f) / 5
    np.testing.assert_array_equal(f, fold_of(small_batch.sheet_id, 5))
    s = split_of(small_batch.sheet_id)
    assert len(set(zip(f, s))) == 15                                  # every fold meets every split


def test_suspects_find_the_flipped_labels(tmp_path, small_neowise, small_batch):
    out = tmp_path / "s" / "suspects.csv"
    assert main(["suspects", "--data", str(small_neowise), "--out", str(out)]) == 0
    rows = list(csv.DictReader(out.open()))
    assert [int(r["rank"]) for r in rows] == list(range(1, len(small_batch) + 1))
    wrong = np.array([int(r["label_wrong_in_truth"]) for r in rows])
    base = wrong.mean()
    summary = json.loads(out.with_suffix(".json").read_text())["against_truth"]
    assert summary["wrong_labels"] == (small_batch.label != small_batch.truth_sheet["clean_label"]).sum()
    assert summary["average_precision"] > 10 * base
    assert wrong[:10].mean() > 0.5                    # the top of the ranking is mostly truly wrong labels
    assert main(["suspects", "--data", str(small_neowise), "--out", str(tmp_path / "s.txt")]) == 2


def test_pruned_labels_feed_training_and_triage(tmp_path, small_neowise, small_batch):
    table, pruned = tmp_path / "suspects.csv", tmp_path / "pruned"
    assert main(["suspects", "--data", str(small_neowise), "--out", str(table), "--prune", str(pruned)]) == 0
    flagged = {r["sheet_id"] for r in csv.DictReader(table.open()) if r["flagged"] == "1"}
    kept = SheetSet(pruned).read()
    assert len(kept) == len(small_batch) - len(flagged) and not flagged & set(kept.sheet_id.astype(str))
    wrong_before = np.mean(small_batch.label != small_batch.truth_sheet["clean_label"])
    assert np.mean(kept.label != kept.truth_sheet["clean_label"]) < wrong_before / 2
    assert SheetSet(pruned).meta["provenance"]["pruned"]["removed"] == len(flagged)
    # thresholds set on the labels less the flagged sheets
    from neoqa.evaluate.thresholds import scored as _scored

    model = tmp_path / "m"
    assert main(["train", "--kind", "ridge", "--data", str(pruned), "--out", str(model)]) == 0
    *_, y = _scored(model, small_neowise, str(table))
    ids = small_batch.sheet_id.astype(str)
    assert (y[np.isin(ids, list(flagged))] == -1).all()
    assert (y[~np.isin(ids, list(flagged))] == small_batch.label[~np.isin(ids, list(flagged))]).all()
    out = tmp_path / "t.parquet"
    assert main(["triage", "--model", str(model), "--data", str(small_neowise), "--labels", str(table),
                 "--recall", "0.995", "--out", str(out)]) == 0 and out.exists()
    assert main(["triage", "--model", str(model), "--data", str(small_neowise), "--labels", str(tmp_path / "no.csv"),
                 "--recall", "0.995", "--out", str(tmp_path / "t2.parquet")]) == 2


def test_ranking_suspects_starts_no_processes(monkeypatch):
    """Confident learning runs in-process: a Pool forked beside live thread pools can deadlock
    (a CI run once hung there)."""
    import multiprocessing

    from neoqa.shift.suspects import rank_suspects

    def refuse(*a, **k):
        raise AssertionError("rank_suspects started a process pool")

    monkeypatch.setattr(multiprocessing, "Pool", refuse)
    rng = np.random.default_rng(0)
    labels = (rng.random(3000) < 0.25).astype(int)
    p = np.clip(np.where(labels == 1, 0.9, 0.1) + rng.normal(0, 0.05, 3000), 0.01, 0.99)
    p[:30] = 1 - p[:30]                                    # 30 labels the scores disagree with
    got = rank_suspects(labels, p)
    assert set(got["order"][:30]) == set(range(30))
    assert got["flagged"][:30].sum() >= 15 and got["flagged"][30:].sum() <= 10
