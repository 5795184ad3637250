"""Triage: thresholds set on validation data, buckets, and the recall kept per object class."""

import json

import numpy as np
import pyarrow.parquet as pq
import pytest

from neoqa.cli import main
from neoqa.data.splits import TEST, split_of


@pytest.mark.parametrize("labels", ["noisy", "clean"])
def test_triage_buckets(tmp_path, zoo_run, small_neowise, small_batch, capsys, labels):
    out = tmp_path / "triage.parquet"
    assert main(["triage", "--model", str(zoo_run / "models" / "basic_sneon"), "--data", str(small_neowise),
                 "--recall", "0.97", "--labels", labels, "--out", str(out), "--json"]) == 0
    r = json.loads(capsys.readouterr().out)
    t = pq.read_table(out)
    assert t.num_rows == len(small_batch)
    buckets = np.array(t.column("bucket").to_pylist())
    p = np.array(t.column("probability").to_pylist())
    assert set(buckets) <= {"accept", "review", "reject"}
    assert np.all(p[buckets == "accept"] >= r["accept_above"]) and np.all(p[buckets == "reject"] < r["reject_below"])
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
