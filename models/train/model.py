"""The retrieval model: GoogLeNet (BVLC) -> GeM (p=3) -> FC 1024->D -> BN -> PReLU -> L2.

Order as in timm's model files: building blocks (googlenet.py, layers/) -> the
model with forward_features / forward_head / forward -> construction.

Input: `image` [N,1,224,224] float32 in [0,1] (see preprocess.py). The graph
replicates gray to 3 channels, scales to 0..255 and subtracts the BVLC BGR
mean, so callers only resize and normalise.
"""
from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

from googlenet import GoogLeNetBackbone, gray01_to_bgr, load_bvlc
from layers import create_pool


class EmbeddingHead(nn.Module):
    def __init__(self, in_dim: int = 1024, dim: int = 256):
        super().__init__()
        self.fc = nn.Linear(in_dim, dim)
        self.bn = nn.BatchNorm1d(dim)
        self.act = nn.PReLU()

    def forward(self, x):
        return self.act(self.bn(self.fc(x)))


class RetrievalNet(nn.Module):
    def __init__(self, dim: int = 256, pool: str = "gem", gem_p: float = 3.0, frozen_until: str | None = None):
        super().__init__()
        self.backbone = GoogLeNetBackbone()
        self.pool = create_pool(pool, p=gem_p) if pool == "gem" else create_pool(pool)
        self.head = EmbeddingHead(self.backbone.out_channels, dim)
        self.dim = dim
        self.frozen_until = frozen_until  # stages up to this one run under no_grad during training

    def forward_features(self, image: torch.Tensor) -> torch.Tensor:
        """[N,1,H,W] in [0,1] -> inception_5b feature map [N,1024,H/32,W/32]."""
        x = gray01_to_bgr(image)
        frozen = self.frozen_until if self.training else None
        return self.backbone(x, frozen_until=frozen)

    def forward_head(self, fmap: torch.Tensor, normalize: bool = True) -> torch.Tensor:
        e = self.head(self.pool(fmap))
        return F.normalize(e, dim=1) if normalize else e

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        return self.forward_head(self.forward_features(image))

    def trainable_parameters(self):
        """Parameters that receive gradients given `frozen_until`."""
        params = []
        seen_frozen = self.frozen_until is None
        from googlenet import STAGES
        for name in STAGES:
            mod = getattr(self.backbone, name)
            if seen_frozen:
                params += list(mod.parameters())
            if name == self.frozen_until:
                seen_frozen = True
        return params + list(self.pool.parameters()) + list(self.head.parameters())


class ExportWrapper(nn.Module):
    """What the ONNX graph contains: image -> (embedding, feature_map)."""

    def __init__(self, net: RetrievalNet):
        super().__init__()
        self.net = net

    def forward(self, image):
        fmap = self.net.forward_features(image)
        return self.net.forward_head(fmap), fmap


def build_model(dim: int = 256, pool: str = "gem", frozen_until: str | None = "inception_4c",
                pretrained: bool = True) -> RetrievalNet:
    net = RetrievalNet(dim=dim, pool=pool, frozen_until=frozen_until)
    if pretrained:
        load_bvlc(net.backbone)
    if frozen_until is not None:
        keep = {id(p) for p in net.trainable_parameters()}
        for p in net.parameters():
            p.requires_grad_(id(p) in keep)
    return net
