"""Datasets: labels.csv reading, patient-wise folds, an in-RAM cache, batched augmentation.

Datasets live in $CBMIR_DATASETS (default: <repo>/../shared/datasets):
  figshare-cheng/  labels.csv (file,label,class_name,patient_id,fold) + folds.csv (patient_family)
  ixi-normal/      labels.csv (label 0 = normal; one slice per subject)
Class ids of the shipped model = the `label` column: 0 normal, 1 meningioma, 2 glioma, 3 pituitary.

Cache: every image is decoded once and run through preprocess.preprocess() (the
exact inference spec) to 224x224, stored float16 in models/train/.data/ (git-ignored).
With harmonise=True (training only) each image first goes through one common
re-encode path — zero-pad to square, resize to 512x512 (PIL bilinear, 8-bit),
JPEG quality 75 — so that IXI PNGs (197x233, lossless) and Figshare JPEGs
(512x512, q~75) share size and compression artefacts (the IXI source shortcut).
"""
from __future__ import annotations

import csv
import hashlib
import inspect
import io
import math
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from families import read_families
from preprocess import load_image, preprocess, to_gray

REPO_ROOT = Path(__file__).resolve().parents[2]
HERE = Path(__file__).resolve().parent
CACHE_DIR = HERE / ".data"
CLASS_NAMES = {0: "normal", 1: "meningioma", 2: "glioma", 3: "pituitary"}
FIGSHARE = "figshare-cheng"
IXI = "ixi-normal"


def datasets_root() -> Path:
    env = os.environ.get("CBMIR_DATASETS")
    return Path(env) if env else REPO_ROOT.parent / "shared" / "datasets"


