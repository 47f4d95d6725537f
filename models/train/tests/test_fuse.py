"""The fuse_pool4 experiment (model.py): the head sees GeM(pool4) beside GeM(inception_5b);
the cached and the image paths give the same embedding; plain models are unchanged by it."""
import pytest
import torch

import train
from model import ExportWrapper, build_model


@pytest.mark.parametrize("fuse", [False, True])
def test_the_cached_path_and_the_image_path_give_the_same_embedding(fuse):
    torch.manual_seed(0)
    net = build_model(frozen_until="pool4", pretrained=False, fuse_pool4=fuse).eval()
    x = torch.rand(3, 1, 224, 224)
    with torch.no_grad():
        a, b = net.embed_from_pool4(net.pool4_features(x)), net(x)
    assert a.shape == (3, 256) and torch.allclose(a, b, atol=1e-5)
    assert net.head.fc.in_features == (1024 + 832 if fuse else 1024)


def test_the_fused_head_reads_the_pool4_activations():
    torch.manual_seed(0)
    net = build_model(frozen_until="pool4", pretrained=False, fuse_pool4=True).eval()
    f = net.pool4_features(torch.rand(2, 1, 224, 224))
    with torch.no_grad():
        base = net.embed_from_pool4(f)
        net.head.fc.weight[:, 1024:] = 0  # the columns that read GeM(pool4)
        assert not torch.allclose(net.embed_from_pool4(f), base, atol=1e-4)


def test_a_fused_model_is_not_exported_and_not_trained_online(tmp_path):
    net = build_model(frozen_until=None, pretrained=False, fuse_pool4=True).eval()
    with pytest.raises(NotImplementedError, match="export contract"):
        ExportWrapper(net)(torch.rand(1, 1, 224, 224))
    with pytest.raises(SystemExit, match="--mode cached"):
        train.main(["--run-dir", str(tmp_path), "--fuse-pool4", "1", "--mode", "online"])
