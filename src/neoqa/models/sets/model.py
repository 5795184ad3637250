"""Set models over a sheet's observations (PyTorch): Basic SNEON, SNEON, and beyond the paper the
soft-pooled and transformer-pooled networks. Registers basic_sneon, sneon, sneon_soft and
set_transformer.

One network, shared by every observation (a Siamese network), gives each observation a
confidence that it holds the moving object; the 5th-largest confidence over the sheet's
observations (at least 5 good observations make a real sheet) joins the normalised
fixed-length features in a small head that makes the decision (``networks``). Fitting,
fine-tuning and online updates share one training loop (``loop``) on one device, chosen once
(``device``: cpu by default; cuda, or auto for CUDA when present).
"""

from __future__ import annotations

import copy
import json

import numpy as np
import torch
from torch import nn

from neoqa.features import views as features
from neoqa.models import torch_forward
from neoqa.models.base import Model, labels_of
from neoqa.models.registry import register
from neoqa.models.sets import loop
from neoqa.models.sets.networks import build

CLIP = 50.0          # standardised inputs are clipped to +-CLIP, so that cosmic rays stay finite
# Sheets prepared and predicted at a time: a batch's float32 inputs are built whole, and 20,000
# sheets in one piece ran at a quarter of the rate of 4,096 at a time (fresh memory to fault in,
# caches left behind; docs/performance.md); in pieces memory stays bounded too.
PREDICT_SHEETS = 4096


