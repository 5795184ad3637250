"""Every model by name. ``make(name, random_state)`` returns an unfitted model."""

from __future__ import annotations

from neoqa.errors import NeoqaError
from neoqa.models import fixed
from neoqa.models.ensemble import EnsembleModel
from neoqa.models.fixed import FixedLengthModel, SummaryModel
from neoqa.models.multi import MultiLengthModel
from neoqa.models.sets import SetModel


def _ridge(rs):
    return FixedLengthModel(fixed.ridge_pipeline(rs))


def _quadratic(rs):
    return FixedLengthModel(fixed.kernel_pipeline("poly", rs, degree=2, coef0=1.0))


def _rbf(rs):
    return FixedLengthModel(fixed.kernel_pipeline("rbf", rs))


def _rff(rs):
    return FixedLengthModel(fixed.rff_pipeline(rs))


def _mlp(rs):
    return FixedLengthModel(fixed.mlp_pipeline(rs))


def _multi_linear(rs):
    return MultiLengthModel(per_k=fixed.ridge_pipeline(rs), fallback=fixed.ridge_pipeline(rs))


def _multi_mlp(rs):
    return MultiLengthModel(per_k=fixed.mlp_pipeline(rs, depth=3), fallback=fixed.mlp_pipeline(rs))


def _basic_sneon(rs):
    return SetModel(encoder="mlp", random_state=rs)


def _sneon(rs):
    # 8 base channels and large batches keep it to minutes on two CPU cores.
    return SetModel(encoder="resnet", random_state=rs, epochs=8, batch_size=256, lr=2e-3)


def _sneon_soft(rs):
    return SetModel(encoder="mlp", pooling="soft", random_state=rs)


def _set_transformer(rs):
    # The MLP observation encoder keeps the zoo inside its time budget on two CPU cores; the
    # residual CNN encoder (encoder="resnet") is a parameter away where a GPU is at hand.
    return SetModel(encoder="mlp", pooling="transformer", random_state=rs)


def _gbdt(rs):
    return SummaryModel(fixed.gbdt_pipeline(rs))


def _ensemble(rs):
    return EnsembleModel(random_state=rs)


MODELS = {
    "ridge": _ridge,
    "quadratic": _quadratic,
    "rbf": _rbf,
    "rff": _rff,
    "mlp": _mlp,
    "multi_linear": _multi_linear,
    "multi_mlp": _multi_mlp,
    "basic_sneon": _basic_sneon,
    "sneon": _sneon,
    "gbdt": _gbdt,
    "sneon_soft": _sneon_soft,
    "set_transformer": _set_transformer,
    "ensemble": _ensemble,
}


def make(name: str, random_state: int = 0):
    try:
        factory = MODELS[name]
    except KeyError:
        raise NeoqaError(f"unknown model {name!r}; choose one of {', '.join(MODELS)}") from None
    return factory(random_state)
