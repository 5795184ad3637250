"""The model zoo: the scikit-learn contract, real learning, persistence, schema, invariance."""

import json
import subprocess
import sys

from dataclasses import replace

import numpy as np
import pytest
import torch
from sklearn.utils.estimator_checks import parametrize_with_checks

from neoqa.features import views as features
from neoqa.models import persistence as persist
from neoqa.errors import NeoqaError
from neoqa.models import fixed, registry
from neoqa.models.registry import make
from neoqa.models.sets.model import SetModel
from neoqa.train.fit import fit_and_save, labelled_splits


@parametrize_with_checks([
    fixed.ridge_pipeline(0),
    fixed.kernel_pipeline("poly", 0, n_components=20, degree=2, coef0=1.0),
    fixed.kernel_pipeline("rbf", 0, n_components=20),
    fixed.rff_pipeline(0, n_components=50),
    # the checks' 10-sample datasets cannot spare an early-stopping hold-out
    fixed.mlp_pipeline(0, depth=7, width=20, max_iter=300, early_stopping=False),
    fixed.gbdt_pipeline(0, n_estimators=20),
])
def test_fixed_length_estimators_follow_scikit_learn(estimator, check):
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        check(estimator)


@pytest.fixture(scope="module")
def splits():
    """About 1,100 training and 240 validation sheets: small, but enough to learn from."""
    from neoqa.simulate import SimConfig, simulate_batch

    return labelled_splits(simulate_batch(SimConfig(), 1600, seed=5))


def _fast(name):
    model = make(name, random_state=0)
    if name.startswith("multi_"):
        model.set_params(min_sheets=100)         # small data: still exercise the per-k models
    if name == "multi_mlp":                      # whose slices of ~150 sheets need a small, regularised net
        model.set_params(per_k__pipeline__clf__hidden_layer_sizes=(20,), per_k__pipeline__clf__alpha=1.0,
                         per_k__pipeline__clf__early_stopping=False)
    if isinstance(model, SetModel):
        model.set_params(epochs=12)
    return model


@pytest.mark.parametrize("name", registry.names())
def test_every_model_beats_the_majority_baseline(name, small_batch, splits):
    train, val = splits
    model = _fast(name)
    model.fit(train, validation=val)
    test = val
    p = model.predict_proba(test)
    assert p.shape == (len(test), 2) and np.allclose(p.sum(1), 1) and np.all((p >= 0) & (p <= 1))
    acc = np.mean((p[:, 1] >= 0.5) == (test.label == 1))
    majority = max(np.mean(test.label == 1), np.mean(test.label == 0))
    assert acc > majority + 0.05, f"{name}: accuracy {acc:.3f}, majority {majority:.3f}"
    assert model.n_parameters() > 0
    # what it says it reads is all it reads: the rest unread (NaN stand-ins), the same probabilities
    np.testing.assert_array_equal(model.predict_proba(test.keeping(model.reads())), p)
    assert (model.reads() is None) == (name in ("multi_linear", "multi_mlp", "ensemble") or isinstance(model, SetModel))


@pytest.mark.parametrize("name", ["ridge", "multi_linear", "basic_sneon", "set_transformer", "gbdt", "ensemble"])
def test_saved_model_predicts_identically_in_a_fresh_process(name, tmp_path, small_neowise, small_batch, monkeypatch):
    fast = _fast(name)
    monkeypatch.setitem(registry._FACTORIES, name, lambda rs: fast)
    fit_and_save(name, small_batch, tmp_path / "m", progress=False)
    model, info = persist.load(tmp_path / "m")
    here = model.predict_proba(small_batch)[:, 1]
    code = ("import sys, json, numpy as np; from neoqa.models import persistence as persist; from neoqa.data.store import SheetSet;"
            "m, i = persist.load(sys.argv[1]); b = SheetSet(sys.argv[2]).read();"
            "print(json.dumps(m.predict_proba(b)[:, 1].tolist()))")
    r = subprocess.run([sys.executable, "-c", code, str(tmp_path / "m"), str(small_neowise)], capture_output=True,
                       text=True, check=True)
    there = np.array(json.loads(r.stdout))
    np.testing.assert_array_equal(here, there)
    saved = json.loads((tmp_path / "m" / "model.json").read_text())
    for key in ("model", "params", "schema", "threshold", "neoqa_version", "training_data"):
        assert key in saved
    assert list((tmp_path / "m").iterdir())                # weights are skops or safetensors, never pickle
    assert not any(p.suffix in (".pkl", ".pickle", ".pt") for p in (tmp_path / "m").iterdir())