def read_labels(dataset_dir: Path) -> list[dict]:
    """Rows of labels.csv with absolute `path`, int `label`, optional patient_id/fold,
    and `patient_family` (from folds.csv when present, else patient_id)."""
    dataset_dir = Path(dataset_dir)
    with open(dataset_dir / "labels.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    fam = read_families(dataset_dir)
    out = []
    for r in rows:
        d = {
            "file": r["file"],
            "path": str(dataset_dir / r["file"]),
            "label": int(r["label"]),
            "class_name": r["class_name"],
            "patient_id": r.get("patient_id") or None,
            "fold": int(r["fold"]) if r.get("fold") not in (None, "") else None,
            "source": dataset_dir.name,
        }
        d["patient_family"] = fam.get(r["file"].strip(), d["patient_id"])
        out.append(d)
    return out


def harmonise(arr: np.ndarray, size: int = 512, quality: int = 75) -> np.ndarray:
    """Common re-encode path: 8-bit, zero-pad square, resize to size x size, JPEG q75."""
    from PIL import Image

    g = to_gray(arr)
    lo, hi = float(g.min()), float(g.max())
    g8 = np.zeros(g.shape, np.uint8) if hi <= lo else np.round((g - lo) / (hi - lo) * 255).astype(np.uint8)
    h, w = g8.shape
    s = max(h, w)
    sq = np.zeros((s, s), np.uint8)
    sq[(s - h) // 2:(s - h) // 2 + h, (s - w) // 2:(s - w) // 2 + w] = g8
    im = Image.fromarray(sq)
    if s != size:
        im = im.resize((size, size), Image.BILINEAR)
    buf = io.BytesIO()
    im.save(buf, format="JPEG", quality=quality)
    buf.seek(0)
    return np.array(Image.open(buf).convert("L"))


@dataclass
class Cache:
    images: torch.Tensor          # [N,S,S] float16 in [0,1] (S = build_cache's size, 224 unless asked)
    labels: np.ndarray            # [N] int64
    patients: np.ndarray          # [N] str (source-prefixed)
    families: np.ndarray          # [N] str (source-prefixed)
    folds: np.ndarray             # [N] int
    files: np.ndarray             # [N] str
    sources: np.ndarray           # [N] str

    def subset(self, idx) -> "Cache":
        idx = np.asarray(idx)
        return Cache(self.images[torch.as_tensor(idx)], self.labels[idx], self.patients[idx],
                     self.families[idx], self.folds[idx], self.files[idx], self.sources[idx])

    def __len__(self):
        return len(self.labels)


def _decode_one(args):
    path, harm, size = args
    a = load_image(path)
    if harm:
        a = harmonise(a)
    return preprocess(a, out_size=size).astype(np.float16)


def cache_key(names, harmonise_inputs: bool, root: Path, size: int = 224, rows=()) -> str:
    """The cache holds images in row order, so the key covers what decides each row's pixels: the
    rows themselves (file, size, mtime; a reordered or edited labels.csv must not pair old images
    with new labels), the preprocessing code and the harmonisation."""
    h = hashlib.sha256(("|".join(names) + f"|h={int(harmonise_inputs)}|" + str(root) + f"|v2|s={size}").encode())
    h.update((HERE / "preprocess.py").read_bytes())
    h.update(inspect.getsource(harmonise).encode())
    for r in rows:
        st = os.stat(r["path"])
        h.update(f"\n{r['path']}|{st.st_size}|{st.st_mtime_ns}".encode())
    return h.hexdigest()[:12]


def build_cache(names=(FIGSHARE, IXI), harmonise_inputs: bool = False, root: Path | None = None,
                verbose: bool = True, size: int = 224) -> Cache:
    """Every image preprocessed (preprocess.py) to size x size; 224 is the model's
    input, other sizes serve resolution experiments (features.py --size)."""
    root = Path(root) if root else datasets_root()
    rows = []
    for n in names:
        rows += read_labels(root / n)
    key = cache_key(names, harmonise_inputs, root, size, rows)
    CACHE_DIR.mkdir(parents=True, exist_ok=True)
    fn = CACHE_DIR / f"cache-{key}.npz"
    if fn.exists():  # the key covers the rows and the code that made each image (cache_key)
        imgs = np.load(fn, allow_pickle=False)["images"]
    else:
        from tqdm import tqdm

        imgs = np.zeros((len(rows), size, size), np.float16)
        for i, r in enumerate(tqdm(rows, desc=f"cache harmonise={harmonise_inputs} size={size}", disable=not verbose,
                                   mininterval=5)):
            imgs[i] = _decode_one((r["path"], harmonise_inputs, size))
        tmp = fn.with_suffix(f".{os.getpid()}.tmp.npz")  # per process: two builds at once must not share one
        np.savez(tmp, images=imgs)
        os.replace(tmp, fn)
    return Cache(
        images=torch.from_numpy(imgs),
        labels=np.array([r["label"] for r in rows], np.int64),
        patients=np.array([f"{r['source']}:{r['patient_id']}" for r in rows]),
        families=np.array([f"{r['source']}:{r['patient_family']}" for r in rows]),
        folds=np.array([r["fold"] for r in rows], np.int64),
        files=np.array([f"{r['source']}/{r['file']}" for r in rows]),
        sources=np.array([r["source"] for r in rows]),
    )


def split_folds(folds: np.ndarray, test_fold: int):
    """Indices (train, test) for a patient-wise fold split."""
    test = np.flatnonzero(folds == test_fold)
    train = np.flatnonzero(folds != test_fold)
    return train, test


def check_patient_disjoint(groups_a, groups_b) -> set:
    """Groups (patients or families) present on both sides; empty set = clean."""
    return set(groups_a) & set(groups_b)


# ---------------------------------------------------------------- augmentation
@dataclass
class AugConfig:
    rotate_deg: float = 15.0
    scale: tuple = (0.85, 1.15)
    translate: float = 0.06
    hflip: float = 0.5
    gamma: tuple = (0.7, 1.4)
    contrast: tuple = (0.8, 1.2)
    brightness: float = 0.08
    noise_p: float = 0.5
    noise_sigma: float = 0.03
    blur_p: float = 0.3
    lowres_p: float = 0.3
    lowres: tuple = (0.4, 0.9)


def _gauss_kernel(sigma: torch.Tensor, k: int = 5) -> torch.Tensor:
    r = torch.arange(k, dtype=torch.float32) - k // 2
    g = torch.exp(-(r[None, :] ** 2) / (2 * sigma[:, None] ** 2))
    return g / g.sum(1, keepdim=True)  # [B,k]


def augment(x: torch.Tensor, gen: torch.Generator, cfg: AugConfig = AugConfig(),
            noise_gen: torch.Generator | None = None) -> torch.Tensor:
    """Batched augmentation of [B,1,H,W] float32 in [0,1]. Deterministic given `gen`.

    Works on any device: the per-image parameters always come from the CPU `gen`
    (so a batch's geometry is the same on CPU and GPU); only the pixel noise is
    drawn where `x` lives, from `noise_gen` (a generator on x's device) when x is
    not on the CPU, since drawing 50k floats per image on the CPU would stall a GPU.
    """
    B, _, H, W = x.shape
    dev = x.device

    def U(lo, hi, n=B):
        return (lo + (hi - lo) * torch.rand(n, generator=gen)).to(dev)

    def P(p):  # per-image Bernoulli mask on x's device
        return (torch.rand(B, generator=gen) < p).to(dev)

    # geometric: rotation, scale, translation, horizontal flip (one affine warp, bilinear)
    ang = U(-cfg.rotate_deg, cfg.rotate_deg) * math.pi / 180
    sc = U(*cfg.scale)
    tx, ty = U(-cfg.translate, cfg.translate) * 2, U(-cfg.translate, cfg.translate) * 2
    flip = torch.where(P(cfg.hflip), -1.0, 1.0)
    cos, sin = torch.cos(ang) / sc, torch.sin(ang) / sc
    theta = torch.stack([torch.stack([cos * flip, -sin, tx], 1), torch.stack([sin * flip, cos, ty], 1)], 1)
    grid = F.affine_grid(theta, (B, 1, H, W), align_corners=False)
    x = F.grid_sample(x, grid, mode="bilinear", padding_mode="zeros", align_corners=False)

    # resolution jitter: down- then up-sample a subset
    m = P(cfg.lowres_p)
    if m.any():
        f = float(U(*cfg.lowres, 1))
        s = max(8, int(round(H * f)))
        lo = F.interpolate(x[m], size=(s, s), mode="bilinear", antialias=True, align_corners=False)
        x[m] = F.interpolate(lo, size=(H, W), mode="bilinear", align_corners=False)

    # blur a subset (separable gaussian, sigma 0.3..1.2)
    m = P(cfg.blur_p)
    if m.any():
        xs = x[m]
        k = _gauss_kernel(U(0.3, 1.2, xs.size(0)).cpu()).to(dev)
        n = xs.size(0)
        xs = xs.reshape(1, n, H, W)
        xs = F.conv2d(F.pad(xs, (2, 2, 0, 0), mode="reflect"), k.view(n, 1, 1, 5), groups=n)
        xs = F.conv2d(F.pad(xs, (0, 0, 2, 2), mode="reflect"), k.view(n, 1, 5, 1), groups=n)
        x[m] = xs.reshape(n, 1, H, W)

    # intensity: gamma, contrast, brightness, noise
    g = torch.exp(U(math.log(cfg.gamma[0]), math.log(cfg.gamma[1]))).view(B, 1, 1, 1)
    x = x.clamp(0, 1).pow(g)
    a = U(*cfg.contrast).view(B, 1, 1, 1)
    b = U(-cfg.brightness, cfg.brightness).view(B, 1, 1, 1)
    x = x * a + b
    m = P(cfg.noise_p).float().view(B, 1, 1, 1)
    sig = U(0, cfg.noise_sigma).view(B, 1, 1, 1)
    if dev.type == "cpu":
        noise = torch.randn(x.shape, generator=gen)
    else:
        noise = torch.randn(x.shape, generator=noise_gen, device=dev)
    x = x + m * sig * noise
    return x.clamp(0, 1)


def _chunks(order: torch.Tensor, batch_size: int, drop_last: bool = True):
    stop = (len(order) // batch_size) * batch_size if drop_last else len(order)
    for i in range(0, stop, batch_size):
        yield order[i:i + batch_size]


def batches(n: int, batch_size: int, gen: torch.Generator, shuffle: bool = True, drop_last: bool = True):
    order = torch.randperm(n, generator=gen) if shuffle else torch.arange(n)
    yield from _chunks(order, batch_size, drop_last)


def balanced_batches(labels, batch_size: int, gen: torch.Generator, power: float = 0.5):
    """An epoch of len(labels) indices drawn with replacement, item i with weight
    n_class(i)^-power: 0 = the data's own class mix, 0.5 = square-root balancing,
    1 = every class equally often. Full batches only, like batches()."""
    lab = torch.as_tensor(np.asarray(labels))
    counts = torch.bincount(lab).double()
    w = counts[lab] ** -power
    yield from _chunks(torch.multinomial(w, len(lab), replacement=True, generator=gen), batch_size)
