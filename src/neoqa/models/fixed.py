"""Models of the fixed-length view (composite image + sheet scalars): real scikit-learn
pipelines (imputer, scaler, estimator) behind a thin adapter that builds the view; and the
gradient-boosted trees of the engineered summary view. Registers ridge, quadratic, rbf, rff, mlp
(the paper's) and gbdt."""

from __future__ import annotations

import numpy as np
from sklearn.base import BaseEstimator, ClassifierMixin, clone
from sklearn.calibration import CalibratedClassifierCV
from sklearn.impute import SimpleImputer
from sklearn.kernel_approximation import Nystroem, RBFSampler
from sklearn.linear_model import RidgeClassifier
from sklearn.neural_network import MLPClassifier
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import StandardScaler
from sklearn.utils.validation import check_is_fitted

from neoqa import threads
from neoqa.features import views as features
from neoqa.models import torch_forward
from neoqa.progress import heartbeat, tree_bar
from neoqa.models.base import Model, labels_of
from neoqa.models.registry import register


class PipelineClassifier(ClassifierMixin, BaseEstimator):
    """A scikit-learn pipeline that fits a copy of itself, leaving its parameters untouched
    (a bare Pipeline fits its steps in place, which the estimator contract forbids)."""

    def __init__(self, pipeline=None):
        self.pipeline = pipeline

    def fit(self, X, y, **fit_params):
        self.pipeline_ = _budgeted(clone(self.pipeline)).fit(X, y, **fit_params)
        self.classes_ = self.pipeline_.classes_
        self.n_features_in_ = self.pipeline_.n_features_in_
        return self

    def predict_proba(self, X):
        check_is_fitted(self)
        return _budgeted(self.pipeline_).predict_proba(X)

    def predict(self, X):
        check_is_fitted(self)
        return _budgeted(self.pipeline_).predict(X)

    def contributions(self, X):
        """TreeSHAP of a LightGBM pipeline: each feature's exact contribution to the raw score (the
        logit), [n, features + 1], the last column the expected value (LightGBM's pred_contrib)."""
        check_is_fitted(self)
        return _budgeted(self.pipeline_).predict(X, pred_contrib=True)

    def __sklearn_tags__(self):
        from sklearn.utils import get_tags

        tags = super().__sklearn_tags__()
        tags.input_tags.allow_nan = True           # the pipeline imputes, or its trees handle NaN
        steps = getattr(self.pipeline, "steps", [])
        tags.input_tags.sparse = len(steps) == 1 and get_tags(steps[0][1]).input_tags.sparse
        return tags


def describe(estimator) -> str:
    """What a (seeded) PipelineClassifier fits, for progress lines: its last step's class."""
    steps = getattr(getattr(estimator, "pipeline", None), "steps", None)
    return type(steps[-1][1]).__name__ if steps else type(estimator).__name__


def _budgeted(pipeline):
    """LightGBM runs as many threads as the budget (neoqa.threads) allows, at fit and at prediction
    time, whatever count a saved model was fitted with."""
    last = pipeline.steps[-1][1] if getattr(pipeline, "steps", None) else None
    if last is not None and type(last).__module__.startswith("lightgbm."):
        last.set_params(n_jobs=threads.budget())
    return pipeline


def _prep():
    # Normalisation is part of the pipeline, so it is fitted on training data only and saved with it.
    return [("impute", SimpleImputer(strategy="median", keep_empty_features=True)), ("scale", StandardScaler())]


def _ridge(alpha, random_state):
    # Least squares with a ridge penalty on +-1 targets; Platt scaling turns its scores into probabilities.
    return CalibratedClassifierCV(RidgeClassifier(alpha=alpha, class_weight="balanced"), method="sigmoid", cv=3)


def ridge_pipeline(random_state=0, alpha=30.0):
    return PipelineClassifier(Pipeline(_prep() + [("clf", _ridge(alpha, random_state))]))


def kernel_pipeline(kernel, random_state=0, n_components=1500, alpha=30.0, **kernel_params):
    """Kernel ridge through a Nystroem feature map: an exact kernel on 28,000 sheets would need
    a 28,000^2 Gram matrix (6 GB); 1,500 landmarks keep the conclusion and fit in seconds."""
    return PipelineClassifier(Pipeline(_prep() + [
        ("kernel", Nystroem(kernel=kernel, n_components=n_components, random_state=random_state, **kernel_params)),
        ("clf", _ridge(alpha, random_state))]))