class SetModel(Model):
    """Scikit-learn-style wrapper: fit(batch) / predict_proba(batch), seeded, early-stopped."""

    view = "sets"
    capabilities = frozenset({"validation", "finetune", "adapt_inputs", "torch_forward", "own_weights"})

    def __init__(self, encoder="mlp", pooling="fifth", epochs=20, batch_size=128, lr=1e-3, weight_decay=1e-4,
                 patience=3, width=100, cnn_width=8, random_state=0, device="cpu"):
        self.encoder = encoder
        self.pooling = pooling
        self.cnn_width = cnn_width
        self.epochs = epochs
        self.batch_size = batch_size
        self.lr = lr
        self.weight_decay = weight_decay
        self.patience = patience
        self.width = width
        self.random_state = random_state
        self.device = device

    # ---------------------------------------------------------------- normalisation
    def _fit_norm(self, flat):
        self.norm_ = _norm_of(flat)
        self.survey_norms_ = {}

    def _norm_for(self, batch) -> dict:
        """The input statistics of the batch's survey where they were adapted, else the training data's."""
        return getattr(self, "survey_norms_", {}).get(batch.meta.get("survey"), self.norm_)

    def _tensors(self, batch):
        """Normalised flat tensors of a batch: cutouts less their median, over the channel's
        spread; scalars and fixed features median-imputed and standardised; clipped so that
        cosmic rays stay finite."""
        n = self._norm_for(batch)
        flat = features.flat_sets(batch)
        img = features.standardised_cutouts(flat["images"], n["img_scale"], CLIP)
        sc = np.nan_to_num((flat["scalars"] - n["sc_median"]) / n["sc_scale"])
        fx = np.nan_to_num((flat["fixed"] - n["fx_median"]) / n["fx_scale"])
        t = lambda a: torch.from_numpy(np.clip(a, -CLIP, CLIP).astype(np.float32, copy=False))   # noqa: E731
        return {"images": torch.from_numpy(img), "scalars": t(sc), "offsets": flat["offsets"], "fixed": t(fx)}

    # ---------------------------------------------------------------- network
    def _start(self, batch, flat):
        """Normalisation fitted on ``batch``'s sheets (its flat tensors ``flat``) and a fresh network
        on the model's device."""
        self._fit_norm(flat)
        self.norm_survey_ = batch.meta.get("survey")
        self.shape_ = {"channels": int(batch.cutouts.shape[1]), "n_scalars": int(batch.obs_scalars.shape[1]),
                       "n_fixed": int(flat["fixed"].shape[1]), "cutout": int(batch.cutouts.shape[-1])}
        self._place(self._build())

    def _build(self):
        return build(self.encoder, self.pooling, width=self.width, cnn_width=self.cnn_width, seed=self.random_state,
                     **self.shape_)

    def _place(self, net):
        self.device_ = loop.pick_device(self.device)
        self.net_ = net.to(self.device_)

    def fit(self, batch, y=None, *, validation=None, progress=False):
        y = labels_of(batch, y)
        flat = features.flat_sets(batch)
        self._start(batch, flat)
        del flat
        data = self._tensors(batch)
        target = torch.from_numpy(y.astype(np.float32))
        validate = None
        if validation is not None and len(validation):
            vdata = self._tensors(validation)
            vtarget = torch.from_numpy(validation.label.astype(np.float32))
            validate = lambda: float(loss_fn(loop.logits(self.net_, vdata, self.device_), vtarget))   # noqa: E731
        opt = torch.optim.AdamW(self.net_.parameters(), lr=self.lr, weight_decay=self.weight_decay)
        sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=self.epochs)
        loss_fn = nn.BCEWithLogitsLoss()
        batches = loop.loader(data, target, torch.Generator().manual_seed(self.random_state), self.batch_size,
                              shard=True)
        self.history_ = loop.train_epochs(loop.for_training(self.net_, self.device_), batches, opt, sched, loss_fn,
                                          self.device_, epochs=self.epochs,
                                          patience=self.patience, validate=validate, progress=progress,
                                          desc=f"train {self.kind()}")
        self.classes_ = np.array([0, 1])
        return self

    def kind(self) -> str:
        """The registry's name for this encoder and pooling (what a progress bar says), else both."""
        return _KINDS.get((self.encoder, self.pooling), f"{self.encoder}/{self.pooling} set model")

    # ---------------------------------------------------------------- transfer and online learning
    def initialise(self, unlabelled):
        """A fresh network whose normalisation is fitted on ``unlabelled`` sheets (labels unused):
        the from-scratch baseline of a learning curve, on the same footing as fine-tuning."""
        self._start(unlabelled, features.flat_sets(unlabelled))
        self.classes_ = np.array([0, 1])
        return self

    def knows_survey(self, survey) -> bool:
        """Whether sheets of ``survey`` have input statistics of their own (else the training data's serve)."""
        return survey == getattr(self, "norm_survey_", None) or survey in getattr(self, "survey_norms_", {})

    def adapt_normalisation(self, unlabelled):
        """Fit the input normalisation of ``unlabelled``'s survey on its sheets (labels are not
        read). Sheets of that survey use it from then on; the training survey's stays for its own
        sheets, so a model can serve both (a new instrument's pixel and scalar scales differ)."""
        survey = unlabelled.meta.get("survey")
        norm = _norm_of(features.flat_sets(unlabelled))
        if survey in (None, "unknown", getattr(self, "norm_survey_", None)):
            self.norm_ = norm
        else:
            self.survey_norms_ = {**getattr(self, "survey_norms_", {}), survey: norm}
        return self

    def finetune(self, batch, *, steps=None, lr=3e-4, anchor=1e-2, unlabelled=None, seed=0):
        """Continue training on ``batch`` (or a list of batches, each normalised for its own survey)
        for ``steps`` minibatch steps (default 3 per sheet, 30 to 300: a handful of labels overfits
        in a few hundred steps).

        unlabelled: sheets of the new data to adapt the normalisation of their survey to.
        anchor: an L2 pull towards the starting weights (L2-SP), so a few labels adjust the
        network rather than overwrite what it knew; 0 turns it off.
        """
        if unlabelled is not None:
            self.adapt_normalisation(unlabelled)
        parts = batch if isinstance(batch, (list, tuple)) else [batch]
        n = sum(len(b) for b in parts)
        steps = int(np.clip(3 * n, 30, 300)) if steps is None else steps
        data = _concat_tensors([self._tensors(b) for b in parts])
        target = torch.from_numpy(np.concatenate([b.label for b in parts]).astype(np.float32))
        opt = torch.optim.AdamW(self.net_.parameters(), lr=lr, weight_decay=0.0)
        size = min(self.batch_size, n)
        batches = loop.loader(data, target, torch.Generator().manual_seed(seed), size)
        loop.train_steps(self.net_, batches, opt, nn.BCEWithLogitsLoss(), self.device_, steps=steps, anchor=anchor,
                         skip_lone=size >= 2)
        return self

    def predict_proba(self, batch):
        if len(batch) > PREDICT_SHEETS:             # in pieces, as the scorer reads them (see PREDICT_SHEETS)
            return np.concatenate([self.predict_proba(batch.slice(s, min(s + PREDICT_SHEETS, len(batch))))
                                   for s in range(0, len(batch), PREDICT_SHEETS)])
        p = torch.sigmoid(loop.logits(self.net_, self._tensors(batch), self.device_, by_length=True)).numpy()
        p = p.astype(np.float64)
        # the rule's masked logit leaves sigmoid(MISSING_CONFIDENCE) ~ 2e-9: make it exactly 0, as elsewhere
        return features.apply_label_rule(batch, np.stack([1 - p, p], axis=1))

    def n_parameters(self) -> int:
        return int(sum(p.numel() for p in self.net_.parameters()))

    def torch_inputs(self, sheet):
        net = self.net_ if self.device_.type == "cpu" else copy.deepcopy(self.net_).cpu()   # explained on the CPU
        return torch_forward.set_inputs(net, self._tensors(sheet), sheet)

    # ---------------------------------------------------------------- persistence
    def save_weights(self, folder):
        from safetensors.torch import save_file

        tensors = {f"net.{k}": v.detach().cpu().contiguous() for k, v in self.net_.state_dict().items()}
        tensors.update({f"norm.{k}": torch.from_numpy(np.ascontiguousarray(v)) for k, v in self.norm_.items()})
        surveys = list(getattr(self, "survey_norms_", {}))
        for i, survey in enumerate(surveys):       # adapted surveys' statistics, named in the metadata
            tensors.update({f"survey{i}.{k}": torch.from_numpy(np.ascontiguousarray(v))
                            for k, v in self.survey_norms_[survey].items()})
        meta = {"shape": json.dumps(self.shape_), "surveys": json.dumps(surveys),
                "norm_survey": json.dumps(getattr(self, "norm_survey_", None))}
        save_file(tensors, str(folder / "weights.safetensors"), metadata=meta)

    def load_weights(self, folder):
        """Weights from ``folder`` (constructor parameters are set by the caller first)."""
        from safetensors import SafetensorError, safe_open

        from neoqa.errors import NeoqaError

        path = folder / "weights.safetensors"
        if not path.is_file():
            raise NeoqaError(f"{folder}: weights file weights.safetensors is missing")
        try:
            with safe_open(str(path), framework="pt") as f:
                meta = f.metadata() or {}
                tensors = {k: f.get_tensor(k) for k in f.keys()}
            self._restore(meta, tensors)
        except (SafetensorError, OSError):
            raise NeoqaError(f"{path}: not a readable safetensors file (truncated or corrupt)") from None
        except (KeyError, ValueError, TypeError, RuntimeError) as e:
            raise NeoqaError(f"{path}: weights do not fit this model ({type(e).__name__}: "
                             f"{str(e).splitlines()[0][:200]})") from None

    def _restore(self, meta: dict, tensors: dict) -> None:
        shape = json.loads(meta["shape"])
        if not isinstance(shape, dict) or set(shape) != {"channels", "n_scalars", "n_fixed", "cutout"} or not all(
                isinstance(v, int) and 0 < v < 100_000 for v in shape.values()):
            raise ValueError("metadata 'shape' is not four positive integers")
        self.shape_ = shape
        net = self._build()
        net.load_state_dict({k[4:]: v for k, v in tensors.items() if k.startswith("net.")})
        self._place(net)
        self.norm_ = {k[5:]: v.numpy() for k, v in tensors.items() if k.startswith("norm.")}
        self.norm_survey_ = json.loads(meta.get("norm_survey", "null"))
        self.survey_norms_ = {}
        for i, survey in enumerate(json.loads(meta.get("surveys", "[]"))):
            prefix = f"survey{i}."
            self.survey_norms_[survey] = {k[len(prefix):]: v.numpy() for k, v in tensors.items() if k.startswith(prefix)}
        self.net_.eval()
        self.classes_ = np.array([0, 1])


