"""Multi-similarity loss (Wang et al., CVPR 2019) as an auxiliary term beside ArcFace.

ArcFace pulls each embedding towards its class's weight vector (a proxy). The
retrieval metric ranks every database image by its cosine to the query, so an
image that sits between two class proxies can still be ranked among the wrong
class's images; the mAP loss is exactly there (posthoc.py's diagnosis: 6 % of the
queries, most of them meningiomas, lie nearer another class's centre). A pairwise
term works on the batch's image-to-image cosines, the quantity the ranking uses.

pytorch-metric-learning's MultiSimilarityLoss with its own pair miner, as in the
paper (alpha 2, beta 50, base 0.5, epsilon 0.1); `weight` scales it against
ArcFace's cross-entropy. Off (None) unless a config asks for it.
"""
from __future__ import annotations

import torch
import torch.nn as nn


class MultiSimilarityAux(nn.Module):
    def __init__(self, weight: float, alpha: float = 2.0, beta: float = 50.0, base: float = 0.5,
                 epsilon: float = 0.1):
        super().__init__()
        if weight <= 0:
            raise ValueError(f"the multi-similarity weight must be > 0, got {weight}")
        from pytorch_metric_learning import losses, miners

        self.weight = float(weight)
        self.loss = losses.MultiSimilarityLoss(alpha=alpha, beta=beta, base=base)  # cosine similarity
        self.miner = miners.MultiSimilarityMiner(epsilon=epsilon)

    @classmethod
    def from_config(cls, cfg: dict) -> "MultiSimilarityAux | None":
        w = cfg.get("ms_weight", 0.0)
        return cls(w) if w else None

    def forward(self, emb: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        return self.weight * self.loss(emb, labels, self.miner(emb, labels))