def rff_pipeline(random_state=0, n_components=3000, alpha=30.0, gamma=None):
    """Random Fourier features (Rahimi & Recht 2007) of the RBF kernel, then ridge."""
    return PipelineClassifier(Pipeline(_prep() + [
        ("rff", _GammaRFF(gamma=gamma, n_components=n_components, random_state=random_state)),
        ("clf", _ridge(alpha, random_state))]))


class _GammaRFF(RBFSampler):
    """RBFSampler whose default gamma is 1 / n_features (the RBF kernel's usual scale)."""

    def __init__(self, gamma=None, n_components=100, random_state=None):
        super().__init__(gamma=1.0, n_components=n_components, random_state=random_state)
        self.gamma = gamma

    def fit(self, X, y=None):
        g = self.gamma
        self.gamma = 1.0 / X.shape[1] if g is None else g
        try:
            return super().fit(X, y)
        finally:
            self.gamma_used_ = self.gamma
            self.gamma = g

    def transform(self, X):
        g = self.gamma
        self.gamma = self.gamma_used_
        try:
            return super().transform(X)
        finally:
            self.gamma = g


def mlp_pipeline(random_state=0, depth=7, width=100, alpha=1e-3, max_iter=300, early_stopping=True):
    """The paper's best fixed-length network: ReLU MLP, 7 hidden layers of 100 units, Adam,
    early stopping on a 10% hold-out of the training data."""
    return PipelineClassifier(Pipeline(_prep() + [("clf", MLPClassifier(
        hidden_layer_sizes=(width,) * depth, activation="relu", alpha=alpha, batch_size=128,
        learning_rate_init=1e-3, max_iter=max_iter, early_stopping=early_stopping, validation_fraction=0.1,
        n_iter_no_change=10, random_state=random_state))]))


class FixedLengthModel(Model):
    """A scikit-learn pipeline applied to the fixed-length view of a SheetBatch."""

    view = "fixed"
    capabilities = frozenset({"torch_forward", "linear_weights"})

    def __init__(self, estimator=None, random_state=None):
        self.estimator = estimator
        self.random_state = random_state

    @staticmethod
    def _view(batch):
        return features.fixed_length(batch)

    def fit(self, batch, y=None, *, validation=None, progress=False):
        est = seeded(self.estimator, self.random_state)
        with heartbeat(f"fit {describe(est)}", progress):          # scikit-learn reports nothing while it fits
            self.estimator_ = est.fit(self._view(batch), labels_of(batch, y))
        self.classes_ = self.estimator_.classes_
        return self

    def predict_proba(self, batch):
        return features.apply_label_rule(batch, self.estimator_.predict_proba(self._view(batch)))

    def n_parameters(self) -> int:
        return count_parameters(self.estimator_)

    def torch_inputs(self, sheet):
        return torch_forward.fixed_inputs(self.estimator_, sheet)

    def linear_weights(self):
        return torch_forward.pipeline_linear_weights(self.estimator_)


def seeded(estimator, random_state):
    """A fresh copy of ``estimator`` with every seed in it set to ``random_state`` (None: as it is)."""
    est = clone(estimator)
    if random_state is not None:
        est.set_params(**{k: random_state for k in est.get_params(deep=True) if k.endswith("random_state")})
    return est


def count_parameters(est) -> int:
    """Learned numbers in a fitted scikit-learn object (coefficients, weights, landmarks...)."""
    if isinstance(est, PipelineClassifier):
        return count_parameters(est.pipeline_)
    if isinstance(est, Pipeline):
        return sum(count_parameters(step) for _, step in est.steps)
    if isinstance(est, CalibratedClassifierCV):
        return sum(count_parameters(c.estimator) + 2 for c in est.calibrated_classifiers_)
    total = 0
    booster = getattr(est, "booster_", None)
    if booster is not None:                      # trees: split thresholds and leaf values
        dump = booster.dump_model()
        return int(sum(2 * t["num_leaves"] - 1 for t in dump["tree_info"]))
    for name in ("coef_", "intercept_", "components_", "random_weights_", "random_offset_", "mean_", "scale_",
                 "statistics_"):
        value = getattr(est, name, None)
        if value is not None:
            total += int(np.size(value))
    for name in ("coefs_", "intercepts_"):
        for value in getattr(est, name, []) or []:
            total += int(np.size(value))
    return total