def test_data_of_another_schema_is_conformed(tmp_path, small_batch, capsys):
    """A saved model scores data whose scalars are reordered, missing (NaN, imputed) or extra (dropped)."""
    fit_and_save("ridge", small_batch, tmp_path / "m", progress=False)
    model, info = persist.load(tmp_path / "m")
    b = small_batch.select(np.arange(40))
    p = model.predict_proba(b)[:, 1]
    keep = [i for i, n in enumerate(b.sheet_scalar_names) if n != "ecliptic_lat_deg"][::-1]    # one gone, reversed
    other = replace(b, sheet_scalars=np.concatenate([b.sheet_scalars[:, keep], np.ones((40, 1), np.float32)], 1),
                    sheet_scalar_names=tuple(b.sheet_scalar_names[i] for i in keep) + ("extra",))
    conformed = persist.conform(model, info, other, "other.h5")
    assert conformed.sheet_scalar_names == b.sheet_scalar_names
    lat = b.sheet_scalar_names.index("ecliptic_lat_deg")
    assert np.isnan(conformed.sheet_scalars[:, lat]).all()
    same = [i for i in range(len(b.sheet_scalar_names)) if i != lat]
    np.testing.assert_array_equal(conformed.sheet_scalars[:, same], b.sheet_scalars[:, same])
    q = model.predict_proba(conformed)[:, 1]
    assert np.isfinite(q).all() and np.mean(np.abs(p - q)) < 0.05     # one scalar imputed moves little
    assert "no ecliptic_lat_deg in the data" in capsys.readouterr().err
    assert persist.conform(model, info, b, "same.h5") is b


def test_a_needed_scalar_missing_is_refused_in_one_line(tmp_path, small_batch):
    fit_and_save("gbdt", small_batch, tmp_path / "m", progress=False)
    model, info = persist.load(tmp_path / "m")
    b = small_batch.select(np.arange(10))
    other = replace(b, obs_scalar_names=tuple("snr_w2" if n == "snr_ch2" else n for n in b.obs_scalar_names))
    with pytest.raises(NeoqaError, match=r"^other.h5: the model \(gbdt\) needs observation scalar\(s\) snr_ch2, "):
        persist.conform(model, info, other, "other.h5")
    other = replace(b, cutouts=b.cutouts[:, :1], composite=b.composite[:, :1])
    with pytest.raises(NeoqaError, match="channels is 1 but the model was trained on 2"):
        persist.conform(model, info, other, "other.h5")


def _without_stars(b):
    keep = [i for i, n in enumerate(b.obs_scalar_names) if n not in features.SUMMARY_OPTIONAL]
    return replace(b, obs_scalars=b.obs_scalars[:, keep], obs_scalar_names=tuple(b.obs_scalar_names[i] for i in keep))


def test_gbdt_runs_without_a_star_catalogue(tmp_path, small_batch, capsys):
    """The star scalars are optional: a saved gbdt scores data without them (missing, as trees take
    a missing value), and a gbdt trains on such data."""
    fit_and_save("gbdt", small_batch, tmp_path / "m", progress=False)
    model, info = persist.load(tmp_path / "m")
    b = small_batch.select(np.arange(200))
    bare = persist.conform(model, info, _without_stars(b), "bare.h5")
    p, q = model.predict_proba(b)[:, 1], model.predict_proba(bare)[:, 1]
    assert np.isfinite(q).all() and not np.array_equal(p, q)        # the stars carried something
    assert np.mean((p > 0.5) == (q > 0.5)) > 0.9
    assert "no near_star_flag, star_dist_arcsec in the data; the model takes them as missing" in capsys.readouterr().err
    view = features.summary(_without_stars(b))
    names = features.summary_names(b.sheet_scalar_names, ("W1", "W2"))
    assert np.isnan(view[:, names.index("near_star_flag, mean")]).all()
    assert np.isnan(view[:, names.index("star_dist_arcsec, min")]).all()
    fit_and_save("gbdt", _without_stars(small_batch), tmp_path / "bare", progress=False)
    assert persist.load(tmp_path / "bare")[0].predict_proba(_without_stars(b)).shape == (200, 2)


