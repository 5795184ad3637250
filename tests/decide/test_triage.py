"""Triage: an operating point set on labelled data, saved in the model, and applied to unlabelled
sheets; buckets, and the recall kept per object class."""

import dataclasses
import json
import shutil

import numpy as np
import pyarrow.parquet as pq
import pytest

from neoqa.cli import main
from neoqa.data.splits import TEST, split_of
from neoqa.data.store import SheetSet, write_dataset
from neoqa.models import persistence as persist
from neoqa.simulate import SimConfig, simulate_batch


@pytest.fixture
def sneon(tmp_path, zoo_run):
    """A copy of the zoo's Basic SNEON (``--save`` writes into its folder)."""
    return shutil.copytree(zoo_run / "models" / "basic_sneon", tmp_path / "sneon")


@pytest.fixture(scope="module")
def tonight(tmp_path_factory):
    """Another night's sheets, as a survey has them: other seeds, no labels, no truth."""
    batch = simulate_batch(SimConfig(), 300, seed=99)
    batch = dataclasses.replace(batch, label=np.full(len(batch), -1, np.int8), truth_sheet=None, truth_obs=None)
    return write_dataset(tmp_path_factory.mktemp("night") / "tonight", [batch])


def run(capsys, *args):
    code = main([str(a) for a in args])
    cap = capsys.readouterr()
    return code, (json.loads(cap.out) if code == 0 and "--json" in args else cap.out), cap.err


@pytest.mark.parametrize("labels", ["noisy", "clean"])
def test_triage_buckets(tmp_path, zoo_run, small_neowise, small_batch, capsys, labels):
    out = tmp_path / "triage.parquet"
    code, r, _ = run(capsys, "triage", "--model", zoo_run / "models" / "basic_sneon", "--data", small_neowise,
                     "--recall", "0.97", "--labels", labels, "--bootstrap", "50", "--out", out, "--json")
    assert code == 0
    op = r["operating_point"]
    assert op["target_recall"] == op["target_precision"] == 0.97 and op["set_on"]["labels"] == labels
    assert op["reject_below"] <= op["accept_above"]
    for key in ("accept_above", "reject_below"):
        lo, hi = op[f"{key}_ci95"]
        assert lo <= hi
    t = pq.read_table(out)
    assert t.num_rows == len(small_batch) and t.column_names == ["sheet_id", "split", "probability", "bucket"]
    buckets = np.array(t.column("bucket").to_pylist())
    p = np.array(t.column("probability").to_pylist())
    assert set(buckets) <= {"accept", "review", "reject"}
    assert np.all(p[buckets == "accept"] >= op["accept_above"]) and np.all(p[buckets == "reject"] < op["reject_below"])
    assert {k: int(np.sum(buckets == k)) for k in ("accept", "review", "reject")} == r["buckets"]
    meta = t.schema.metadata
    assert json.loads(meta[b"operating_point"]) == op and meta[b"model_id"].decode() == r["model_id"]
    rep = r["test"]
    assert sum(rep[b]["sheets"] for b in ("accept", "review", "reject")) == rep["sheets"]
    assert rep["human_load"] == pytest.approx(rep["review"]["sheets"] / rep["sheets"])
    # with truth, the recall kept out of the reject bucket for real NEOs and main-belt objects apart
    by = r["test_clean"]["recall_outside_reject_by_class"]
    assert set(by) == {"mba", "neo"} and all(0 <= v <= 1 for v in by.values())
    test = (split_of(small_batch.sheet_id) == TEST) & (small_batch.label >= 0)
    real_neo = test & (small_batch.truth_sheet["clean_label"] == 1) & (small_batch.truth_sheet["object_class"] == 2)
    kept = buckets[real_neo] != "reject"
    assert by["neo"] == pytest.approx(kept.mean())
    # the model folder is not touched without --save
    assert "operating_point" not in json.loads((zoo_run / "models" / "basic_sneon" / "model.json").read_text())


