"""The gbdt's flattened trees predict what LightGBM predicts, to the last bit, or leave it to LightGBM."""

import numpy as np
import pytest

from neoqa.models.fixed import FixedLengthModel, _forest
from neoqa.models.forest import FlatForest, forest_of
from neoqa.models.registry import make


def _data(n=3000, seed=0):
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, 6)).astype(np.float32)
    X[:, 5] = np.round(X[:, 5])                             # ties with thresholds, exact zeros
    y = (X[:, 0] + X[:, 1] * X[:, 2] + 0.5 * np.nan_to_num(X[:, 3]) > 0).astype(int)
    X[rng.random(n) < 0.2, 3] = np.nan                      # NaNs seen in training: learnt as missing
    return X, y


@pytest.mark.parametrize("nan_in_training", [True, False])
def test_the_walk_gives_lightgbms_raw_scores_exactly(nan_in_training):
    from lightgbm import LGBMClassifier

    X, y = _data()
    if not nan_in_training:
        X = np.nan_to_num(X)
    clf = LGBMClassifier(n_estimators=80, num_leaves=15, verbose=-1, random_state=0, n_jobs=1).fit(X, y)
    Xt, _ = _data(2000, seed=1)                             # NaNs at prediction time, in either case
    Xt[::7, 0] = np.nan
    forest = FlatForest.from_booster(clf.booster_)
    assert forest is not None and forest.depth.max() >= 4
    np.testing.assert_array_equal(forest.raw(Xt), clf.booster_.predict(Xt, raw_score=True))
    np.testing.assert_allclose(forest.predict_proba(Xt), clf.predict_proba(Xt), rtol=0, atol=1e-15)
    with pytest.raises(ValueError, match="expected 6 features"):
        forest.raw(Xt[:, :5])


def test_models_the_walk_cannot_reproduce_stay_with_lightgbm():
    from lightgbm import LGBMClassifier

    X, y = _data()
    zero = LGBMClassifier(n_estimators=5, zero_as_missing=True, verbose=-1, n_jobs=1).fit(X, y)
    several = LGBMClassifier(n_estimators=5, verbose=-1, n_jobs=1).fit(X, np.arange(len(y)) % 3)
    linear = LGBMClassifier(n_estimators=5, linear_tree=True, verbose=-1, n_jobs=1).fit(np.nan_to_num(X), y)
    assert [FlatForest.from_booster(c.booster_) for c in (zero, several, linear)] == [None, None, None]


def test_the_gbdt_predicts_through_the_walk(splits_small):
    train, val = splits_small
    model = make("gbdt", random_state=0).set_params(estimator__pipeline__clf__n_estimators=60)
    model.fit(train)
    assert _forest(model.estimator_) is forest_of(model.estimator_.pipeline_.steps[0][1].booster_)
    via_lightgbm = FixedLengthModel.predict_proba(model, val)
    np.testing.assert_allclose(model.predict_proba(val), via_lightgbm, rtol=0, atol=1e-12)
    model.finetune(val, trees=10)                           # new trees: a new walk
    np.testing.assert_allclose(model.predict_proba(val), FixedLengthModel.predict_proba(model, val), rtol=0,
                               atol=1e-12)


@pytest.fixture(scope="module")
def splits_small():
    from neoqa.simulate import SimConfig, simulate_batch
    from neoqa.train.fit import labelled_splits

    return labelled_splits(simulate_batch(SimConfig(), 900, seed=7))
