"""Precompute frozen-backbone features (output of pool4, 832x7x7) for CPU training.

Why: on this 2-core CPU the frozen part of GoogLeNet (conv1 .. inception_4e, ~85%
of the FLOPs) dominates a training step. Its weights never change, so we run it
once per *view* of every image and train inception_5a/5b + GeM + head + ArcFace
on the cached activations (fp16). Augmentation is kept: views 1..K are
independently augmented copies (data.augment, seeded per view), and each
training epoch draws one view per image at random. The pool of augmentations is
finite (K views) — that is the trade-off, stated in the model card.

Views (each a file models/train/.data/feat-<tag>.npy, [N,832,7,7] float16, rows in
data.build_cache order = figshare-cheng then ixi-normal):
  eval   raw inference preprocessing (exactly preprocess.py), no augmentation
  h0     harmonised (common 512px JPEG q75 re-encode), no augmentation
  h1..hK harmonised + augmentation (seed = base_seed * 1000 + k)

--size S (default 224, the model's input) preprocesses the images to S x S instead;
the files are then feat-s<S>-<tag>.npy, [N,832,s,s] with s = pool4_side(S) (10 for
320). That serves the resolution probe (train.py --size): with the backbone frozen
through inception_4e, the only difference between two runs is the input size.

Usage: python3 models/train/features.py --views eval,h0,h1,h2,h3,h4 [--batch 64] [--size 224]
"""
from __future__ import annotations

import argparse
import os
import time
from pathlib import Path

import numpy as np
import torch

import data
from googlenet import GoogLeNetBackbone, gray01_to_bgr, load_bvlc

CUT = "pool4"
FEAT_SHAPE = (832, 7, 7)  # at the model's 224 input


def pool4_side(size: int) -> int:
    """Side of GoogLeNet's pool4 output for a size x size input: conv1 (7x7, stride 2,
    pad 3) then four 3x3 stride-2 max pools in Caffe's ceil mode."""
    side = (size + 2 * 3 - 7) // 2 + 1
    for _ in range(4):
        side = -(-(side - 3) // 2) + 1
    return side


def feat_shape(size: int = 224) -> tuple:
    return (FEAT_SHAPE[0], pool4_side(size), pool4_side(size))


def feat_path(tag: str, size: int = 224) -> Path:
    # 224 keeps the names the files always had
    return data.CACHE_DIR / (f"feat-{tag}.npy" if size == 224 else f"feat-s{size}-{tag}.npy")


def skipped_fold_marker(tag: str, size: int = 224) -> Path:
    """Marks an augmented view computed without one fold's rows (their features are zero)."""
    return feat_path(tag, size).with_suffix(".skipped-fold")


@torch.inference_mode()
def extract(backbone, images: torch.Tensor, aug_seed: int | None, batch: int = 64, desc: str = "") -> np.ndarray:
    from tqdm import tqdm

    n = images.shape[0]
    out = np.zeros((n,) + feat_shape(images.shape[-1]), np.float16)
    for i in tqdm(range(0, n, batch), desc=desc, mininterval=10):
        x = images[i:i + batch].float().unsqueeze(1)
        if aug_seed is not None:
            g = torch.Generator().manual_seed(aug_seed * 100003 + i)
            x = data.augment(x, g)
        f = backbone.forward_until(gray01_to_bgr(x), CUT)
        out[i:i + batch] = f.numpy().astype(np.float16)
    return out


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--views", default="eval,h0,h1,h2,h3,h4")
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--size", type=int, default=224, help="input side in pixels (224 = the model's input)")
    ap.add_argument("--skip-fold", type=int, default=None,
                    help="augmented views: leave rows of this fold zero (not needed to train the shipped model; saves CPU)")
    a = ap.parse_args()
    if not 64 <= a.size <= 1024:
        ap.error(f"--size {a.size}: expected 64..1024 pixels")
    torch.set_num_threads(a.threads)
    bb = GoogLeNetBackbone()
    load_bvlc(bb)
    bb.eval()
    caches = {}

    def cache(harm: bool):  # each kind of image cache is loaded once (0.75 GB at 320)
        if harm not in caches:
            caches[harm] = data.build_cache(harmonise_inputs=harm, size=a.size)
        return caches[harm]

    for tag in a.views.split(","):
        p = feat_path(tag, a.size)
        if p.exists():
            print(f"{tag}: exists, skipping", flush=True)
            continue
        harm = tag != "eval"
        imgs = cache(harm).images
        seed = None if tag in ("eval", "h0") else a.seed * 1000 + int(tag[1:])
        t = time.time()
        if tag == "h0" and feat_path("eval", a.size).exists():
            # Harmonisation re-encodes a 512x512 q75 JPEG as a 512x512 q75 JPEG: for the
            # Figshare rows the result equals the raw input (checked: max |diff| of the
            # preprocessed images printed below), so only the IXI rows are recomputed.
            raw = cache(False).images
            fig = cache(harm).sources == data.FIGSHARE
            d = (imgs[torch.from_numpy(fig)].float() - raw[torch.from_numpy(fig)].float()).abs()
            print(f"h0: figshare rows harmonised vs raw: mean |diff| {float(d.mean()):.2e}, max {float(d.max()):.2e}", flush=True)
            f = np.load(feat_path("eval", a.size))
            ixi = np.flatnonzero(~fig)
            f[ixi] = extract(bb, imgs[torch.from_numpy(ixi)], None, a.batch, desc="h0-ixi")
        elif a.skip_fold is not None and tag not in ("eval", "h0"):
            f = np.zeros((len(imgs),) + feat_shape(a.size), np.float16)
            rows = np.flatnonzero(cache(harm).folds != a.skip_fold)
            f[rows] = extract(bb, imgs[torch.from_numpy(rows)], seed, a.batch, desc=f"{tag} (fold {a.skip_fold} skipped)")
            skipped_fold_marker(tag, a.size).write_text(str(a.skip_fold))
        else:
            f = extract(bb, imgs, seed, a.batch, desc=tag)
        tmp = p.with_suffix(".tmp.npy")
        np.save(tmp, f)
        os.replace(tmp, p)
        print(f"{tag}: {f.shape} in {time.time() - t:.0f}s", flush=True)


if __name__ == "__main__":
    main()
