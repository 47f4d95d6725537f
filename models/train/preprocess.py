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


def png_header(path: str) -> tuple[int, int] | None:
    """(bit depth, colour type) from a PNG's IHDR (PNG spec 11.2.2), None for another file."""
    with open(path, "rb") as f:
        b = f.read(29)
    if len(b) < 29 or b[:8] != b"\x89PNG\r\n\x1a\n" or b[12:16] != b"IHDR":
        return None
    return b[24], b[25]


def _paeth(a: int, b: int, c: int) -> int:
    p = a + b - c
    pa, pb, pc = abs(p - a), abs(p - b), abs(p - c)
    return a if pa <= pb and pa <= pc else (b if pb <= pc else c)


# As the TypeScript worker's bound on one frame (CBMIR_WORKER_MAX_FRAME_PIXELS' default, 36 Mi).
MAX_PNG16_PIXELS = 36 * 1024 * 1024


def read_png16(path: str) -> np.ndarray:
    """A 16-bit PNG's samples, every bit kept: uint16 [H, W, C] (C = 1 gray, 2 gray+alpha, 3 RGB,
    4 RGBA). PIL opens 16-bit gray+alpha as 8-bit RGBA and 16-bit RGB(A) as 8-bit RGB(A), so those
    are decoded here (zlib + the five PNG row filters, PNG spec 9); not interlaced ones."""
    import struct
    import zlib

    data = open(path, "rb").read()
    pos, idat, hdr = 8, [], None
    while pos + 8 <= len(data):
        n, kind = struct.unpack(">I4s", data[pos:pos + 8])
        if kind == b"IHDR":
            hdr = struct.unpack(">IIBBBBB", data[pos + 8:pos + 21])
        elif kind == b"IDAT":
            idat.append(data[pos + 8:pos + 8 + n])
        elif kind == b"IEND":
            break
        pos += 12 + n
    if hdr is None:
        raise ValueError("not a PNG file (no IHDR)")
    w, h, depth, ctype, _, _, interlace = hdr
    channels = {0: 1, 2: 3, 4: 2, 6: 4}.get(ctype)
    if depth != 16 or channels is None:
        raise ValueError(f"not a 16-bit gray/RGB PNG (bit depth {depth}, colour type {ctype})")
    if interlace:
        raise ValueError("interlaced 16-bit PNG: not supported (save it without interlacing)")
    bpp, stride = 2 * channels, 2 * channels * w
    if w * h > MAX_PNG16_PIXELS:
        raise ValueError(f"{w}x{h} pixels: over the {MAX_PNG16_PIXELS} a 16-bit PNG may hold here")
    try:
        # Bounded by what the header says it holds: a small file must not inflate without end.
        raw = zlib.decompressobj().decompress(b"".join(idat), h * (stride + 1))
    except zlib.error as e:
        raise ValueError(f"corrupt PNG data: {e}") from None
    if len(raw) < h * (stride + 1):
        raise ValueError("truncated PNG data")
    rows = np.frombuffer(raw, np.uint8, h * (stride + 1)).reshape(h, stride + 1)
    out = np.empty((h, stride), np.uint8)
    prev = np.zeros(stride, np.int64)
    for y in range(h):
        ft, line = int(rows[y, 0]), rows[y, 1:].astype(np.int64)
        if ft == 0:
            cur = line
        elif ft == 1:  # Sub: a running sum along each byte lane
            cur = np.cumsum(line.reshape(w, bpp), axis=0).ravel() & 255
        elif ft == 2:  # Up
            cur = (line + prev) & 255
        elif ft in (3, 4):  # Average, Paeth: each byte depends on the one decoded to its left
            c, up = line.tolist(), prev.tolist()
            for i in range(stride):
                left = c[i - bpp] if i >= bpp else 0
                if ft == 3:
                    c[i] = (c[i] + ((left + up[i]) >> 1)) & 255
                else:
                    c[i] = (c[i] + _paeth(left, up[i], up[i - bpp] if i >= bpp else 0)) & 255
            cur = np.array(c, np.int64)
        else:
            raise ValueError(f"corrupt PNG data: row filter type {ft}")
        out[y] = cur
        prev = cur
    return out.view(">u2").astype(np.uint16).reshape(h, w, channels)


def load_image(path: str) -> np.ndarray:
    """Decode a single-frame image file to a numpy pixel array (PIL; 8/16-bit gray or RGB[A]), every
    bit kept: a 16-bit PNG with alpha or colour, which PIL cuts to 8 bits, is read by read_png16
    (gray+alpha: the gray samples). A multi-frame file raises ValueError rather than giving frame 0."""
    from PIL import Image

    with Image.open(path) as im:
        frames = getattr(im, "n_frames", 1)
        if frames > 1:
            raise ValueError(f"{frames} frames (a multi-frame {im.format} file): each image must be a file of its own")
        if im.format == "PNG" and (png_header(path) or (0, 0))[0] == 16 and im.mode not in ("I", "I;16", "I;16B"):
            px = read_png16(path)
            return px[..., 0] if px.shape[2] <= 2 else px
        if im.mode in ("L", "I;16", "I;16B", "I;16L", "I", "F", "RGB", "RGBA"):
            arr = np.array(im)
        elif im.mode in ("LA", "1"):
            arr = np.array(im.convert("L"))
        else:
            arr = np.array(im.convert("RGB"))
    return arr


def preprocess_file(path: str, out_size: int = OUT_SIZE) -> np.ndarray:
    return preprocess(load_image(path), out_size)
