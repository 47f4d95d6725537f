"""The BVLC import: files complete, layout right, network runs and is deterministic.

There is no natural photo in the repository to classify, so the 'known output'
checks are structural: (1) every conv/classifier blob in manifest.csv loads with
the expected shape after the (out,kh,kw,in)->(out,in,kh,kw) transpose; (2) the
transpose is right: conv1's trained 7x7 filters are spatially smooth (neighbouring
taps correlate strongly), which a wrong axis order destroys; (3) a real MRI slice
gives finite, non-negative, sparse 1024x7x7 features of plausible magnitude, and
the ImageNet classifier is deterministic on it.
"""
import numpy as np
import pytest
import torch

from conftest import needs_datasets, needs_weights
from googlenet import (GoogLeNetBackbone, bvlc_classifier, gray01_to_bgr, load_blob, load_bvlc, read_manifest,
                       weights_dir)

pytestmark = needs_weights


def test_manifest_complete_and_shapes_load():
    rows = read_manifest(weights_dir())
    assert len(rows) == 116
    for r in rows:
        a = load_blob(weights_dir(), r)
        assert a.size == int(r["float32_count"]) and np.isfinite(a).all()


def test_all_backbone_layers_loaded():
    bb = GoogLeNetBackbone()
    loaded = load_bvlc(bb)
    assert len(loaded) == 3 + 9 * 6  # conv1, conv2 reduce + 3x3, 9 inception blocks x 6 convs


def _channel_corr(w):
    # correlation between input channels 0 (B) and 1 (G) over all conv1 filter taps
    return float(np.corrcoef(w[:, 0].ravel(), w[:, 1].ravel())[0, 1])


def test_conv1_transpose_gives_correlated_colour_channels():
    row = [r for r in read_manifest(weights_dir()) if r["caffe_layer"] == "conv1/7x7_s2" and r["kind"] == "filter"][0]
    raw = load_blob(weights_dir(), row)               # (64, 7, 7, 3)
    right = raw.transpose(0, 3, 1, 2)                 # (64, 3, 7, 7)
    wrong = raw.reshape(64, 3, 7, 7)                  # misreading the layout as (out,in,kh,kw)
    assert _channel_corr(right) > 0.5
    assert abs(_channel_corr(wrong)) < 0.2


@needs_datasets
def test_real_image_features_and_deterministic_classifier(datasets_root):
    from preprocess import preprocess_file

    x = torch.from_numpy(preprocess_file(str(datasets_root / "figshare-cheng/images/1.jpg")))[None, None]
    net = bvlc_classifier()
    with torch.no_grad():
        f = net.backbone(gray01_to_bgr(x))
        logits1 = net(gray01_to_bgr(x))
        logits2 = net(gray01_to_bgr(x.clone()))
    assert f.shape == (1, 1024, 7, 7)
    assert torch.isfinite(f).all() and (f >= 0).all()
    zero_frac = float((f == 0).float().mean())
    assert 0.05 < zero_frac < 0.95, zero_frac
    assert 0.05 < float(f.mean()) < 20
    torch.testing.assert_close(logits1, logits2, rtol=0, atol=0)
    p = torch.softmax(logits1, 1)
    assert abs(float(p.sum()) - 1) < 1e-5 and float(p.max()) < 1.0
