"""Reference implementation of the model's input preprocessing (numpy only).

This file IS the specification (models/PREPROCESSING.md explains it in words);
the TypeScript worker (models/runtime/) must reproduce `preprocess()` to within
1e-3 absolute per pixel. Golden vectors: models/train/golden/.

Pipeline (all arithmetic in float64, result cast to float32 at the end):

1. to_gray():   2-D array -> float64 as is. (H,W,3|4) RGB(A) -> luma
                Y = 0.299 R + 0.587 G + 0.114 B (ITU-R BT.601), alpha ignored.
                DICOM callers apply the Modality LUT (value*slope+intercept)
                and invert MONOCHROME1 (x -> max+min-x) BEFORE calling this.
2. normalise(): n = H*W values sorted ascending into v[0..n-1];
                p_lo = v[floor(0.005*(n-1))], p_hi = v[floor(0.995*(n-1))]
                (q*(n-1) computed in IEEE double, then floor). If p_hi <= p_lo
                the result is all zeros; else y = (clip(x,p_lo,p_hi)-p_lo)/(p_hi-p_lo).
3. pad_square(): S = max(H,W); zero canvas S x S; image placed at
                top = floor((S-H)/2), left = floor((S-W)/2).
4. resize():    separable triangle (bilinear) filter, S x S -> 224 x 224,
                antialiased like PIL's BILINEAR: for output index i,
                scale = S/224, fs = max(scale, 1), centre c = (i+0.5)*scale,
                raw weight w[i,j] = max(0, 1 - |(j + 0.5 - c) / fs|) for every
                input index j in 0..S-1, then each row divided by its sum.
                out = Wy @ img @ Wx^T  (Wy = Wx here, both 224 x S).
5. cast to float32 -> array [224,224] in [0,1]; the model input is
   [N,1,224,224] of these (name "image").
"""
from __future__ import annotations

import math
from functools import lru_cache

import numpy as np

OUT_SIZE = 224
Q_LO = 0.005
Q_HI = 0.995
LUMA = (0.299, 0.587, 0.114)


def to_gray(arr: np.ndarray) -> np.ndarray:
    """Return a 2-D float64 array (luma for RGB/RGBA input)."""
    a = np.asarray(arr)
    if a.ndim == 2:
        return a.astype(np.float64)
    if a.ndim == 3 and a.shape[2] in (3, 4):
        a = a[..., :3].astype(np.float64)
        return LUMA[0] * a[..., 0] + LUMA[1] * a[..., 1] + LUMA[2] * a[..., 2]
    if a.ndim == 3 and a.shape[2] == 1:
        return a[..., 0].astype(np.float64)
    raise ValueError(f"unsupported pixel array shape {a.shape}")


def percentile_index(q: float, n: int) -> int:
    """Index into the ascending-sorted values: floor(q*(n-1))."""
    return int(math.floor(q * (n - 1)))


def normalise(img: np.ndarray) -> np.ndarray:
    """Clip to the [0.5th, 99.5th] percentile (definition above), scale to [0,1]."""
    x = np.asarray(img, dtype=np.float64)
    flat = x.ravel()
    n = flat.size
    if n == 0:
        raise ValueError("empty image")
    i_lo, i_hi = percentile_index(Q_LO, n), percentile_index(Q_HI, n)
    part = np.partition(flat, (i_lo, i_hi))  # same values as a full sort at these indices
    p_lo, p_hi = float(part[i_lo]), float(part[i_hi])
    if not p_hi > p_lo:
        return np.zeros_like(x)
    return (np.clip(x, p_lo, p_hi) - p_lo) / (p_hi - p_lo)


def pad_square(img: np.ndarray) -> np.ndarray:
    """Zero-pad to S x S (S = max(H, W)), image centred (extra pixel at bottom/right)."""
    h, w = img.shape
    s = max(h, w)
    if h == w:
        return img
    out = np.zeros((s, s), dtype=img.dtype)
    top, left = (s - h) // 2, (s - w) // 2
    out[top:top + h, left:left + w] = img
    return out


@lru_cache(maxsize=64)
def resize_weights(in_size: int, out_size: int = OUT_SIZE) -> np.ndarray:
    """[out_size, in_size] float64 row-normalised triangle-filter weights."""
    scale = in_size / out_size
    fs = max(scale, 1.0)
    centres = (np.arange(out_size, dtype=np.float64) + 0.5) * scale
    j = np.arange(in_size, dtype=np.float64) + 0.5
    w = 1.0 - np.abs((j[None, :] - centres[:, None]) / fs)
    w = np.maximum(w, 0.0)
    w /= w.sum(axis=1, keepdims=True)
    w.setflags(write=False)
    return w


def resize(img: np.ndarray, out_size: int = OUT_SIZE) -> np.ndarray:
    h, w = img.shape
    wy = resize_weights(h, out_size)
    wx = resize_weights(w, out_size)
    return wy @ img @ wx.T


def preprocess(arr: np.ndarray, out_size: int = OUT_SIZE) -> np.ndarray:
    """Pixel array (2-D gray or RGB[A]) -> float32 [out_size, out_size] in [0,1]."""
    g = to_gray(arr)
    n = normalise(g)
    sq = pad_square(n)
    r = resize(sq, out_size)
    return np.clip(r, 0.0, 1.0).astype(np.float32)


def load_image(path: str) -> np.ndarray:
    """Decode an image file to a numpy pixel array (PIL; 8/16-bit gray or RGB)."""
    from PIL import Image

    with Image.open(path) as im:
        if im.mode in ("L", "I;16", "I;16B", "I;16L", "I", "F", "RGB", "RGBA"):
            arr = np.array(im)
        elif im.mode == "LA":
            arr = np.array(im.convert("L"))
        else:
            arr = np.array(im.convert("RGB"))
    return arr


def preprocess_file(path: str, out_size: int = OUT_SIZE) -> np.ndarray:
    return preprocess(load_image(path), out_size)
