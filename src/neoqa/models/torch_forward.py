"""Every differentiable model of the zoo as a PyTorch function of one sheet's inputs.

All models are written as f(obs_images, obs_scalars, composite, sheet_scalars) -> logit,
each input in *standardised* units (the model's own training normalisation), so that
gradients are comparable across pixels and scalars and SmoothGrad noise of a fixed
standard deviation is scaled to each input's spread. Inputs a model does not read get
zero attribution, which is itself informative (fixed-length models ignore the
observations).

The scikit-learn pipelines are translated exactly (imputer, scaler, Nystroem kernel
map, random Fourier features, calibrated ridge ensemble, MLP); tests check the
translation reproduces ``predict_proba``. A model with the ``torch_forward`` capability builds
its ``SheetInputs`` with the helpers here; ``inputs_for`` asks any model for them.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from sklearn.calibration import CalibratedClassifierCV
from sklearn.kernel_approximation import Nystroem, RBFSampler
from sklearn.linear_model import RidgeClassifier
from sklearn.neural_network import MLPClassifier

from neoqa.errors import NeoqaError
from neoqa.features import views as features
from neoqa.models.base import capabilities
from neoqa.models.calibration import unwrap

INPUT_NAMES = ("obs_images", "obs_scalars", "composite", "sheet_scalars")


@dataclass
class SheetInputs:
    """One sheet's standardised inputs (batch dimension 1) and how to read them back."""

    tensors: tuple            # (obs_images [1,k,C,S,S], obs_scalars [1,k,n], composite [1,C,S,S], sheet_scalars [1,m])
    forward: object           # callable(*tensors) -> logit [B]
    order: np.ndarray         # observation rows in time order (for display)
    confidences: np.ndarray | None = None   # set models: each observation's confidence (time order)


def _t(a):
    return torch.as_tensor(np.ascontiguousarray(a), dtype=torch.float32)


# ------------------------------------------------------------------ scikit-learn pipelines
class _PipelineFn:
    """f(z) for a fitted PipelineClassifier, z = the scaler's output (standardised features)."""

    def __init__(self, clf):
        steps = clf.pipeline_.steps
        names = [n for n, _ in steps]
        if names[:2] != ["impute", "scale"]:
            raise NeoqaError("explain: pipeline does not start with an imputer and a scaler")
        self.median = steps[0][1].statistics_
        self.mean, self.scale = steps[1][1].mean_, steps[1][1].scale_
        self.rest = [s for _, s in steps[2:]]

    def standardise(self, x: np.ndarray) -> np.ndarray:
        x = np.where(np.isnan(x), self.median, x)
        return (x - self.mean) / self.scale

    def __call__(self, z: torch.Tensor) -> torch.Tensor:
        h = z
        for step in self.rest[:-1]:
            h = _transform(step, h)
        return _logit(self.rest[-1], h)


def _transform(step, h):
    if isinstance(step, Nystroem):
        comp = _t(step.components_)
        if step.kernel == "rbf":
            gamma = step.gamma if step.gamma is not None else 1.0 / comp.shape[1]
            k = torch.exp(-gamma * torch.cdist(h, comp) ** 2)
        elif step.kernel == "poly":
            gamma = step.gamma if step.gamma is not None else 1.0 / comp.shape[1]
            k = (gamma * h @ comp.T + step.coef0) ** step.degree
        else:
            raise NeoqaError(f"explain: Nystroem kernel {step.kernel!r} is not supported")
        return k @ _t(step.normalization_).T
    if isinstance(step, RBFSampler):
        proj = h @ _t(step.random_weights_) + _t(step.random_offset_)
        return torch.cos(proj) * np.sqrt(2.0 / step.n_components)
    raise NeoqaError(f"explain: pipeline step {type(step).__name__} is not supported")


def _logit(est, h):
    """The positive-class logit of the final estimator."""
    if isinstance(est, MLPClassifier):
        for i, (w, b) in enumerate(zip(est.coefs_, est.intercepts_)):
            h = h @ _t(w) + _t(b)
            if i < len(est.coefs_) - 1:
                h = torch.relu(h)
        return h[:, 0]
    if isinstance(est, CalibratedClassifierCV):
        probs = []
        for cc in est.calibrated_classifiers_:
            ridge = cc.estimator
            d = h @ _t(np.ravel(ridge.coef_)) + float(np.ravel(ridge.intercept_)[0])
            cal = cc.calibrators[0]
            probs.append(torch.sigmoid(-(float(cal.a_) * d + float(cal.b_))))
        p = torch.stack(probs).mean(0).clamp(1e-7, 1 - 1e-7)
        return torch.log(p) - torch.log1p(-p)
    if isinstance(est, RidgeClassifier):
        return h @ _t(np.ravel(est.coef_)) + float(np.ravel(est.intercept_)[0])
    raise NeoqaError(f"explain: estimator {type(est).__name__} is not supported")


def _fixed_inputs(fn: _PipelineFn, sheet, n_comp):
    z = fn.standardise(features.fixed_length(sheet))[0]
    C, S = sheet.composite.shape[1], sheet.composite.shape[-1]
    return _t(z[:n_comp].reshape(1, C, S, S)), _t(z[n_comp:][None])


