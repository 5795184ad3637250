"""What a model is saved with besides its weights: a temperature fitted on the validation split and
the decision threshold.

A fitted model is wrapped as ``Calibrated(base, temperature)``: p' = sigmoid(logit(p) / T).
One parameter cannot overfit the validation split, it keeps the ranking (so ROC and
thresholds move together), and it is stored in ``model.json`` with the threshold that maximises
validation accuracy (``best_threshold``).
"""

from __future__ import annotations

import numpy as np
from scipy.optimize import minimize_scalar

from neoqa.models.base import Model

EPS = 1e-7


def _logit(p):
    p = np.clip(p, EPS, 1 - EPS)
    return np.log(p) - np.log1p(-p)


def apply_temperature(p, temperature: float):
    """Probabilities with their logits divided by ``temperature``; certainties (0 and 1, such as
    the label rule's) stay certain."""
    p = np.asarray(p)
    q = 1.0 / (1.0 + np.exp(-_logit(p) / temperature))
    return np.where(p <= 0, 0.0, np.where(p >= 1, 1.0, q))


def fit_temperature(y, p) -> float:
    """The temperature minimising the validation log-loss (bounded to 0.05..20)."""
    z, y = _logit(np.asarray(p)), np.asarray(y, dtype=float)

    def nll(log_t):
        q = np.clip(1.0 / (1.0 + np.exp(-z / np.exp(log_t))), EPS, 1 - EPS)
        return -np.mean(y * np.log(q) + (1 - y) * np.log1p(-q))

    return float(np.exp(minimize_scalar(nll, bounds=(np.log(0.05), np.log(20.0)), method="bounded").x))


class Calibrated(Model):
    """A fitted model whose probabilities are temperature-scaled. It keeps the contract itself
    (``predict_proba``, ``n_parameters``, ``capabilities``: its base's) and forwards nothing else,
    so it copies and pickles like any object; what only the base can do is done on ``base``
    (``unwrap``)."""

    def __init__(self, base=None, temperature: float = 1.0):
        self.base = base
        self.temperature = temperature

    @property
    def capabilities(self) -> frozenset:
        return self.base.capabilities

    @property
    def classes_(self):
        return self.base.classes_

    @property
    def view(self):
        return self.base.view

    def fit(self, batch, y=None, *, validation=None, progress=False):
        raise TypeError("a Calibrated model is fitted already; fit its base and calibrate again")

    def predict_proba(self, batch):
        p = apply_temperature(self.base.predict_proba(batch)[:, 1], float(self.temperature))
        return np.stack([1 - p, p], axis=1)

    def n_parameters(self) -> int:
        return self.base.n_parameters()


def unwrap(model):
    return model.base if isinstance(model, Calibrated) else model


def same_calibration(model, base):
    """``base`` with ``model``'s temperature (if it has one): a fine-tuned or updated network keeps its parent's."""
    return Calibrated(base, model.temperature) if isinstance(model, Calibrated) else base


def best_threshold(y, p) -> float:
    """The probability cut that maximises accuracy (on validation data)."""
    grid = np.linspace(0.05, 0.95, 91)
    acc = [np.mean((p >= t) == (y == 1)) for t in grid]
    return float(grid[int(np.argmax(acc))])
