"""Set models over a sheet's observations (PyTorch): Basic SNEON and SNEON.

One network, shared by every observation (a Siamese network), gives each observation a
confidence that it holds the moving object; the 5th-largest confidence over the sheet's
observations (at least 5 good observations make a real sheet) joins the normalised
fixed-length features in a small head that makes the decision. Basic SNEON's shared
network is an MLP; SNEON's is a residual CNN on the cutout fused with the scalars.

Only real observations pass through the shared network (they are gathered by the mask),
so padding never touches batch statistics and the output is invariant to the order of
observations and to padding.
"""

from __future__ import annotations

import json

import numpy as np
import torch
from sklearn.base import BaseEstimator, ClassifierMixin
from torch import nn
from tqdm import tqdm

from neoqa.features import views as features

ORDER_STAT = 5          # the label rule's "at least 5 observations"
MISSING_CONFIDENCE = -20.0


class ObsMLP(nn.Module):
    def __init__(self, n_in, width=100, depth=3):
        super().__init__()
        layers, d = [], n_in
        for _ in range(depth):
            layers += [nn.Linear(d, width), nn.ReLU()]
            d = width
        self.body = nn.Sequential(*layers)
        self.out = nn.Linear(d, 1)
        self.dim = d

    def embed(self, images, scalars):
        return self.body(torch.cat([images.flatten(1), scalars], dim=1))

    def forward(self, images, scalars):
        return self.out(self.embed(images, scalars)).squeeze(1)


class _Block(nn.Module):
    def __init__(self, c):
        super().__init__()
        self.body = nn.Sequential(nn.Conv2d(c, c, 3, padding=1, bias=False), nn.BatchNorm2d(c), nn.ReLU(),
                                  nn.Conv2d(c, c, 3, padding=1, bias=False), nn.BatchNorm2d(c))

    def forward(self, x):
        return torch.relu(x + self.body(x))


class ObsResNet(nn.Module):
    """A small ResNet for 2 x 15 x 15 cutouts: stem, residual block, stride-2, residual block, pool."""

    def __init__(self, channels, n_scalars, width=16):
        super().__init__()
        self.cnn = nn.Sequential(
            nn.Conv2d(channels, width, 3, padding=1, bias=False), nn.BatchNorm2d(width), nn.ReLU(), _Block(width),
            nn.Conv2d(width, 2 * width, 3, stride=2, padding=1, bias=False), nn.BatchNorm2d(2 * width), nn.ReLU(),
            _Block(2 * width), nn.AdaptiveAvgPool2d(1), nn.Flatten())
        self.body = nn.Sequential(nn.Linear(2 * width + n_scalars, 64), nn.ReLU())
        self.out = nn.Linear(64, 1)
        self.dim = 64

    def embed(self, images, scalars):
        return self.body(torch.cat([self.cnn(images), scalars], dim=1))

    def forward(self, images, scalars):
        return self.out(self.embed(images, scalars)).squeeze(1)


def soft_order_statistic(conf, mask, k=ORDER_STAT, tau=0.5):
    """A differentiable k-th largest: each observation's soft rank (how many others beat it,
    through sigmoids of temperature ``tau``) weights it by closeness to rank k-1."""
    diff = (conf.unsqueeze(1) - conf.unsqueeze(2)) / tau            # [B, i, j]: c_j - c_i
    beats = torch.sigmoid(diff) * mask.unsqueeze(1)
    rank = beats.sum(2) - 0.5                                       # minus the self-comparison
    w = torch.exp(-0.5 * ((rank - (k - 1)) / 0.5) ** 2) * mask
    w = w / w.sum(1, keepdim=True).clamp_min(1e-6)
    return (w * conf).sum(1)


