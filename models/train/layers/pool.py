"""Global pooling factory: 'gem' (p=3, published), 'avg', 'max'."""
from __future__ import annotations

import torch.nn as nn

from .gem import GeM


class _Flat(nn.Module):
    def __init__(self, pool: nn.Module):
        super().__init__()
        self.pool = pool

    def forward(self, x):
        return self.pool(x).flatten(1)


def create_pool(name: str, **kw) -> nn.Module:
    if name == "gem":
        return GeM(**kw)
    if name == "avg":
        return _Flat(nn.AdaptiveAvgPool2d(1))
    if name == "max":
        return _Flat(nn.AdaptiveMaxPool2d(1))
    raise ValueError(f"unknown pooling {name!r} (gem, avg, max)")
