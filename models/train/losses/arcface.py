"""ArcFace: additive angular margin loss (Deng et al., CVPR 2019).

logit_j = s * cos(theta_j + m * [j == y]), theta_j = angle between the
L2-normalised embedding and the L2-normalised class weight W_j; loss =
cross-entropy. Margin given in radians (`margin`) — 0.5 rad = 28.65 deg is the
ArcFace default and what we ship. When theta_y + m would exceed pi the usual
monotonic fallback cos(theta) - m*sin(m) is used (insightface, easy_margin off).
W is an nn.Parameter: the optimizer and the checkpoint both see it.

Sub-centre ArcFace (Deng et al., ECCV 2020), `subcenters` K > 1: each class has
K weight vectors and an embedding's cosine to a class is its largest cosine to
one of them, so a class may form several clusters (a tumour seen axially,
coronally or sagittally) instead of one. K = 1 is plain ArcFace.
`label_smoothing` is cross-entropy's own (0 = off, what we ship).
"""
from __future__ import annotations

import math

import torch
import torch.nn as nn
import torch.nn.functional as F


class ArcFaceLoss(nn.Module):
    def __init__(self, num_classes: int, embedding_size: int, scale: float = 64.0, margin: float = 0.5,
                 subcenters: int = 1, label_smoothing: float = 0.0):
        super().__init__()
        if subcenters < 1:
            raise ValueError(f"subcenters must be at least 1, got {subcenters}")
        if not 0.0 <= label_smoothing < 1.0:
            raise ValueError(f"label_smoothing must be in [0, 1), got {label_smoothing}")
        self.scale, self.margin, self.subcenters = float(scale), float(margin), int(subcenters)
        self.label_smoothing = float(label_smoothing)
        # rows c*K .. c*K+K-1 are class c's sub-centres
        self.W = nn.Parameter(torch.empty(num_classes * self.subcenters, embedding_size))
        nn.init.xavier_uniform_(self.W)
        self.cos_m, self.sin_m = math.cos(margin), math.sin(margin)
        self.th = math.cos(math.pi - margin)          # theta + m > pi  <=>  cos(theta) < th
        self.mm = math.sin(math.pi - margin) * margin

    @classmethod
    def from_config(cls, num_classes: int, cfg: dict) -> "ArcFaceLoss":
        """The loss a training config asks for; settings older configs lack take their default."""
        return cls(num_classes, cfg["dim"], cfg["scale"], cfg["margin"], cfg.get("subcenters", 1),
                   cfg.get("label_smoothing", 0.0))

    def logits(self, emb: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        cos = F.linear(F.normalize(emb, dim=1), F.normalize(self.W, dim=1)).clamp(-1.0, 1.0)
        if self.subcenters > 1:
            cos = cos.view(cos.size(0), -1, self.subcenters).amax(dim=2)
        sin = (1.0 - cos * cos).clamp(min=0.0).sqrt()
        phi = cos * self.cos_m - sin * self.sin_m        # cos(theta + m)
        phi = torch.where(cos > self.th, phi, cos - self.mm)
        onehot = F.one_hot(labels, cos.size(1)).to(cos.dtype)
        return self.scale * (onehot * phi + (1.0 - onehot) * cos)

    def forward(self, emb: torch.Tensor, labels: torch.Tensor, reduction: str = "mean") -> torch.Tensor:
        return F.cross_entropy(self.logits(emb, labels), labels, label_smoothing=self.label_smoothing,
                               reduction=reduction)

    def extra_repr(self):
        sub = f", subcenters={self.subcenters}" if self.subcenters > 1 else ""
        sub += f", label_smoothing={self.label_smoothing}" if self.label_smoothing else ""
        return (f"classes={self.W.size(0) // self.subcenters}, dim={self.W.size(1)}, s={self.scale}, "
                f"m={self.margin} rad ({math.degrees(self.margin):.1f} deg){sub}")
