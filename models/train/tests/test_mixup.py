"""Manifold mixup (losses/mixup.py, train.py --mixup): the mixing and the loss by hand,
the refusals, and a mixup run cut after an epoch resuming to the uncut result."""
import numpy as np
import pytest
import torch

import train
from conftest import needs_weights
from losses import ArcFaceLoss, mix_batch, mixed_loss
from test_train_options import cut_after_epoch_0_and_resume, fake_cached_meta


def test_mix_batch_mixes_each_sample_with_its_partner_by_its_own_weight():
    f = torch.randn(6, 3, 2, 2, generator=torch.Generator().manual_seed(0))
    y = torch.tensor([0, 1, 2, 3, 1, 2])
    out, y_p, lam = mix_batch(f, y, 0.4, np.random.default_rng(3))
    rng = np.random.default_rng(3)  # the same draws, in the same order, by hand
    perm = rng.permutation(6)
    lam_ref = rng.beta(0.4, 0.4, size=6).astype(np.float32)
    assert torch.equal(y_p, y[torch.from_numpy(perm)])
    assert np.array_equal(lam.numpy(), lam_ref)
    assert ((lam >= 0) & (lam <= 1)).all()
    for i in range(6):
        want = lam_ref[i] * f[i] + (1 - lam_ref[i]) * f[perm[i]]
        assert torch.allclose(out[i], want, atol=1e-6)
    with pytest.raises(ValueError, match="alpha"):
        mix_batch(f, y, 0.0, np.random.default_rng(0))


def test_mixed_loss_is_the_weighted_mean_of_the_two_targets_losses():
    torch.manual_seed(0)
    loss_fn = ArcFaceLoss(4, 8, label_smoothing=0.1)
    emb = torch.randn(5, 8)
    y, y_p = torch.tensor([0, 1, 2, 3, 0]), torch.tensor([1, 1, 3, 0, 2])
    per_a, per_b = loss_fn(emb, y, reduction="none"), loss_fn(emb, y_p, reduction="none")
    assert per_a.shape == (5,) and torch.allclose(per_a.mean(), loss_fn(emb, y))
    assert torch.allclose(mixed_loss(loss_fn, emb, y, y_p, torch.ones(5)), loss_fn(emb, y))
    assert torch.allclose(mixed_loss(loss_fn, emb, y, y_p, torch.zeros(5)), loss_fn(emb, y_p))
    lam = torch.tensor([0.0, 0.25, 0.5, 0.75, 1.0])
    want = (lam * per_a + (1 - lam) * per_b).mean()
    assert torch.allclose(mixed_loss(loss_fn, emb, y, y_p, lam), want)


@pytest.mark.parametrize("extra, msg", [(["--mode", "online"], "--mode cached"),
                                        (["--ms-weight", "1.0"], "do not combine")])
def test_train_refuses_mixup_where_it_does_not_apply(tmp_path, extra, msg):
    with pytest.raises(SystemExit, match=msg):
        train.main(["--run-dir", str(tmp_path), "--mixup", "0.4", *extra])
    with pytest.raises(SystemExit, match="must be > 0"):
        train.main(["--run-dir", str(tmp_path), "--mixup", "-1"])


@needs_weights
def test_a_mixup_run_cut_after_an_epoch_resumes_to_the_uncut_result(tmp_path, monkeypatch):
    fake_cached_meta(monkeypatch)
    base = ["--epochs", "2", "--batch-size", "8", "--no-eval", "--threads", "1", "--views", "h0,h1"]
    args = [*base, "--mixup", "0.4"]

    train.main(["--run-dir", str(tmp_path / "whole"), *args])
    train.main(["--run-dir", str(tmp_path / "plain"), *base])
    cut_after_epoch_0_and_resume(monkeypatch, tmp_path / "cut", args)

    a = torch.load(tmp_path / "whole" / "last.pt", weights_only=False)
    b = torch.load(tmp_path / "cut" / "last.pt", weights_only=False)
    p = torch.load(tmp_path / "plain" / "last.pt", weights_only=False)
    assert a["config"]["mixup"] == 0.4 and b["epoch"] == 1
    for k in a["model"]:
        assert torch.equal(a["model"][k], b["model"][k]), k
    w = "head.fc.weight"
    assert not torch.equal(a["model"][w], p["model"][w])  # the mixing is on: it changes the run
