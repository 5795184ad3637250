"""The one model contract (docs/models.md, "The model contract").

Every model, as in scikit-learn: the constructor stores its parameters (``random_state`` among
them) and does nothing else; ``fit(batch, y=None, *, validation=None, progress=False)`` learns
from a ``SheetBatch`` (labels from ``y`` or the batch; ``validation`` a labelled batch a model may
stop early on; ``progress`` shows a bar) and returns the model; ``predict_proba(batch)`` gives
[n, 2] probabilities; ``n_parameters()`` counts what was learnt; fitted state ends in ``_``.

What only some models can do is a **capability**, declared on the class (``capabilities``) and
checked when the model is registered (``registry.register``): each names the methods it
promises. Callers ask ``capabilities(model)``; nobody probes with ``hasattr`` or switches on
classes.
"""

from __future__ import annotations

import numpy as np
from sklearn.base import BaseEstimator, ClassifierMixin

# capability -> the methods a model declaring it implements
CAPABILITIES = {
    # fit reads its validation split (early stopping, calibrating members), which must then be held
    # out of the sheets it trains on
    "validation": (),
    # more training on a few labelled sheets of new data: finetune(batch, *, seed=0, ...) -> self
    "finetune": ("finetune",),
    # input statistics per survey, fitted on unlabelled sheets: adapt_normalisation(unlabelled) -> self,
    # knows_survey(survey) -> bool, initialise(unlabelled) -> self (a fresh model normalised so)
    "adapt_inputs": ("adapt_normalisation", "knows_survey", "initialise"),
    # a differentiable PyTorch function of one sheet's inputs, for explanations:
    # torch_inputs(sheet) -> torch_forward.SheetInputs
    "torch_forward": ("torch_inputs",),
    # effective weights of a linear model, or None where the fitted pipeline is not linear
    "linear_weights": ("linear_weights",),
    # weights in a file of its own (safetensors), not a skops file: save_weights(folder), load_weights(folder)
    "own_weights": ("save_weights", "load_weights"),
    # made of other registered models: parts() -> [(name, model, extra)], from_parts(parts) -> self
    "composite": ("parts", "from_parts"),
    # trees with exact attributions (TreeSHAP): contributions(batch) -> [n, features + 1] additive
    # contributions to the logit, the last column the expected value; feature_names(batch) -> names
    "tree_shap": ("contributions", "feature_names"),
}


class Model(ClassifierMixin, BaseEstimator):
    """The base of every registered model (see the module docstring)."""

    capabilities: frozenset = frozenset()
    view = "fixed"                # the feature view it reads (docs/models.md, "Views")

    def fit(self, batch, y=None, *, validation=None, progress=False):
        raise NotImplementedError

    def predict_proba(self, batch):
        raise NotImplementedError

    def predict(self, batch):
        return self.classes_[np.argmax(self.predict_proba(batch), axis=1)]

    def n_parameters(self) -> int:
        raise NotImplementedError

    def needs(self) -> frozenset:
        """The observation scalars this model reads by name: data without one cannot train or be
        scored by it. The others a model was trained on are optional (median-imputed when absent)."""
        from neoqa.features.views import needs

        return needs(self.view)

    def reads(self) -> frozenset | None:
        """The stored arrays its predictions are made from (``data.sheets.OPTIONAL_ARRAYS``), or
        None for all: a scorer reads no others from disk."""
        from neoqa.features.views import reads

        return reads(self.view)


def labels_of(batch, y) -> np.ndarray:
    """The labels to fit on: ``y`` where given, else the batch's own."""
    return batch.label if y is None else np.asarray(y)


def capabilities(model) -> frozenset:
    """What ``model`` can do beyond the contract (a ``Calibrated`` model: what its base can)."""
    return frozenset(model.capabilities)


def check_contract(name: str, model) -> None:
    """A registered model keeps the contract and implements every capability it declares."""
    import inspect

    if not isinstance(model, Model):
        raise TypeError(f"model {name!r}: {type(model).__name__} is not a neoqa.models.base.Model")
    sig = inspect.signature(type(model).fit)
    params = sig.parameters
    if list(params)[:3] != ["self", "batch", "y"] or any(
            params.get(k) is None or params[k].kind is not inspect.Parameter.KEYWORD_ONLY
            for k in ("validation", "progress")):
        raise TypeError(f"model {name!r}: fit must be fit(self, batch, y=None, *, validation=None, progress=False)")
    if "random_state" not in model.get_params(deep=False):
        raise TypeError(f"model {name!r}: no random_state parameter")
    for cap in model.capabilities:
        if cap not in CAPABILITIES:
            raise TypeError(f"model {name!r}: unknown capability {cap!r}")
        for method in CAPABILITIES[cap]:
            if not callable(getattr(type(model), method, None)):
                raise TypeError(f"model {name!r}: declares {cap!r} but has no {method}()")