def _obs_inputs_raw(sheet):
    order = features.time_order(sheet)
    return order, sheet.cutouts[order][None], sheet.obs_scalars[order][None]


def is_differentiable(model) -> bool:
    """Whether gradient explanations exist for ``model`` (every model but the tree ensembles)."""
    return "torch_forward" in capabilities(model)


def inputs_for(model, sheet) -> SheetInputs:
    """The differentiable view of ``model`` on a one-sheet batch.

    The logit is the base model's: temperature scaling divides it by a constant, which
    rescales every attribution alike and changes none of the pictures.
    """
    if len(sheet) != 1:
        raise ValueError("inputs_for takes exactly one sheet")
    if not is_differentiable(model):
        raise NeoqaError("explain: this model has no gradients to explain (it holds trees)")
    return unwrap(model).torch_inputs(sheet)


def fixed_inputs(estimator, sheet) -> SheetInputs:
    """A fixed-length pipeline (``estimator``, a fitted PipelineClassifier) on one sheet."""
    C, S = sheet.composite.shape[1], sheet.composite.shape[-1]
    fn = _PipelineFn(estimator)
    comp, ss = _fixed_inputs(fn, sheet, C * S * S)
    order, img, sc = _obs_inputs_raw(sheet)
    sc = np.nan_to_num(sc)
    # observations are inputs the model does not read: standardise them by their own spread
    img = (img - img.mean()) / (img.std() + 1e-6)

    def forward(obs_images, obs_scalars, composite, sheet_scalars):
        return fn(torch.cat([composite.flatten(1), sheet_scalars], dim=1)) + 0.0 * (
            obs_images.sum() + obs_scalars.sum())

    return SheetInputs((_t(img), _t(sc), comp, ss), forward, order)


def set_inputs(net, tensors, sheet) -> SheetInputs:
    """A set network ``net`` on one sheet whose normalised flat tensors are ``tensors``."""
    C, S = sheet.composite.shape[1], sheet.composite.shape[-1]
    d = tensors
    img, sc, mask, fx = features.padded_batch(d["images"], d["scalars"], d["offsets"], d["fixed"], np.array([0]))
    n_comp = C * S * S
    comp, ss = fx[:, :n_comp].reshape(1, C, S, S), fx[:, n_comp:]
    net = net.eval()

    def forward(obs_images, obs_scalars, composite, sheet_scalars):
        m = mask.expand(obs_images.shape[0], -1)
        return net(obs_images, obs_scalars, m, torch.cat([composite.flatten(1), sheet_scalars], dim=1))

    with torch.no_grad():
        conf = net.confidences(img, sc, mask)[0].numpy()
    order = features.time_order(sheet)
    return SheetInputs((img.clone(), sc.clone(), comp.clone(), ss.clone()), forward, order, conf)


def per_length_inputs(fallback, sub, sheet) -> SheetInputs:
    """A per-length model on one sheet: its k's pipeline ``sub`` (None: routed to ``fallback``,
    the fixed-length pipeline whose score the per-k pipeline also reads)."""
    if sub is None:
        return fixed_inputs(fallback, sheet)
    C, S = sheet.composite.shape[1], sheet.composite.shape[-1]
    fall = _PipelineFn(fallback)
    comp, ss = _fixed_inputs(fall, sheet, C * S * S)
    k = int(sheet.k[0])
    order, img, sc = _obs_inputs_raw(sheet)
    fn = _PipelineFn(sub)
    # The per-k model standardises the concatenated observations plus the fallback score.
    width = img.shape[2] * img.shape[3] * img.shape[4] + sc.shape[2]
    raw = np.concatenate([np.concatenate([img[0].reshape(k, -1), sc[0]], axis=1).reshape(-1), [0.0]])
    z = fn.standardise(raw[None])[0]
    zo = z[:-1].reshape(k, width)
    n_img = width - sc.shape[2]
    img_z = zo[:, :n_img].reshape(img.shape[1:])[None]
    sc_z = zo[:, n_img:][None]

    def forward(obs_images, obs_scalars, composite, sheet_scalars):
        B = obs_images.shape[0]
        p_fall = torch.sigmoid(fall(torch.cat([composite.flatten(1), sheet_scalars], dim=1)))
        p_z = (p_fall - float(fn.mean[-1])) / float(fn.scale[-1])
        obs = torch.cat([obs_images.reshape(B, k, -1), obs_scalars], dim=2).reshape(B, -1)
        return fn(torch.cat([obs, p_z[:, None]], dim=1))

    return SheetInputs((_t(img_z), _t(sc_z), comp, ss), forward, order)


def pipeline_linear_weights(estimator) -> dict | None:
    """Effective weights of a fitted calibrated-ridge pipeline in standardised units (composite
    [C,S,S] then sheet scalars), or None where the pipeline is not linear."""
    steps = estimator.pipeline_.steps
    if len(steps) != 3 or not isinstance(steps[-1][1], CalibratedClassifierCV):
        return None
    coef = np.mean([np.ravel(cc.estimator.coef_) for cc in steps[-1][1].calibrated_classifiers_], axis=0)
    return {"coef": coef}


def linear_weights(model) -> dict | None:
    """A model's linear weights where it has them (the ``linear_weights`` capability), else None."""
    return unwrap(model).linear_weights() if "linear_weights" in capabilities(model) else None
