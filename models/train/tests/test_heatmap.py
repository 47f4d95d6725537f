"""Similarity heatmaps (export_heatmap.py, docs/heatmaps.md) against a PyTorch autograd reference.

The reference builds the head as the model does (layers.gem + model.EmbeddingHead + L2),
loads it with the weights read from the ONNX model, and computes
    M(x) = sum_c F_c(x) * ds/dF_c(x)        (gradient x activation, by autograd)
which the closed form must reproduce. Feature maps are the shipped model's own, on the
golden real images (models/train/golden/*.input.bin).
"""
import json
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch
import torch.nn.functional as F

import export_heatmap as eh
from layers.gem import gem
from model import EmbeddingHead

MODELS = Path(__file__).resolve().parents[2]
GOLDEN = Path(__file__).resolve().parents[1] / "golden"
MODEL = MODELS / json.loads((MODELS / "manifest.json").read_text())["file"]


def golden_inputs() -> np.ndarray:
    man = json.loads((GOLDEN / "manifest.json").read_text())
    xs = [np.fromfile(GOLDEN / c["input"]["file"], dtype="<f4").reshape(224, 224) for c in man["cases"]]
    return np.stack(xs)[:, None].astype(np.float32)


@pytest.fixture(scope="module")
def fmaps():
    sess = ort.InferenceSession(str(MODEL), providers=["CPUExecutionProvider"])
    emb, fm = sess.run(["embedding", "feature_map"], {"image": golden_inputs()})
    return emb, fm


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    out = tmp_path_factory.mktemp("hm") / "heatmap.onnx"
    eh.export_heatmap(MODEL, out)
    return out


def reference_head(h: eh.HeadWeights) -> EmbeddingHead:
    head = EmbeddingHead(h.W.shape[1], h.W.shape[0]).eval()
    with torch.no_grad():
        head.fc.weight.copy_(torch.from_numpy(h.W))
        head.fc.bias.copy_(torch.from_numpy(h.b))
        head.bn.weight.copy_(torch.from_numpy(h.gamma))
        head.bn.bias.copy_(torch.from_numpy(h.beta))
        head.bn.running_mean.copy_(torch.from_numpy(h.mean))
        head.bn.running_var.copy_(torch.from_numpy(h.var))
        head.bn.eps = h.bn_eps
        head.act.weight.copy_(torch.from_numpy(h.alpha))
    return head


def autograd_maps(h: eh.HeadWeights, fq: np.ndarray, fr: np.ndarray):
    """float64 autograd: (M_q, M_r, s)."""
    head = reference_head(h).double()
    q = torch.from_numpy(fq).double().requires_grad_(True)
    r = torch.from_numpy(fr).double().requires_grad_(True)
    eq = F.normalize(head(gem(q, h.p, h.gem_eps)), dim=1)
    er = F.normalize(head(gem(r, h.p, h.gem_eps)), dim=1)
    s = (eq * er).sum()
    gq, gr = torch.autograd.grad(s, (q, r))
    return (gq * q).sum(1)[0].detach().numpy(), (gr * r).sum(1)[0].detach().numpy(), float(s)


def rel_err(a, b):
    return float(np.abs(a - b).max() / max(np.abs(b).max(), 1e-12))


def test_reads_the_head_from_the_onnx_model():
    h = eh.read_head(MODEL)
    assert h.p == pytest.approx(3.0)
    assert h.W.shape == (256, 1024) and h.b.shape == (256,)
    assert h.gamma.shape == h.beta.shape == h.mean.shape == h.var.shape == (256,)
    assert h.alpha.size in (1, 256)


def test_graph_contract_and_provenance(exported):
    m = onnx.load(str(exported))
    assert [i.name for i in m.graph.input] == ["fmap_q", "fmap_r"]
    assert [o.name for o in m.graph.output] == ["map_q", "map_r", "s"]
    meta = {p.key: p.value for p in m.metadata_props}
    assert meta["source_model"] == MODEL.name
    assert meta["source_sha256"] == eh.sha256_file(MODEL)
    # Small: the head's weights, not the backbone's.
    assert exported.stat().st_size < 4_000_000


