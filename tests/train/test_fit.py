"""Training: the labelled splits, the fit, the temperature and threshold set on the validation
split, and the saved folder a later run loads back."""

import json

import numpy as np

from neoqa.train.fit import labelled_splits, train_model


def test_unlabelled_sheets_stay_out_of_training(small_batch):
    part = small_batch.select(np.arange(300))
    part.label = part.label.copy()
    part.label[::3] = -1
    train, val = labelled_splits(part)
    assert np.all(train.label >= 0) and np.all(val.label >= 0)
    assert len(train) + len(val) < np.sum(part.label >= 0)           # the test split is left out too


def test_a_trained_model_records_what_it_was_set_on(tmp_path, small_batch):
    model, info = train_model("ridge", small_batch, tmp_path / "m")
    saved = json.loads((tmp_path / "m" / "model.json").read_text())
    assert saved["model"] == "ridge" and 0.05 <= saved["threshold"] <= 0.95
    assert saved["calibration"]["method"] == "temperature" and saved["calibration"]["temperature"] > 0
    assert saved["training_data"]["sheets"] == len(labelled_splits(small_batch)[0])
    assert saved["n_parameters"] == model.n_parameters() > 0
    # what is returned is what was saved: the calibrated model as loaded back
    _, val = labelled_splits(small_batch)
    p = model.predict_proba(val)[:, 1]
    assert np.all((p >= 0) & (p <= 1)) and info["threshold"] == saved["threshold"]
