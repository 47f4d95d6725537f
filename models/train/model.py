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
    def __init__(self, dim: int = 256, pool: str = "gem", gem_p: float = 3.0, frozen_until: str | None = None,
                 fuse_pool4: bool = False):
        super().__init__()
        self.backbone = GoogLeNetBackbone()
        self.pool = create_pool(pool, p=gem_p) if pool == "gem" else create_pool(pool)
        # fuse_pool4 (an experiment, not the published design): the head also sees the pooled
        # pool4 activations (inception_4e's 832 channels at twice 5b's resolution), the finer
        # detail that tells a lesion's margin, where the off-centre queries are confused
        self.fuse_pool4 = bool(fuse_pool4)
        in_dim = self.backbone.out_channels + (self.backbone.inception_4e.out_channels if fuse_pool4 else 0)
        self.head = EmbeddingHead(in_dim, dim)
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

    def pool4_features(self, image: torch.Tensor) -> torch.Tensor:
        """[N,1,H,W] in [0,1] -> pool4 activations (what the CPU recipe caches, where mixup mixes)."""
        return self.backbone.forward_until(gray01_to_bgr(image), "pool4")

    def embed_from_pool4(self, f: torch.Tensor, normalize: bool = True) -> torch.Tensor:
        """Embedding from pool4 activations (the CPU recipe's cached features)."""
        pooled = self.pool(self.backbone.forward_from(f, "pool4"))
        if self.fuse_pool4:
            pooled = torch.cat([pooled, self.pool(f)], 1)
        e = self.head(pooled)
        return F.normalize(e, dim=1) if normalize else e

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        if self.fuse_pool4:
            return self.embed_from_pool4(self.pool4_features(image))
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
        if self.net.fuse_pool4:
            raise NotImplementedError("a fuse_pool4 model has no export contract yet (an experiment)")
        fmap = self.net.forward_features(image)
        return self.net.forward_head(fmap), fmap


def build_model(dim: int = 256, pool: str = "gem", frozen_until: str | None = "inception_4c",
                pretrained: bool = True, fuse_pool4: bool = False) -> RetrievalNet:
    net = RetrievalNet(dim=dim, pool=pool, frozen_until=frozen_until, fuse_pool4=fuse_pool4)
    if pretrained:
        load_bvlc(net.backbone)
    if frozen_until is not None:
        keep = {id(p) for p in net.trainable_parameters()}
        for p in net.parameters():
            p.requires_grad_(id(p) in keep)
    return net
