import math

import pytest
import torch
import torch.nn.functional as F

from losses import ArcFaceLoss


def hand_logits(emb, W, y, s, m):
    e = emb / emb.norm(dim=1, keepdim=True)
    w = W / W.norm(dim=1, keepdim=True)
    cos = (e @ w.T).clamp(-1, 1)
    theta = torch.acos(cos)
    out = s * cos.clone()
    for i, c in enumerate(y.tolist()):
        t = float(theta[i, c])
        if t + m <= math.pi:
            out[i, c] = s * math.cos(t + m)
        else:  # monotonic fallback past pi
            out[i, c] = s * (math.cos(t) - m * math.sin(math.pi - m))
    return out


def test_logits_and_loss_match_hand_computation():
    torch.manual_seed(0)
    loss = ArcFaceLoss(4, 8, scale=64.0, margin=0.5).double()
    emb = torch.randn(6, 8, dtype=torch.float64)
    y = torch.tensor([0, 1, 2, 3, 1, 2])
    expected = hand_logits(emb, loss.W.detach(), y, 64.0, 0.5)
    torch.testing.assert_close(loss.logits(emb, y), expected, rtol=1e-9, atol=1e-9)
    torch.testing.assert_close(loss(emb, y), F.cross_entropy(expected, y), rtol=1e-9, atol=1e-9)


def test_fallback_branch_when_theta_plus_margin_exceeds_pi():
    loss = ArcFaceLoss(2, 2, scale=10.0, margin=0.5).double()
    with torch.no_grad():
        loss.W.copy_(torch.tensor([[1.0, 0.0], [0.0, 1.0]], dtype=torch.float64))
    emb = torch.tensor([[-1.0, 0.05]], dtype=torch.float64)  # theta to class 0 ~ 177 deg
    y = torch.tensor([0])
    torch.testing.assert_close(loss.logits(emb, y), hand_logits(emb, loss.W.detach(), y, 10.0, 0.5))


def test_zero_margin_is_normalised_softmax():
    loss = ArcFaceLoss(3, 5, scale=64.0, margin=0.0).double()
    emb = torch.randn(4, 5, dtype=torch.float64)
    y = torch.tensor([0, 1, 2, 0])
    cos = F.normalize(emb, dim=1) @ F.normalize(loss.W, dim=1).T
    torch.testing.assert_close(loss.logits(emb, y), 64.0 * cos)


def test_weight_is_a_trained_checkpointed_parameter():
    loss = ArcFaceLoss(4, 16)
    assert "W" in loss.state_dict()
    assert any(p is loss.W for p in loss.parameters())
    emb = torch.randn(5, 16, requires_grad=True)
    loss(emb, torch.tensor([0, 1, 2, 3, 0])).backward()
    assert loss.W.grad is not None and torch.isfinite(loss.W.grad).all() and loss.W.grad.abs().sum() > 0


def test_subcentres_score_each_class_by_its_nearest_subcentre():
    torch.manual_seed(1)
    loss = ArcFaceLoss(3, 6, scale=30.0, margin=0.4, subcenters=2).double()
    assert loss.W.shape == (6, 6) and "subcenters=2" in repr(loss)
    emb = torch.randn(5, 6, dtype=torch.float64)
    y = torch.tensor([0, 1, 2, 1, 0])
    w = loss.W.detach()
    # per sample, each class is represented by the sub-centre (rows 2c, 2c+1) it is closest to
    e, wn = F.normalize(emb, dim=1), F.normalize(w, dim=1)
    nearest = torch.stack([torch.stack([wn[2 * c + int((e[i] @ wn[2 * c + 1]) > (e[i] @ wn[2 * c]))] for c in range(3)])
                           for i in range(5)])
    for i in range(5):
        expected = hand_logits(emb[i:i + 1], nearest[i], y[i:i + 1], 30.0, 0.4)
        torch.testing.assert_close(loss.logits(emb[i:i + 1], y[i:i + 1]), expected, rtol=1e-9, atol=1e-9)
    loss(emb, y).backward()
    assert torch.isfinite(loss.W.grad).all()
    # only the winning sub-centres are pulled: a sub-centre no sample is nearest to gets no gradient
    used = {2 * c + int((e[i] @ wn[2 * c + 1]) > (e[i] @ wn[2 * c])) for i in range(5) for c in range(3)}
    for row in set(range(6)) - used:
        assert loss.W.grad[row].abs().sum() == 0


def test_one_subcentre_is_plain_arcface_and_fewer_are_refused():
    torch.manual_seed(2)
    plain, one = ArcFaceLoss(4, 8), ArcFaceLoss(4, 8, subcenters=1)
    one.load_state_dict(plain.state_dict())
    emb, y = torch.randn(6, 8), torch.tensor([0, 1, 2, 3, 0, 1])
    torch.testing.assert_close(one.logits(emb, y), plain.logits(emb, y), rtol=0, atol=0)
    with pytest.raises(ValueError, match="subcenters must be at least 1"):
        ArcFaceLoss(4, 8, subcenters=0)


def test_label_smoothing_is_cross_entropys_own_on_the_margin_logits():
    torch.manual_seed(3)
    loss = ArcFaceLoss(4, 8, label_smoothing=0.1).double()
    emb, y = torch.randn(6, 8, dtype=torch.float64), torch.tensor([0, 1, 2, 3, 0, 1])
    expected = hand_logits(emb, loss.W.detach(), y, 64.0, 0.5)
    torch.testing.assert_close(loss(emb, y), F.cross_entropy(expected, y, label_smoothing=0.1), rtol=1e-9, atol=1e-9)
    assert loss(emb, y) != F.cross_entropy(expected, y)
    with pytest.raises(ValueError, match="label_smoothing must be in"):
        ArcFaceLoss(4, 8, label_smoothing=1.0)
