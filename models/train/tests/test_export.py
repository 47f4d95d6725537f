"""Export parity: a randomly initialised head on the BVLC backbone, exported to a temp file."""
import csv
import json
import shutil

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch

from conftest import needs_datasets, needs_weights

pytestmark = [needs_weights, needs_datasets]


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    import export

    net, _ = export.load_net(None)
    path = tmp_path_factory.mktemp("onnx") / "m.onnx"
    export.export_onnx(net, path)
    return net, path


def test_graph_contract(exported):
    _, path = exported
    m = onnx.load(str(path))
    assert m.opset_import[0].version >= 17
    assert [i.name for i in m.graph.input] == ["image"]
    assert [o.name for o in m.graph.output] == ["embedding", "feature_map"]
    dims = [d for d in m.graph.input[0].type.tensor_type.shape.dim]
    assert dims[0].dim_param and [d.dim_value for d in dims[1:]] == [1, 224, 224]


def test_parity_on_real_images_and_dynamic_batch(exported):
    import export

    net, path = exported
    x = export.sample_images()
    par = export.parity(net, path, x)
    assert par["ok"], par
    assert par["embedding_max_abs_diff"] <= 1e-4
    np.testing.assert_allclose(par["embedding_norms"], 1.0, atol=1e-5)
    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    e1 = sess.run(["embedding"], {"image": x[:1]})[0]
    e4, fm = sess.run(None, {"image": x})
    assert e4.shape == (4, 256) and fm.shape == (4, 1024, 7, 7)
    np.testing.assert_allclose(e1[0], e4[0], atol=1e-5)


