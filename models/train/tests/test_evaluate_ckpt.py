"""evaluate.py --ckpt scores a checkpoint on embeddings that are really its own."""
import pytest
import torch

from evaluate import load_ckpt_net, pool4_cache_applies
from model import build_model


def test_cached_pool4_activations_only_for_models_that_did_not_train_below_pool4():
    assert pool4_cache_applies({"mode": "cached", "frozen_until": "pool4"})
    assert pool4_cache_applies({"mode": "online", "frozen_until": "pool4"})
    # a full fine-tune (device_train, device_collect --to-ckpt) and a partial one from pool3
    assert not pool4_cache_applies({"mode": "device", "frozen_until": None})
    assert not pool4_cache_applies({"mode": "online", "frozen_until": "pool3"})
    assert not pool4_cache_applies({"mode": "online", "frozen_until": None})


def test_a_checkpoint_that_does_not_fit_its_model_is_refused(tmp_path):
    net = build_model(frozen_until=None, pretrained=False)
    state = net.state_dict()
    state.pop(next(k for k in state if k.startswith("head.")))
    torch.save({"config": {"dim": 256, "pool": "gem", "mode": "device", "frozen_until": None}, "model": state}, tmp_path / "c.pt")
    with pytest.raises(SystemExit, match="does not fit the model it names"):
        load_ckpt_net(tmp_path / "c.pt")
