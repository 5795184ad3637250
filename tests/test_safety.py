"""Bad input and abuse, as a careless or hostile user would try it, across every verb and file kind.

Each case asserts: exit status 2, one line on stderr naming the file or argument and the field,
no traceback, no output left behind (not even a hidden partial) and every input unchanged.
"""

import builtins
import hashlib
import io
import json
import os
import re
import shutil
from pathlib import Path

import h5py
import numpy as np
import pyarrow.parquet as pq
import pytest

from neoqa.cli import main
from neoqa.outputs import MARKER, confined, safe_name

pytestmark = pytest.mark.filterwarnings("ignore")

BAR = re.compile(r"\d+%\|.*\| *\d+/\d+ \[")        # a tqdm progress line (closed before the error)


# ------------------------------------------------------------------ fixtures
@pytest.fixture(scope="module")
def originals(tmp_path_factory, zoo_run):
    """A tiny dataset, its export, and the zoo run's saved ridge and Basic SNEON models."""
    from neoqa.ingest.layout import export
    from neoqa.simulate import simulate

    root = tmp_path_factory.mktemp("orig")
    simulate(root / "tiny", 40, seed=3, progress=False)
    export(root / "tiny", root / "tiny-export")
    return {"data": root / "tiny", "export": root / "tiny-export", "ridge": zoo_run / "models" / "ridge",
            "sneon": zoo_run / "models" / "basic_sneon"}


class Env:
    def __init__(self, tmp: Path, originals: dict):
        self.tmp, self.originals = tmp, originals

    def copy(self, what: str, name: str | None = None) -> Path:
        dst = self.tmp / (name or what)
        shutil.copytree(self.originals[what], dst)
        return dst

    def shard(self, data: Path) -> Path:
        return sorted(data.glob("shard-*.h5"))[0]


@pytest.fixture
def env(tmp_path, originals):
    return Env(tmp_path, originals)


