"""Generalized-mean (GeM) pooling (Radenović et al., TPAMI 2019).

gem(x, p) = (mean_{h,w} clamp(x, eps)^p)^(1/p) per channel. p = 1 is average
pooling; p -> inf tends to max pooling. The published model fixes p = 3.
"""
from __future__ import annotations

import torch
import torch.nn as nn


def gem(x: torch.Tensor, p: float | torch.Tensor = 3.0, eps: float = 1e-6) -> torch.Tensor:
    """[N,C,H,W] -> [N,C]."""
    return x.clamp(min=eps).pow(p).mean(dim=(-2, -1)).pow(1.0 / p)


class GeM(nn.Module):
    def __init__(self, p: float = 3.0, eps: float = 1e-6, learnable: bool = False):
        super().__init__()
        if learnable:
            self.p = nn.Parameter(torch.tensor(float(p)))
        else:
            self.register_buffer("p", torch.tensor(float(p)), persistent=False)
        self.eps = eps

    def forward(self, x):
        return gem(x, self.p, self.eps)

    def extra_repr(self):
        return f"p={float(self.p):.2f}, eps={self.eps}"