def test_eval_onnx_contract_on_tiny_folder(exported, tmp_path, datasets_root, capsys):
    import eval_onnx

    _, path = exported
    src = datasets_root / "figshare-cheng"
    rows = list(csv.DictReader(open(src / "labels.csv")))
    pick = rows[:3] + rows[900:903] + rows[2200:2203] + rows[1000:1003]
    (tmp_path / "images").mkdir()
    with open(tmp_path / "labels.csv", "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["file", "label", "class_name", "patient_id"])
        for r in pick:
            shutil.copyfile(src / r["file"], tmp_path / r["file"])
            w.writerow([r["file"], r["label"], r["class_name"], r["patient_id"]])
    assert eval_onnx.main(["--dataset", str(tmp_path), "--model", str(path), "--n-boot", "50"]) == 0
    last = capsys.readouterr().out.strip().splitlines()[-1]
    res = json.loads(last)
    for k in ("map", "p10", "p1", "n_queries", "per_class"):
        assert k in res
    assert res["n_queries"] == 12 and res["protocol"] == "leave-one-patient-out"
    assert 0 <= res["map"] <= 1


def test_eval_onnx_edge_inputs_keep_the_contract(exported, tmp_path, datasets_root, capsys):
    """A spreadsheet's BOM, a class with a single image (no relevant item: mAP null, not NaN,
    so the last line stays JSON), a fold column without the default query fold (an error, not
    another protocol), and --query-fold 0 (a real fold, not "unset")."""
    import eval_onnx

    _, path = exported
    src = datasets_root / "figshare-cheng"
    rows = list(csv.DictReader(open(src / "labels.csv")))
    by = {c: [r for r in rows if r["label"] == c] for c in ("1", "2", "3")}
    pick = by["1"][:3] + by["2"][:3] + by["3"][:1]  # the last class has one image
    (tmp_path / "images").mkdir()
    for r in pick:
        shutil.copyfile(src / r["file"], tmp_path / r["file"])
    with open(tmp_path / "labels.csv", "w", newline="", encoding="utf-8-sig") as f:
        w = csv.writer(f)
        w.writerow(["file", "label", "class_name"])
        for r in pick:
            w.writerow([r["file"], r["label"], r["class_name"]])
    assert eval_onnx.main(["--dataset", str(tmp_path), "--model", str(path), "--n-boot", "20"]) == 0
    last = capsys.readouterr().out.strip().splitlines()[-1]
    res = json.loads(last, parse_constant=lambda c: pytest.fail(f"non-JSON constant {c}"))
    assert res["protocol"] == "leave-one-out" and res["n_queries"] == 7 and res["n_database"] == 6
    lone = pick[-1]["class_name"]
    assert res["per_class"][lone]["map"] is None

    with open(tmp_path / "labels.csv", "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["file", "label", "class_name", "patient_id", "fold"])
        for i, r in enumerate(pick):
            w.writerow([r["file"], r["label"], r["class_name"], r["patient_id"], i % 2])
    with pytest.raises(SystemExit, match=r"no row of fold 5 .*pass --query-fold"):
        eval_onnx.main(["--dataset", str(tmp_path), "--model", str(path), "--n-boot", "20"])
    capsys.readouterr()
    assert eval_onnx.main(["--dataset", str(tmp_path), "--model", str(path), "--n-boot", "20", "--query-fold", "0"]) == 0
    res = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert res["protocol"] == "fold 0 queries vs other folds database" and res["n_queries"] == 4


def test_a_model_trained_at_320_exports_at_320_with_its_heatmap(tmp_path, monkeypatch):
    """A checkpoint records its training size (device_train: input_size, train.py: size); the
    export, its parity images, the manifest and the heatmap graph all follow it, because
    exported at 224 the model would embed every image at a scale it never saw."""
    import export
    import export_heatmap
    from model import build_model

    torch.manual_seed(0)
    ck = tmp_path / "r320.pt"
    torch.save({"config": {"dim": 256, "pool": "gem", "input_size": 320},
                "model": build_model(frozen_until=None, pretrained=True).state_dict()}, ck)
    net, meta = export.load_net(str(ck))
    assert meta["input_size"] == 320
    assert export.load_net(None)[1]["input_size"] == 224
    assert export.input_size({"size": 320}) == 320 and export.input_size({}) == 224
    path = tmp_path / "m320.onnx"
    export.export_onnx(net, path, size=320)
    dims = [d.dim_value for d in onnx.load(str(path)).graph.input[0].type.tensor_type.shape.dim]
    assert dims[1:] == [1, 320, 320]
    par = export.parity(net, path, export.sample_images(size=320))
    assert par["ok"], par
    monkeypatch.setattr(export, "MODELS_DIR", tmp_path)
    man = export.write_manifest(path, "0.0.0-test", 256, meta)
    assert man["input"]["shape"] == ["N", 1, 320, 320]
    assert man["outputs"]["feature_map"]["shape"] == ["N", 1024, 10, 10]
    assert export_heatmap.model_grid(path) == (320, 10)
    info = export_heatmap.export_heatmap(path, tmp_path / "h320.onnx", height=10, width=10)
    assert (info["height"], info["width"]) == (10, 10)
    assert export_heatmap.check_against_model(path, tmp_path / "h320.onnx", export.sample_images(size=320))["ok"]


def test_the_manifest_names_the_fold_the_model_was_trained_without(tmp_path, monkeypatch):
    import export

    monkeypatch.setattr(export, "MODELS_DIR", tmp_path)
    f = tmp_path / "m.onnx"
    f.write_bytes(b"model")

    def man(meta):
        return export.write_manifest(f, "t", 256, dict(meta, input_size=224))["evaluation"]

    assert man({"trained": True, "config": {"test_fold": 2}}) == {"query_fold": 2, "database_folds": [1, 3, 4, 5]}
    assert man({"trained": True, "config": {}}) == {"query_fold": None, "database_folds": None}
    assert man({"trained": False}) == {"query_fold": 5, "database_folds": [1, 2, 3, 4]}


def test_a_new_model_drops_the_old_models_variants(tmp_path, monkeypatch):
    """export deletes the previous model's files, its INT8 variant among them: the manifest must
    not keep naming that variant (nor one of another model file)."""
    import export

    monkeypatch.setattr(export, "MODELS_DIR", tmp_path)
    old = tmp_path / "old.onnx"
    old.write_bytes(b"old")
    (tmp_path / "old-int8.onnx").write_bytes(b"int8")
    export.write_manifest(old, "1", 256, {"trained": False, "input_size": 224})
    man = json.loads((tmp_path / "manifest.json").read_text())
    man["variants"] = {"int8": {"file": "old-int8.onnx"}}
    (tmp_path / "manifest.json").write_text(json.dumps(man))
    # the same file exported again keeps its variant
    assert export.write_manifest(old, "1", 256, {"trained": False, "input_size": 224})["variants"] == {
        "int8": {"file": "old-int8.onnx"}}
    new = tmp_path / "new.onnx"
    new.write_bytes(b"new")
    assert "variants" not in export.write_manifest(new, "2", 256, {"trained": False, "input_size": 224})
