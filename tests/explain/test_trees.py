"""Tree models explained exactly: TreeSHAP contributions that add up to the model's own logit,
mapped back to the observations they summarise, and drawn by `neoqa explain`."""

import numpy as np
import pytest

from neoqa.cli import main
from neoqa.explain.trees import tree_attributions
from neoqa.features import views as features
from neoqa.models import persistence as persist
from neoqa.train.fit import fit_and_save


@pytest.fixture(scope="module")
def gbdt(tmp_path_factory, small_batch):
    out = tmp_path_factory.mktemp("trees") / "gbdt"
    fit_and_save("gbdt", small_batch, out, progress=False)
    return out


def test_contributions_add_up_to_the_calibrated_logit(gbdt, small_batch):
    model, _ = persist.load(gbdt)
    checked = 0
    for i in range(0, 60, 3):
        sheet = small_batch.select([i])
        a = tree_attributions(model, sheet)
        assert len(a["names"]) == len(a["contrib"]) == len(a["values"]) == features.summary(sheet).shape[1]
        if a["label_rule"]:
            assert a["score"] == 0.0
            continue
        p = np.clip(a["score"], 1e-12, 1 - 1e-12)
        assert a["logit"] == pytest.approx(np.log(p / (1 - p)), abs=1e-6)
        checked += 1
    assert checked >= 10


class _Only:
    """A stand-in tree model whose one contribution is 1 to feature ``col`` (and whose score is the real one's)."""

    def __init__(self, real, col):
        self.real, self.col = real, col

    def contributions(self, batch):
        out = np.zeros((1, len(self.feature_names(batch)) + 1))
        out[0, self.col] = 1.0
        return out

    def feature_names(self, batch):
        return self.real.feature_names(batch)

    def predict_proba(self, batch):
        return self.real.predict_proba(batch)


def test_contributions_land_on_the_observations_they_summarise(gbdt, small_batch):
    from neoqa.models.calibration import Calibrated

    model, _ = persist.load(gbdt)
    sheet = small_batch.select([int(np.argmax(small_batch.k == 8))])
    assert sheet.k[0] == 8
    names = model.base.feature_names(sheet)
    order = features.time_order(sheet)

    def per_obs(feature):
        return tree_attributions(Calibrated(_Only(model.base, names.index(feature))), sheet)["per_obs"]

    snr = np.nan_to_num(sheet.obs_scalar("snr_ch2")[order], nan=-np.inf)
    want = np.zeros(8)
    want[np.argsort(-snr, kind="stable")[4]] = 1.0
    np.testing.assert_allclose(per_obs("snr_ch2, 5th largest"), want)            # the one observation
    off = sheet.obs_scalar("fit_offset_arcsec")[order]
    want = np.zeros(8)
    want[np.argmax(off)] = 1.0
    np.testing.assert_allclose(per_obs("fit_offset_arcsec, max"), want)
    want = np.zeros(8)
    want[np.argsort(off, kind="stable")[[3, 4]]] = 0.5                           # the two middle of eight
    np.testing.assert_allclose(per_obs("fit_offset_arcsec, median"), want)
    np.testing.assert_allclose(per_obs("mag_ch2, std"), np.where(np.isfinite(sheet.obs_scalar("mag_ch2")[order]),
                                                                  1 / np.isfinite(sheet.obs_scalar("mag_ch2")).sum(), 0))
    assert not per_obs("rate_deg_per_day").any()                                 # a sheet scalar: no observation's


def test_explain_cli_draws_trees(tmp_path, gbdt, small_neowise, small_batch):
    assert main(["explain", "--model", str(gbdt), "--data", str(small_neowise), "--sheet", small_batch.sheet_id[5],
                 "--out", str(tmp_path / "gbdt")]) == 0
    out = tmp_path / "gbdt" / f"{small_batch.sheet_id[5]}.png"
    assert out.read_bytes()[:4] == b"\x89PNG" and out.stat().st_size > 20_000