def test_a_saved_operating_point_triages_another_nights_unlabelled_sheets(tmp_path, sneon, small_neowise, tonight,
                                                                          capsys):
    code, r, _ = run(capsys, "triage", "--model", sneon, "--data", small_neowise, "--recall", "0.95",
                     "--precision", "0.9", "--bootstrap", "50", "--save", "--json")
    assert code == 0 and r["saved_in"] == str(sneon / "model.json")
    saved = json.loads((sneon / "model.json").read_text())["operating_point"]
    assert saved == r["operating_point"] and saved["target_precision"] == 0.9
    assert saved["set_on"]["data_digest"] == SheetSet(small_neowise).digest()
    # tonight: no labels; the saved point buckets every sheet, and nothing is judged
    out = tmp_path / "tonight.parquet"
    code, night, _ = run(capsys, "triage", "--model", sneon, "--data", tonight, "--out", out, "--json")
    assert code == 0 and night["operating_point"] == saved and night["sheets"] == 300
    assert "test" not in night and "labelled" not in night
    t = pq.read_table(out)
    p, b = np.array(t.column("probability").to_pylist()), np.array(t.column("bucket").to_pylist())
    expect = np.where(p >= saved["accept_above"], "accept", np.where(p >= saved["reject_below"], "review", "reject"))
    assert np.array_equal(b, expect) and len(set(b)) >= 2
    # the Python API agrees: a loaded model carries its threshold and operating point
    model, info = persist.load(sneon)
    batch = SheetSet(tonight).read()
    assert np.array_equal(np.array(["accept", "review", "reject"])[model.triage(batch)], b)
    assert np.allclose(model.predict_proba(batch)[:, 1], p)
    assert np.array_equal(model.predict(batch), (p >= info["threshold"]).astype(np.int8))
    # the terminal summary names the point and where it was set
    code, text, _ = run(capsys, "triage", "--model", sneon, "--data", tonight, "--out", tmp_path / "again.parquet")
    assert code == 0 and f"accept p >= {saved['accept_above']:.4f}" in text and "300 sheets" in text


def test_predict_uses_the_saved_threshold(tmp_path, sneon, small_batch):
    model, info = persist.load(sneon)
    p = model.predict_proba(small_batch)[:, 1]
    cut = float(np.quantile(p, 0.8))                   # a threshold well away from 0.5
    doc = json.loads((sneon / "model.json").read_text())
    doc["threshold"] = cut
    (sneon / "model.json").write_text(json.dumps(doc))
    model, _ = persist.load(sneon)
    assert model.threshold == cut
    assert np.array_equal(model.predict(small_batch), (p >= cut).astype(np.int8))
    assert model.predict(small_batch).sum() < (p >= 0.5).sum()


def test_triage_without_a_point_or_labels_is_a_clear_error(tmp_path, sneon, tonight, capsys):
    code, _, err = run(capsys, "triage", "--model", sneon, "--data", tonight, "--out", tmp_path / "t.parquet")
    assert code == 2 and "no saved operating point" in err and "--recall R --save" in err
    code, _, err = run(capsys, "triage", "--model", sneon, "--data", tonight, "--recall", "0.9", "--save")
    assert code == 2 and "no labelled real sheets in the validation split" in err
    assert "operating_point" not in json.loads((sneon / "model.json").read_text())
    code, _, err = run(capsys, "triage", "--model", sneon, "--data", tonight, "--save")
    assert code == 2 and "give --recall R" in err
    assert not (tmp_path / "t.parquet").exists()


@pytest.mark.parametrize("change, needle", [
    ({"accept_above": 1.5}, "operating_point.accept_above"),
    ({"reject_below": "0.2"}, "operating_point.reject_below"),
    ({"reject_below": 0.9, "accept_above": 0.1}, "reject_below' is above accept_above"),
    ({"accept_above_ci95": [0.1]}, "operating_point.accept_above_ci95"),
    ({"set_on": "x"}, "operating_point.set_on"),
])
def test_a_broken_saved_point_is_refused(sneon, tonight, tmp_path, capsys, change, needle):
    doc = json.loads((sneon / "model.json").read_text())
    doc["operating_point"] = {"accept_above": 0.8, "reject_below": 0.2, "target_recall": 0.99,
                              "target_precision": 0.99, **change}
    (sneon / "model.json").write_text(json.dumps(doc))
    code, _, err = run(capsys, "triage", "--model", sneon, "--data", tonight, "--out", tmp_path / "t.parquet")
    assert code == 2 and needle in err and "model.json" in err and "Traceback" not in err
