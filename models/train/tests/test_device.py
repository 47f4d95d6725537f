"""The GPU path's pieces that run anywhere: the pack codec, on-device augmentation
parameters, sharded model files, the checkpoint bridge and the configuration choice."""
import json

import numpy as np
import pytest
import torch

import data
from conftest import needs_datasets
from device_collect import choose, to_ckpt
from device_train import load_sharded, save_sharded
from model import build_model
from pack import _jpeg, decode_images


@needs_datasets
def test_pack_codec_keeps_real_images_within_a_few_grey_levels(datasets_root):
    from preprocess import load_image, preprocess

    imgs = [preprocess(load_image(str(datasets_root / "figshare-cheng" / "images" / f"{i}.jpg"))) for i in (1, 1500)]
    blobs = [_jpeg(a, 90) for a in imgs]
    offsets = np.concatenate([[0], np.cumsum([len(b) for b in blobs])])
    back = decode_images(np.frombuffer(b"".join(blobs), np.uint8), offsets)
    for a, b in zip(imgs, back):
        err = np.abs(b.astype(np.float32) / 255.0 - a)
        assert err.mean() < 2 / 255 and np.percentile(err, 99) < 8 / 255
    assert sum(len(b) for b in blobs) < 2 * 224 * 224 / 3  # compact: < 1/3 of the raw 8-bit size


def test_augment_parameters_come_from_the_cpu_generator_only():
    x = torch.rand(4, 1, 224, 224)
    cfg = data.AugConfig(noise_p=0.0)
    a = data.augment(x.clone(), torch.Generator().manual_seed(3), cfg)
    b = data.augment(x.clone(), torch.Generator().manual_seed(3), cfg, noise_gen=torch.Generator().manual_seed(99))
    c = data.augment(x.clone(), torch.Generator().manual_seed(4), cfg)
    assert torch.equal(a, b)
    assert not torch.allclose(a, c)


def test_sharded_model_round_trip_fits_the_transfer_cap(tmp_path):
    net = build_model(frozen_until=None, pretrained=False)
    state = {f"model.{k}": v for k, v in net.state_dict().items()}
    save_sharded(state, tmp_path / "m")
    for s in ("a", "b"):
        assert (tmp_path / f"m.{s}.pt").stat().st_size < 16 * 1024 * 1024
    back = load_sharded(str(tmp_path / "m"))
    assert back.keys() == state.keys()
    assert all(torch.equal(back[k], state[k]) for k in state)


def _result(tag, fold, map3):
    return {"tag": tag, "fold": fold, "config": {"tag": tag, "dim": 256, "pool": "gem"},
            "history": [{"epoch": 0}, {"epoch": 1}],
            "summary": {"3class": {"map": map3, "p10": map3, "p1": map3}}}


def test_choice_never_looks_at_the_test_fold():
    res = {"a": {1: _result("a", 1, 0.96), 2: _result("a", 2, 0.95), 5: _result("a", 5, 0.99)},
           "b": {1: _result("b", 1, 0.97), 2: _result("b", 2, 0.955), 5: _result("b", 5, 0.80)}}
    winner, folds, means = choose(res, test_fold=5)
    assert winner == "b" and folds == [1, 2]
    assert means["b"] == pytest.approx(0.9625)
    # only folds both tags finished count
    del res["b"][2]
    winner, folds, _ = choose(res, test_fold=5)
    assert winner == "b" and folds == [1]


def test_to_ckpt_makes_a_checkpoint_that_export_loads(tmp_path):
    net = build_model(frozen_until=None, pretrained=False)
    from losses import ArcFaceLoss

    arc = ArcFaceLoss(4, 256)
    state = {f"model.{k}": v for k, v in net.state_dict().items()}
    state.update({f"arcface.{k}": v for k, v in arc.state_dict().items()})
    save_sharded(state, tmp_path / "model-b-f5")
    (tmp_path / "results.jsonl").write_text(json.dumps(_result("b", 5, 0.9)) + "\n")
    to_ckpt(tmp_path, tmp_path / "last.pt", 5)
    ck = torch.load(tmp_path / "last.pt", map_location="cpu", weights_only=False)
    fresh = build_model(frozen_until=None, pretrained=False)
    fresh.load_state_dict(ck["model"])  # strict
    assert torch.equal(fresh.head.fc.weight, net.head.fc.weight)
    assert torch.equal(ck["arcface"]["W"], arc.W.detach())
    assert ck["config"]["test_fold"] == 5 and ck["epoch"] == 1


@needs_datasets
def test_train_fold_runs_end_to_end_on_real_images(tmp_path, datasets_root):
    """The device training path (augment, full fine-tune step, embed) on a few real slices, on the CPU."""
    from device_train import train_fold
    from googlenet import weights_dir
    from preprocess import load_image, preprocess

    if not (weights_dir() / "manifest.csv").exists():
        pytest.skip("BVLC weights not available")
    net = build_model(frozen_until=None, pretrained=True)
    torch.save({k: v.half() for k, v in net.backbone.state_dict().items()}, tmp_path / "backbone.pt")
    rows = [r for r in data.read_labels(datasets_root / "figshare-cheng")]
    pick = [r for f in (1, 5) for c in (1, 2, 3) for r in [x for x in rows if x["fold"] == f and x["label"] == c][:2]]
    imgs = np.stack([np.round(preprocess(load_image(r["path"])) * 255).astype(np.uint8) for r in pick])
    n = len(pick)
    pk = {"labels": np.array([r["label"] for r in pick]), "folds": np.array([r["fold"] for r in pick]),
          "patients": np.array([f"f:{r['patient_id']}" for r in pick]),
          "families": np.array([f"f:{r['patient_family']}" for r in pick]),
          "sources": np.array([r["source"] for r in pick]),
          "train_row": np.arange(n), "eval_row": np.arange(n)}
    cfg = {"tag": "t", "pack": str(tmp_path), "seed": 1, "dim": 256, "pool": "gem", "scale": 64.0, "margin": 0.5,
           "lr": 1e-4, "head_lr": 1e-3, "weight_decay": 1e-4, "warmup_epochs": 0.0, "epochs": 1, "batch_size": 3,
           "max_steps": 1}
    before = net.backbone.stem[0].conv.weight.detach().half().float()  # the init train_fold starts from
    out, _, emb, hist, _ = train_fold(pk, torch.from_numpy(imgs), cfg, 5, torch.device("cpu"), lambda m: None)
    assert emb.shape == (n, 256)
    assert np.allclose(np.linalg.norm(emb, axis=1), 1.0, atol=1e-4)
    assert hist[0]["epoch"] == 0 and np.isfinite(hist[0]["loss"])
    # full fine-tune: one optimizer step moved conv1 away from its (fp16) BVLC init
    assert (out.backbone.stem[0].conv.weight.detach() - before).abs().max() > 1e-6
