"""A calibrated combination of the best models: each member's probabilities are
temperature-scaled on the validation split, then averaged in logit space."""

from __future__ import annotations

import json

import numpy as np
from sklearn.base import BaseEstimator, ClassifierMixin

from neoqa.models.calibration import _logit, apply_temperature, fit_temperature


class EnsembleModel(ClassifierMixin, BaseEstimator):
    uses_validation = True

    def __init__(self, members=("gbdt", "sneon_soft", "mlp"), random_state=0, progress=True):
        self.members = members
        self.random_state = random_state
        self.progress = progress

    def fit(self, batch, y=None, val=None):
        from neoqa.models.registry import make

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
        from neoqa.models.persistence import _jsonable, save_weights

        meta = []
        for i, (name, m, t) in enumerate(zip(self.members, self.members_, self.temperatures_)):
            sub = folder / f"member-{i}-{name}"
            sub.mkdir()
            save_weights(m, sub)
            meta.append({"name": name, "folder": sub.name, "temperature": t, "params": _jsonable(m.get_params(deep=False))})
        (folder / "members.json").write_text(json.dumps(meta, indent=1) + "\n")

    def load_weights(self, folder):
        from neoqa.errors import NeoqaError
        from neoqa.outputs import confined
        from neoqa.models.persistence import load_weights
        from neoqa.models.registry import MODELS

        path = folder / "members.json"
        if not path.is_file():
            raise NeoqaError(f"{folder}: members.json is missing")
        try:
            meta = json.loads(path.read_text())
        except (json.JSONDecodeError, UnicodeDecodeError):
            raise NeoqaError(f"{path}: not valid JSON") from None
        if not isinstance(meta, list) or not meta:
            raise NeoqaError(f"{path}: expected a non-empty list of members")
        self.members_, self.temperatures_ = [], []
        for i, e in enumerate(meta):
            where = f"{path}: member {i}"
            if not isinstance(e, dict) or not all(isinstance(e.get(k), t) for k, t in
                                                  (("name", str), ("folder", str), ("params", dict))):
                raise NeoqaError(f"{where}: fields 'name', 'folder' and 'params' are missing or of the wrong type")
            if e["name"] not in MODELS or e["name"] == "ensemble":
                raise NeoqaError(f"{where}: unknown member model {e['name']!r}")
            t = e.get("temperature")
            if not isinstance(t, (int, float)) or isinstance(t, bool) or not np.isfinite(t) or t <= 0:
                raise NeoqaError(f"{where}: field 'temperature' must be a positive number")
            sub = confined(folder, e["folder"], where)
            if not sub.is_dir():
                raise NeoqaError(f"{where}: folder {e['folder']!r} is missing")
            self.members_.append(load_weights(sub, e["name"], e["params"], where))
            self.temperatures_.append(float(t))
        self.members = tuple(e["name"] for e in meta)
        self.classes_ = np.array([0, 1])
