"""A calibrated combination of the best models: each member's probabilities are
temperature-scaled on the validation split, then averaged in logit space."""

from __future__ import annotations

import json

import numpy as np
from sklearn.base import BaseEstimator, ClassifierMixin

from ..calibration import _logit, apply_temperature, fit_temperature


class EnsembleModel(ClassifierMixin, BaseEstimator):
    uses_validation = True

    def __init__(self, members=("gbdt", "sneon_soft", "mlp"), random_state=0, progress=True):
        self.members = members
        self.random_state = random_state
        self.progress = progress

    def fit(self, batch, y=None, val=None):
        from .registry import make

        if val is None or len(val) == 0:
            raise ValueError("the ensemble calibrates its members on a validation split")
        self.members_, self.temperatures_ = [], []
        for name in self.members:
            m = make(name, random_state=self.random_state)
            if hasattr(m, "progress"):
                m.progress = self.progress
            m.fit(batch, val=val) if getattr(m, "uses_validation", False) else m.fit(batch)
            self.members_.append(m)
            self.temperatures_.append(fit_temperature(val.label, m.predict_proba(val)[:, 1]))
        self.classes_ = np.array([0, 1])
        return self

    def predict_proba(self, batch):
        z = np.mean([_logit(apply_temperature(m.predict_proba(batch)[:, 1], t))
                     for m, t in zip(self.members_, self.temperatures_)], axis=0)
        p = 1.0 / (1.0 + np.exp(-z))
        return np.stack([1 - p, p], axis=1)

    def predict(self, batch):
        return (self.predict_proba(batch)[:, 1] >= 0.5).astype(int)

    def n_parameters(self) -> int:
        return int(sum(m.n_parameters() for m in self.members_))

    # Each member is saved in a sub-folder the way it would be saved alone.
    def save_weights(self, folder):
        import skops.io as sio

        from ..persist import SKOPS_FILE, _jsonable

        meta = []
        for i, (name, m, t) in enumerate(zip(self.members, self.members_, self.temperatures_)):
            sub = folder / f"member-{i}-{name}"
            sub.mkdir()
            if hasattr(m, "save_weights"):
                m.save_weights(sub)
            else:
                sio.dump(m, sub / SKOPS_FILE)
            meta.append({"name": name, "folder": sub.name, "temperature": t, "params": _jsonable(m.get_params(deep=False))})
        (folder / "members.json").write_text(json.dumps(meta, indent=1) + "\n")

    def load_weights(self, folder, info):
        from ..errors import NeoqaError
        from ..persist import SKOPS_FILE, load_skops
        from .registry import make

        path = folder / "members.json"
        if not path.exists():
            raise NeoqaError(f"{folder}: members.json is missing")
        meta = json.loads(path.read_text())
        self.members = tuple(e["name"] for e in meta)
        self.members_, self.temperatures_ = [], []
        for e in meta:
            sub = folder / e["folder"]
            if (sub / SKOPS_FILE).exists():
                m = load_skops(sub / SKOPS_FILE)
            else:
                m = make(e["name"])
                m.load_weights(sub, {"params": e["params"]})
            self.members_.append(m)
            self.temperatures_.append(float(e["temperature"]))
        self.classes_ = np.array([0, 1])