class SetNet(nn.Module):
    """Shared per-observation encoder, a pooling over the set, and a head with the fixed features.

    pooling: ``fifth`` (the 5th-largest confidence: Basic SNEON, SNEON), ``soft`` (a soft
    5th-largest plus attention-MIL pooling of the embeddings), ``transformer`` (masked
    self-attention blocks, then attention pooling with a learned query).
    """

    def __init__(self, encoder, n_fixed, width=100, pooling="fifth", heads=4, dim=64):
        super().__init__()
        self.encoder = encoder
        self.pooling = pooling
        extra = 1
        if pooling == "soft":
            self.att = nn.Sequential(nn.Linear(encoder.dim, 32), nn.Tanh(), nn.Linear(32, 1))
            extra += encoder.dim
        elif pooling == "transformer":
            self.proj = nn.Linear(encoder.dim, dim)
            layer = nn.TransformerEncoderLayer(dim, heads, dim_feedforward=2 * dim, dropout=0.0, batch_first=True)
            self.blocks = nn.TransformerEncoder(layer, num_layers=2, enable_nested_tensor=False)
            self.seed = nn.Parameter(torch.randn(1, 1, dim) * 0.1)
            self.pool = nn.MultiheadAttention(dim, heads, batch_first=True)
            extra += dim
        elif pooling != "fifth":
            raise ValueError(f"unknown pooling {pooling!r}")
        self.head = nn.Sequential(nn.Linear(n_fixed + extra, width), nn.ReLU(), nn.Linear(width, width), nn.ReLU(),
                                  nn.Linear(width, 1))

    def encode(self, images, scalars, mask):
        """Per-observation confidences [B, K] (padding: MISSING_CONFIDENCE) and embeddings [B, K, d]."""
        emb = torch.zeros(mask.shape + (self.encoder.dim,), dtype=images.dtype, device=images.device)
        emb[mask] = self.encoder.embed(images[mask], scalars[mask])
        conf = self.encoder.out(emb).squeeze(-1).masked_fill(~mask, MISSING_CONFIDENCE)
        return conf, emb

    def confidences(self, images, scalars, mask):
        return self.encode(images, scalars, mask)[0]

    def forward(self, images, scalars, mask, fixed):
        conf, emb = self.encode(images, scalars, mask)
        if conf.shape[1] < ORDER_STAT:
            pad = ORDER_STAT - conf.shape[1]
            conf = nn.functional.pad(conf, (0, pad), value=MISSING_CONFIDENCE)
            emb = nn.functional.pad(emb, (0, 0, 0, pad))
            mask = nn.functional.pad(mask, (0, pad), value=False)
        if self.pooling == "fifth":
            parts = [torch.topk(conf, ORDER_STAT, dim=1).values[:, ORDER_STAT - 1:ORDER_STAT]]
        elif self.pooling == "soft":
            a = self.att(emb).squeeze(-1).masked_fill(~mask, float("-inf"))
            a = torch.softmax(a, dim=1)
            parts = [soft_order_statistic(conf, mask).unsqueeze(1), (a.unsqueeze(-1) * emb).sum(1)]
        else:
            h = self.blocks(self.proj(emb), src_key_padding_mask=~mask)
            pooled, _ = self.pool(self.seed.expand(len(h), -1, -1), h, h, key_padding_mask=~mask)
            parts = [torch.topk(conf, ORDER_STAT, dim=1).values[:, ORDER_STAT - 1:ORDER_STAT], pooled.squeeze(1)]
        logit = self.head(torch.cat([fixed] + parts, dim=1)).squeeze(1)
        # The label rule, as features.apply_label_rule for the other models, kept inside the
        # network so that it stays differentiable (SNEON's head, left to extrapolate, called 82%
        # of such sheets real when observations were dropped).
        return logit.masked_fill(mask.sum(1) < ORDER_STAT, MISSING_CONFIDENCE)


