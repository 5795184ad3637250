"""`neoqa night CONFIG.toml`: tonight's sheets (a dataset, or a FITS-plus-tables folder ingested),
scored and triaged by the model's saved operating point, with a review queue, the accepted
sheets and a summary; a rerun resumes and skips what is done; a bad config is one line."""

import json
import shutil

import numpy as np
import pyarrow.parquet as pq
import pytest

from neoqa.cli import main

pytestmark = pytest.mark.filterwarnings("ignore")


@pytest.fixture(scope="module")
def pointed(tmp_path_factory, zoo_run, small_neowise):
    """A copy of the zoo's ridge with an operating point saved for 99% recall."""
    model = tmp_path_factory.mktemp("night") / "ridge"
    shutil.copytree(zoo_run / "models" / "ridge", model)
    assert main(["triage", "--model", str(model), "--data", str(small_neowise), "--recall", "0.99", "--save"]) == 0
    return model


def write_config(folder, text):
    path = folder / "night.toml"
    path.write_text(text)
    return path


def night_config(folder, data, model, out="o", source="data", extra=""):
    return write_config(folder, f"""# tonight
[input]
{source} = "{data}"
[model]
path = "{model}"
recall = 0.99
[output]
folder = "{out}"
{extra}""")


def test_a_night_and_its_rerun(tmp_path, pointed, small_neowise, capsys):
    cfg = night_config(tmp_path, small_neowise, pointed, out="night-1")
    assert main(["night", str(cfg), "--quiet"]) == 0
    out = tmp_path / "night-1"
    first = capsys.readouterr().out
    assert "2 of 2 parts made" in first and "night: 700 sheets" in first
    summary = json.loads((out / "night.json").read_text())
    assert summary["sheets"] == 700 and sum(summary["buckets"].values()) == 700
    assert summary["operating_point"]["target_recall"] == 0.99 and summary["model"] == "ridge"
    scores = pq.read_table(out / "scores")
    review, accepted = pq.read_table(out / "review.parquet"), pq.read_table(out / "accepted.parquet")
    assert review.num_rows == summary["buckets"]["review"] == int(np.sum(np.array(scores["bucket"]) == "review"))
    assert set(review.column("bucket").to_pylist()) <= {"review"} and set(accepted["bucket"].to_pylist()) <= {"accept"}
    p = review.column("probability").to_numpy()
    assert (np.diff(p) <= 0).all()                              # most likely real first
    assert pq.read_schema(out / "review.parquet").metadata[b"neoqa_version"]
    before = (out / "review.parquet").read_bytes()
    assert main(["night", str(cfg), "--quiet"]) == 0             # the rerun: nothing redone
    again = capsys.readouterr().out
    assert "0 of 2 parts made, 2 already done" in again and "already made from these scores" in again
    assert (out / "review.parquet").read_bytes() == before
    # another night's config on the same folder: refused, then replaced with --overwrite
    from neoqa.data.store import SheetSet

    shard = SheetSet(small_neowise).shard_paths[1]
    other = write_config(tmp_path, (tmp_path / "night.toml").read_text().replace(str(small_neowise), str(shard)))
    assert main(["night", str(other), "--quiet"]) == 2
    assert "another config (pass --overwrite" in capsys.readouterr().err and (out / "review.parquet").exists()
    assert main(["night", str(other), "--quiet", "--overwrite"]) == 0
    assert json.loads((out / "night.json").read_text())["sheets"] == 300
    wrong = write_config(tmp_path, (tmp_path / "night.toml").read_text().replace("0.99", "0.995"))
    assert main(["night", str(wrong), "--quiet"]) == 2
    assert "set for 0.99" in capsys.readouterr().err


def test_a_night_that_ingests_its_sheets(tmp_path, pointed, small_neowise, capsys):
    from neoqa.data.store import SheetSet, read_shard, write_dataset

    few = write_dataset(tmp_path / "few", [read_shard(SheetSet(small_neowise).shard_paths[0]).select(np.arange(30))])
    assert main(["export", "--data", str(few), "--out", str(tmp_path / "fits")]) == 0
    cfg = night_config(tmp_path, "fits", pointed, out="n", source="ingest", extra="[run]\nthreads = 1\n")
    assert main(["night", str(cfg), "--quiet"]) == 0
    assert "sheets: ingested" in capsys.readouterr().out
    assert len(SheetSet(tmp_path / "n" / "sheets")) == 30
    assert main(["night", str(cfg), "--quiet"]) == 0
    assert "sheets: already ingested" in capsys.readouterr().out


@pytest.mark.parametrize("text, needles", [
    ("[input]\ndata = 'd'\n[model]\npath = 'm'\nrecall = 0.99\n", ["[output] needs the field 'folder'"]),
    ("[input]\ndata = 'd'\ningest = 'f'\n[model]\npath = 'm'\nrecall = 0.99\n[output]\nfolder = 'o'\n",
     ["exactly one of 'data'"]),
    ("[inputs]\ndata = 'd'\n", ["unknown section [inputs]"]),
    ("[input]\ndata = 'd'\n[model]\npath = 'm'\nrecall = 'high'\n[output]\nfolder = 'o'\n",
     ["field 'recall' must be a number"]),
    ("[input]\ndata = 'd'\n[model]\npath = 'm'\nrecall = 1.5\n[output]\nfolder = 'o'\n", ["between 0 and 1"]),
    ("[input]\ndata = 'd'\n[model]\npath = 'm'\nrecall = 0.9\n[output]\nfolder = 'o'\n[run]\nthreads = 0\n",
     ["'threads' must be at least 1"]),
    ("[input\n", ["not valid TOML"]),
])
def test_bad_configs_are_one_line(tmp_path, capsys, text, needles):
    cfg = write_config(tmp_path, text)
    assert main(["night", str(cfg)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "night.toml" in err and all(n in err for n in needles), err
    assert not (tmp_path / "o").exists()


def test_missing_sheets_leave_no_folder(tmp_path, pointed, capsys):
    for source in ("data", "ingest"):
        cfg = night_config(tmp_path, tmp_path / "missing", pointed, source=source)
        assert main(["night", str(cfg)]) == 2
        assert "missing" in capsys.readouterr().err and not (tmp_path / "o").exists()


def test_a_model_without_a_saved_point_is_refused(tmp_path, zoo_run, small_neowise, capsys):
    cfg = night_config(tmp_path, small_neowise, zoo_run / "models" / "ridge")
    assert main(["night", str(cfg)]) == 2
    assert "no saved operating point" in capsys.readouterr().err and not (tmp_path / "o").exists()


def test_a_folder_that_is_not_a_night_is_never_touched(tmp_path, pointed, small_neowise, capsys):
    mine = tmp_path / "o"
    mine.mkdir()
    (mine / "notes.txt").write_text("mine")
    cfg = night_config(tmp_path, small_neowise, pointed)
    assert main(["night", str(cfg), "--overwrite"]) == 2
    assert "not a folder neoqa wrote" in capsys.readouterr().err
    assert [p.name for p in mine.iterdir()] == ["notes.txt"]
