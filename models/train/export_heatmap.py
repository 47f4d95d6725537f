"""Export the similarity-heatmap graph for a shipped retrieval model (docs/heatmaps.md).

For a query q and a result r with feature maps F_q, F_r (inception_5b, [1,C,H,W]) the
graph computes, without autograd, the per-location contribution of each feature map to
their similarity s = e_q . e_r:

  GeM        g_c = (mean_x F_c(x)^p)^(1/p)                      (F clamped at eps, p = 3)
  head       y = W g + b,  z = gamma (y - mu) / sqrt(var + eps_bn) + beta,
             a = PReLU_alpha(z),  e = a / |a|
  gradient   ds/dg_q = W^T [ gamma/sqrt(var+eps_bn) * PReLU'(z_q) * (I - e_q e_q^T) e_r / |a_q| ]
  share      w_c(x) = F_c(x)^p / sum_x' F_c(x')^p               (x's share of channel c's pool)
  map        M_q(x) = sum_c (ds/dg_q,c) g_q,c w_c(x)

M_q(x) equals sum_c F_c(x) ds/dF_c(x) exactly (gradient x activation at the feature map),
because dg_c/dF_c(x) = g_c w_c(x) / F_c(x) for GeM; and sum_x M_q(x) = sum_c g_c ds/dg_c
(GeM is positively homogeneous of degree 1). The same for r with the roles swapped.

The head's weights are read from the shipped ONNX model's initializers (onnx.numpy_helper),
found by walking the graph from its `feature_map` output (Clip -> Pow -> ReduceMean -> Pow ->
Gemm -> BatchNormalization -> PRelu), so this works for whatever model models/manifest.json
names and needs no training checkpoint.

Graph contract (workers/heatmap.ts relies on it):
  inputs   fmap_q, fmap_r   float32 [1,C,H,W]   (C = 1024, H = W = 7 for the shipped model)
  outputs  map_q, map_r     float32 [H,W]
           s                float32 [1]          cosine similarity of the two embeddings
  metadata source_model, source_sha256 (the model the weights came from), method

Usage:
  python3 models/train/export_heatmap.py              # for models/manifest.json's model;
                                                      # writes models/heatmap-<model>.onnx and
                                                      # the manifest's "heatmap" entry
  python3 models/train/export_heatmap.py --model X.onnx --out Y.onnx --no-manifest
Re-run it after every export.py: export.py rewrites the manifest and deletes other .onnx files.
"""
from __future__ import annotations

import argparse
import hashlib
import json
import sys
from pathlib import Path

import numpy as np
import torch
import torch.nn as nn

MODELS_DIR = Path(__file__).resolve().parents[1]
OPSET = 17
METHOD = "GeM share-weighted first-order attribution (gradient x activation at the feature map), docs/heatmaps.md"