class SetModel(ClassifierMixin, BaseEstimator):
    """Scikit-learn-style wrapper: fit(batch) / predict_proba(batch), seeded, early-stopped."""

    view = "sets"
    uses_validation = True

    def __init__(self, encoder="mlp", pooling="fifth", epochs=20, batch_size=128, lr=1e-3, weight_decay=1e-4,
                 patience=3, width=100, cnn_width=8, random_state=0, progress=True):
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
        self.progress = progress

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
        img = flat["images"]
        img = (img - np.median(img.reshape(*img.shape[:2], -1), axis=2)[..., None, None]) / n["img_scale"][None, :, None, None]
        sc = np.nan_to_num((flat["scalars"] - n["sc_median"]) / n["sc_scale"])
        fx = np.nan_to_num((flat["fixed"] - n["fx_median"]) / n["fx_scale"])
        t = lambda a: torch.from_numpy(np.clip(a, -50, 50).astype(np.float32))   # noqa: E731
        return {"images": t(img), "scalars": t(sc), "offsets": flat["offsets"], "fixed": t(fx)}

    def _loader(self, data, target, gen, batch_size=None):
        """A DataLoader of padded minibatches, shuffled by a seeded generator."""
        def collate(items):
            idx = np.array([int(i) for i, _ in items])
            return features.padded_batch(data["images"], data["scalars"], data["offsets"], data["fixed"], idx,
                                         min_k=ORDER_STAT) + (torch.stack([t for _, t in items]),)

        ids = torch.utils.data.TensorDataset(torch.arange(len(target)), target)
        return torch.utils.data.DataLoader(ids, batch_size=batch_size or self.batch_size, shuffle=True, generator=gen,
                                           collate_fn=collate)

    # ---------------------------------------------------------------- network
    def _build(self, channels, n_scalars, n_fixed, cutout):
        torch.manual_seed(self.random_state)
        if self.encoder == "mlp":
            enc = ObsMLP(channels * cutout * cutout + n_scalars, self.width)
        elif self.encoder == "resnet":
            enc = ObsResNet(channels, n_scalars, self.cnn_width)
        else:
            raise ValueError(f"unknown encoder {self.encoder!r}")
        return SetNet(enc, n_fixed, self.width, pooling=self.pooling)

    def fit(self, batch, y=None, val=None):
        y = batch.label if y is None else np.asarray(y)
        flat = features.flat_sets(batch)
        self._fit_norm(flat)
        self.norm_survey_ = batch.meta.get("survey")
        self.shape_ = {"channels": int(batch.cutouts.shape[1]), "n_scalars": int(batch.obs_scalars.shape[1]),
                       "n_fixed": int(flat["fixed"].shape[1]), "cutout": int(batch.cutouts.shape[-1])}
        del flat
        self.net_ = self._build(**self.shape_)
        data = self._tensors(batch)
        target = torch.from_numpy(y.astype(np.float32))
        vdata = self._tensors(val) if val is not None and len(val) else None
        vtarget = torch.from_numpy(val.label.astype(np.float32)) if vdata is not None else None
        opt = torch.optim.AdamW(self.net_.parameters(), lr=self.lr, weight_decay=self.weight_decay)
        sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=self.epochs)
        loss_fn = nn.BCEWithLogitsLoss()
        loader = self._loader(data, target, torch.Generator().manual_seed(self.random_state))
        best, best_state, bad = np.inf, None, 0
        self.history_ = []
        bar = tqdm(range(self.epochs), desc=f"train {self.encoder}/{self.pooling} set model", unit="epoch",
                   disable=not self.progress)
        for epoch in bar:
            self.net_.train()
            total, seen = 0.0, 0
            for img, sc, mask, fx, yb in loader:
                opt.zero_grad()
                loss = loss_fn(self.net_(img, sc, mask, fx), yb)
                loss.backward()
                opt.step()
                total += loss.item() * len(yb)
                seen += len(yb)
            sched.step()
            vloss = self._loss(vdata, vtarget, loss_fn) if vdata is not None else total / seen
            self.history_.append({"epoch": epoch, "train_loss": total / seen, "val_loss": vloss})
            bar.set_postfix(train=f"{total / seen:.4f}", val=f"{vloss:.4f}")
            if vloss < best - 1e-4:
                best, bad = vloss, 0
                best_state = {k: v.detach().clone() for k, v in self.net_.state_dict().items()}
            else:
                bad += 1
                if bad >= self.patience:
                    break
        if best_state is not None:
            self.net_.load_state_dict(best_state)
        self.classes_ = np.array([0, 1])
        return self

    # ---------------------------------------------------------------- transfer and online learning
    def initialise(self, unlabelled):
        """A fresh network whose normalisation is fitted on ``unlabelled`` sheets (labels unused):
        the from-scratch baseline of a learning curve, on the same footing as fine-tuning."""
        flat = features.flat_sets(unlabelled)
        self._fit_norm(flat)
        self.norm_survey_ = unlabelled.meta.get("survey")
        self.shape_ = {"channels": int(unlabelled.cutouts.shape[1]), "n_scalars": int(unlabelled.obs_scalars.shape[1]),
                       "n_fixed": int(flat["fixed"].shape[1]), "cutout": int(unlabelled.cutouts.shape[-1])}
        self.net_ = self._build(**self.shape_)
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

    def finetune(self, batch, steps=None, lr=3e-4, anchor=1e-2, unlabelled=None, seed=0):
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
        start = [p.detach().clone() for p in self.net_.parameters()]
        opt = torch.optim.AdamW(self.net_.parameters(), lr=lr, weight_decay=0.0)
        loss_fn = nn.BCEWithLogitsLoss()
        gen = torch.Generator().manual_seed(seed)
        size = min(self.batch_size, n)
        loader = self._loader(data, target, gen, batch_size=size)
        self.net_.train()
        done = 0
        while done < steps:
            for img, sc, mask, fx, yb in loader:
                if len(yb) < 2 and size >= 2:        # batch norm needs two samples; skip a lone remainder
                    continue
                opt.zero_grad()
                loss = loss_fn(self.net_(img, sc, mask, fx), yb)
                if anchor:
                    loss = loss + anchor * sum(((p - p0) ** 2).sum() for p, p0 in zip(self.net_.parameters(), start))
                loss.backward()
                opt.step()
                done += 1
                if done >= steps:
                    break
        self.net_.eval()
        return self

    @torch.no_grad()
    def _logits(self, data, chunk=1024):
        self.net_.eval()
        n = len(data["fixed"])
        out = [self.net_(*features.padded_batch(data["images"], data["scalars"], data["offsets"], data["fixed"],
                                                np.arange(s, min(s + chunk, n)), min_k=ORDER_STAT))
               for s in range(0, n, chunk)]
        return torch.cat(out) if out else torch.zeros(0)

    def _loss(self, data, target, loss_fn):
        return float(loss_fn(self._logits(data), target))

    def predict_proba(self, batch):
        p = torch.sigmoid(self._logits(self._tensors(batch))).numpy().astype(np.float64)
        # the rule's masked logit leaves sigmoid(MISSING_CONFIDENCE) ~ 2e-9: make it exactly 0, as elsewhere
        return features.apply_label_rule(batch, np.stack([1 - p, p], axis=1))

    def predict(self, batch):
        return (self.predict_proba(batch)[:, 1] >= 0.5).astype(int)

    def n_parameters(self) -> int:
        return int(sum(p.numel() for p in self.net_.parameters()))

    # ---------------------------------------------------------------- persistence
    def save_weights(self, folder):
        from safetensors.torch import save_file

        tensors = {f"net.{k}": v.contiguous() for k, v in self.net_.state_dict().items()}
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
        self.net_ = self._build(**self.shape_)
        self.net_.load_state_dict({k[4:]: v for k, v in tensors.items() if k.startswith("net.")})
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
