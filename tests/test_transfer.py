"""Fine-tuning on a new survey, online updates with replay, and suspect labels."""

import csv
import json

import numpy as np
import pytest

from neoqa.shift import online
from neoqa.models import persistence as persist
from neoqa.models.calibration import unwrap
from neoqa.shift import transfer
from neoqa.cli import main
from neoqa.data.splits import TRAIN, fold_of, split_of
from neoqa.data.store import SheetSet


@pytest.fixture(scope="module")
def small_neos(tmp_path_factory):
    from neoqa.simulate import simulate

    out = tmp_path_factory.mktemp("ns") / "ns"
    simulate(out, 600, seed=12, survey="neosurveyor", progress=False)
    return out


@pytest.fixture(scope="module")
def neos_batch(small_neos):
    return SheetSet(small_neos).read()


def _logloss(model, batch):
    p = np.clip(model.predict_proba(batch)[:, 1], 1e-6, 1 - 1e-6)
    return float(-np.mean(batch.label * np.log(p) + (1 - batch.label) * np.log(1 - p)))


def test_pick_labelled_is_stratified_seeded_and_from_training(neos_batch):
    a = transfer.pick_labelled(neos_batch, 10, seed=1)
    assert len(a) == 10 and set(a.label) == {0, 1}
    assert (split_of(a.sheet_id) == TRAIN).all()
    assert list(a.sheet_id) == list(transfer.pick_labelled(neos_batch, 10, seed=1).sheet_id)
    assert list(a.sheet_id) != list(transfer.pick_labelled(neos_batch, 10, seed=2).sheet_id)
    assert len(transfer.pick_labelled(neos_batch, None)) == ((split_of(neos_batch.sheet_id) == TRAIN)
                                                              & (neos_batch.label >= 0)).sum()


def test_finetune_learns_the_new_sheets_and_records_its_parent(tmp_path, zoo_run, small_neos, neos_batch):
    parent = zoo_run / "models" / "basic_sneon"
    out = tmp_path / "ft"
    assert main(["finetune", "--model", str(parent), "--data", str(small_neos), "--labels", "60", "--out", str(out)]) == 0
    tuned, info = persist.load(out)
    old, old_info = persist.load(parent)
    picked = transfer.pick_labelled(neos_batch, 60, seed=0)
    assert _logloss(tuned, picked) < _logloss(old, picked)
    assert info["finetuned_from"]["labels"] == 60 and info["training_data"]["sheets"] == 60
    assert info["threshold"] == old_info["threshold"]
    assert info["calibration"] == old_info["calibration"]


def test_finetune_refuses_models_that_cannot(tmp_path, zoo_run, small_neos):
    out = tmp_path / "ft"
    assert main(["finetune", "--model", str(zoo_run / "models" / "ridge"), "--data", str(small_neos), "--labels", "20",
                 "--out", str(out)]) == 2
    assert not out.exists()


def test_gbdt_finetune_adds_trees(small_batch, neos_batch):
    from neoqa.models.registry import make

    model = make("gbdt").set_params(estimator__pipeline__clf__n_estimators=50).fit(small_batch)
    before = model.estimator_.pipeline_.steps[-1][1].booster_.num_trees()
    model.finetune(transfer.pick_labelled(neos_batch, 100), trees=20)
    assert model.estimator_.pipeline_.steps[-1][1].booster_.num_trees() == before + 20


def test_learning_curve(tmp_path, zoo_run, small_neos):
    out = tmp_path / "lc"
    assert main(["learning-curve", "--model", str(zoo_run / "models" / "basic_sneon"), "--data", str(small_neos),
                 "--out", str(out), "--labels", "10", "40", "--seeds", "1"]) == 0
    res = json.loads((out / "learning_curve.json").read_text())
    assert [(r["labels"], r["how"]) for r in res["rows"]] == [(10, "finetuned"), (10, "scratch"),
                                                              (40, "finetuned"), (40, "scratch")]
    assert 0 < res["zero_shot"]["accuracy"] < 1 and "zero_shot_adapted" in res
    assert all(0.3 < r["accuracy"] <= 1 for r in res["rows"])
    assert (out / "learning_curve.png").stat().st_size > 10_000
    assert "| 40 |" in (out / "learning_curve.md").read_text()


def test_reservoir_keeps_a_uniform_sample_per_survey(small_batch, neos_batch):
    r = online.Replay.start(small_batch, 200, seed=0)
    assert r.sheets == 200 and r.seen == ((split_of(small_batch.sheet_id) == TRAIN) & (small_batch.label >= 0)).sum()
    first_seen = r.seen
    r = r.add(neos_batch, 200, seed=0)
    assert r.sheets == 200 and r.seen == first_seen + len(neos_batch)
    assert set(r.parts) == {"neowise", "neosurveyor"}
    new = len(r.parts["neosurveyor"])
    assert np.char.startswith(r.parts["neosurveyor"].sheet_id.astype(str), "NS").all()
    expect = 200 * len(neos_batch) / r.seen
    assert abs(new - expect) < 4 * np.sqrt(expect)                   # binomial spread
    assert all(p.truth_sheet is None for p in r.parts.values())
    again = online.Replay.start(small_batch, 200, seed=0).add(neos_batch, 200, seed=0)
    assert {k: list(p.sheet_id) for k, p in again.parts.items()} == {k: list(p.sheet_id) for k, p in r.parts.items()}