def sha256_file(path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


class HeadWeights:
    """What the heatmap needs from the model: GeM p/eps, FC, BN (eval), PReLU slope."""

    def __init__(self, **kw):
        self.p: float = kw["p"]
        self.gem_eps: float = kw["gem_eps"]
        self.W: np.ndarray = kw["W"]  # [D, C]
        self.b: np.ndarray = kw["b"]  # [D]
        self.gamma: np.ndarray = kw["gamma"]
        self.beta: np.ndarray = kw["beta"]
        self.mean: np.ndarray = kw["mean"]
        self.var: np.ndarray = kw["var"]
        self.bn_eps: float = kw["bn_eps"]
        self.alpha: np.ndarray = kw["alpha"]  # [1] or [D]
        self.norm_eps: float = kw["norm_eps"]


def read_head(model_path: Path) -> HeadWeights:
    """Walk the graph from `feature_map` to the embedding and collect the head's constants."""
    import onnx
    from onnx import numpy_helper

    m = onnx.load(str(model_path))
    g = m.graph
    inits = {i.name: numpy_helper.to_array(i) for i in g.initializer}
    consts = {}
    aliases = {}  # the exporter deduplicates equal tensors through Identity nodes (untrained BN: var == weight)
    for n in g.node:
        if n.op_type == "Constant":
            for a in n.attribute:
                if a.name == "value":
                    consts[n.output[0]] = numpy_helper.to_array(a.t)
        elif n.op_type == "Identity":
            aliases[n.output[0]] = n.input[0]

    def value(name: str) -> np.ndarray:
        for _ in range(8):
            if name not in aliases:
                break
            name = aliases[name]
        if name in inits:
            return inits[name]
        if name in consts:
            return consts[name]
        raise ValueError(f"{model_path.name}: {name!r} is not a constant")

    consumers: dict[str, list] = {}
    for n in g.node:
        for i in n.input:
            consumers.setdefault(i, []).append(n)

    def next_node(tensor: str, op: str):
        # Shape/Expand side branches (of the L2 normalisation) are skipped.
        found = [n for n in consumers.get(tensor, []) if n.op_type == op]
        if len(found) != 1:
            raise ValueError(f"{model_path.name}: expected one {op} after {tensor!r}, found {len(found)}: "
                             "not the GeM -> FC -> BN -> PReLU head this heatmap is derived for")
        return found[0]

    def attr(node, name, default=None):
        for a in node.attribute:
            if a.name == name:
                return onnx.helper.get_attribute_value(a)
        return default

    clip = next_node("feature_map", "Clip")
    pow1 = next_node(clip.output[0], "Pow")
    mean = next_node(pow1.output[0], "ReduceMean")
    pow2 = next_node(mean.output[0], "Pow")
    gemm = next_node(pow2.output[0], "Gemm")
    bn = next_node(gemm.output[0], "BatchNormalization")
    prelu = next_node(bn.output[0], "PRelu")
    l2 = next_node(prelu.output[0], "ReduceL2")
    norm_clip = next_node(l2.output[0], "Clip")

    p = float(value(pow1.input[1]))
    if abs(float(value(pow2.input[1])) * p - 1.0) > 1e-5:
        raise ValueError(f"{model_path.name}: GeM exponents {p} and {float(value(pow2.input[1]))} are not inverse")
    if attr(gemm, "transB", 0) != 1 or attr(gemm, "transA", 0) != 0 or attr(gemm, "alpha", 1.0) != 1.0 or attr(gemm, "beta", 1.0) != 1.0:
        raise ValueError(f"{model_path.name}: unexpected Gemm attributes")
    return HeadWeights(
        p=p,
        gem_eps=float(value(clip.input[1])),
        W=value(gemm.input[1]).astype(np.float32),
        b=value(gemm.input[2]).astype(np.float32),
        gamma=value(bn.input[1]).astype(np.float32),
        beta=value(bn.input[2]).astype(np.float32),
        mean=value(bn.input[3]).astype(np.float32),
        var=value(bn.input[4]).astype(np.float32),
        bn_eps=float(attr(bn, "epsilon", 1e-5)),
        alpha=value(prelu.input[1]).astype(np.float32).reshape(-1),
        norm_eps=float(value(norm_clip.input[1])),
    )


class PairHeatmap(nn.Module):
    """(fmap_q, fmap_r) -> (map_q, map_r, s), closed form (no autograd in the graph)."""

    def __init__(self, h: HeadWeights):
        super().__init__()
        t = lambda a: torch.from_numpy(np.ascontiguousarray(a, dtype=np.float32))  # noqa: E731
        self.p = h.p
        self.gem_eps = h.gem_eps
        self.norm_eps = h.norm_eps
        self.register_buffer("W", t(h.W))
        self.register_buffer("b", t(h.b))
        # BN in eval mode is an affine map: z = y * k + (beta - mean * k), k = gamma / sqrt(var + eps)
        k = h.gamma / np.sqrt(h.var + h.bn_eps)
        self.register_buffer("k", t(k))
        self.register_buffer("shift", t(h.beta - h.mean * k))
        self.register_buffer("alpha", t(h.alpha))

    def side(self, fmap):
        fc = fmap.clamp(min=self.gem_eps)
        pw = fc.pow(self.p)  # [1,C,H,W]
        g = pw.mean(dim=(2, 3)).pow(1.0 / self.p)  # [1,C]
        z = (g @ self.W.t() + self.b) * self.k + self.shift  # [1,D]
        a = torch.where(z >= 0, z, self.alpha * z)
        n = a.norm(dim=1, keepdim=True).clamp(min=self.norm_eps)
        return pw, g, z, n, a / n

    def contribution(self, pw, g, z, n, e_self, e_other):
        da = (e_other - (e_self * e_other).sum(dim=1, keepdim=True) * e_self) / n  # (I - e e^T) e_o / |a|
        dz = da * torch.where(z > 0, torch.ones_like(z), self.alpha.expand_as(z))  # PReLU'
        dg = (dz * self.k) @ self.W  # [1,C]: ds/dg
        share = pw / pw.sum(dim=(2, 3), keepdim=True)  # w_c(x)
        return ((dg * g)[:, :, None, None] * share).sum(dim=1)[0]  # [H,W]

    def forward(self, fmap_q, fmap_r):
        pq, gq, zq, nq, eq = self.side(fmap_q)
        pr, gr, zr, nr, er = self.side(fmap_r)
        s = (eq * er).sum(dim=1)
        return self.contribution(pq, gq, zq, nq, eq, er), self.contribution(pr, gr, zr, nr, er, eq), s


def export_heatmap(model_path: Path, out: Path, channels: int | None = None, height: int = 7, width: int = 7) -> dict:
    import onnx

    head = read_head(model_path)
    c = channels or head.W.shape[1]
    net = PairHeatmap(head).eval()
    dummy = torch.rand(1, c, height, width)
    torch.onnx.export(net, (dummy, dummy.flip(-1)), str(out), input_names=["fmap_q", "fmap_r"],
                      output_names=["map_q", "map_r", "s"], opset_version=OPSET, do_constant_folding=True, dynamo=False)
    m = onnx.load(str(out))
    for k, v in {"source_model": model_path.name, "source_sha256": sha256_file(model_path), "method": METHOD}.items():
        m.metadata_props.append(onnx.StringStringEntryProto(key=k, value=v))
    onnx.checker.check_model(m, full_check=True)
    onnx.save(m, str(out))
    return {"channels": c, "height": height, "width": width, "p": head.p}


def check_against_model(model_path: Path, heatmap_path: Path, images: np.ndarray) -> dict:
    """s from the heatmap graph must equal the dot product of the model's own embeddings."""
    import onnxruntime as ort

    model = ort.InferenceSession(str(model_path), providers=["CPUExecutionProvider"])
    hm = ort.InferenceSession(str(heatmap_path), providers=["CPUExecutionProvider"])
    emb, fm = model.run(["embedding", "feature_map"], {"image": images.astype(np.float32)})
    worst = 0.0
    for i in range(len(images)):
        for j in range(len(images)):
            mq, mr, s = hm.run(None, {"fmap_q": fm[i:i + 1], "fmap_r": fm[j:j + 1]})
            worst = max(worst, abs(float(s[0]) - float(emb[i] @ emb[j])))
    return {"pairs": len(images) ** 2, "s_vs_embedding_dot_max_abs_diff": worst, "ok": worst <= 1e-4}


def model_grid(model_path: Path) -> tuple[int, int]:
    """(input side, feature-map side) the retrieval model declares: 224 and 7 for the
    shipped model, other values for a model trained at another size."""
    import onnxruntime as ort

    from eval_onnx import input_side

    sess = ort.InferenceSession(str(model_path), providers=["CPUExecutionProvider"])
    side = next((o.shape[-1] for o in sess.get_outputs() if o.name == "feature_map"), None)
    return input_side(sess), (side if isinstance(side, int) else 7)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", help="the retrieval model .onnx (default: models/manifest.json's file)")
    ap.add_argument("--out", help="output .onnx (default: models/heatmap-<model file>)")
    ap.add_argument("--no-manifest", action="store_true", help="do not write the manifest's \"heatmap\" entry")
    a = ap.parse_args(argv)
    torch.set_num_threads(2)
    man_path = MODELS_DIR / "manifest.json"
    man = json.loads(man_path.read_text()) if man_path.exists() else {}
    model = Path(a.model) if a.model else MODELS_DIR / man["file"]
    out = Path(a.out) if a.out else model.parent / f"heatmap-{model.name}"
    size, side = model_grid(model)
    info = export_heatmap(model, out, height=side, width=side)
    from export import sample_images  # real dataset images for the check

    chk = check_against_model(model, out, sample_images(size=size))
    print(json.dumps({"check": chk}, indent=2))
    if not chk["ok"]:
        print("HEATMAP CHECK FAILED", file=sys.stderr)
        return 1
    if not a.no_manifest:
        if man.get("file") != model.name:
            print(f"manifest names {man.get('file')}, not {model.name}: manifest not changed", file=sys.stderr)
        else:
            man["heatmap"] = {
                "file": out.name,
                "sha256": sha256_file(out),
                "bytes": out.stat().st_size,
                "source_sha256": sha256_file(model),
                "inputs": {"fmap_q": [1, info["channels"], info["height"], info["width"]],
                           "fmap_r": [1, info["channels"], info["height"], info["width"]]},
                "outputs": {"map_q": [info["height"], info["width"]], "map_r": [info["height"], info["width"]], "s": [1]},
                "method": "docs/heatmaps.md",
                "check": {k: chk[k] for k in ("pairs", "s_vs_embedding_dot_max_abs_diff")},
            }
            man_path.write_text(json.dumps(man, indent=2) + "\n")
    print(f"wrote {out} ({out.stat().st_size / 1e6:.2f} MB)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
