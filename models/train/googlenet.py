"""BVLC GoogLeNet (Inception v1) in PyTorch, loading the raw Caffe weights.

Weights: ../shared/weights/bvlc_googlenet (see its README): headerless
little-endian float32, convolution filters stored (out, kh, kw, in) and
transposed here to (out, in, kh, kw). Caffe details kept: max-pooling with
ceil rounding, LRN (size 5, alpha 1e-4, beta 0.75, k 1; PyTorch's
LocalResponseNorm divides alpha by size exactly like Caffe) after pool1 and
after conv2/3x3, true 5x5 convolutions, no BatchNorm. Input convention: BGR,
0..255, mean (104, 117, 123) subtracted.
"""
from __future__ import annotations

import csv
import os
from pathlib import Path

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

REPO_ROOT = Path(__file__).resolve().parents[2]
BGR_MEAN = (104.0, 117.0, 123.0)

# name -> (in, 1x1, 3x3_reduce, 3x3, 5x5_reduce, 5x5, pool_proj)
INCEPTION_CFG = {
    "inception_3a": (192, 64, 96, 128, 16, 32, 32),
    "inception_3b": (256, 128, 128, 192, 32, 96, 64),
    "inception_4a": (480, 192, 96, 208, 16, 48, 64),
    "inception_4b": (512, 160, 112, 224, 24, 64, 64),
    "inception_4c": (512, 128, 128, 256, 24, 64, 64),
    "inception_4d": (512, 112, 144, 288, 32, 64, 64),
    "inception_4e": (528, 256, 160, 320, 32, 128, 128),
    "inception_5a": (832, 256, 160, 320, 32, 128, 128),
    "inception_5b": (832, 384, 192, 384, 48, 128, 128),
}
# Stages in network order; used to freeze a prefix of the backbone.
STAGES = ("stem", "inception_3a", "inception_3b", "pool3", "inception_4a", "inception_4b",
          "inception_4c", "inception_4d", "inception_4e", "pool4", "inception_5a", "inception_5b")


def weights_dir() -> Path:
    env = os.environ.get("CBMIR_WEIGHTS")
    if env:
        return Path(env)
    return REPO_ROOT.parent / "shared" / "weights" / "bvlc_googlenet"


class ConvReLU(nn.Sequential):
    def __init__(self, cin: int, cout: int, k: int, stride: int = 1, pad: int = 0):
        super().__init__(nn.Conv2d(cin, cout, k, stride, pad), nn.ReLU(inplace=True))

    @property
    def conv(self) -> nn.Conv2d:
        return self[0]


class Inception(nn.Module):
    def __init__(self, cin, c1, c3r, c3, c5r, c5, cp):
        super().__init__()
        self.b1 = ConvReLU(cin, c1, 1)
        self.b3r = ConvReLU(cin, c3r, 1)
        self.b3 = ConvReLU(c3r, c3, 3, pad=1)
        self.b5r = ConvReLU(cin, c5r, 1)
        self.b5 = ConvReLU(c5r, c5, 5, pad=2)
        self.pool = nn.MaxPool2d(3, 1, 1, ceil_mode=True)
        self.bp = ConvReLU(cin, cp, 1)
        self.out_channels = c1 + c3 + c5 + cp

    def forward(self, x):
        return torch.cat([self.b1(x), self.b3(self.b3r(x)), self.b5(self.b5r(x)),
                          self.bp(self.pool(x))], 1)

    # Caffe sub-layer name -> module
    def caffe_map(self):
        return {"1x1": self.b1.conv, "3x3_reduce": self.b3r.conv, "3x3": self.b3.conv,
                "5x5_reduce": self.b5r.conv, "5x5": self.b5.conv, "pool_proj": self.bp.conv}