def test_untrusted_types_are_refused(tmp_path, small_batch):
    import skops.io as sio

    fit_and_save("ridge", small_batch, tmp_path / "m", progress=False)
    from fractions import Fraction

    sio.dump({"x": Fraction(1, 3)}, tmp_path / "m" / "model.skops")  # a type off the allow-list
    with pytest.raises(NeoqaError, match="refuses to load"):
        persist.load(tmp_path / "m")


@pytest.mark.parametrize("encoder, pooling", [("resnet", "fifth"), ("mlp", "soft"), ("mlp", "transformer")])
def test_set_models_ignore_order_and_padding(splits, encoder, pooling):
    train, val = splits
    model = SetModel(encoder=encoder, pooling=pooling, epochs=1).fit(train.select(np.arange(200)))
    d = model._tensors(val.select(np.arange(16)))
    img, sc, mask, fx = features.padded_batch(d["images"], d["scalars"], d["offsets"], d["fixed"], np.arange(16))
    model.net_.eval()
    with torch.no_grad():
        base = model.net_(img, sc, mask, fx)
        # shuffle the observations of every sheet (padding stays behind the real ones)
        g = torch.Generator().manual_seed(0)
        perm_img, perm_sc = img.clone(), sc.clone()
        for b in range(len(mask)):
            k = int(mask[b].sum())
            p = torch.randperm(k, generator=g)
            perm_img[b, :k], perm_sc[b, :k] = img[b, :k][p], sc[b, :k][p]
        shuffled = model.net_(perm_img, perm_sc, mask, fx)
        # add ten slots of padding holding garbage
        pad_img = torch.cat([img, torch.randn(len(mask), 10, *img.shape[2:])], 1)
        pad_sc = torch.cat([sc, torch.randn(len(mask), 10, sc.shape[2])], 1)
        pad_mask = torch.cat([mask, torch.zeros(len(mask), 10, dtype=torch.bool)], 1)
        padded = model.net_(pad_img, pad_sc, pad_mask, fx)
    torch.testing.assert_close(shuffled, base, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(padded, base, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("name", registry.names())
def test_every_model_copies_and_pickles_calibrated_or_not(name, splits):
    """A fitted model, bare and temperature-scaled, survives copy.deepcopy and an in-memory pickle
    round trip with identical predictions: what sending it to another process needs (files a user
    hands in are still never unpickled)."""
    import copy
    import pickle

    from neoqa.models.calibration import Calibrated

    train, val = splits
    model = _fast(name).fit(train.select(np.arange(600)), validation=val)
    expect = model.predict_proba(val)
    for m in (model, Calibrated(model, 1.7)):
        want = m.predict_proba(val)
        for twin in (copy.deepcopy(m), pickle.loads(pickle.dumps(m))):
            np.testing.assert_array_equal(twin.predict_proba(val), want)
    np.testing.assert_array_equal(model.predict_proba(val), expect)       # the original is untouched


def test_registration_checks_the_contract():
    """A model whose fit has another signature, or that declares a capability it lacks, is refused
    when registered, not found out by a caller later."""
    from neoqa.models.base import Model

    class OldFit(Model):
        def __init__(self, random_state=0):
            self.random_state = random_state

        def fit(self, batch, y=None, val=None):
            return self

    class Boasts(Model):
        capabilities = frozenset({"finetune"})

        def __init__(self, random_state=0):
            self.random_state = random_state

        def fit(self, batch, y=None, *, validation=None, progress=False):
            return self

    for cls, match in ((OldFit, "fit must be"), (Boasts, "no finetune")):
        with pytest.raises(TypeError, match=match):
            registry.register("ridge")(lambda rs, cls=cls: cls(rs))
    with pytest.raises(ValueError, match="no place"):
        registry.register("my_model")(lambda rs: None)
    assert registry.names()[:3] == ("ridge", "quadratic", "rbf")


@pytest.mark.parametrize("encoder, pooling", [("resnet", "fifth"), ("mlp", "transformer"), ("mlp", "soft")])
def test_scoring_by_length_matches_scoring_in_order(splits, encoder, pooling):
    """The fast path embeds the flat observations without padding and pools sheets of similar k
    together: each sheet's logit stays the padded forward's (the network as trained)."""
    from neoqa.models.sets import loop

    train, val = splits
    model = SetModel(encoder=encoder, pooling=pooling, epochs=1).fit(train.select(np.arange(200)))
    d = model._tensors(val)
    fast = loop.logits(model.net_, d, model.device_, chunk=64, by_length=True)
    plain = loop.logits(model.net_, d, model.device_, chunk=64)
    with torch.inference_mode():
        padded = torch.cat([model.net_(*features.padded_batch(d["images"], d["scalars"], d["offsets"], d["fixed"],
                                                              np.arange(s, min(s + 64, len(val))), min_k=5))
                            for s in range(0, len(val), 64)])
    assert len(set(np.diff(d["offsets"]))) > 3            # sheets of many lengths, so the order did change
    torch.testing.assert_close(plain, padded, rtol=0, atol=0)       # in file order: the same matrices
    torch.testing.assert_close(fast, plain, rtol=1e-5, atol=1e-5)


def test_a_large_batch_is_predicted_in_pieces_as_the_same_probabilities(splits, monkeypatch):
    """A set model predicts a batch larger than PREDICT_SHEETS a piece at a time (a notebook's whole
    dataset ran at a quarter of the rate in one piece): the probabilities are the one-piece ones."""
    from neoqa.models.sets import model as sets_model

    train, val = splits
    model = SetModel(epochs=1).fit(train.select(np.arange(200)))
    whole = model.predict_proba(val)
    monkeypatch.setattr(sets_model, "PREDICT_SHEETS", 37)
    pieces = []
    monkeypatch.setattr(model, "_tensors", lambda b, f=model._tensors: pieces.append(len(b)) or f(b))
    np.testing.assert_allclose(model.predict_proba(val), whole, rtol=0, atol=1e-6)
    assert max(pieces) == 37 and sum(pieces) == len(val) > 37


def test_what_each_model_needs_is_what_own_data_md_says():
    """docs/own-data.md's table of scalars read by name is the code's (model.needs())."""
    import re
    from pathlib import Path

    doc = (Path(__file__).parents[2] / "docs" / "own-data.md").read_text()
    rows = dict(re.findall(r"^\| ([a-z_, ]+) \| (.+) \|$", doc, re.M))
    table = {}
    for models, scalars in rows.items():
        if models == "model":                          # the header
            continue
        for name in models.split(", "):
            table[name] = frozenset(re.findall(r"`(\w+)`", scalars))
    table["ensemble"] = table["gbdt"]                  # "those of its members (by default gbdt's)"
    assert set(table) == set(registry.names())
    for name in registry.names():
        assert make(name).needs() == table[name], name
    assert make("gbdt").needs() == frozenset(features.SUMMARY_OBS_SCALARS) - features.SUMMARY_OPTIONAL
    optional = re.search(r"^\| gbdt \|.*$", doc, re.M).group(0)
    assert "near_star_flag" not in optional and "star_dist_arcsec" in doc


def test_set_models_name_themselves_as_the_registry_does():
    """Progress bars say `train basic_sneon`, not the encoder and pooling behind it."""
    from neoqa.models import registry

    for name in registry.names():
        model = registry.make(name)
        if hasattr(model, "kind"):
            assert model.kind() == name


def test_a_saved_model_needs_and_reads_what_its_base_does():
    from neoqa.models.calibration import Calibrated

    ensemble, gbdt = make("ensemble"), make("gbdt")
    assert "snr_ch1" in Calibrated(base=ensemble).needs() == ensemble.needs()
    assert Calibrated(base=gbdt).reads() == gbdt.reads() == {"composite", "sheet_scalars", "obs_scalars"}
