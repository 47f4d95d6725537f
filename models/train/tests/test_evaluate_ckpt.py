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


def test_images_already_in_0_1_are_not_divided_by_255_again():
    """data.build_cache's images are float16 in [0, 1]; the pack's are uint8. evaluate.embed takes
    both (a second /255 collapsed every full fine-tune checkpoint's embeddings to one vector)."""
    from evaluate import embed

    torch.manual_seed(0)
    net = build_model(frozen_until=None, pretrained=False).eval()
    u8 = torch.randint(0, 256, (2, 224, 224), dtype=torch.uint8)
    as_float = (u8.float() / 255).half()
    with torch.inference_mode():
        want = net(as_float.float().unsqueeze(1)).numpy()
    assert abs(embed(net, as_float) - want).max() < 1e-5
    assert abs(embed(net, u8) - want).max() < 1e-3  # float16 rounding of the reference input
