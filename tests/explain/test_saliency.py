"""Explanations: exact differentiable translations, captum sanity checks, figures."""

import numpy as np
import pytest
import torch
from scipy.stats import spearmanr

from neoqa.explain import saliency as explain
from neoqa.cli import main
from neoqa.models.torch_forward import inputs_for
from neoqa.models import fixed
from neoqa.models.fixed import FixedLengthModel
from neoqa.models.multi import MultiLengthModel
from neoqa.models.sets.model import SetModel
from neoqa.train.fit import fit_and_save, labelled_splits


@pytest.fixture(scope="module")
def data(small_batch):
    return labelled_splits(small_batch)


def _models():
    return {
        "ridge": FixedLengthModel(fixed.ridge_pipeline(0)),
        "quadratic": FixedLengthModel(fixed.kernel_pipeline("poly", 0, n_components=60, degree=2, coef0=1.0)),
        "rbf": FixedLengthModel(fixed.kernel_pipeline("rbf", 0, n_components=60)),
        "rff": FixedLengthModel(fixed.rff_pipeline(0, n_components=100)),
        "mlp": FixedLengthModel(fixed.mlp_pipeline(0, width=20)),
        "multi": MultiLengthModel(per_k=fixed.ridge_pipeline(0), fallback=fixed.ridge_pipeline(0), min_sheets=50,
                                  keep_if_better=False),
        "sneon": SetModel(encoder="resnet", epochs=2),
    }


@pytest.fixture(scope="module")
def fitted(data):
    train, _ = data
    return {name: m.fit(train) for name, m in _models().items()}


@pytest.mark.parametrize("name", list(_models()))
def test_translation_reproduces_predict_proba(name, fitted, data):
    _, val = data
    model = fitted[name]
    if name == "multi":
        assert model.models_, "the test needs a per-k model"
    for i in range(8):
        sheet = val.select([i])
        si = inputs_for(model, sheet)
        with torch.no_grad():
            p = torch.sigmoid(si.forward(*si.tensors)).item()
        assert p == pytest.approx(model.predict_proba(sheet)[0, 1], abs=2e-4)


def test_smoothgrad_with_zero_noise_is_plain_saliency(fitted, data):
    sheet = data[1].select([0])
    plain = explain.attribute(fitted["sneon"], sheet, method="saliency")
    zero = explain.attribute(fitted["sneon"], sheet, method="smoothgrad", noise=0.0, samples=4)
    for key in ("obs_images", "obs_scalars", "composite", "sheet_scalars"):
        np.testing.assert_allclose(zero[key], plain[key], rtol=1e-5, atol=1e-8)


def test_saliency_covers_every_input(fitted, data):
    sheet = data[1].select([1])
    a = explain.attribute(fitted["sneon"], sheet, samples=8)
    k = int(sheet.k[0])
    assert a["obs_images"].shape == (k, 2, 15, 15) and a["obs_scalars"].shape == (k, 14)
    assert a["composite"].shape == (2, 15, 15) and a["sheet_scalars"].shape == (25,)
    for key in ("obs_images", "obs_scalars", "composite", "sheet_scalars"):
        assert np.all(np.isfinite(a[key])) and a[key].max() > 0
    # a fixed-length model does not read the observations: zero attribution there
    b = explain.attribute(fitted["mlp"], sheet, samples=8)
    assert not np.any(b["obs_images"]) and b["composite"].max() > 0


def test_model_randomisation_changes_the_saliency(fitted, data):
    """Adebayo et al.: a trained model's saliency must differ from a randomised copy's."""
    trained = fitted["sneon"]
    random = SetModel(encoder="resnet", epochs=2, random_state=123).fit(data[0].select(np.arange(5)))
    random.norm_ = trained.norm_                       # same inputs, randomised weights
    random.shape_ = trained.shape_
    random.net_ = random._build()                      # fresh weights of its own seed
    corr = []
    for i in range(6):
        sheet = data[1].select([i])
        a = explain.attribute(trained, sheet, method="saliency")["obs_images"].ravel()
        b = explain.attribute(random, sheet, method="saliency")["obs_images"].ravel()
        corr.append(spearmanr(a, b).statistic)
    assert np.mean(corr) < 0.5