def gbdt_pipeline(random_state=0, n_estimators=600, learning_rate=0.05, num_leaves=31):
    """Gradient-boosted trees (LightGBM) on the engineered summary view; trees need no scaling
    and handle NaN natively, so the pipeline is the classifier alone."""
    from lightgbm import LGBMClassifier

    return PipelineClassifier(Pipeline([("clf", LGBMClassifier(
        n_estimators=n_estimators, learning_rate=learning_rate, num_leaves=num_leaves, subsample=0.8,
        subsample_freq=1, colsample_bytree=0.8, min_child_samples=20, reg_lambda=1.0, random_state=random_state,
        n_jobs=None, verbose=-1))]))             # n_jobs: the thread budget, set at fit (_budgeted)


def leaf_size(n_sheets: int) -> int:
    """LightGBM's smallest leaf: its default 20, down to a tenth of the sheets when few are labelled."""
    return int(np.clip(n_sheets // 10, 2, 20))


class SummaryModel(FixedLengthModel):
    """A scikit-learn pipeline on the engineered summary view (``features.summary``): trees, so no
    gradients to explain, but more of them can be grown on new data."""

    view = "summary"
    capabilities = frozenset({"finetune", "tree_shap"})

    @staticmethod
    def _view(batch):
        return features.summary(batch)

    def predict_proba(self, batch):
        forest = _forest(self.estimator_)
        if forest is None:
            return super().predict_proba(batch)
        return features.apply_label_rule(batch, forest.predict_proba(self._view(batch)))

    def contributions(self, batch):
        """Exact additive contributions of each summary feature to the logit (TreeSHAP), [n, F + 1]."""
        return self.estimator_.contributions(self._view(batch))

    @staticmethod
    def feature_names(batch) -> list[str]:
        return features.summary_names(batch.sheet_scalar_names, batch.meta.get("channels") or ("ch1", "ch2"))

    def fit(self, batch, y=None, *, validation=None, progress=False):
        y = labels_of(batch, y)
        est = seeded(self.estimator, self.random_state)
        leaf = est.get_params().get("pipeline__clf__min_child_samples")
        if leaf is not None:           # a leaf may hold fewer sheets when few are labelled
            est.set_params(pipeline__clf__min_child_samples=min(leaf, leaf_size(len(y))))
        trees = est.get_params().get("pipeline__clf__n_estimators")
        bar = tree_bar(trees or 0, "fit gradient-boosted trees", progress and bool(trees))
        try:
            self.estimator_ = est.fit(self._view(batch), y, **({"clf__callbacks": [bar]} if trees else {}))
        finally:
            bar.close()
        self.classes_ = self.estimator_.classes_
        return self

    def finetune(self, batch, *, trees=100, lr=0.03, seed=0, **_):
        """Continued boosting on ``batch`` (or a list of batches): ``trees`` more trees fitted to the
        new sheets' residuals on top of the existing ensemble (LightGBM's init_model)."""
        parts = batch if isinstance(batch, (list, tuple)) else [batch]
        X = np.concatenate([self._view(b) for b in parts])
        y = np.concatenate([b.label for b in parts])
        steps = self.estimator_.pipeline_.steps
        old = steps[-1][1]
        new = clone(old).set_params(n_estimators=trees, learning_rate=lr, random_state=seed,
                                    min_child_samples=leaf_size(len(y)))
        new.fit(X, y, init_model=old.booster_)
        steps[-1] = (steps[-1][0], new)
        return self


def _forest(estimator):
    """The flattened trees of a fitted one-step LightGBM pipeline (``models.forest``: LightGBM's
    predictions, faster), or None where the pipeline is anything else."""
    steps = getattr(getattr(estimator, "pipeline_", None), "steps", [])
    clf = steps[0][1] if len(steps) == 1 else None
    if type(clf).__name__ != "LGBMClassifier" or list(getattr(clf, "classes_", [])) != [0, 1]:
        return None
    from neoqa.models.forest import forest_of

    return forest_of(clf.booster_)


@register("ridge")
def _make_ridge(rs):
    return FixedLengthModel(ridge_pipeline(rs), random_state=rs)


@register("quadratic")
def _make_quadratic(rs):
    return FixedLengthModel(kernel_pipeline("poly", rs, degree=2, coef0=1.0), random_state=rs)


@register("rbf")
def _make_rbf(rs):
    return FixedLengthModel(kernel_pipeline("rbf", rs), random_state=rs)


@register("rff")
def _make_rff(rs):
    return FixedLengthModel(rff_pipeline(rs), random_state=rs)


@register("mlp")
def _make_mlp(rs):
    return FixedLengthModel(mlp_pipeline(rs), random_state=rs)


@register("gbdt")
def _make_gbdt(rs):
    return SummaryModel(gbdt_pipeline(rs), random_state=rs)
