"""Online learning: updates with a replay buffer kept per survey, streams and forgetting."""

import json

import numpy as np

from neoqa.shift import online
from neoqa.models import persistence as persist
from neoqa.models.calibration import unwrap
from neoqa.cli import main
from neoqa.data.splits import TRAIN, split_of


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
                 "--replay-data", str(small_neowise), "--replay-size", "150"]) == 0
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


def test_update_fits_a_new_survey_on_unlabelled_sheets(tmp_path, zoo_run, small_neos, neos_batch, small_neowise):
    from neoqa.features import views as features
    from neoqa.models.sets.model import _norm_of
    from neoqa.data.store import write_dataset

    half = write_dataset(tmp_path / "half", [neos_batch.select(np.arange(200))])
    out = tmp_path / "u"
    assert main(["update", "--model", str(zoo_run / "models" / "basic_sneon"), "--data", str(half), "--out", str(out),
                 "--unlabelled-data", str(small_neos)]) == 0
    base = persist.load(out)[0]
    base = unwrap(base)
    want = _norm_of(features.flat_sets(neos_batch))["img_scale"]
    np.testing.assert_allclose(base.survey_norms_["neosurveyor"]["img_scale"], want, rtol=1e-6)
    assert main(["update", "--model", str(zoo_run / "models" / "basic_sneon"), "--data", str(half),
                 "--out", str(tmp_path / "bad"), "--unlabelled-data", str(small_neowise)]) == 2
    assert not (tmp_path / "bad").exists()