def test_onnx_maps_match_autograd_on_real_feature_maps(exported, fmaps):
    emb, fm = fmaps
    h = eh.read_head(MODEL)
    sess = ort.InferenceSession(str(exported), providers=["CPUExecutionProvider"])
    for i, j in [(0, 1), (1, 2), (2, 3), (3, 0)]:
        mq, mr, s = sess.run(None, {"fmap_q": fm[i:i + 1], "fmap_r": fm[j:j + 1]})
        rq, rr, rs = autograd_maps(h, fm[i:i + 1], fm[j:j + 1])
        assert mq.shape == mr.shape == (7, 7)
        assert rel_err(mq, rq) < 1e-3, (i, j, rel_err(mq, rq))
        assert rel_err(mr, rr) < 1e-3, (i, j, rel_err(mr, rr))
        # s is the similarity the index ranks by: the dot product of the model's embeddings.
        assert float(s[0]) == pytest.approx(float(emb[i] @ emb[j]), abs=1e-5)
        assert float(s[0]) == pytest.approx(rs, abs=1e-5)
        # Completeness of the first-order term: sum_x M(x) = sum_c g_c ds/dg_c.
        assert float(mq.sum()) == pytest.approx(float(rq.sum()), rel=1e-3, abs=1e-6)


def test_closed_form_holds_for_a_trained_like_head(fmaps):
    """A trained head has BN statistics != identity and PReLU active on both sides: perturb them."""
    _, fm = fmaps
    h = eh.read_head(MODEL)
    rng = np.random.default_rng(7)
    h.gamma = rng.uniform(0.5, 2.0, h.gamma.shape).astype(np.float32)
    h.beta = rng.normal(0, 0.1, h.beta.shape).astype(np.float32)
    h.mean = rng.normal(0, 0.05, h.mean.shape).astype(np.float32)
    h.var = rng.uniform(0.5, 2.0, h.var.shape).astype(np.float32)
    h.alpha = np.array([0.1], dtype=np.float32)
    net = eh.PairHeatmap(h).eval().double()
    for i, j in [(0, 3), (1, 2)]:
        with torch.no_grad():
            mq, mr, s = net(torch.from_numpy(fm[i:i + 1]).double(), torch.from_numpy(fm[j:j + 1]).double())
        rq, rr, rs = autograd_maps(h, fm[i:i + 1], fm[j:j + 1])
        assert rel_err(mq.numpy(), rq) < 1e-5 and rel_err(mr.numpy(), rr) < 1e-5
        assert float(s) == pytest.approx(rs, abs=1e-6)  # BN folded in float32


def test_identical_images_have_vanishing_maps(fmaps):
    """q = r: s = 1 is the maximum, ds/de_q = (I - e e^T) e = 0, so the maps vanish (documented limit)."""
    _, fm = fmaps
    net = eh.PairHeatmap(eh.read_head(MODEL)).eval()
    with torch.no_grad():
        mq, mr, s = net(torch.from_numpy(fm[:1]), torch.from_numpy(fm[:1]))
    assert float(s) == pytest.approx(1.0, abs=1e-5)
    assert float(mq.abs().max()) < 1e-4 and float(mr.abs().max()) < 1e-4


def test_refuses_a_model_without_the_gem_head(tmp_path):
    x = onnx.helper.make_tensor_value_info("image", onnx.TensorProto.FLOAT, [1, 1024, 7, 7])
    y = onnx.helper.make_tensor_value_info("feature_map", onnx.TensorProto.FLOAT, [1, 1024, 7, 7])
    g = onnx.helper.make_graph([onnx.helper.make_node("Relu", ["image"], ["feature_map"])], "g", [x], [y])
    p = tmp_path / "nohead.onnx"
    onnx.save(onnx.helper.make_model(g), str(p))
    with pytest.raises(ValueError, match="expected one Clip"):
        eh.read_head(p)
