"""The input-size option of the resolution probe (features.py / train.py --size)."""
from pathlib import Path

import numpy as np
import pytest
import torch

from conftest import needs_datasets


@pytest.mark.parametrize("size", [224, 320, 317, 158])
def test_pool4_side_matches_the_backbone(size):
    from features import feat_shape, pool4_side
    from googlenet import GoogLeNetBackbone

    with torch.inference_mode():
        f = GoogLeNetBackbone().eval().forward_until(torch.zeros(1, 3, size, size), "pool4")
    assert f.shape[1:] == feat_shape(size)
    assert f.shape[-1] == pool4_side(size)
    assert pool4_side(224) == 7 and pool4_side(320) == 10


def test_224_keeps_the_feature_file_names_it_always_had():
    from features import feat_path, skipped_fold_marker

    assert feat_path("h1").name == "feat-h1.npy"
    assert skipped_fold_marker("h1").name == "feat-h1.skipped-fold"
    assert feat_path("h1", 320).name == "feat-s320-h1.npy"
    assert skipped_fold_marker("h1", 320).name == "feat-s320-h1.skipped-fold"


def test_cache_key_follows_size_and_the_rows(tmp_path):
    import os

    import data

    names = ("figshare-cheng", "ixi-normal")
    for n in ("a.png", "b.png"):
        (tmp_path / n).write_bytes(n.encode())
    rows = [{"path": str(tmp_path / "a.png")}, {"path": str(tmp_path / "b.png")}]
    key = data.cache_key(names, True, tmp_path, 224, rows)
    assert data.cache_key(names, True, tmp_path, 224, rows) == key
    assert data.cache_key(names, True, tmp_path, 320, rows) != key
    assert data.cache_key(names, True, tmp_path, 320, rows) != data.cache_key(names, True, tmp_path, 317, rows)
    assert data.cache_key(names, True, tmp_path, 224, rows[::-1]) != key
    assert data.cache_key(names, False, tmp_path, 224, rows) != key
    st = os.stat(rows[0]["path"])
    os.utime(rows[0]["path"], ns=(st.st_atime_ns, st.st_mtime_ns + 10**9))
    assert data.cache_key(names, True, tmp_path, 224, rows) != key


@needs_datasets
def test_decode_at_another_size_is_the_inference_preprocessing_at_that_size(datasets_root):
    import data
    from preprocess import preprocess_file

    path = data.read_labels(Path(datasets_root) / "figshare-cheng")[0]["path"]
    small = data._decode_one((path, False, 224))
    big = data._decode_one((path, False, 320))
    assert small.shape == (224, 224) and big.shape == (320, 320)
    np.testing.assert_array_equal(big, preprocess_file(path, 320).astype(np.float16))
    np.testing.assert_array_equal(small, preprocess_file(path).astype(np.float16))
    # the same slice, so the two sizes agree once the larger one is brought down
    down = torch.nn.functional.interpolate(torch.from_numpy(big.astype(np.float32))[None, None], size=(224, 224),
                                           mode="bilinear", antialias=True, align_corners=False)[0, 0].numpy()
    assert np.abs(down - small.astype(np.float32)).mean() < 0.02


def test_extract_sizes_its_output_from_the_images():
    from features import extract
    from googlenet import GoogLeNetBackbone

    bb = GoogLeNetBackbone().eval()
    imgs = torch.rand(3, 320, 320, generator=torch.Generator().manual_seed(0)).half()
    plain = extract(bb, imgs, None, batch=2)
    aug = extract(bb, imgs, 7, batch=2)
    assert plain.shape == aug.shape == (3, 832, 10, 10) and plain.dtype == np.float16
    assert not np.array_equal(plain, aug)  # the augmented view really is another view
    np.testing.assert_array_equal(aug, extract(bb, imgs, 7, batch=2))  # and deterministic


class _Probe(torch.nn.Module):
    """A stand-in ONNX model: image -> 4-d 'embedding' (mean of each image quadrant)."""

    def forward(self, image):
        h, w = image.shape[-2] // 2, image.shape[-1] // 2
        q = [image[..., :h, :w], image[..., :h, w:], image[..., h:, :w], image[..., h:, w:]]
        return torch.cat([t.mean(dim=(2, 3)) for t in q], 1)


def _export(path, side, dynamic_side=False):
    axes = {"image": {0: "N"}, "embedding": {0: "N"}}
    if dynamic_side:
        axes["image"].update({2: "H", 3: "W"})
    torch.onnx.export(_Probe(), (torch.rand(1, 1, side, side),), str(path), input_names=["image"],
                      output_names=["embedding"], dynamic_axes=axes, opset_version=17, dynamo=False)
    return path


@needs_datasets
def test_eval_onnx_feeds_each_model_the_input_size_it_declares(tmp_path, datasets_root):
    import onnxruntime as ort

    import data
    from eval_onnx import embed, input_side
    from preprocess import preprocess_file

    paths = [r["path"] for r in data.read_labels(Path(datasets_root) / "figshare-cheng")[:2]]
    m96 = _export(tmp_path / "m96.onnx", 96)
    assert input_side(ort.InferenceSession(str(m96))) == 96
    assert input_side(ort.InferenceSession(str(_export(tmp_path / "open.onnx", 64, dynamic_side=True)))) == 224
    got = embed(m96, paths, batch=2, threads=1, log=lambda m: None)
    want = _Probe()(torch.from_numpy(np.stack([preprocess_file(p, 96) for p in paths])[:, None])).numpy()
    np.testing.assert_allclose(got, want, atol=1e-6)


def test_a_reordered_labels_csv_does_not_reuse_the_old_images(tmp_path, monkeypatch):
    import data
    from preprocess import preprocess_file

    root = tmp_path / "ds"
    (root / "figshare-cheng").mkdir(parents=True)
    from PIL import Image

    for name, v in (("0.png", 10), ("1.png", 240)):
        Image.fromarray(np.full((16, 16), v, np.uint8)).save(root / "figshare-cheng" / name)
    rows = ["0.png,1,meningioma,p0,1,p0", "1.png,2,glioma,p1,2,p1"]
    labels = root / "figshare-cheng" / "labels.csv"
    monkeypatch.setattr(data, "CACHE_DIR", tmp_path / "cache")
    for order in (rows, rows[::-1]):
        labels.write_text("file,label,class_name,patient_id,fold,patient_family\n" + "\n".join(order) + "\n")
        c = data.build_cache(names=("figshare-cheng",), root=root, verbose=False, size=32)
        first = root / "figshare-cheng" / order[0].split(",")[0]
        np.testing.assert_array_equal(c.images[0].numpy(), preprocess_file(str(first), 32).astype(np.float16))