def test_explain_cli(tmp_path, small_neowise, small_batch):
    """explain --out is always a folder: one PNG per sheet named by its id, and index.csv in order."""
    import csv

    from neoqa.decide.listing import list_sheets

    ridge = str(tmp_path / "ridge")
    fit_and_save("ridge", small_batch, ridge, progress=False)
    a, b = small_batch.sheet_id[3], small_batch.sheet_id[7]
    assert main(["explain", "--model", ridge, "--data", str(small_neowise), "--sheet", b, "--sheet", a,
                 "--samples", "4", "--out", str(tmp_path / "two")]) == 0
    assert (tmp_path / "two" / f"{a}.png").read_bytes()[:4] == b"\x89PNG"
    index = list(csv.DictReader(open(tmp_path / "two" / "index.csv")))
    assert [r["sheet_id"] for r in index] == [b, a] and index[0]["figure"] == f"{b}.png"

    assert main(["explain", "--model", ridge, "--data", str(small_neowise), "--all", "--limit", "3",
                 "--samples", "4", "--out", str(tmp_path / "many")]) == 0
    assert len(list((tmp_path / "many").glob("*.png"))) == 3

    # --errors: the model's most confident mistakes, in the listing's order
    assert main(["explain", "--model", ridge, "--data", str(small_neowise), "--errors", "--limit", "3",
                 "--method", "saliency", "--out", str(tmp_path / "errors")]) == 0
    wrong = list_sheets(small_neowise, ridge, errors=True, limit=3)
    index = list(csv.DictReader(open(tmp_path / "errors" / "index.csv")))
    assert [r["sheet_id"] for r in index] == [r["sheet_id"] for r in wrong] and len(wrong) == 3
    assert {"label", "probability"} <= set(index[0]) and index[0]["rank"] == "1"
    assert len(list((tmp_path / "errors").glob("*.png"))) == 3

    assert main(["explain", "--model", ridge, "--weights", "--out", str(tmp_path / "w")]) == 0
    assert (tmp_path / "w" / "weights.png").stat().st_size > 10_000


def test_explain_the_review_bucket(tmp_path, small_neowise, small_batch):
    """--bucket review: the sheets the saved operating point leaves to people, in the listing's order."""
    import csv

    from neoqa.decide.listing import list_sheets

    ridge = str(tmp_path / "ridge")
    fit_and_save("ridge", small_batch, ridge, progress=False)
    assert main(["triage", "--model", ridge, "--data", str(small_neowise), "--recall", "0.97", "--save",
                 "--bootstrap", "20"]) == 0
    assert main(["explain", "--model", ridge, "--data", str(small_neowise), "--bucket", "review", "--limit", "2",
                 "--method", "saliency", "--out", str(tmp_path / "review")]) == 0
    index = list(csv.DictReader(open(tmp_path / "review" / "index.csv")))
    want = list_sheets(small_neowise, ridge, bucket="review", limit=2)
    assert [r["sheet_id"] for r in index] == [r["sheet_id"] for r in want] and len(index) == 2
    assert {r["bucket"] for r in index} == {"review"}


def test_explain_cli_refusals(tmp_path, capsys, small_neowise, small_batch):
    ridge = str(tmp_path / "ridge")
    fit_and_save("ridge", small_batch, ridge, progress=False)
    for args, needle in ((["--bucket", "review"], "no saved operating point"),
                         (["--sheet", "nosuch"], "sheet 'nosuch' not found"),
                         ([], "explain needs --sheet ID, --errors, --bucket BUCKET or --all"),
                         (["--sheet", small_batch.sheet_id[0], "--errors"], "not both")):
        assert main(["explain", "--model", ridge, "--data", str(small_neowise), *args,
                     "--out", str(tmp_path / "x")]) == 2
        err = capsys.readouterr().err
        assert needle in err and len(err.strip().splitlines()) == 1
        assert not (tmp_path / "x").exists()


def test_trees_are_refused_with_a_clear_message(data):
    from neoqa.errors import NeoqaError
    from neoqa.models.registry import make

    gbdt = make("gbdt").fit(data[0])
    with pytest.raises(NeoqaError, match="no gradients"):
        inputs_for(gbdt, data[1].select([0]))
