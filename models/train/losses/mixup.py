"""Manifold mixup at the pool4 activations (Verma et al., ICML 2019), for ArcFace.

Each training sample is mixed with another sample of the same batch:
f = lam * f_i + (1 - lam) * f_j, lam ~ Beta(alpha, alpha) per sample, and the loss
is lam * ArcFace(e, y_i) + (1 - lam) * ArcFace(e, y_j), the margin applied to
each target in turn. Why at pool4: the CPU recipe trains on cached pool4
activations, so mixing there is the one place both recipes (cached and the
full fine-tune) can mix the same way; the stages before pool4 see clean images.
Why at all: label smoothing, the other regulariser of the class posterior, was
the one loss setting that helped held-out meningioma in the CPU probes. Mixup did
not: alpha 0.4 on top of 320 + smoothing cost 2.0 mAP on two folds
(results/probe-cached-mixup04-320ls.json), so it stays off.

The draws come from a numpy generator the caller seeds per epoch, so a resumed
run replays them and the torch generator of the batches is not touched.
"""
from __future__ import annotations

import numpy as np
import torch


def mix_batch(f: torch.Tensor, y: torch.Tensor, alpha: float, rng: np.random.Generator):
    """Mixed activations, the partner labels and each sample's weight lam (float32 [B])."""
    if not alpha > 0:
        raise ValueError(f"mixup alpha must be > 0, got {alpha}")
    b = f.size(0)
    perm = torch.from_numpy(rng.permutation(b)).to(f.device)
    lam = torch.from_numpy(rng.beta(alpha, alpha, size=b).astype(np.float32)).to(f.device)
    lam_x = lam.to(f.dtype).view(-1, *([1] * (f.dim() - 1)))
    return lam_x * f + (1 - lam_x) * f[perm], y[perm], lam


def mixed_loss(loss_fn, emb: torch.Tensor, y: torch.Tensor, y_partner: torch.Tensor, lam: torch.Tensor):
    """Mean over the batch of lam * loss(y) + (1 - lam) * loss(y_partner)."""
    la = loss_fn(emb, y, reduction="none")
    lb = loss_fn(emb, y_partner, reduction="none")
    return (lam * la + (1 - lam) * lb).mean()
