"""Scoring: one Parquet part per shard with its provenance, a manifest last, reruns that skip what
is done and resume what is not."""

import json
import shutil

import numpy as np
import pyarrow.parquet as pq
import pytest

from neoqa import __version__
from neoqa.cli import main
from neoqa.data.store import SheetSet, file_digest
from neoqa.decide.score import MANIFEST, score
from neoqa.models import persistence as persist


@pytest.fixture
def sneon(tmp_path, zoo_run):
    return shutil.copytree(zoo_run / "models" / "basic_sneon", tmp_path / "sneon")


def test_score_writes_a_part_per_shard_with_its_provenance(zoo_run, small_neowise, small_batch, tmp_path, capsys):
    model = zoo_run / "models" / "basic_sneon"
    out = tmp_path / "scores"
    assert main(["score", "--model", str(model), "--data", str(small_neowise), "--out", str(out)]) == 0
    assert "scored 700 sheets in 2 parts (2 made, 0 already done; no operating point)" in capsys.readouterr().out
    shards = SheetSet(small_neowise).shard_paths
    assert sorted(p.name for p in out.glob("part-*.parquet")) == ["part-00000.parquet", "part-00001.parquet"]
    t = pq.read_table(out)                             # the folder reads as one Parquet dataset
    assert t.column_names == ["sheet_id", "probability", "decision", "bucket"]
    assert t.column("sheet_id").to_pylist() == list(small_batch.sheet_id)
    p = np.array(t.column("probability").to_pylist())
    loaded, info = persist.load(model)
    assert np.allclose(p, loaded.predict_proba(small_batch)[:, 1], atol=1e-6)
    assert np.array_equal(np.array(t.column("decision").to_pylist()), (p >= info["threshold"]).astype(int))
    assert t.column("bucket").null_count == len(small_batch)          # no operating point saved
    for i, shard in enumerate(shards):
        meta = pq.read_schema(out / f"part-{i:05d}.parquet").metadata
        assert meta[b"model_id"].decode() == persist.model_id(model)
        assert meta[b"neoqa_version"].decode() == __version__
        assert meta[b"shard_digest"].decode() == file_digest(shard)
        assert float(meta[b"threshold"]) == info["threshold"]
        assert json.loads(meta[b"operating_point"]) is None
    manifest = json.loads((out / MANIFEST).read_text())
    assert manifest["data_digest"] == SheetSet(small_neowise).digest() and manifest["sheets"] == 700
    assert [q["sheets"] for q in manifest["parts"]] == [400, 300] and manifest["model_id"] == persist.model_id(model)


def test_a_rerun_skips_finished_parts_and_resumes_the_rest(sneon, small_neowise, tmp_path):
    out = tmp_path / "scores"
    first = score(sneon, small_neowise, out, progress=False)
    reference = pq.read_table(out)
    stamps = {p.name: p.stat().st_mtime_ns for p in out.glob("part-*")}
    again = score(sneon, small_neowise, out, progress=False)
    assert (again["made"], again["skipped"]) == (0, 2)
    assert {p.name: p.stat().st_mtime_ns for p in out.glob("part-*")} == stamps         # idempotent: untouched
    # a run killed after its first part: the second part and the manifest missing
    (out / "part-00001.parquet").unlink()
    (out / MANIFEST).unlink()
    resumed = score(sneon, small_neowise, out, progress=False)
    assert (resumed["made"], resumed["skipped"]) == (1, 1)
    assert pq.read_table(out).equals(reference)
    assert {k: v for k, v in resumed.items() if k not in ("made", "skipped")} == \
        {k: v for k, v in first.items() if k not in ("made", "skipped")}
    # a truncated part (a disk that filled) is made again, not trusted
    (out / "part-00000.parquet").write_bytes((out / "part-00000.parquet").read_bytes()[:100])
    assert score(sneon, small_neowise, out, progress=False)["made"] == 1
    assert pq.read_table(out).equals(reference)


def test_scores_of_another_model_are_replaced_only_with_overwrite(sneon, zoo_run, small_neowise, tmp_path, capsys):
    out = tmp_path / "scores"
    score(sneon, small_neowise, out, progress=False)
    ridge = zoo_run / "models" / "ridge"
    before = pq.read_table(out)
    assert main(["score", "--model", str(ridge), "--data", str(small_neowise), "--out", str(out)]) == 2
    assert "scores by another model or of other data" in capsys.readouterr().err
    assert pq.read_table(out).equals(before)
    assert main(["score", "--model", str(ridge), "--data", str(small_neowise), "--out", str(out), "--overwrite"]) == 0
    assert json.loads((out / MANIFEST).read_text())["model_id"] == persist.model_id(ridge)
    assert not pq.read_table(out).equals(before)


def test_a_saved_operating_point_fills_the_bucket_column(sneon, small_neowise, tmp_path, capsys):
    assert main(["triage", "--model", str(sneon), "--data", str(small_neowise), "--recall", "0.95", "--bootstrap",
                 "20", "--save", "--out", str(tmp_path / "triage.parquet")]) == 0
    capsys.readouterr()
    out = tmp_path / "scores"
    assert main(["score", "--model", str(sneon), "--data", str(small_neowise), "--out", str(out)]) == 0
    text = capsys.readouterr().out
    scores, triaged = pq.read_table(out), pq.read_table(tmp_path / "triage.parquet")
    assert scores.column("bucket").to_pylist() == triaged.column("bucket").to_pylist()
    manifest = json.loads((out / MANIFEST).read_text())
    assert manifest["buckets"] == {b: triaged.column("bucket").to_pylist().count(b) for b in ("accept", "review",
                                                                                              "reject")}
    assert f"{manifest['buckets']['review']:,} review" in text
    # saving the point changed the model, so its id; the scores say which model made them
    assert manifest["operating_point"] == json.loads((sneon / "model.json").read_text())["operating_point"]


@pytest.mark.parametrize("kind", ["ridge", "basic_sneon"])
def test_shards_scored_on_threads_of_their_own_give_the_same_parts(kind, zoo_run, small_neowise, tmp_path,
                                                                     monkeypatch):
    from neoqa import threads

    model = zoo_run / "models" / kind
    tables = {}
    for n in (1, 2, 3):            # one after the other; a shard per thread; more threads than shards
        monkeypatch.setattr(threads, "_budget", n)
        score(model, small_neowise, tmp_path / str(n), progress=False)
        tables[n] = [pq.read_table(p) for p in sorted((tmp_path / str(n)).glob("part-*.parquet"))]
    assert len(tables[1]) == 2
    for n in (2, 3):
        assert all(a.equals(b) for a, b in zip(tables[1], tables[n], strict=True))