def _norm_of(flat) -> dict:
    """Input statistics of flat set tensors: per-channel cutout spread, scalar and fixed-feature
    medians and spreads."""
    img = flat["images"]
    centred = img - np.median(img.reshape(len(img), img.shape[1], -1), axis=2)[:, :, None, None]
    sc, fx = flat["scalars"], flat["fixed"]
    return {
        "img_scale": np.std(centred, axis=(0, 2, 3)).astype(np.float32) + 1e-6,
        "sc_median": np.nan_to_num(np.nanmedian(sc, axis=0)).astype(np.float32),
        "sc_scale": np.nan_to_num(np.nanstd(sc, axis=0), nan=1.0).astype(np.float32) + 1e-6,
        "fx_median": np.nan_to_num(np.nanmedian(fx, axis=0)).astype(np.float32),
        "fx_scale": np.nan_to_num(np.nanstd(fx, axis=0), nan=1.0).astype(np.float32) + 1e-6,
    }


def _concat_tensors(parts: list) -> dict:
    """One set of flat tensors from several (``_tensors`` outputs), offsets re-based."""
    if len(parts) == 1:
        return parts[0]
    offsets, base = [np.zeros(1, np.int64)], 0
    for p in parts:
        offsets.append(p["offsets"][1:] + base)
        base += int(p["offsets"][-1])
    return {"images": torch.cat([p["images"] for p in parts]), "scalars": torch.cat([p["scalars"] for p in parts]),
            "fixed": torch.cat([p["fixed"] for p in parts]), "offsets": np.concatenate(offsets)}


# The registered set models by (encoder, pooling), as the factories below make them.
_KINDS = {("mlp", "fifth"): "basic_sneon", ("resnet", "fifth"): "sneon", ("mlp", "soft"): "sneon_soft",
          ("mlp", "transformer"): "set_transformer"}


@register("basic_sneon")
def _make_basic_sneon(rs):
    return SetModel(encoder="mlp", random_state=rs)


@register("sneon")
def _make_sneon(rs):
    # 8 base channels and large batches keep it to minutes on two CPU cores.
    return SetModel(encoder="resnet", random_state=rs, epochs=8, batch_size=256, lr=2e-3)


@register("sneon_soft")
def _make_sneon_soft(rs):
    return SetModel(encoder="mlp", pooling="soft", random_state=rs)


@register("set_transformer")
def _make_set_transformer(rs):
    # The MLP observation encoder keeps the zoo inside its time budget on two CPU cores; the
    # residual CNN encoder (encoder="resnet") is a parameter away where a GPU is at hand.
    return SetModel(encoder="mlp", pooling="transformer", random_state=rs)
