"""What a model is saved with besides its weights: a temperature fitted on the validation split and
the decision threshold.

A fitted model is wrapped as ``Calibrated(base, temperature)``: p' = sigmoid(logit(p) / T).
One parameter cannot overfit the validation split, it keeps the ranking (so ROC and
thresholds move together), and it is stored in ``model.json`` with the threshold that maximises
validation accuracy (``best_threshold``).
"""

from __future__ import annotations

from dataclasses import dataclass, field

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


BUCKETS = ("accept", "review", "reject")


@dataclass(frozen=True)
class OperatingPoint:
    """The three-way triage a model is saved with: accept at p >= ``accept_above``, reject below
    ``reject_below``, review between; set on a labelled validation split for a target recall (of
    real sheets kept out of the reject) and precision (of the accepts), with bootstrap intervals,
    and what it was set on (``set_on``: the data, its digest, the label source, the sheets)."""
    accept_above: float
    reject_below: float
    target_recall: float
    target_precision: float
    accept_above_ci95: tuple = (float("nan"), float("nan"))
    reject_below_ci95: tuple = (float("nan"), float("nan"))
    set_on: dict = field(default_factory=dict)

    def buckets(self, p) -> np.ndarray:
        """0 accept, 1 review, 2 reject; a probability that is not finite goes to review, never to a decision."""
        return buckets(p, self.accept_above, self.reject_below)

    def as_dict(self) -> dict:
        return {"accept_above": self.accept_above, "reject_below": self.reject_below,
                "target_recall": self.target_recall, "target_precision": self.target_precision,
                "accept_above_ci95": list(self.accept_above_ci95), "reject_below_ci95": list(self.reject_below_ci95),
                "set_on": self.set_on}

    @classmethod
    def from_dict(cls, d: dict, where: str) -> "OperatingPoint":
        """From model.json's ``operating_point``, every field checked (one line naming it)."""
        from neoqa.errors import NeoqaError

        if not isinstance(d, dict):
            raise NeoqaError(f"{where}: field 'operating_point' must be an object")
        for key in ("accept_above", "reject_below", "target_recall", "target_precision"):
            v = d.get(key)
            if not isinstance(v, (int, float)) or isinstance(v, bool) or not (0 <= v <= 1 or v == float("inf")):
                raise NeoqaError(f"{where}: field 'operating_point.{key}' must be a number in [0, 1]")
        if d["reject_below"] > d["accept_above"]:
            raise NeoqaError(f"{where}: field 'operating_point.reject_below' is above accept_above")
        cis = []
        for key in ("accept_above_ci95", "reject_below_ci95"):
            v = d.get(key, [float("nan")] * 2)
            if not isinstance(v, list) or len(v) != 2 or not all(isinstance(x, (int, float)) for x in v):
                raise NeoqaError(f"{where}: field 'operating_point.{key}' must be two numbers")
            cis.append(tuple(float(x) for x in v))
        set_on = d.get("set_on", {})
        if not isinstance(set_on, dict):
            raise NeoqaError(f"{where}: field 'operating_point.set_on' must be an object")
        return cls(float(d["accept_above"]), float(d["reject_below"]), float(d["target_recall"]),
                   float(d["target_precision"]), *cis, set_on)


def buckets(p, accept_above, reject_below) -> np.ndarray:
    """0 accept, 1 review, 2 reject; a probability that is not finite goes to review, never to a decision."""
    p = np.asarray(p)
    b = np.where(p >= accept_above, 0, np.where(p >= reject_below, 1, 2)).astype(np.int8)
    b[~np.isfinite(p)] = 1
    return b


class Calibrated(Model):
    """A fitted model as it is saved and served: probabilities temperature-scaled, decided at its
    ``threshold``, and triaged by its ``operating_point`` where one was saved. It keeps the
    contract itself (``predict_proba``, ``n_parameters``, ``capabilities``: its base's) and forwards
    nothing else, so it copies and pickles like any object; what only the base can do is done on
    ``base`` (``unwrap``)."""

    def __init__(self, base=None, temperature: float = 1.0, threshold: float = 0.5, operating_point=None):
        self.base = base
        self.temperature = temperature
        self.threshold = threshold
        self.operating_point = operating_point

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

    def predict(self, batch):
        """1 real, 0 false at the saved decision threshold; -1 where the probability is not finite
        (never a silent decision)."""
        p = self.predict_proba(batch)[:, 1]
        return np.where(np.isfinite(p), p >= self.threshold, -1).astype(np.int8)

    def triage(self, batch) -> np.ndarray:
        """Each sheet's bucket by the saved operating point: 0 accept, 1 review, 2 reject."""
        if self.operating_point is None:
            from neoqa.errors import NeoqaError

            raise NeoqaError("this model has no saved operating point (neoqa triage --recall R --save sets one)")
        return self.operating_point.buckets(self.predict_proba(batch)[:, 1])

    def n_parameters(self) -> int:
        return self.base.n_parameters()

    def needs(self) -> frozenset:
        return self.base.needs()

    def reads(self) -> frozenset | None:
        return self.base.reads()


def unwrap(model):
    return model.base if isinstance(model, Calibrated) else model


def same_calibration(model, base):
    """``base`` with ``model``'s temperature, threshold and operating point (if it has them): a
    fine-tuned or updated network keeps its parent's."""
    if not isinstance(model, Calibrated):
        return base
    return Calibrated(base, model.temperature, model.threshold, model.operating_point)


def best_threshold(y, p) -> float:
    """The probability cut that maximises accuracy (on validation data)."""
    grid = np.round(np.linspace(0.05, 0.95, 91), 2)       # 0.39, not 0.38999999999999996
    acc = [np.mean((p >= t) == (y == 1)) for t in grid]
    return float(grid[int(np.argmax(acc))])