class GoogLeNetBackbone(nn.Module):
    """conv1 .. inception_5b; input BGR 0..255 mean-subtracted [N,3,H,W] -> [N,1024,H/32,W/32]."""

    def __init__(self):
        super().__init__()
        self.stem = nn.Sequential(
            ConvReLU(3, 64, 7, 2, 3),                       # conv1/7x7_s2
            nn.MaxPool2d(3, 2, ceil_mode=True),             # pool1/3x3_s2
            nn.LocalResponseNorm(5, alpha=1e-4, beta=0.75, k=1.0),  # pool1/norm1
            ConvReLU(64, 64, 1),                            # conv2/3x3_reduce
            ConvReLU(64, 192, 3, 1, 1),                     # conv2/3x3
            nn.LocalResponseNorm(5, alpha=1e-4, beta=0.75, k=1.0),  # conv2/norm2
            nn.MaxPool2d(3, 2, ceil_mode=True),             # pool2/3x3_s2
        )
        for name, cfg in INCEPTION_CFG.items():
            setattr(self, name, Inception(*cfg))
        self.pool3 = nn.MaxPool2d(3, 2, ceil_mode=True)
        self.pool4 = nn.MaxPool2d(3, 2, ceil_mode=True)
        self.out_channels = 1024

    def stage_modules(self):
        return [(n, getattr(self, n)) for n in STAGES]

    def forward(self, x, frozen_until: str | None = None):
        """If frozen_until names a stage, stages up to and including it run under no_grad."""
        stages = self.stage_modules()
        if frozen_until is None:
            for _, m in stages:
                x = m(x)
            return x
        idx = STAGES.index(frozen_until)
        with torch.no_grad():
            for _, m in stages[: idx + 1]:
                x = m(x)
        for _, m in stages[idx + 1:]:
            x = m(x)
        return x

    def forward_until(self, x, stage: str):
        """Run stages up to and including `stage`."""
        for n, m in self.stage_modules()[: STAGES.index(stage) + 1]:
            x = m(x)
        return x

    def forward_from(self, x, stage: str):
        """Run the stages after `stage` (x = output of `stage`)."""
        for n, m in self.stage_modules()[STAGES.index(stage) + 1:]:
            x = m(x)
        return x

    def caffe_map(self):
        m = {"conv1/7x7_s2": self.stem[0].conv, "conv2/3x3_reduce": self.stem[3].conv,
             "conv2/3x3": self.stem[4].conv}
        for name in INCEPTION_CFG:
            for sub, conv in getattr(self, name).caffe_map().items():
                m[f"{name}/{sub}"] = conv
        return m


def read_manifest(wdir: Path):
    with open(wdir / "manifest.csv", newline="") as f:
        return list(csv.DictReader(f))


def load_blob(wdir: Path, row) -> np.ndarray:
    shape = tuple(int(s) for s in row["shape"].split("x"))
    a = np.fromfile(wdir / row["file"], dtype="<f4")
    if a.size != int(row["float32_count"]):
        raise ValueError(f"{row['file']}: {a.size} floats, manifest says {row['float32_count']}")
    return a.reshape(shape)


def load_bvlc(backbone: GoogLeNetBackbone, wdir: Path | None = None, classifier: nn.Linear | None = None):
    """Copy the BVLC weights into `backbone` (and optionally the 1000-way classifier).

    Returns the set of Caffe layer names loaded. Fails if any backbone conv is missing.
    """
    wdir = Path(wdir) if wdir else weights_dir()
    targets = backbone.caffe_map()
    if classifier is not None:
        targets["loss3/classifier"] = classifier
    loaded = {}
    for row in read_manifest(wdir):
        layer = row["caffe_layer"]
        if layer not in targets:
            continue
        mod = targets[layer]
        a = load_blob(wdir, row)
        if row["kind"] == "filter":
            if a.ndim == 4:  # (out, kh, kw, in) -> (out, in, kh, kw)
                a = a.transpose(0, 3, 1, 2)
            t = torch.from_numpy(np.ascontiguousarray(a))
            if tuple(t.shape) != tuple(mod.weight.shape):
                raise ValueError(f"{layer}: shape {tuple(t.shape)} != {tuple(mod.weight.shape)}")
            with torch.no_grad():
                mod.weight.copy_(t)
        else:
            t = torch.from_numpy(np.ascontiguousarray(a))
            with torch.no_grad():
                mod.bias.copy_(t)
        loaded.setdefault(layer, set()).add(row["kind"])
    missing = [k for k in targets if loaded.get(k) != {"filter", "bias"}]
    if missing:
        raise ValueError(f"BVLC weights missing for: {missing}")
    return set(loaded)


def gray01_to_bgr(x: torch.Tensor) -> torch.Tensor:
    """[N,1,H,W] in [0,1] -> [N,3,H,W] BGR 0..255 minus the BVLC mean."""
    mean = torch.tensor(BGR_MEAN, dtype=x.dtype, device=x.device).view(1, 3, 1, 1)
    return x.expand(-1, 3, -1, -1) * 255.0 - mean


class GoogLeNetClassifier(nn.Module):
    """The original ImageNet classifier (used only to check the import)."""

    def __init__(self):
        super().__init__()
        self.backbone = GoogLeNetBackbone()
        self.fc = nn.Linear(1024, 1000)

    def forward(self, bgr):
        f = self.backbone(bgr)
        return self.fc(F.adaptive_avg_pool2d(f, 1).flatten(1))


def bvlc_classifier(wdir: Path | None = None) -> GoogLeNetClassifier:
    m = GoogLeNetClassifier()
    load_bvlc(m.backbone, wdir, classifier=m.fc)
    return m.eval()
