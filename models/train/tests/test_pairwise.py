"""The auxiliary multi-similarity term: the paper's formula on a batch whose pairs
are all hard (so the miner keeps every pair), and what its gradient does."""
import math

import pytest
import torch

from losses import MultiSimilarityAux


def test_off_unless_asked_and_non_positive_weights_refused():
    assert MultiSimilarityAux.from_config({}) is None
    assert MultiSimilarityAux.from_config({"ms_weight": 0.0}) is None
    assert MultiSimilarityAux.from_config({"ms_weight": 0.5}).weight == 0.5
    with pytest.raises(ValueError, match="weight"):
        MultiSimilarityAux(-1.0)


def test_matches_the_papers_formula_on_hard_pairs():
    # two classes whose members are further from each other than from the other class:
    # every positive pair is harder than every negative, so the miner keeps all pairs
    ang = torch.tensor([0.0, 1.2, 0.5, 1.7])
    emb = torch.stack([torch.cos(ang), torch.sin(ang)], 1) * torch.tensor([[1.0], [2.0], [0.5], [3.0]])
    y = torch.tensor([0, 0, 1, 1])
    a, b, lam = 2.0, 50.0, 0.5
    s = torch.cos(ang[:, None] - ang[None, :])  # cosine similarity, whatever the norms
    want = 0.0
    for i in range(4):
        pos = [s[i, j] for j in range(4) if j != i and y[j] == y[i]]
        neg = [s[i, j] for j in range(4) if y[j] != y[i]]
        want += (math.log(1 + sum(math.exp(-a * (v - lam)) for v in pos)) / a
                 + math.log(1 + sum(math.exp(b * (v - lam)) for v in neg)) / b)
    want /= 4
    got = MultiSimilarityAux(1.5)(emb, y)
    assert got.item() == pytest.approx(1.5 * want, rel=1e-5)


def test_its_gradient_pulls_classes_together_and_apart():
    g = torch.Generator().manual_seed(0)
    emb = (torch.randn(32, 16, generator=g) / 4).requires_grad_()  # norm ~1
    y = torch.arange(32) % 4
    aux = MultiSimilarityAux(1.0)
    opt = torch.optim.SGD([emb], lr=0.5)

    def margin():
        e = torch.nn.functional.normalize(emb.detach(), dim=1)
        s = e @ e.T
        same = (y[:, None] == y[None, :]) & ~torch.eye(32, dtype=torch.bool)
        return (s[same].mean() - s[y[:, None] != y[None, :]].mean()).item()

    before, first = margin(), aux(emb, y).item()
    for _ in range(100):
        opt.zero_grad()
        aux(emb, y).backward()
        opt.step()
    assert margin() > before + 0.3
    assert aux(emb, y).item() < first
