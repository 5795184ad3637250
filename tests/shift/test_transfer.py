"""Fine-tuning on a new survey, online updates with replay, and suspect labels."""

import json

import numpy as np

from neoqa.models import persistence as persist
from neoqa.shift import transfer
from neoqa.cli import main
from neoqa.data.splits import TRAIN, split_of


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
    assert main(["finetune", "--model", str(parent), "--data", str(small_neos), "--labelled", "60", "--out", str(out)]) == 0
    tuned, info = persist.load(out)
    old, old_info = persist.load(parent)
    picked = transfer.pick_labelled(neos_batch, 60, seed=0)
    assert _logloss(tuned, picked) < _logloss(old, picked)
    assert info["finetuned_from"]["labels"] == 60 and info["training_data"]["sheets"] == 60
    assert info["threshold"] == old_info["threshold"]
    assert info["calibration"] == old_info["calibration"]


def test_finetune_refuses_models_that_cannot(tmp_path, zoo_run, small_neos):
    out = tmp_path / "ft"
    assert main(["finetune", "--model", str(zoo_run / "models" / "ridge"), "--data", str(small_neos), "--labelled", "20",
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
                 "--out", str(out), "--labelled", "10", "40", "--seeds", "1"]) == 0
    res = json.loads((out / "learning_curve.json").read_text())
    assert [(r["labels"], r["how"]) for r in res["rows"]] == [(10, "finetuned"), (10, "scratch"),
                                                              (40, "finetuned"), (40, "scratch")]
    assert 0 < res["zero_shot"]["accuracy"] < 1 and "zero_shot_adapted" in res
    assert all(0.3 < r["accuracy"] <= 1 for r in res["rows"])
    assert (out / "learning_curve.png").stat().st_size > 10_000
    assert "| 40 |" in (out / "learning_curve.md").read_text()


def test_bad_label_counts_are_one_line_errors(tmp_path, zoo_run, small_neos, capsys):
    model = str(zoo_run / "models" / "basic_sneon")
    for labels in ("abc", "1"):
        out = tmp_path / f"ft{labels}"
        assert main(["finetune", "--model", model, "--data", str(small_neos), "--labelled", labels, "--out", str(out)]) == 2
        assert not out.exists()
        err = capsys.readouterr().err.strip()
        assert err.startswith("neoqa: error:") and "\n" not in err