def digest(path: Path) -> dict:
    path = Path(path)
    if not path.exists():
        return {}
    if path.is_file():
        return {"": hashlib.sha256(path.read_bytes()).hexdigest()}
    return {str(p.relative_to(path)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(path.rglob("*")) if p.is_file()}


def cli(capsys, *args):
    try:
        rc = main([str(a) for a in args])
    except SystemExit as e:                       # argparse
        rc = e.code
    cap = capsys.readouterr()
    return rc, cap.out, cap.err


def refused(capsys, args, needles, absent=(), unchanged=()):
    """Run; assert exit 2, one line holding every needle, nothing left, inputs untouched."""
    before = {str(p): digest(p) for p in unchanged}
    rc, _, err = cli(capsys, *args)
    lines = [line for line in err.splitlines() if line.strip() and not BAR.search(line)]
    assert rc == 2, err
    assert len(lines) == 1, err
    assert "Traceback" not in err
    for needle in needles:
        assert str(needle) in lines[0], lines[0]
    for p in absent:
        p = Path(p)
        assert not p.exists(), f"{p} was left behind"
        assert not list(p.parent.glob(f".{p.name}.*.partial")), f"a partial of {p} was left behind"
    for p in unchanged:
        assert digest(p) == before[str(p)], f"{p} changed"
    return lines[0]


def set_dataset(shard: Path, key: str, values) -> None:
    with h5py.File(shard, "r+") as f:
        del f[key]
        f.create_dataset(key, data=values)


def set_meta(shard: Path, **changes) -> None:
    with h5py.File(shard, "r+") as f:
        meta = json.loads(f.attrs["meta"])
        meta.update(changes)
        f.attrs["meta"] = json.dumps(meta)


def edit_json(path: Path, fn) -> None:
    doc = json.loads(path.read_text())
    fn(doc)                                        # edits in place
    path.write_text(json.dumps(doc))


# ------------------------------------------------------------------ arguments
ARGUMENT_CASES = [
    (["threshold", "--model", "M", "--data", "D", "--recall", "1.5"], ["--recall", "(0, 1]"]),
    (["threshold", "--model", "M", "--data", "D", "--recall", "0"], ["--recall", "(0, 1]"]),
    (["threshold", "--model", "M", "--data", "D", "--recall", "nan"], ["--recall", "finite"]),
    (["threshold", "--model", "M", "--data", "D", "--recall", "0.9", "--bootstrap", "0"], ["--bootstrap"]),
    (["triage", "--model", "M", "--data", "D", "--out", "t.parquet", "--precision", "-0.1"], ["--precision"]),
    (["triage", "--model", "M", "--data", "D", "--out", "t.parquet", "--recall", "2"], ["--recall"]),
    (["simulate", "--label-noise", "-0.1", "--out", "x"], ["--label-noise", "[0, 1]"]),
    (["simulate", "--label-noise", "0.7", "--sheets", "5", "--out", "x"], ["--label-noise", "0.5"]),
    (["simulate", "--positive-fraction", "1.5", "--out", "x"], ["--positive-fraction"]),
    (["simulate", "--positive-fraction", "0", "--sheets", "5", "--out", "x"], ["--positive-fraction"]),
    (["simulate", "--workers", "0", "--out", "x"], ["--workers", "at least 1"]),
    (["simulate", "--sheets", "2.5", "--out", "x"], ["--sheets", "whole number"]),
    (["simulate", "--sheets", "-3", "--out", "x"], ["--sheets", "at least 1"]),
    (["simulate", "--seed", "abc", "--out", "x"], ["--seed", "whole number"]),
    (["simulate", "--survey", "hubble", "--out", "x"], ["--survey"]),
    (["update", "--model", "M", "--data", "D", "--out", "o", "--replay-size", "-4"], ["--replay-size"]),
    (["explain", "--model", "M", "--data", "D", "--all", "--out", "o", "--limit", "-3"], ["--limit"]),
    (["explain", "--model", "M", "--data", "D", "--sheet", "x", "--out", "o.png", "--samples", "0"], ["--samples"]),
    (["robustness", "--model", "M", "--data", "D", "--out", "o", "--sheets", "0"], ["--sheets"]),
    (["stream", "--model", "M", "--data", "D", "--old-data", "D", "--out", "o", "--batches", "0"], ["--batches"]),
    (["suspects", "--data", "D", "--out", "s.csv", "--folds", "0"], ["--folds"]),
    (["learning-curve", "--model", "M", "--data", "D", "--out", "o", "--seeds", "0"], ["--seeds"]),
    (["main", "--workers", "-1"], ["--workers"]),
    (["train", "--kind", "ridge", "--data", "D"], ["--out", "required"]),
    (["nosuchverb"], ["invalid choice"]),
]


@pytest.mark.parametrize("args, needles", ARGUMENT_CASES, ids=[" ".join(a[:3]) + f"-{i}" for i, (a, _) in
                                                                enumerate(ARGUMENT_CASES)])
def test_bad_arguments(capsys, tmp_path, monkeypatch, args, needles):
    monkeypatch.chdir(tmp_path)
    refused(capsys, args, needles, absent=[tmp_path / "x", tmp_path / "o", tmp_path / "t.parquet"])


def test_argument_values_in_the_library_too(tmp_path):
    from neoqa.errors import NeoqaError
    from neoqa.simulate import simulate

    for kw in ({"workers": 0}, {"label_noise": -0.1}, {"positive_fraction": 1.0}, {"nonsense": 1}):
        with pytest.raises(NeoqaError):
            simulate(tmp_path / "x", 5, progress=False, **kw)
    with pytest.raises(NeoqaError, match="--sheets"):
        simulate(tmp_path / "x", 2.5, progress=False)
    assert not (tmp_path / "x").exists()


def test_usage_errors_name_the_model_or_corruption(capsys, env):
    data = env.originals["data"]
    refused(capsys, ["train", "--kind", "nosuch", "--data", data, "--out", env.tmp / "m"], ["unknown model 'nosuch'"],
            absent=[env.tmp / "m"])
    refused(capsys, ["zoo", "--data", data, "--out", env.tmp / "z", "--kinds", "ridge", "nosuch"],
            ["unknown model 'nosuch'"], absent=[env.tmp / "z"])
    refused(capsys, ["suspects", "--data", data, "--out", env.tmp / "s.txt"], ["s.txt", ".csv"],
            absent=[env.tmp / "s.txt"])
    refused(capsys, ["suspects", "--data", data, "--out", env.tmp / "s.csv", "--folds", "1"], ["2 folds"],
            absent=[env.tmp / "s.csv"])
    refused(capsys, ["robustness", "--model", env.originals["ridge"], "--data", data, "--out", env.tmp / "r",
                     "--corruptions", "nosuch"], ["unknown corruption 'nosuch'"], absent=[env.tmp / "r"])
    refused(capsys, ["finetune", "--model", env.originals["ridge"], "--data", data, "--labelled", "0",
                     "--out", env.tmp / "f"], ["--labelled must be at least 1"], absent=[env.tmp / "f"])
    refused(capsys, ["finetune", "--model", env.originals["ridge"], "--data", data, "--labelled", "many",
                     "--out", env.tmp / "f"], ["--labelled", "'many'"], absent=[env.tmp / "f"])
    refused(capsys, ["threshold", "--model", env.originals["ridge"], "--data", data, "--recall", "0.9",
                     "--labels", "sideways"], ["unknown labels 'sideways'"])
    refused(capsys, ["threshold", "--model", env.originals["ridge"], "--data", data, "--recall", "0.9",
                     "--labels", env.tmp / "none.csv"], ["none.csv", "cannot read"])
    refused(capsys, ["report", "--run", env.tmp], ["not a zoo run folder"])


@pytest.mark.parametrize("suffix", [".xyz", ".bmp", ".h5"])
def test_unknown_figure_formats(capsys, env, suffix):
    data, ridge = env.originals["data"], env.originals["ridge"]
    out = env.tmp / f"fig{suffix}"
    refused(capsys, ["show", "--data", data, "--sheet", "NW3-000000000", "--out", out], ["unknown figure format"], absent=[out])
    refused(capsys, ["explain", "--model", ridge, "--data", data, "--sheet", "nosuch", "--out", out],
            ["sheet 'nosuch' not found"], absent=[out])            # explain writes a folder: refused before it


# ------------------------------------------------------------------ output paths
def test_existing_outputs_are_refused_without_overwrite(capsys, env):
    data, ridge = env.originals["data"], env.originals["ridge"]
    keep = env.tmp / "scores.parquet"
    keep.write_text("my notes")
    refused(capsys, ["score", "--model", ridge, "--data", data, "--out", keep], ["scores.parquet", "not a folder"],
            unchanged=[keep])
    refused(capsys, ["triage", "--model", ridge, "--data", data, "--out", keep], ["already exists"], unchanged=[keep])
    model = env.copy("ridge", "m")
    refused(capsys, ["train", "--kind", "ridge", "--data", data, "--out", model], ["already exists"],
            unchanged=[model])
    refused(capsys, ["simulate", "--sheets", "5", "--out", data], ["already exists"], unchanged=[data])
    exp = env.copy("export", "exp")
    refused(capsys, ["export", "--data", data, "--out", exp], ["already exists"], unchanged=[exp])
    refused(capsys, ["ingest", "--data", env.originals["export"], "--out", data], ["already exists"], unchanged=[data])


def test_folders_neoqa_did_not_write_are_never_replaced(capsys, env):
    data = env.originals["data"]
    mine = env.tmp / "thesis"
    mine.mkdir()
    (mine / "chapter1.tex").write_text("years of work")
    (mine / "manifest.json").write_text('{"name": "my web app"}')      # not neoqa's manifest
    for args in (["train", "--kind", "ridge", "--data", data, "--out", mine, "--overwrite"],
                 ["zoo", "--data", data, "--out", mine, "--kinds", "ridge", "--overwrite"],
                 ["simulate", "--sheets", "5", "--out", mine, "--overwrite"],
                 ["export", "--data", data, "--out", mine, "--overwrite"],
                 ["explain", "--model", env.originals["ridge"], "--data", data, "--all", "--out", mine, "--overwrite"]):
        refused(capsys, args, ["thesis", "not a folder neoqa wrote"], unchanged=[mine])


def test_outputs_that_are_or_hold_an_input_are_refused(capsys, env, monkeypatch):
    data = env.copy("data")
    ridge = env.copy("ridge")
    shard = env.shard(data)
    refused(capsys, ["score", "--model", ridge, "--data", shard, "--out", shard, "--overwrite"],
            ["written into the input"], unchanged=[data])
    refused(capsys, ["triage", "--model", ridge, "--data", data, "--out", ridge, "--overwrite"],
            ["written into the input"], unchanged=[ridge])
    refused(capsys, ["export", "--data", data, "--out", data / "inside"], ["written into the input"], unchanged=[data],
            absent=[data / "inside"])
    refused(capsys, ["ingest", "--data", env.originals["export"], "--out", env.originals["export"], "--overwrite"],
            ["written into the input"], unchanged=[env.originals["export"]])
    refused(capsys, ["suspects", "--data", data, "--out", env.tmp / "s.csv", "--prune", data, "--overwrite"],
            ["written into the input"], unchanged=[data], absent=[env.tmp / "s.csv"])
    refused(capsys, ["finetune", "--model", ridge, "--data", data, "--labelled", "10", "--out", ridge, "--overwrite"],
            ["written into the input"], unchanged=[ridge])
    # `train --out .` with the data below the current folder: the old code emptied the folder
    monkeypatch.chdir(env.tmp)
    refused(capsys, ["train", "--kind", "ridge", "--data", "data", "--out", ".", "--overwrite"],
            ["would replace a folder holding the input"], unchanged=[data, ridge])


def test_links_devices_and_wrong_kinds_are_refused(capsys, env):
    data, ridge = env.originals["data"], env.originals["ridge"]
    target = env.tmp / "precious.txt"
    target.write_text("keep")
    link = env.tmp / "link.parquet"
    link.symlink_to(target)
    refused(capsys, ["score", "--model", ridge, "--data", data, "--out", link, "--overwrite"], ["symbolic link"],
            unchanged=[target])
    assert link.is_symlink()
    refused(capsys, ["score", "--model", ridge, "--data", data, "--out", "/dev/null", "--overwrite"],
            ["/dev/null", "not a folder"])
    refused(capsys, ["triage", "--model", ridge, "--data", data, "--out", "/dev/null", "--overwrite"],
            ["/dev/null", "not a regular file"])
    assert Path("/dev/null").exists() and not Path("/dev/null").is_file()
    refused(capsys, ["simulate", "--sheets", "5", "--out", target, "--overwrite"], ["not a folder"],
            unchanged=[target])
    refused(capsys, ["explain", "--model", ridge, "--data", data, "--all", "--out", target, "--overwrite"],
            ["not a folder"], unchanged=[target])
    folder = env.tmp / "afolder"
    folder.mkdir()
    (folder / "x").write_text("x")
    refused(capsys, ["score", "--model", ridge, "--data", data, "--out", folder, "--overwrite"],
            ["not a folder neoqa wrote"], unchanged=[folder])
    refused(capsys, ["triage", "--model", ridge, "--data", data, "--out", folder, "--overwrite"], ["is a folder"],
            unchanged=[folder])
    refused(capsys, ["score", "--model", ridge, "--data", data, "--out", target / "sub.parquet"],
            ["is not a folder"], unchanged=[target])


# ------------------------------------------------------------------ HDF5 shards and manifests
def _shard_case(env, edit):
    data = env.copy("data")
    edit(data, env.shard(data))
    return data


SHARD_CASES = {
    "truncated": (lambda d, s: s.write_bytes(s.read_bytes()[:5000]), ["not a readable HDF5"]),
    "not hdf5": (lambda d, s: s.write_text("hello"), ["not a readable HDF5"]),
    "fractional k": (lambda d, s: _retype(s, "sheets/k", lambda k: k + 0.5),
                     ["sheets/k", "type float64", "integer"]),
    "label 3": (lambda d, s: set_dataset(s, "sheets/label", np.full(40, 3, np.int8)), ["'label' is 3"]),
    "cutouts wrong shape": (lambda d, s: set_dataset(s, "obs/cutouts", np.zeros((5, 2, 7, 7), np.float32)),
                            ["obs/cutouts", "shape"]),
    "missing dataset": (lambda d, s: _delete(s, "obs/mjd"), ["obs/mjd", "missing"]),
    "meta missing key": (lambda d, s: _drop_meta(s, "channels"), ["meta field 'channels' is missing"]),
    "meta channels not a list": (lambda d, s: set_meta(s, channels=2), ["'channels' must be a list"]),
    "meta cutout size text": (lambda d, s: set_meta(s, cutout_size="15"), ["'cutout_size'"]),
    "ids not utf-8": (lambda d, s: set_dataset(s, "sheets/sheet_id", np.array([b"\xff\xfe%d" % i for i in range(40)])),
                      ["not UTF-8"]),
    "duplicate id in a shard": (lambda d, s: set_dataset(s, "sheets/sheet_id", np.array([b"A"] * 40)),
                                ["'A'", "more than once"]),
    "inf pixel": (lambda d, s: _poke(s, "obs/cutouts", (3, 0, 7, 7), np.inf), ["field 'cutouts'", "observation"]),
    "nan composite": (lambda d, s: _poke(s, "sheets/composite", (2, 1, 0, 0), np.nan), ["field 'composite'"]),
    "inf scalar": (lambda d, s: _poke(s, "sheets/sheet_scalars", (4, 2), -np.inf), ["field 'sheet_scalars'",
                                                                                   "infinite"]),
    "nan time": (lambda d, s: _poke(s, "obs/mjd", (0,), np.nan), ["field 'mjd'"]),
    "manifest not json": (lambda d, s: (d / "manifest.json").write_text("{oops"), ["manifest.json", "not valid JSON"]),
    "manifest without shards": (lambda d, s: edit_json(d / "manifest.json", lambda m: m.pop("shards")),
                                ["'shards' is missing"]),
    "manifest shard outside": (lambda d, s: edit_json(d / "manifest.json", lambda m: m["shards"][0].update(
        file="../../../etc/passwd")), ["shards[0]", "plain name"]),
    "manifest absolute shard": (lambda d, s: edit_json(d / "manifest.json", lambda m: m["shards"][0].update(
        file="/etc/passwd")), ["shards[0]", "plain name"]),
    "manifest shard not text": (lambda d, s: edit_json(d / "manifest.json", lambda m: m["shards"][0].update(file=3)),
                                ["shards[0]", "'file'"]),
    "manifest count wrong": (lambda d, s: edit_json(d / "manifest.json", lambda m: m["shards"][0].update(sheets=41)),
                             ["holds 40 sheets", "says 41"]),
    "shard missing": (lambda d, s: s.unlink(), ["shard file is missing"]),
    "wrong format": (lambda d, s: edit_json(d / "manifest.json", lambda m: m.update(format="other")),
                     ["not a neoqa dataset"]),
    "link shard leading out": (lambda d, s: (s.unlink(), s.symlink_to("/etc/hostname")), ["leads outside"]),
}


def _retype(shard, key, fn):
    with h5py.File(shard, "r") as f:
        values = f[key][()]
    set_dataset(shard, key, fn(values))


def _delete(shard, key):
    with h5py.File(shard, "r+") as f:
        del f[key]


def _drop_meta(shard, key):
    with h5py.File(shard, "r+") as f:
        meta = json.loads(f.attrs["meta"])
        meta.pop(key)
        f.attrs["meta"] = json.dumps(meta)


def _poke(shard, key, index, value):
    with h5py.File(shard, "r+") as f:
        a = f[key][()]
        a[index] = value
        f[key][...] = a


# Values a model of the fixed-length view never reads (scoring leaves them on disk): a set model meets them.
READ_BY_SET_MODELS = {"inf pixel", "nan time"}


@pytest.mark.parametrize("case", list(SHARD_CASES))
def test_bad_shards_and_manifests(capsys, env, case):
    edit, needles = SHARD_CASES[case]
    data = _shard_case(env, edit)
    out = env.tmp / "scores.parquet"
    model = env.originals["sneon" if case in READ_BY_SET_MODELS else "ridge"]
    refused(capsys, ["score", "--model", model, "--data", data, "--out", out], needles, absent=[out],
            unchanged=[data])


@pytest.mark.parametrize("case", sorted(READ_BY_SET_MODELS))
def test_a_model_scores_what_it_reads_whatever_the_rest_holds(capsys, env, case):
    """A bad pixel or time is refused by every reader of it (above) and by ``SheetSet.read``, but it
    cannot change the decision of a model that never reads it: ridge scores the shard as if clean."""
    from neoqa.data.store import SheetSet
    from neoqa.errors import NeoqaError

    data = _shard_case(env, SHARD_CASES[case][0])
    assert main(["score", "--model", str(env.originals["ridge"]), "--data", str(data), "--out",
                 str(env.tmp / "s")]) == 0
    assert main(["score", "--model", str(env.originals["ridge"]), "--data", str(env.originals["data"]), "--out",
                 str(env.tmp / "clean")]) == 0
    got, clean = pq.read_table(env.tmp / "s").to_pandas(), pq.read_table(env.tmp / "clean").to_pandas()
    clean = clean[clean.sheet_id.isin(got.sheet_id)].reset_index(drop=True)
    np.testing.assert_array_equal(got.probability, clean.probability)
    with pytest.raises(NeoqaError, match=SHARD_CASES[case][1][0]):
        SheetSet(data).read()


def test_ids_duplicated_across_shards_are_refused(capsys, env):
    from neoqa.data.store import read_shard, write_dataset

    batch = read_shard(env.shard(env.originals["data"]))
    data = env.tmp / "two"
    write_dataset(data, [batch.select(np.arange(20)), batch.select(np.arange(10, 30))])
    refused(capsys, ["info", "--data", data], ["NW3-000000010", "also in shard-00000.h5", "unique across the dataset"])


def test_a_model_needing_a_scalar_the_data_lacks_is_refused_and_names_what_can_run(capsys, env):
    """Own data with a renamed observation scalar: gbdt (which reads snr_ch2 by name) is refused in
    one line naming the scalar and the models that can run; ridge (reads no scalar by name) trains."""
    from dataclasses import replace

    from neoqa.data.store import SheetSet, write_dataset

    batch = SheetSet(env.originals["data"]).read()
    data = env.tmp / "renamed"
    write_dataset(data, [replace(batch, obs_scalar_names=tuple("snr_w2" if n == "snr_ch2" else n
                                                                for n in batch.obs_scalar_names))])
    out = env.tmp / "m"
    line = refused(capsys, ["train", "--kind", "gbdt", "--data", data, "--out", out],
            ["renamed", "'gbdt' needs observation scalar(s) snr_ch2", "can run on it: ridge, quadratic, rbf, rff, "
             "mlp, multi_linear, multi_mlp, basic_sneon, sneon, sneon_soft, set_transformer"],
            absent=[out], unchanged=[data])
    assert line.endswith("set_transformer")                   # neither gbdt nor the ensemble (holds gbdt)
    rc, _, err = cli(capsys, "train", "--kind", "ridge", "--data", data, "--out", out)
    assert rc == 0 and (out / "model.json").exists(), err


def test_every_verb_names_the_bad_file(capsys, env):
    data = _shard_case(env, lambda d, s: _poke(s, "obs/cutouts", (0, 0, 0, 0), np.inf))
    ridge = env.originals["ridge"]
    for args in (["info", "--data", data], ["show", "--data", data, "--sheet", "NW3-000000001", "--out", env.tmp / "s.png"],
                 ["export", "--data", data, "--out", env.tmp / "e"], ["train", "--kind", "ridge", "--data", data,
                                                            "--out", env.tmp / "m"],
                 ["evaluate", "--model", ridge, "--data", data],
                 ["triage", "--model", ridge, "--data", data, "--out", env.tmp / "t.parquet"],
                 ["explain", "--model", ridge, "--data", data, "--all", "--out", env.tmp / "x"],
                 ["zoo", "--data", data, "--out", env.tmp / "z", "--kinds", "ridge"]):
        if args[0] == "info":                      # info reads no pixels: it counts, and succeeds
            assert cli(capsys, *args)[0] == 0
            continue
        refused(capsys, args, ["shard-00000.h5", "'cutouts'"], unchanged=[data],
                absent=[env.tmp / n for n in ("s.png", "e", "m", "t.parquet", "x", "z")])


def test_an_empty_dataset_is_one_line(capsys, env):
    from neoqa.data.store import read_shard, write_shard

    empty = write_shard(env.tmp / "empty.h5", read_shard(env.shard(env.originals["data"])).select([]))
    refused(capsys, ["info", "--data", empty], ["empty.h5", "no sheets"])
    refused(capsys, ["score", "--model", env.originals["ridge"], "--data", empty, "--out", env.tmp / "s.parquet"],
            ["no sheets"], absent=[env.tmp / "s.parquet"])


def test_unlabelled_data_is_one_line_where_labels_are_needed(capsys, env):
    data = _shard_case(env, lambda d, s: set_dataset(s, "sheets/label", np.full(40, -1, np.int8)))
    ridge = env.originals["ridge"]
    refused(capsys, ["evaluate", "--model", ridge, "--data", data], ["no labelled"])
    refused(capsys, ["train", "--kind", "ridge", "--data", data, "--out", env.tmp / "m"], ["labelled"],
            absent=[env.tmp / "m"])
    refused(capsys, ["threshold", "--model", ridge, "--data", data, "--recall", "0.9"], ["no real sheets"])


# ------------------------------------------------------------------ model folders
def _attack_model(folder: Path, marker: Path) -> None:
    """The three-function chain of the report: resize the input away, max() with a default turns it
    into source text, exec runs it, all spliced ahead of a real ridge pipeline."""
    import skops.io as sio
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import FunctionTransformer

    from neoqa.models.persistence import load_skops

    model = load_skops(folder / "model.skops")
    payload = f"open({str(marker)!r}, 'w').write('pwned')"
    steps = [("empty", FunctionTransformer(np.resize, kw_args={"new_shape": 0})),
             ("text", FunctionTransformer(builtins.max, kw_args={"default": payload})),
             ("run", FunctionTransformer(builtins.exec))]
    inner = model.estimator_.pipeline_
    model.estimator_.pipeline_ = Pipeline(steps + list(inner.steps))
    sio.dump(model, folder / "model.skops")


def test_the_three_function_chain_is_refused(capsys, env):
    import skops.io as sio

    ridge = env.copy("ridge")
    marker = env.tmp / "pwned.txt"
    _attack_model(ridge, marker)
    old_rule = ("sklearn.", "numpy.", "scipy.", "neoqa.", "builtins.", "collections.", "lightgbm.")
    assert all(t.startswith(old_rule) for t in sio.get_untrusted_types(file=ridge / "model.skops"))  # passed before
    out = env.tmp / "s.parquet"
    refused(capsys, ["score", "--model", ridge, "--data", env.originals["data"], "--out", out],
            ["model.skops", "refuses"], absent=[out, marker])
    assert not marker.exists()


def _skops_with(folder: Path, obj) -> None:
    import skops.io as sio

    sio.dump(obj, folder / "model.skops")


def _functions_model(folder):
    _skops_with(folder, {"f": os.system})


def _method_model(folder):
    _skops_with(folder, {"f": "text".upper})


def _partial_model(folder):
    import functools

    _skops_with(folder, {"f": functools.partial(print, "x")})


def _object_array_model(folder):
    _skops_with(folder, {"a": np.array([{"a": 1}], dtype=object)})


def _off_list_class_model(folder):
    from sklearn.preprocessing import FunctionTransformer

    _skops_with(folder, FunctionTransformer())


def _edit_schema(folder, fn):
    """Rewrite the JSON tree inside a skops zip (what a hostile file would do by hand)."""
    import zipfile

    path = folder / "model.skops"
    with zipfile.ZipFile(path) as z:
        files = {n: z.read(n) for n in z.namelist()}
    tree = json.loads(files["schema.json"])
    fn(tree)
    files["schema.json"] = json.dumps(tree).encode()
    with zipfile.ZipFile(path, "w") as z:
        for n, b in files.items():
            z.writestr(n, b)


def _renamed_class_model(folder):
    def fn(tree):
        tree["__module__"], tree["__class__"] = "subprocess", "Popen"
    _edit_schema(folder, fn)


def _renamed_loader_model(folder):
    def fn(tree):
        tree["__loader__"] = "ReduceNode"
    _edit_schema(folder, fn)


MODEL_CASES = {
    "a function (os.system)": (_functions_model, ["model.skops", "posix.system", "refuses"]),
    "a bound method": (_method_model, ["model.skops", "refuses"]),
    "functools.partial": (_partial_model, ["model.skops", "refuses"]),
    "an object array": (_object_array_model, ["model.skops", "refuses"]),
    "a class off the list": (_off_list_class_model, ["FunctionTransformer", "allow-list"]),
    "a class renamed in the tree": (_renamed_class_model, ["subprocess.Popen", "allow-list"]),
    "a reduce node": (_renamed_loader_model, ["ReduceNode", "not code"]),
    "truncated skops": (lambda f: (f / "model.skops").write_bytes((f / "model.skops").read_bytes()[:300]),
                        ["model.skops", "truncated or corrupt"]),
    "skops not a zip": (lambda f: (f / "model.skops").write_text("PK?"), ["truncated or corrupt"]),
    "model.json missing": (lambda f: (f / "model.json").unlink(), ["no model.json"]),
    "model.json not json": (lambda f: (f / "model.json").write_text("{"), ["model.json", "not valid JSON"]),
    "model.json a list": (lambda f: (f / "model.json").write_text("[]"), ["model.json", "JSON object"]),
    "model.json no threshold": (lambda f: edit_json(f / "model.json", lambda d: d.pop("threshold")),
                                ["model.json", "'threshold' is missing"]),
    "model.json threshold text": (lambda f: edit_json(f / "model.json", lambda d: d.update(threshold="0.5")),
                                  ["'threshold' has the wrong type"]),
    "model.json threshold 7": (lambda f: edit_json(f / "model.json", lambda d: d.update(threshold=7)),
                               ["'threshold' is 7"]),
    "model.json unknown model": (lambda f: edit_json(f / "model.json", lambda d: d.update(model="os.system")),
                                 ["unknown model 'os.system'"]),
    "model.json schema wrong": (lambda f: edit_json(f / "model.json", lambda d: d.update(schema={"channels": "2"})),
                                ["schema.channels"]),
    "model.json temperature": (lambda f: edit_json(f / "model.json", lambda d: d["calibration"].update(
        temperature=-1)), ["calibration.temperature"]),
    "weights missing": (lambda f: (f / "model.skops").unlink(), ["weights file model.skops is missing"]),
}


def _tensor_meta(folder, **changes):
    from safetensors.torch import load_file, save_file
    from safetensors import safe_open

    path = folder / "weights.safetensors"
    with safe_open(str(path), framework="pt") as f:
        meta = f.metadata()
    save_file(load_file(str(path)), str(path), metadata={**meta, **changes})


SET_MODEL_CASES = {
    "truncated safetensors": (lambda f: (f / "weights.safetensors").write_bytes(
        (f / "weights.safetensors").read_bytes()[:200]), ["weights.safetensors", "truncated or corrupt"]),
    "safetensors garbage": (lambda f: (f / "weights.safetensors").write_bytes(b"\x10" * 64), ["weights.safetensors"]),
    "shape metadata wrong": (lambda f: _tensor_meta(f, shape='{"channels": "x"}'), ["do not fit this model"]),
    "shape metadata not json": (lambda f: _tensor_meta(f, shape="{"), ["do not fit this model"]),
    "parameter of the wrong type": (lambda f: edit_json(f / "model.json", lambda d: d["params"].update(width="big")),
                                    ["parameter 'width'", "int"]),
    "weights missing": (lambda f: (f / "weights.safetensors").unlink(), ["weights.safetensors is missing"]),
}


@pytest.mark.parametrize("kind, case", [("ridge", c) for c in MODEL_CASES] + [("sneon", c) for c in SET_MODEL_CASES])
def test_bad_model_folders(capsys, env, kind, case):
    """A fixed-length model (skops) or a set model (safetensors) folder, damaged or hostile."""
    make, needles = (MODEL_CASES if kind == "ridge" else SET_MODEL_CASES)[case]
    model = env.copy(kind)
    make(model)
    out = env.tmp / "s.parquet"
    refused(capsys, ["score", "--model", model, "--data", env.originals["data"], "--out", out], needles,
            absent=[out], unchanged=[model])


def _ensemble_folder(env, members):
    folder = env.copy("ridge", "ens")
    (folder / "model.skops").unlink()
    edit_json(folder / "model.json", lambda d: d.update(model="ensemble", params={}))
    (folder / "members.json").write_text(json.dumps(members))
    return folder


@pytest.mark.parametrize("members, needles", [
    ([{"name": "ridge", "folder": "../../../../etc", "temperature": 1.0, "params": {}}], ["plain name"]),
    ([{"name": "ridge", "folder": "/etc", "temperature": 1.0, "params": {}}], ["plain name"]),
    ([{"name": "ensemble", "folder": "x", "temperature": 1.0, "params": {}}], ["unknown member model 'ensemble'"]),
    ([{"name": "ridge", "folder": "x", "temperature": "hot", "params": {}}], ["'temperature'"]),
    ({"members": []}, ["non-empty list"]),
    ([{"name": "ridge"}], ["'folder'"]),
])
def test_bad_ensemble_members(capsys, env, members, needles):
    ens = _ensemble_folder(env, members)
    out = env.tmp / "s.parquet"
    refused(capsys, ["score", "--model", ens, "--data", env.originals["data"], "--out", out],
            ["members.json"] + needles, absent=[out], unchanged=[ens])


def test_a_missing_model_folder(capsys, env):
    refused(capsys, ["score", "--model", env.tmp / "nope", "--data", env.originals["data"], "--out",
                     env.tmp / "s.parquet"], ["nope", "no such model folder"], absent=[env.tmp / "s.parquet"])


# ------------------------------------------------------------------ FITS and tables (ingest)
def _rewrite_table(path: Path, fn):
    pq.write_table(fn(pq.read_table(path)), path)


def _fits_pixel(folder: Path, value):
    from astropy.io import fits

    path = sorted((folder / "fits").glob("*.fits"))[0]
    with fits.open(path) as h:
        h["OBS002"].data[0, 3, 3] = value
        h.writeto(path, overwrite=True)


def _concat(*tables):
    import pyarrow as pa

    return pa.concat_tables(tables)


def _climbing_id(folder: Path):
    """Rename the first sheet to "../escaped" in both tables, and put a valid FITS file where that
    id would lead if it became a path: the old reader read it from outside fits/."""
    import pyarrow as pa

    first = sorted((folder / "fits").glob("*.fits"))[0]
    old = first.stem
    shutil.copy(first, folder / "escaped.fits")
    for name in ("sheets.parquet", "observations.parquet", "truth_sheets.parquet", "truth_observations.parquet"):
        _rewrite_table(folder / name, lambda t: t.set_column(0, "sheet_id", pa.array(
            ["../escaped" if s == old else s for s in t.column("sheet_id").to_pylist()])))


INGEST_CASES = {
    "sheets table missing": (lambda f: (f / "sheets.parquet").unlink(), ["sheets.parquet", "is missing"]),
    "sheets table not parquet": (lambda f: (f / "sheets.parquet").write_text("x"), ["sheets.parquet", "cannot be read"]),
    "header-only csv": (lambda f: ((f / "sheets.parquet").unlink(), (f / "sheets.csv").write_text("sheet_id,label\n")),
                        ["sheets.csv", "no rows"]),
    "duplicate sheet id": (lambda f: _rewrite_table(f / "sheets.parquet", lambda t: _concat(t, t.slice(0, 1))),
                           ["duplicate sheet_id"]),
    "label out of range": (lambda f: _rewrite_table(f / "sheets.parquet", lambda t: t.set_column(
        1, "label", [[5] * t.num_rows])), ["field 'label' is 5"]),
    "text in a number column": (lambda f: _rewrite_table(f / "observations.parquet", lambda t: t.set_column(
        t.column_names.index("mjd"), "mjd", [["soon"] * t.num_rows])), ["field 'mjd' is not a number"]),
    "nan position": (lambda f: _rewrite_table(f / "observations.parquet", lambda t: t.set_column(
        t.column_names.index("ra"), "ra", [[float("nan")] * t.num_rows])), ["field 'ra'", "finite"]),
    "band not a channel": (lambda f: _rewrite_table(f / "observations.parquet", lambda t: t.set_column(
        t.column_names.index("band"), "band", [["W9"] * t.num_rows])), ["'band'", "W9"]),
    "fits missing": (lambda f: sorted((f / "fits").glob("*.fits"))[0].unlink(), ["FITS file for sheet", "missing"]),
    "fits corrupt": (lambda f: sorted((f / "fits").glob("*.fits"))[0].write_bytes(b"SIMPLE  =  nonsense"),
                     ["not a readable FITS file"]),
    "fits inf pixel": (lambda f: _fits_pixel(f, np.inf), [".fits: HDU OBS002", "field 'cutouts'", "NaN or infinite"]),
    "fits nan pixel": (lambda f: _fits_pixel(f, np.nan), ["field 'cutouts'"]),
    "dataset.json not json": (lambda f: (f / "dataset.json").write_text("{"), ["dataset.json", "not valid JSON"]),
    "truth table without a column": (lambda f: _rewrite_table(f / "truth_sheets.parquet", lambda t: t.drop(
        ["scenario"])), ["truth_sheets.parquet", "'scenario'"]),
    "an id that climbs out": (_climbing_id, ["'../escaped'", "FITS file for sheet", "missing"]),
}


@pytest.mark.parametrize("case", list(INGEST_CASES))
def test_bad_ingest_folders(capsys, env, case):
    make, needles = INGEST_CASES[case]
    folder = env.copy("export", "in")
    make(folder)
    out = env.tmp / "ds"
    refused(capsys, ["ingest", "--data", folder, "--out", out], needles, absent=[out], unchanged=[folder])


# ------------------------------------------------------------------ names and permissions
def test_safe_names_are_plain_unique_and_keep_plain_ids():
    assert safe_name("NW000000001") == "NW000000001"
    hostile = ["../../x", "/etc/passwd", ".hidden", "a/b", "a_b", "a\\b", "..", "", "é", "a" * 300, "a~b", "x\x00y"]
    names = [safe_name(s) for s in hostile]
    assert len(set(names)) == len(names)
    for n in names:
        assert "/" not in n and "\\" not in n and "\x00" not in n and not n.startswith(".") and len(n) <= 120
        assert confined(Path("/tmp/base"), n, "t") == Path("/tmp/base") / n


def test_explain_all_names_files_safely(capsys, env):
    from neoqa.data.store import read_shard, write_shard

    b = read_shard(env.shard(env.originals["data"])).select(np.arange(2))
    b.sheet_id = np.array(["../../escape", "ok-1"])
    data = write_shard(env.tmp / "ids.h5", b)
    out = env.tmp / "figs"
    assert cli(capsys, "explain", "--model", env.originals["ridge"], "--data", data, "--all", "--out", out,
               "--method", "saliency")[0] == 0
    names = sorted(p.name for p in out.iterdir() if p.suffix == ".png")
    assert names == sorted([f"{safe_name('../../escape')}.png", "ok-1.png"])
    assert not (env.tmp.parent / "escape.png").exists()


def test_export_then_ingest_keeps_hostile_ids(env):
    from neoqa.ingest.layout import export, ingest
    from neoqa.data.store import SheetSet, read_shard, write_shard

    b = read_shard(env.shard(env.originals["data"])).select(np.arange(3))
    b.sheet_id = np.array(["../../up", "a/b", "plain"])
    data = write_shard(env.tmp / "ids.h5", b)
    export(data, env.tmp / "exp")
    assert not list(env.tmp.parent.glob("up.fits")) and "plain.fits" in {p.name for p in (env.tmp / "exp/fits").iterdir()}
    back = SheetSet(ingest(env.tmp / "exp", env.tmp / "back")).read()
    assert list(back.sheet_id) == ["../../up", "a/b", "plain"]


def test_outputs_follow_the_umask(capsys, env):
    old = os.umask(0o022)
    try:
        out = env.tmp / "sim"
        assert cli(capsys, "simulate", "--sheets", "5", "--out", out, "--quiet")[0] == 0
        assert out.stat().st_mode & 0o777 == 0o755
        assert all(p.stat().st_mode & 0o777 == 0o644 for p in out.iterdir())
    finally:
        os.umask(old)


def test_files_neoqa_did_not_write_are_never_replaced(capsys, env):
    data, ridge = env.originals["data"], env.originals["ridge"]
    for name in ("scores.parquet", "fig.png", "s.csv", "notes.json", "one.h5"):
        mine = env.tmp / name
        mine.write_text("my own file")
        args = {".parquet": ["triage", "--model", ridge, "--data", data, "--out", mine],
                ".png": ["show", "--data", data, "--sheet", "NW3-000000001", "--out", mine],
                ".csv": ["suspects", "--data", data, "--out", mine],
                ".json": ["suspects", "--data", data, "--out", env.tmp / "notes.csv"],
                ".h5": ["triage", "--model", ridge, "--data", data, "--out", mine]}[mine.suffix]
        refused(capsys, [*args, "--overwrite"], ["not a file neoqa wrote"], unchanged=[mine])


def test_overwrite_replaces_neoqa_files(capsys, env):
    data = env.originals["data"]
    fig = env.tmp / "fig.png"
    for _ in range(2):
        assert cli(capsys, "show", "--data", data, "--sheet", "NW3-000000001", "--out", fig, "--overwrite")[0] == 0
    from neoqa.outputs import file_written_by_neoqa

    assert file_written_by_neoqa(fig) and file_written_by_neoqa(env.shard(data))


def test_overwrite_replaces_neoqa_outputs_and_an_empty_folder_is_used(capsys, env):
    data, ridge = env.originals["data"], env.originals["ridge"]
    out = env.tmp / "t.parquet"
    rc, _, err = cli(capsys, "triage", "--model", ridge, "--data", data, "--recall", "0.9", "--out", out)
    assert rc == 0, err
    first = out.read_bytes()
    assert cli(capsys, "triage", "--model", ridge, "--data", data, "--recall", "0.9", "--out", out,
               "--overwrite")[0] == 0
    assert pq.read_table(out).equals(pq.read_table(io.BytesIO(first)))
    scores = env.tmp / "scores"
    assert cli(capsys, "score", "--model", ridge, "--data", data, "--out", scores)[0] == 0
    first = pq.read_table(scores)
    assert cli(capsys, "score", "--model", env.originals["sneon"], "--data", data, "--out", scores,
               "--overwrite")[0] == 0
    assert not pq.read_table(scores).equals(first)        # another model's scores replaced the ridge's
    empty = env.tmp / "empty"
    empty.mkdir()
    assert cli(capsys, "simulate", "--sheets", "5", "--out", empty, "--quiet")[0] == 0
    assert (empty / "manifest.json").exists() and not (empty / MARKER).exists()
    assert cli(capsys, "simulate", "--sheets", "7", "--out", empty, "--quiet", "--overwrite")[0] == 0
    assert json.loads((empty / "manifest.json").read_text())["shards"][0]["sheets"] == 7
    assert not list(env.tmp.glob(".*.partial"))


def test_the_old_result_stays_whole_until_the_new_one_is_complete(env, monkeypatch):
    """A failure in the middle of replacing leaves the previous result exactly as it was."""
    from neoqa import outputs
    from neoqa.errors import NeoqaError
    from neoqa.simulate import simulate

    out = env.tmp / "sim"
    simulate(out, 5, progress=False)
    before = digest(out)

    def broken(a, b):
        raise NeoqaError("simulated crash at the moment of the swap")

    monkeypatch.setattr(outputs, "_commit_folder", broken)
    with pytest.raises(NeoqaError):
        simulate(out, 9, progress=False, overwrite=True)
    assert digest(out) == before and not list(env.tmp.glob(".*.partial"))


def test_stale_partials_of_dead_runs_are_removed(env):
    from neoqa.simulate import simulate

    dead = env.tmp / ".sim.999999999-abcd.partial"         # a pid that cannot exist
    dead.mkdir()
    (dead / "half.h5").write_text("x")
    alive = env.tmp / f".sim.{os.getppid()}-abcd.partial"   # a live process's: left alone
    alive.mkdir()
    other = env.tmp / ".other.999999999-abcd.partial"        # another output's: left alone
    other.mkdir()
    simulate(env.tmp / "sim", 5, progress=False)
    assert not dead.exists() and alive.exists() and other.exists()


# ------------------------------------------------------------------ full and read-only disks
@pytest.fixture
def small_disk(tmp_path):
    """A 6 MB tmpfs (root can mount one here; elsewhere the test is skipped)."""
    import subprocess

    mnt = tmp_path / "disk"
    mnt.mkdir()
    if os.geteuid() != 0 or subprocess.run(["mount", "-t", "tmpfs", "-o", "size=6m", "tmpfs", str(mnt)],
                                           capture_output=True).returncode != 0:
        pytest.skip("cannot mount a small tmpfs here")
    yield mnt
    subprocess.run(["umount", "-l", str(mnt)], capture_output=True)


def test_a_full_disk_is_one_line_and_leaves_nothing(capsys, small_disk):
    out = small_disk / "sim"
    refused(capsys, ["simulate", "--sheets", "3000", "--out", out, "--quiet"],
            ["not enough free disk space", "shard-00000.h5"], absent=[out])
    assert not list(small_disk.iterdir())


def test_a_disk_that_fills_while_writing_does_not_crash(small_disk, monkeypatch, small_batch):
    """The check passes (another writer took the space after it): the shard is built in memory and
    the plain write fails cleanly; HDF5 writing to a full disk itself used to segfault."""
    from neoqa.data import store
    from neoqa.errors import NeoqaError

    monkeypatch.setattr(store, "_check_space", lambda path, batch: True)
    with pytest.raises(NeoqaError, match="No space left on device"):
        store.write_shard(small_disk / "s.h5", small_batch)
    assert not list(small_disk.iterdir())


def test_a_read_only_disk_is_one_line(capsys, small_disk, env):
    import subprocess

    subprocess.run(["mount", "-o", "remount,ro", str(small_disk)], check=True)
    out = small_disk / "s.parquet"
    refused(capsys, ["score", "--model", env.originals["ridge"], "--data", env.originals["data"], "--out", out],
            ["disk", "cannot write here (a read-only disk)"], absent=[out])
    refused(capsys, ["simulate", "--sheets", "5", "--out", small_disk / "x", "--quiet"], ["cannot write here"])


@pytest.mark.parametrize("online, link, needles", [
    ({"updates": 1, "replay_seen": 40}, True, ["replay part", "leads outside"]),
    ({"updates": "one", "replay_seen": 40}, False, ["model.json", "field 'online'"]),
    ([1, 2], False, ["field 'online'"]),
])
def test_bad_replay_state(capsys, env, online, link, needles):
    sneon = env.copy("sneon")
    edit_json(sneon / "model.json", lambda d: d.update(online=online))
    (sneon / "replay").mkdir()
    if link:
        (sneon / "replay" / "part-0").symlink_to(env.originals["data"])    # a dataset outside the folder
    out = env.tmp / "updated"
    refused(capsys, ["update", "--model", sneon, "--data", env.originals["data"], "--out", out], needles,
            absent=[out], unchanged=[sneon])


def test_what_counts_as_written_by_neoqa(tmp_path, zoo_run, small_neowise):
    from neoqa.outputs import written_by_neoqa

    assert written_by_neoqa(zoo_run) and written_by_neoqa(zoo_run / "models" / "ridge")
    assert written_by_neoqa(small_neowise)
    for name, doc in (("manifest.json", {"format": "other", "shards": []}), ("model.json", {"name": "x"}),
                      ("results.json", {"models": {}}), ("notes.txt", "x")):
        d = tmp_path / name.replace(".", "_")
        d.mkdir()
        (d / name).write_text(json.dumps(doc))
        assert not written_by_neoqa(d), name


def test_a_model_whose_parts_do_not_fit_is_one_line(capsys, env):
    """Every class on the allow-list, every file readable, but an attribute replaced by hand: loading
    scores one blank sheet and refuses the folder in one line, instead of a traceback mid-run."""
    import skops.io as sio

    from neoqa.models.persistence import load_skops

    ridge = env.copy("ridge")
    model = load_skops(ridge / "model.skops")
    model.estimator_.pipeline_ = {"steps": []}
    sio.dump(model, ridge / "model.skops")
    out = env.tmp / "s.parquet"
    refused(capsys, ["score", "--model", ridge, "--data", env.originals["data"], "--out", out],
            ["ridge", "do not make a working model"], absent=[out])


def test_skops_allow_list_is_what_the_models_write(small_batch, tmp_path):
    """The exact class list is no wider than what the registered models' skops files hold: every
    entry is needed by one of them, and every class they hold is on it."""
    from neoqa.models import persistence, registry
    from neoqa.models.base import capabilities
    from neoqa.train.fit import labelled_splits

    train, val = labelled_splits(small_batch)
    seen = {}
    for name in registry.names():
        model = registry.make(name)
        if capabilities(model) & {"own_weights", "composite"}:     # safetensors, or parts saved one by one
            continue
        if name.startswith("multi_"):
            model.set_params(min_sheets=100, keep_if_better=False)  # small data: exercise the per-k models
        folder = tmp_path / name
        folder.mkdir()
        persistence.save_weights(model.fit(train, validation=val), folder)
        for loader, cls, _ in persistence.skops_nodes(folder / persistence.SKOPS_FILE):
            seen.setdefault(loader, set()).add(cls)
    assert seen == persistence.ALLOWED_CLASSES
