"""train.py's weight EMA and class-balanced sampling: the maths, and an EMA run that
is cut after an epoch and resumed ending bit for bit where an uncut run ends."""
import numpy as np
import pytest
import torch

import data
import train
from conftest import needs_weights


def test_ema_off_is_none_and_bad_decays_are_refused():
    net = torch.nn.Linear(3, 2)
    assert train.make_ema(net, 0.0) is None
    for bad in (1.0, 1.5, -0.1):
        with pytest.raises(SystemExit, match="--ema"):
            train.make_ema(net, bad)


def test_ema_averages_weights_and_batchnorm_buffers_by_the_decay():
    net = torch.nn.Sequential(torch.nn.Linear(3, 2), torch.nn.BatchNorm1d(2))
    ema = train.make_ema(net, 0.9)
    w0 = net[0].weight.detach().clone()
    ema.update_parameters(net)  # the first update copies
    assert torch.equal(ema.module[0].weight, w0)
    with torch.no_grad():
        net[0].weight.add_(1.0)
    net[1].running_mean.fill_(2.0)
    ema.update_parameters(net)
    assert torch.allclose(ema.module[0].weight, 0.9 * w0 + 0.1 * (w0 + 1.0))
    assert torch.allclose(ema.module[1].running_mean, torch.full((2,), 0.2))


def test_epoch_batches_shuffle_or_balance_with_the_run_generator():
    labels = torch.tensor([0] * 10 + [1] * 40)

    def run(cfg, seed=5):
        return [b.tolist() for b in train.epoch_batches(labels, cfg, torch.Generator().manual_seed(seed))]

    plain = run({"batch_size": 8})
    assert plain == [b.tolist() for b in data.batches(50, 8, torch.Generator().manual_seed(5))]
    assert len(plain) == 6 and all(len(b) == 8 for b in plain)  # full batches only
    assert len({i for b in plain for i in b}) == 48  # a permutation: no item twice
    bal = run({"batch_size": 8, "balance": 1.0})
    assert bal == [b.tolist() for b in data.balanced_batches(labels, 8, torch.Generator().manual_seed(5), 1.0)]
    assert bal != plain and run({"batch_size": 8, "balance": 1.0}) == bal


class _FakeCache:
    """Random pool4-shaped activations standing in for features.py's cache (the test is
    about the training loop's state, not about what the features mean)."""

    def __init__(self, views, rows, size=224):
        g = torch.Generator().manual_seed(0)
        self.view_names = list(views)
        self.views = [torch.rand(len(rows), 832, 7, 7, generator=g).half() for _ in views]

    batch = train.CachedFeatures.batch  # the real one: it reads only self.views


class _Cut(Exception):
    pass


def fake_cached_meta(monkeypatch, n=40):
    """40 rows over five folds and four classes, one patient each, with _FakeCache's activations."""
    import evaluate

    meta = {"labels": np.arange(n) % 4, "folds": np.repeat([1, 2, 3, 4, 5], n // 5),
            "patients": np.array([f"p{i}" for i in range(n)])}
    monkeypatch.setattr(evaluate, "cache_meta", lambda: meta)
    monkeypatch.setattr(train, "CachedFeatures", _FakeCache)


def cut_after_epoch_0_and_resume(monkeypatch, run_dir, args):
    """Start train.py with args, stop it when epoch 1 begins, then --resume it to the end.
    Returns the checkpoint the cut left behind."""
    import tqdm as tqdm_mod

    real_tqdm = tqdm_mod.tqdm

    def cut_at_epoch_1(it, desc="", **kw):
        if desc == "epoch 1":
            raise _Cut
        return real_tqdm(it, desc=desc, **kw)

    monkeypatch.setattr(tqdm_mod, "tqdm", cut_at_epoch_1)
    with pytest.raises(_Cut):
        train.main(["--run-dir", str(run_dir), *args])
    monkeypatch.setattr(tqdm_mod, "tqdm", real_tqdm)
    half = torch.load(run_dir / "last.pt", weights_only=False)
    train.main(["--run-dir", str(run_dir), "--resume", "--threads", "1", "--no-eval"])
    return half


@needs_weights
def test_an_ema_run_cut_after_an_epoch_resumes_to_the_uncut_result(tmp_path, monkeypatch):
    fake_cached_meta(monkeypatch)
    args = ["--epochs", "2", "--batch-size", "8", "--ema", "0.8", "--balance", "0.5", "--no-eval",
            "--threads", "1", "--views", "h0,h1"]

    train.main(["--run-dir", str(tmp_path / "whole"), *args])
    half = cut_after_epoch_0_and_resume(monkeypatch, tmp_path / "cut", args)
    assert half["epoch"] == 0 and "ema" in half

    a = torch.load(tmp_path / "whole" / "last.pt", weights_only=False)
    b = torch.load(tmp_path / "cut" / "last.pt", weights_only=False)
    assert a["config"]["ema"] == 0.8 and a["config"]["balance"] == 0.5
    for k in a["model"]:
        assert torch.equal(a["model"][k], b["model"][k]), k
        assert torch.equal(a["raw_model"][k], b["raw_model"][k]), k
    # the scored model is the average, not the last iterate
    w = "head.fc.weight"
    assert not torch.equal(a["model"][w], a["raw_model"][w])


def test_resume_refuses_another_split_or_recipe(tmp_path):
    """A resumed run keeps its test fold: continuing with another would train on that fold."""
    torch.save({"config": dict(train.DEFAULTS, test_fold=5)}, tmp_path / "last.pt")
    for flag, value in (("--test-fold", "3"), ("--lr", "0.1"), ("--frozen-until", "none")):
        with pytest.raises(SystemExit, match=f"--resume: {flag} .* differs from the checkpoint's"):
            train.main(["--run-dir", str(tmp_path), "--resume", flag, value])


def test_classes_other_than_3_or_4_are_refused(tmp_path):
    with pytest.raises(SystemExit, match="--classes must be 3"):
        train.main(["--run-dir", str(tmp_path), "--classes", "5"])


def test_a_warm_start_from_a_model_trained_on_this_runs_test_fold_is_refused(tmp_path):
    torch.save({"config": dict(train.DEFAULTS, test_fold=1), "model": {}, "arcface": {}}, tmp_path / "init.pt")
    with pytest.raises(SystemExit, match="trained without fold 1, not this run's test fold 5"):
        train.main(["--run-dir", str(tmp_path / "run"), "--init-from", str(tmp_path / "init.pt"), "--test-fold", "5"])
