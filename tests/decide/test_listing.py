"""neoqa list: sheet ids to find things by, with a model's probabilities, buckets and mistakes."""

import json
import shutil

import numpy as np

from neoqa.cli import main
from neoqa.data.splits import SPLIT_NAMES, split_of
from neoqa.data.store import SheetSet


def _rows(capsys, *args):
    assert main(["list", *map(str, args), "--json"]) == 0
    return json.loads(capsys.readouterr().out)


def test_list_every_sheet_and_one_split(capsys, small_neowise):
    batch = SheetSet(small_neowise).read()
    rows = _rows(capsys, "--data", small_neowise)
    assert [r["sheet_id"] for r in rows] == list(batch.sheet_id)
    assert {r["label"] for r in rows} <= {"real", "false", "unvetted"} and rows[0]["k"] == int(batch.k[0])
    flipped = [r for r in rows if r["truth"] != r["label"]]          # simulated: the clean truth beside the label
    clean = batch.truth_sheet["clean_label"]
    assert len(flipped) == int(np.sum(clean != batch.label)) > 0
    test = _rows(capsys, "--data", small_neowise, "--split", "test")
    assert len(test) == int(np.sum(split_of(batch.sheet_id) == SPLIT_NAMES.index("test"))) > 0
    assert {r["split"] for r in test} == {"test"}
    assert main(["list", "--data", str(small_neowise), "--limit", "3"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0] == "sheet_id\tlabel\tk\tsplit\ttruth" and len(lines) == 4


def test_list_a_models_mistakes_most_confident_first(capsys, small_neowise, zoo_run):
    ridge = zoo_run / "models" / "ridge"
    thr = json.loads((ridge / "model.json").read_text())["threshold"]
    rows = _rows(capsys, "--data", small_neowise, "--model", ridge, "--errors")
    assert rows, "ridge makes some mistakes on 700 sheets"
    for r in rows:
        assert (r["probability"] >= thr) != (r["label"] == "real") and r["label"] != "unvetted"
    margins = [abs(r["probability"] - thr) for r in rows]
    assert margins == sorted(margins, reverse=True)
    every = _rows(capsys, "--data", small_neowise, "--model", ridge)
    wrong = [r for r in every if r["label"] != "unvetted" and (r["probability"] >= thr) != (r["label"] == "real")]
    assert {r["sheet_id"] for r in wrong} == {r["sheet_id"] for r in rows}


def test_list_a_bucket_of_the_saved_operating_point(capsys, tmp_path, small_neowise, zoo_run):
    model = shutil.copytree(zoo_run / "models" / "ridge", tmp_path / "ridge")
    assert main(["list", "--data", str(small_neowise), "--model", str(model), "--bucket", "review"]) == 2
    err = capsys.readouterr().err
    assert "no saved operating point" in err and len(err.strip().splitlines()) == 1
    assert main(["triage", "--model", str(model), "--data", str(small_neowise), "--recall", "0.99", "--save"]) == 0
    capsys.readouterr()
    review = _rows(capsys, "--data", small_neowise, "--model", model, "--bucket", "review")
    every = _rows(capsys, "--data", small_neowise, "--model", model)
    assert [r for r in every if r["bucket"] == "review"] == review and {r["bucket"] for r in review} == {"review"}
    assert main(["list", "--data", str(small_neowise), "--errors"]) == 2
    assert "need --model" in capsys.readouterr().err
