"""The paper's "multiple" models: one model per popular k on the per-length view, the
rest routed to a fixed-length model. Beyond the paper (its own suggestion, section 4.7),
each per-k model also sees the fixed-length model's score, so no sub-model starts from
nothing when its slice of the data is small."""

from __future__ import annotations

import numpy as np
from sklearn.base import clone

from neoqa.features import views as features
from neoqa.models import fixed, torch_forward
from neoqa.models.base import Model, labels_of
from neoqa.models.fixed import FixedLengthModel, count_parameters, describe, seeded
from neoqa.models.registry import register
from neoqa.progress import heartbeat


class MultiLengthModel(Model):
    view = "per_length"
    capabilities = frozenset({"torch_forward"})

    def __init__(self, per_k=None, fallback=None, min_sheets=800, keep_if_better=True, random_state=None):
        self.per_k = per_k
        self.fallback = fallback
        self.min_sheets = min_sheets
        self.keep_if_better = keep_if_better
        self.random_state = random_state

    def fit(self, batch, y=None, *, validation=None, progress=False):
        with heartbeat(f"fit {describe(self.per_k)} per k and a fallback", progress):   # scikit-learn is silent
            return self._fit(batch, labels_of(batch, y))

    def _fit(self, batch, y):
        self.fallback_ = FixedLengthModel(self.fallback, random_state=self.random_state).fit(batch, y)
        base = self.fallback_.predict_proba(batch)[:, 1]
        self.models_ = {}
        ks, counts = np.unique(batch.k, return_counts=True)
        for k, n in zip(ks, counts):
            idx = np.flatnonzero(batch.k == k)
            if n < self.min_sheets or np.bincount(y[idx], minlength=2).min() < 10:
                continue                  # too few sheets (or of one class) for a model of its own
            idx, X = features.per_length(batch, int(k), extra=1)
            X[:, -1] = base[idx]          # float32, as the view (before 0.9.0 the column made it all float64)
            model = seeded(self.per_k, self.random_state)
            if not self.keep_if_better or self._beats_fallback(model, X, y[idx], base[idx]):
                self.models_[int(k)] = model.fit(X, y[idx])
        self.classes_ = self.fallback_.classes_
        return self

    @staticmethod
    def _beats_fallback(model, X, y, base) -> bool:
        """Keep a per-k model only where, fitted on four fifths of its slice, it scores the other
        fifth better (log-loss) than the fallback does: a slice too small to learn from would
        otherwise make the combination worse than the fallback alone (the paper's section 4.7).
        The fallback's scores are in-sample, so the comparison leans toward the fallback."""
        from sklearn.metrics import log_loss

        held = np.arange(len(y)) % 5 == 4
        if len(np.unique(y[~held])) < 2 or len(np.unique(y[held])) < 2:
            return False
        p = clone(model).fit(X[~held], y[~held]).predict_proba(X[held])[:, 1]
        eps = 1e-6
        return log_loss(y[held], np.clip(p, eps, 1 - eps), labels=[0, 1]) < \
            log_loss(y[held], np.clip(base[held], eps, 1 - eps), labels=[0, 1])

    def predict_proba(self, batch):
        proba = self.fallback_.predict_proba(batch)
        for k, model in self.models_.items():
            idx, X = features.per_length(batch, k, extra=1)
            if len(idx):
                X[:, -1] = proba[idx, 1]
                proba[idx] = model.predict_proba(X)
        return features.apply_label_rule(batch, proba)

    def n_parameters(self) -> int:
        return self.fallback_.n_parameters() + sum(count_parameters(m) for m in self.models_.values())

    def torch_inputs(self, sheet):
        return torch_forward.per_length_inputs(self.fallback_.estimator_, self.models_.get(int(sheet.k[0])), sheet)


@register("multi_linear")
def _make_multi_linear(rs):
    return MultiLengthModel(per_k=fixed.ridge_pipeline(rs), fallback=fixed.ridge_pipeline(rs), random_state=rs)


@register("multi_mlp")
def _make_multi_mlp(rs):
    return MultiLengthModel(per_k=fixed.mlp_pipeline(rs, depth=3), fallback=fixed.mlp_pipeline(rs), random_state=rs)
