"""Export a trained RetrievalNet to ONNX, check it, and write models/manifest.json.

Contract (the TypeScript worker relies on it):
  input  `image`        float32 [N,1,S,S], values in [0,1] (models/PREPROCESSING.md);
                        S = the size the model was trained at, 224 for the shipped
                        model (the manifest declares it; the worker and eval_onnx.py read it)
  output `embedding`    float32 [N,D], L2-normalised (D = 256 for the shipped model)
  output `feature_map`  float32 [N,1024,s,s], inception_5b output (for heatmaps); s = 7 at 224
  batch dimension dynamic, opset 17, legacy TorchScript exporter (dynamo=False).

Checks: onnx.checker, then onnxruntime vs PyTorch on real dataset images
(max |diff| of the embedding <= 1e-4; feature_map max |diff| <= 1e-4 * max|feature|).

Usage:
  python3 models/train/export.py --ckpt models/train/runs/<run>/last.pt --version 1.0.0
  python3 models/train/export.py --random-head --version 0.1.0-dev   # BVLC backbone, untrained head
  python3 models/train/export.py --ckpt … --version 1.0.0-try --out-dir /tmp/x --no-manifest   # elsewhere
"""
from __future__ import annotations

import argparse
import hashlib
import json
import sys
from pathlib import Path

import numpy as np
import torch

from model import ExportWrapper, build_model

MODELS_DIR = Path(__file__).resolve().parents[1]
NAME = "cbmir-googlenet-gem-arcface"
OPSET = 17
SAMPLE_FILES = ["figshare-cheng/images/1.jpg", "figshare-cheng/images/1000.jpg",
                "figshare-cheng/images/2500.jpg", "ixi-normal/images/IXI002_1.png"]


