"""The set networks: a shared per-observation encoder (an MLP, or a small residual CNN fused with the
scalars), a pooling over the sheet's observations, and a head that reads the pooled confidence
with the fixed-length features.

Only real observations pass through the shared network (they are gathered by the mask), so padding
never touches batch statistics and the output is invariant to the order of observations and to
padding.
"""

from __future__ import annotations

import torch
from torch import nn

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
        return self.place(self.encoder.embed(images[mask], scalars[mask]), mask)

    def place(self, rows, mask):
        """``encode`` from the embeddings ``rows`` of the real observations, in ``mask``'s order: they
        are put in their padded places (the scorer embeds the flat observations without padding)."""
        emb = torch.zeros(mask.shape + (self.encoder.dim,), dtype=rows.dtype, device=rows.device)
        emb[mask] = rows
        conf = self.encoder.out(emb).squeeze(-1).masked_fill(~mask, MISSING_CONFIDENCE)
        return conf, emb

    def confidences(self, images, scalars, mask):
        return self.encode(images, scalars, mask)[0]

    def forward(self, images, scalars, mask, fixed):
        return self.decide(*self.encode(images, scalars, mask), mask, fixed)

    def decide(self, conf, emb, mask, fixed):
        """The logit [B] from the observations' confidences and embeddings: pooling, then the head."""
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


def build(encoder: str, pooling: str, channels: int, n_scalars: int, n_fixed: int, cutout: int, width: int,
          cnn_width: int, seed: int) -> SetNet:
    """A fresh network, its weights drawn from ``seed``."""
    torch.manual_seed(seed)
    if encoder == "mlp":
        enc = ObsMLP(channels * cutout * cutout + n_scalars, width)
    elif encoder == "resnet":
        enc = ObsResNet(channels, n_scalars, cnn_width)
    else:
        raise ValueError(f"unknown encoder {encoder!r}")
    return SetNet(enc, n_fixed, width, pooling=pooling)
