"""A calibrated combination of the best models: each member's probabilities are
temperature-scaled on the validation split, then averaged in logit space. Registers ``ensemble``.

The members are registered models built by name; saving and loading them is persistence's work
(the ``composite`` capability: ``parts`` and ``from_parts``), so this module knows nothing of files.
"""

from __future__ import annotations

import numpy as np

from neoqa.models.base import Model
from neoqa.models.calibration import _logit, apply_temperature, fit_temperature
from neoqa.models.registry import make, register


class EnsembleModel(Model):
    capabilities = frozenset({"validation", "composite"})

    def __init__(self, members=("gbdt", "sneon_soft", "mlp"), random_state=0):
        self.members = members
        self.random_state = random_state

    def fit(self, batch, y=None, *, validation=None, progress=False):
        if validation is None or len(validation) == 0:
            raise ValueError("the ensemble calibrates its members on a validation split")
        self.members_, self.temperatures_ = [], []
        for name in self.members:
            m = make(name, random_state=self.random_state).fit(batch, y, validation=validation, progress=progress)
            self.members_.append(m)
            self.temperatures_.append(fit_temperature(validation.label, m.predict_proba(validation)[:, 1]))
        self.classes_ = np.array([0, 1])
        return self

    def predict_proba(self, batch):
        z = np.mean([_logit(apply_temperature(m.predict_proba(batch)[:, 1], t))
                     for m, t in zip(self.members_, self.temperatures_)], axis=0)
        p = 1.0 / (1.0 + np.exp(-z))
        return np.stack([1 - p, p], axis=1)

    def n_parameters(self) -> int:
        return int(sum(m.n_parameters() for m in self.members_))

    def needs(self) -> frozenset:
        return frozenset().union(*(make(name).needs() for name in self.members))

    def reads(self) -> frozenset | None:
        each = [make(name).reads() for name in self.members]         # as ``needs``: a member's view is its class's
        return None if any(r is None for r in each) else frozenset().union(*each)

    def parts(self) -> list:
        """(registry name, fitted member, what else it needs: its temperature) per member."""
        return [(name, m, {"temperature": float(t)})
                for name, m, t in zip(self.members, self.members_, self.temperatures_)]

    def from_parts(self, parts) -> "EnsembleModel":
        self.members = tuple(name for name, _, _ in parts)
        self.members_ = [m for _, m, _ in parts]
        self.temperatures_ = [float(extra["temperature"]) for _, _, extra in parts]
        self.classes_ = np.array([0, 1])
        return self


@register("ensemble")
def _make_ensemble(rs):
    return EnsembleModel(random_state=rs)
