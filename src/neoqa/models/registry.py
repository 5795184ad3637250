"""Every model by name. A model module registers its factories (``@register``); the registry imports
none of them (``neoqa.models`` does, which is what fills it), so a model made of other models (the
ensemble) can build them by name without an import circle.

``make(name, random_state)`` returns an unfitted model; ``names()`` lists them in the zoo's order.
"""

from __future__ import annotations

from neoqa.errors import NeoqaError

# The zoo's order: the paper's nine models, then those beyond it. Tables and figures follow it; a
# model is registered under one of these names.
ORDER = ("ridge", "quadratic", "rbf", "rff", "mlp", "multi_linear", "multi_mlp", "basic_sneon", "sneon",
         "gbdt", "sneon_soft", "set_transformer", "ensemble")

# One line each, for `neoqa train --help` (docs/models.md has the detail).
SUMMARIES = {
    "ridge": "linear (ridge) on the fixed-length view, Platt-scaled",
    "quadratic": "degree-2 polynomial kernel (Nystroem) then ridge",
    "rbf": "RBF kernel (Nystroem) then ridge",
    "rff": "random Fourier features of the RBF kernel then ridge",
    "mlp": "ReLU MLP, 7 hidden layers of 100, on the fixed-length view",
    "multi_linear": "a ridge model per popular k, a fixed-length ridge for the rest",
    "multi_mlp": "an MLP per popular k, the mlp for the rest",
    "basic_sneon": "Siamese per-observation MLP with the 5th-largest confidence (the paper's Basic SNEON)",
    "sneon": "Siamese residual CNN per observation (the paper's SNEON)",
    "gbdt": "gradient-boosted trees (LightGBM) on engineered summaries; explained by TreeSHAP",
    "sneon_soft": "SNEON with a soft 5th-largest and attention pooling",
    "set_transformer": "self-attention over the observations with learned pooling",
    "ensemble": "gbdt, sneon_soft and mlp, temperature-scaled and averaged in logit space",
}

_FACTORIES: dict = {}


def register(name: str):
    """Decorator: ``factory(random_state) -> model`` becomes model ``name``, once its product keeps
    the contract (``base.check_contract``)."""
    from neoqa.models.base import check_contract

    def decorate(factory):
        if name not in ORDER:
            raise ValueError(f"model {name!r} has no place in registry.ORDER")
        check_contract(name, factory(0))
        if name in _FACTORIES:
            raise ValueError(f"model {name!r} is registered twice")
        _FACTORIES[name] = factory
        return factory

    return decorate


def names() -> tuple:
    """The registered models, in the zoo's order."""
    return tuple(n for n in ORDER if n in _FACTORIES)


def make(name: str, random_state: int = 0):
    try:
        factory = _FACTORIES[name]
    except KeyError:
        raise NeoqaError(f"unknown model {name!r}; choose one of {', '.join(names())}") from None
    return factory(random_state)


def require(name: str, obs_scalar_names, where) -> None:
    """Refuse, in one line, to train model ``name`` on data without an observation scalar it reads
    by name; the line names what is missing and the models that can still run."""
    missing = sorted(make(name).needs() - set(obs_scalar_names))
    if missing:
        can = [n for n in names() if make(n).needs() <= set(obs_scalar_names)]
        raise NeoqaError(f"{where}: model {name!r} needs observation scalar(s) {', '.join(missing)}, which the data "
                         f"lacks (docs/own-data.md); models that can run on it: {', '.join(can) or 'none'}")