def test_update_twice_continues_the_replay_buffer(tmp_path, zoo_run, small_neowise, small_neos, neos_batch,
                                                  small_batch):
    first, second = tmp_path / "u1", tmp_path / "u2"
    half = tmp_path / "half"
    from neoqa.data.store import write_dataset

    write_dataset(half, [neos_batch.select(np.arange(300))])
    assert main(["update", "--model", str(zoo_run / "models" / "basic_sneon"), "--data", str(half), "--out", str(first),
                 "--replay-from", str(small_neowise), "--replay-size", "150"]) == 0
    assert main(["update", "--model", str(first), "--data", str(small_neos), "--out", str(second),
                 "--replay-size", "150"]) == 0
    i1, i2 = (json.loads((d / "model.json").read_text())["online"] for d in (first, second))
    assert i1["updates"] == 1 and i2["updates"] == 2
    assert i2["replay_seen"] == i1["replay_seen"] + len(neos_batch)
    buf = online.Replay.load(second, i2["replay_seen"])
    assert buf.sheets == 150 and set(buf.parts) == {"neowise", "neosurveyor"}
    labels = np.concatenate([p.label for p in buf.parts.values()])
    assert set(labels) == {0, 1}
    # each survey keeps its own input statistics: NEOWISE sheets score as before the updates learnt
    # NEO Surveyor's, which got statistics of their own
    model, _ = persist.load(second)
    parent, _ = persist.load(zoo_run / "models" / "basic_sneon")
    base = unwrap(model)
    assert base.knows_survey("neosurveyor") and base.knows_survey("neowise")
    np.testing.assert_array_equal(base.norm_["img_scale"], unwrap(parent).norm_["img_scale"])
    assert not np.allclose(base.survey_norms_["neosurveyor"]["img_scale"], base.norm_["img_scale"])
    model.predict_proba(small_batch.select(np.arange(5)))


def test_stream_measures_forgetting(tmp_path, zoo_run, small_neowise, small_neos):
    out = tmp_path / "stream"
    assert main(["stream", "--model", str(zoo_run / "models" / "basic_sneon"), "--data", str(small_neos),
                 "--old-data", str(small_neowise), "--out", str(out), "--batches", "2", "--batch-size", "100",
                 "--replay-size", "200"]) == 0
    res = json.loads((out / "stream.json").read_text())
    assert len(res["rows"]) == 3 * 3
    assert set(res["forgetting"]) == set(online.VARIANTS)
    start = [r for r in res["rows"] if r["batch"] == 0]
    assert len({(r["accuracy_new"], r["accuracy_old"]) for r in start}) == 1
    assert (out / "stream.png").stat().st_size > 10_000


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
    assert main(["train", "--model", "ridge", "--data", str(pruned), "--out", str(model)]) == 0
    *_, y = _scored(model, small_neowise, str(table))
    ids = small_batch.sheet_id.astype(str)
    assert (y[np.isin(ids, list(flagged))] == -1).all()
    assert (y[~np.isin(ids, list(flagged))] == small_batch.label[~np.isin(ids, list(flagged))]).all()
    out = tmp_path / "t.parquet"
    assert main(["triage", "--model", str(model), "--data", str(small_neowise), "--labels", str(table),
                 "--out", str(out)]) == 0 and out.exists()
    assert main(["triage", "--model", str(model), "--data", str(small_neowise), "--labels", str(tmp_path / "no.csv"),
                 "--out", str(tmp_path / "t2.parquet")]) == 2


def test_bad_label_counts_are_one_line_errors(tmp_path, zoo_run, small_neos, capsys):
    model = str(zoo_run / "models" / "basic_sneon")
    for labels in ("abc", "1"):
        out = tmp_path / f"ft{labels}"
        assert main(["finetune", "--model", model, "--data", str(small_neos), "--labels", labels, "--out", str(out)]) == 2
        assert not out.exists()
        err = capsys.readouterr().err.strip()
        assert err.startswith("neoqa: error:") and "\n" not in err


def test_update_fits_a_new_survey_on_unlabelled_sheets(tmp_path, zoo_run, small_neos, neos_batch, small_neowise):
    from neoqa.features import views as features
    from neoqa.models.sets.model import _norm_of
    from neoqa.data.store import write_dataset

    half = write_dataset(tmp_path / "half", [neos_batch.select(np.arange(200))])
    out = tmp_path / "u"
    assert main(["update", "--model", str(zoo_run / "models" / "basic_sneon"), "--data", str(half), "--out", str(out),
                 "--unlabelled", str(small_neos)]) == 0
    base = persist.load(out)[0]
    base = unwrap(base)
    want = _norm_of(features.flat_sets(neos_batch))["img_scale"]
    np.testing.assert_allclose(base.survey_norms_["neosurveyor"]["img_scale"], want, rtol=1e-6)
    assert main(["update", "--model", str(zoo_run / "models" / "basic_sneon"), "--data", str(half),
                 "--out", str(tmp_path / "bad"), "--unlabelled", str(small_neowise)]) == 2
    assert not (tmp_path / "bad").exists()


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
