"""Pack the training data and the BVLC initialisation compactly for a GPU machine.

A device machine receives only the checkout (64 MiB in all, ../shared stays
behind), so this writes models/train/.pack/ (git-ignored; name it in `carry`):

  images.npz   every image at 224x224 (--size) after preprocess.preprocess(), 8-bit,
               JPEG-encoded (quality --quality); rows and metadata:
                 train view: figshare-cheng as stored + ixi-normal harmonised
                 eval view:  figshare-cheng + ixi-normal as stored (inference path)
               Figshare rows serve both views (its files already are 512x512
               JPEG q~75, which is what harmonisation produces), so they are
               stored once.
  backbone.pt  the BVLC backbone state dict in float16 (the ImageNet init; the
               1000-way classifier and auxiliary heads are not needed)

The 8-bit + JPEG step is lossy (about 1 grey level after rounding plus JPEG
artefacts at q90); figures computed from the pack are marked as such, and the
shipped model's figures always come from eval_onnx.py on the original files.

--size S packs S x S images for the resolution experiment (device_train.py
trains at whatever size the pack holds). Mind the 64 MiB a device call takes
(tree + carry): measured on these 4,226 rows, the images are ~47 MB at 224/q90,
~50 MB at 320/q75 and ~47 MB at 320/q70, plus the 12 MB backbone and the ~7.6 MB
tree with the ONNX files held out (device_tree.sh). So 320 goes at q70 (mean
error 1.6 grey levels, as 224/q90) to its own folder and travels alone:
  python3 models/train/pack.py --size 320 --quality 70 --out models/train/.pack320

Usage: python3 models/train/pack.py [--quality 90] [--size 224] [--out DIR]
"""
from __future__ import annotations

import argparse
import io
import json
from pathlib import Path

import numpy as np
import torch

import data

PACK_DIR = Path(__file__).resolve().parent / ".pack"


def _jpeg(a01: np.ndarray, quality: int) -> bytes:
    from PIL import Image

    u8 = np.clip(np.round(a01.astype(np.float32) * 255.0), 0, 255).astype(np.uint8)
    buf = io.BytesIO()
    Image.fromarray(u8).save(buf, format="JPEG", quality=quality)
    return buf.getvalue()


def decode_images(blob: np.ndarray, offsets: np.ndarray) -> np.ndarray:
    """[N,S,S] uint8 from the concatenated JPEG bytes (S = the packed size, 224 by default)."""
    from PIL import Image

    def one(i):
        return np.array(Image.open(io.BytesIO(blob[offsets[i]:offsets[i + 1]].tobytes())).convert("L"))

    n = len(offsets) - 1
    first = one(0)
    out = np.empty((n,) + first.shape, np.uint8)
    out[0] = first
    for i in range(1, n):
        im = one(i)
        if im.shape != first.shape:
            raise ValueError(f"pack image {i} is {im.shape}, the first is {first.shape}: rebuild the pack")
        out[i] = im
    return out


META_KEYS = ("labels", "patients", "families", "folds", "sources", "files")


def write_pack(out: Path, blobs: list[bytes], eval_row: np.ndarray, train_row: np.ndarray, meta: dict) -> dict:
    """images.npz (the JPEG blobs, each cache row's pack row per view, the metadata
    evaluate.py reads) + backbone.pt (the BVLC init, fp16); returns file sizes."""
    from model import build_model

    offsets = np.zeros(len(blobs) + 1, np.int64)
    offsets[1:] = np.cumsum([len(b) for b in blobs])
    np.savez(out / "images.npz", jpeg=np.frombuffer(b"".join(blobs), np.uint8), offsets=offsets,
             eval_row=eval_row, train_row=train_row, **{k: meta[k] for k in META_KEYS})
    net = build_model(frozen_until=None, pretrained=True)
    torch.save({k: v.half() for k, v in net.backbone.state_dict().items()}, out / "backbone.pt")
    return {p.name: p.stat().st_size for p in (out / "images.npz", out / "backbone.pt")}


def load_pack(pack_dir: Path = PACK_DIR) -> dict:
    z = np.load(Path(pack_dir) / "images.npz", allow_pickle=False)
    out = {k: z[k] for k in z.files if k not in ("jpeg", "offsets")}
    out["images"] = decode_images(z["jpeg"], z["offsets"])
    return out


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quality", type=int, default=90)
    ap.add_argument("--size", type=int, default=224, help="image side in pixels (224 = the model's input)")
    ap.add_argument("--out", default=str(PACK_DIR))
    a = ap.parse_args(argv)
    if not 1 <= a.quality <= 95:
        ap.error(f"--quality {a.quality}: expected 1..95 (PIL's useful JPEG range)")
    if not 64 <= a.size <= 1024:
        ap.error(f"--size {a.size}: expected 64..1024 pixels")
    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)

    from evaluate import cache_meta
    from tqdm import tqdm

    meta = cache_meta()
    plain = data.build_cache(harmonise_inputs=False, size=a.size).images.numpy()
    harm = data.build_cache(harmonise_inputs=True, size=a.size).images.numpy()
    fig = np.flatnonzero(meta["sources"] == data.FIGSHARE)
    ixi = np.flatnonzero(meta["sources"] == data.IXI)
    n = len(meta["labels"])
    # pack rows: [figshare (both views)] [ixi plain (eval)] [ixi harmonised (train)]
    arrays = [plain[i] for i in fig] + [plain[i] for i in ixi] + [harm[i] for i in ixi]
    blobs = [_jpeg(a_, a.quality) for a_ in tqdm(arrays, desc="jpeg", mininterval=5)]
    nf, ni = len(fig), len(ixi)
    # view -> pack row for every cache row (cache order = evaluate.cache_meta order)
    eval_row = np.empty(n, np.int64)
    train_row = np.empty(n, np.int64)
    eval_row[fig] = np.arange(nf)
    train_row[fig] = np.arange(nf)
    eval_row[ixi] = nf + np.arange(ni)
    train_row[ixi] = nf + ni + np.arange(ni)
    sizes = write_pack(out, blobs, eval_row, train_row, meta)
    (out / "pack.json").write_text(json.dumps({"quality": a.quality, "size": a.size, "rows": len(blobs),
                                               "sizes": sizes}, indent=2))
    mb = sum(sizes.values()) / 2**20
    print(json.dumps({"out": str(out), "rows": len(blobs), "size": a.size, "mib": round(mb, 1), "sizes": sizes}))
    if mb > 64:
        print(f"warning: {mb:.1f} MiB is more than a device call can carry (64 MiB); lower --quality", flush=True)


if __name__ == "__main__":
    main()