def sha256_file(path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def load_net(ckpt: str | None, dim: int = 256, pool: str = "gem"):
    if ckpt is None:
        torch.manual_seed(0)
        net = build_model(dim=dim, pool=pool, frozen_until=None, pretrained=True)
        meta = {"trained": False}
    else:
        ck = torch.load(ckpt, map_location="cpu", weights_only=False)
        cfg = ck["config"]
        if cfg.get("fuse_pool4"):
            raise SystemExit(f"{ckpt}: a --fuse-pool4 model (a CPU-recipe experiment) has no export contract")
        net = build_model(dim=cfg["dim"], pool=cfg["pool"], frozen_until=None, pretrained=True)
        missing, unexpected = net.load_state_dict(ck["model"], strict=False)
        if unexpected or any(not k.startswith("backbone.") for k in missing):
            raise RuntimeError(f"checkpoint mismatch: missing={missing} unexpected={unexpected}")
        meta = {"trained": True, "config": cfg, "epoch": ck.get("epoch")}
    meta["input_size"] = input_size(meta.get("config") or {})
    return net.eval(), meta


def input_size(cfg: dict) -> int:
    """The side the model was trained at: device_train records input_size, train.py size;
    224 for everything older. Exported at any other size, every image would be embedded
    at a scale the model never saw."""
    return int(cfg.get("input_size", cfg.get("size", 224)))


def export_onnx(net, path: Path, opset: int = OPSET, size: int = 224):
    wrapper = ExportWrapper(net).eval()
    dummy = torch.rand(2, 1, size, size)
    torch.onnx.export(
        wrapper, (dummy,), str(path), input_names=["image"], output_names=["embedding", "feature_map"],
        dynamic_axes={"image": {0: "N"}, "embedding": {0: "N"}, "feature_map": {0: "N"}},
        opset_version=opset, do_constant_folding=True, dynamo=False,
    )
    import onnx

    m = onnx.load(str(path))
    onnx.checker.check_model(m, full_check=True)
    return m


def sample_images(files=SAMPLE_FILES, size: int = 224) -> np.ndarray:
    from data import datasets_root
    from preprocess import preprocess_file

    root = datasets_root()
    return np.stack([preprocess_file(str(root / f), size) for f in files])[:, None]


def parity(net, onnx_path: Path, x: np.ndarray) -> dict:
    import onnxruntime as ort

    sess = ort.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"])
    emb_o, fm_o = sess.run(["embedding", "feature_map"], {"image": x.astype(np.float32)})
    with torch.no_grad():
        emb_t, fm_t = ExportWrapper(net).eval()(torch.from_numpy(x))
    emb_t, fm_t = emb_t.numpy(), fm_t.numpy()
    res = {
        "n": int(x.shape[0]),
        "embedding_max_abs_diff": float(np.abs(emb_o - emb_t).max()),
        "feature_map_max_abs_diff": float(np.abs(fm_o - fm_t).max()),
        "feature_map_max_abs": float(np.abs(fm_t).max()),
        "embedding_norms": [float(v) for v in np.linalg.norm(emb_o, axis=1)],
    }
    res["ok"] = bool(res["embedding_max_abs_diff"] <= 1e-4
                     and res["feature_map_max_abs_diff"] <= 1e-4 * max(1.0, res["feature_map_max_abs"]))
    return res


def evaluation_folds(meta: dict) -> dict:
    """The held-out fold eval:model queries by default: the fold the model was trained without.
    An untrained head saw no fold, so the published protocol's fold 5 is as good as any; a trained
    model without a held-out fold (trained on all of them) has none, and eval:model then asks for one."""
    if not meta.get("trained"):
        return {"query_fold": 5, "database_folds": [1, 2, 3, 4]}
    tf = (meta.get("config") or {}).get("test_fold")
    if tf is None:
        return {"query_fold": None, "database_folds": None}
    return {"query_fold": int(tf), "database_folds": [f for f in range(1, 6) if f != int(tf)]}


def write_manifest(onnx_file: Path, version: str, dim: int, meta: dict, extra: dict | None = None):
    from data import CLASS_NAMES
    from features import pool4_side  # inception_5b keeps pool4's grid

    size = meta.get("input_size", 224)
    side = pool4_side(size)

    man = {
        "name": NAME,
        "version": version,
        "file": onnx_file.name,
        "sha256": sha256_file(onnx_file),
        "bytes": onnx_file.stat().st_size,
        "opset": OPSET,
        "input": {"name": "image", "dtype": "float32", "shape": ["N", 1, size, size], "range": [0.0, 1.0],
                  "preprocessing": "models/PREPROCESSING.md", "preprocessing_version": 1,
                  "note": "in-graph: gray replicated to 3 channels, x*255, BGR mean (104,117,123) subtracted"},
        "outputs": {
            "embedding": {"dtype": "float32", "shape": ["N", dim], "l2_normalised": True},
            "feature_map": {"dtype": "float32", "shape": ["N", 1024, side, side], "layer": "inception_5b/output"},
        },
        "similarity": {"metric": "euclidean", "score": "1 - d*d/4 (d = Euclidean distance of unit vectors; 1 = identical, 0.5 = orthogonal)"},
        "classes": {str(k): v for k, v in CLASS_NAMES.items()},
        "dims": dim,
        "trained": bool(meta.get("trained")),
        "evaluation": evaluation_folds(meta),
        "model_card": "models/MODEL_CARD.md",
    }
    if extra:
        man.update(extra)
    path = MODELS_DIR / "manifest.json"
    old = json.loads(path.read_text()) if path.exists() else {}
    same_file = old.get("sha256") == man["sha256"]
    # keep evaluation figures written by other tools for the same file
    if same_file and "metrics" in old:
        man["metrics"] = old["metrics"]
    # keep blocks other tools own (e.g. "heatmap", written by the heatmap exporter); they carry
    # their own source_sha256 so a consumer can tell when they are stale
    for k, v in old.items():
        if k not in man and k not in ("metrics", "variants"):
            man[k] = v
    # A variant (e.g. the INT8 file) is derived from one model file: it goes with that file.
    variants = {k: v for k, v in (old.get("variants") or {}).items()
                if same_file and (MODELS_DIR / v.get("file", "")).is_file()}
    if variants:
        man["variants"] = variants
    path.write_text(json.dumps(man, indent=2) + "\n")
    return man


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--ckpt", help="training checkpoint (.pt); omit with --random-head")
    ap.add_argument("--random-head", action="store_true", help="BVLC backbone + untrained head (dev artifact)")
    ap.add_argument("--version", required=True)
    ap.add_argument("--out-dir", default=str(MODELS_DIR),
                    help="where the .onnx goes (default: models/). Any other folder needs --no-manifest: "
                         "models/manifest.json names its model by file name inside models/")
    ap.add_argument("--keep-old", action="store_true", help="do not delete other .onnx files in models/")
    ap.add_argument("--no-manifest", action="store_true", help="do not write models/manifest.json")
    a = ap.parse_args(argv)
    if not a.ckpt and not a.random_head:
        ap.error("--ckpt or --random-head")
    # The manifest names the model by file name, read from models/: pointed at a file elsewhere,
    # `npm run eval:model` and the worker would look for it in models/ and not find it.
    if not a.no_manifest and Path(a.out_dir).resolve() != MODELS_DIR.resolve():
        raise SystemExit(f"--out-dir {a.out_dir}: models/manifest.json can only describe a model in {MODELS_DIR}; "
                         "pass --no-manifest to export elsewhere (or export into models/)")
    torch.set_num_threads(2)
    net, meta = load_net(None if a.random_head else a.ckpt)
    out = Path(a.out_dir) / f"{NAME}-{a.version}.onnx"
    size = meta["input_size"]
    if size != 224:
        print(f"note: trained at {size}x{size}; exported with that input (the manifest declares it)", flush=True)
    export_onnx(net, out, size=size)
    par = parity(net, out, sample_images(size=size))
    print(json.dumps({"parity": par}, indent=2))
    if not par["ok"]:
        print("PARITY FAILED", file=sys.stderr)
        return 1
    digest = sha256_file(out)
    out.with_suffix(".onnx.sha256").write_text(f"{digest}  {out.name}\n")
    if not a.keep_old and Path(a.out_dir).resolve() == MODELS_DIR.resolve():
        for p in MODELS_DIR.glob(f"{NAME}-*.onnx"):  # only our own artifacts, never e.g. heatmap-*.onnx
            if p.name != out.name:
                p.unlink()
                p.with_suffix(".onnx.sha256").unlink(missing_ok=True)
    if not a.no_manifest:
        extra = {"parity": {k: par[k] for k in ("n", "embedding_max_abs_diff", "feature_map_max_abs_diff")}}
        if meta.get("config"):
            extra["training"] = {k: meta["config"][k] for k in meta["config"] if k in (
                "margin", "scale", "epochs", "test_fold", "pool", "dim", "seed", "lr", "batch_size", "input_size")}
        man = write_manifest(out, a.version, net.dim, meta, extra)
        print(json.dumps({"manifest": man}, indent=2))
    print(f"wrote {out} ({out.stat().st_size / 1e6:.1f} MB) sha256 {digest}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
