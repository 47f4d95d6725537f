"""The GPU path's pieces that run anywhere: the pack codec, on-device augmentation
parameters, sharded model files, the checkpoint bridge and the configuration choice."""
import json
from pathlib import Path

import numpy as np
import pytest
import torch

import data
from conftest import mini_pack
from conftest import needs_datasets
from device_collect import choose, to_ckpt
from device_train import load_sharded, save_sharded
from model import build_model
from pack import _jpeg, decode_images, load_pack


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


def test_balanced_batches_draw_classes_by_the_requested_power():
    labels = np.array([0] * 100 + [1] * 400 + [2] * 1600)

    def mix(power, seed=0):
        idx = torch.cat(list(data.balanced_batches(labels, 64, torch.Generator().manual_seed(seed), power)))
        assert len(idx) == (len(labels) // 64) * 64
        return np.bincount(labels[idx.numpy()], minlength=3) / len(idx)

    assert np.allclose(mix(1.0), [1 / 3] * 3, atol=0.03)
    assert np.allclose(mix(0.0), [100 / 2100, 400 / 2100, 1600 / 2100], atol=0.03)
    # square root: class shares proportional to sqrt(count) = 10 : 20 : 40
    assert np.allclose(mix(0.5), [1 / 7, 2 / 7, 4 / 7], atol=0.03)
    assert np.array_equal(mix(0.5, seed=3), mix(0.5, seed=3))


def test_sharded_model_round_trip_fits_the_transfer_cap(tmp_path):
    net = build_model(frozen_until=None, pretrained=False)
    state = {f"model.{k}": v for k, v in net.state_dict().items()}
    save_sharded(state, tmp_path / "m")
    for s in ("a", "b"):
        assert (tmp_path / f"m.{s}.pt").stat().st_size < 16 * 1024 * 1024
    back = load_sharded(str(tmp_path / "m"))
    assert back.keys() == state.keys()
    assert all(torch.equal(back[k], state[k]) for k in state)


def _result(tag, fold, map3, seed=1, recipe=None):
    # tags are distinct recipes unless given the same `recipe` (then they differ by seed only)
    return {"tag": tag, "fold": fold, "config": {"tag": tag, "dim": 256, "pool": "gem", "seed": seed, "variant": recipe or tag},
            "history": [{"epoch": 0}, {"epoch": 1}],
            "summary": {"3class": {"map": map3, "p10": map3, "p1": map3}}}


def test_choice_never_looks_at_the_test_fold():
    res = {"a": {1: _result("a", 1, 0.96), 2: _result("a", 2, 0.95), 5: _result("a", 5, 0.99)},
           "b": {1: _result("b", 1, 0.97), 2: _result("b", 2, 0.955), 5: _result("b", 5, 0.80)}}
    winner, folds, means, _ = choose(res, test_fold=5)
    assert winner == "b" and folds == [1, 2]
    assert means["b"] == pytest.approx(0.9625)
    # only folds both tags finished count
    del res["b"][2]
    winner, folds, _, _ = choose(res, test_fold=5)
    assert winner == "b" and folds == [1]


def test_seeds_of_one_recipe_are_scored_together_and_its_lowest_seed_ships():
    """A lucky seed must not win for its recipe's rival: ls2 alone beats b, but ls+ls2 on average
    does not beat b+s2; within the winning recipe the tag shipped is named in advance (seed 1)."""
    r = lambda tag, m, seed, recipe: {k: _result(tag, k, m, seed, recipe) for k in (1, 2)}
    res = {"b": r("b", 0.960, 1, "b"), "s2": r("s2", 0.958, 2, "b"),
           "ls": r("ls", 0.950, 1, "ls"), "ls2": r("ls2", 0.965, 2, "ls")}
    winner, _, means, recipes = choose(res, test_fold=5)
    assert max(means, key=means.get) == "ls2"
    assert winner == "b" and recipes["b+s2"]["mean"] == pytest.approx(0.959) and recipes["ls+ls2"]["mean"] == pytest.approx(0.9575)
    res["ls"] = r("ls", 0.962, 1, "ls")
    winner, _, _, _ = choose(res, test_fold=5)
    assert winner == "ls", "the winning recipe ships its lowest seed, not its best one"


def test_tta_summary_leaves_the_test_fold_apart():
    from device_collect import tta_means

    def rec(k, plain, tta):
        return dict(_result("t", k, plain), tta={"all": {"map": tta, "p10": tta}})
    folds = {1: rec(1, 0.95, 0.94), 2: rec(2, 0.96, 0.95), 5: rec(5, 0.90, 0.99)}
    out = tta_means(folds, test_fold=5)
    assert out["tta"]["all"]["map"] == pytest.approx(0.945)
    assert out["tta_test_fold"]["all"]["map"] == pytest.approx(0.99)


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
@pytest.mark.parametrize("extra", [{}, {"mixup": 0.4}], ids=["plain", "mixup"])
def test_train_fold_runs_end_to_end_on_real_images(tmp_path, datasets_root, extra):
    """The device training path (augment, full fine-tune step, embed) on a few real slices, on the CPU."""
    from device_train import train_fold

    mini_pack(tmp_path, datasets_root)
    pk = load_pack(tmp_path)
    n = len(pk["labels"])
    cfg = {"tag": "t", "pack": str(tmp_path), "seed": 1, "dim": 256, "pool": "gem", "scale": 64.0, "margin": 0.5,
           "lr": 1e-4, "head_lr": 1e-3, "weight_decay": 1e-4, "warmup_epochs": 0.0, "epochs": 1, "batch_size": 3,
           "max_steps": 1, "balance": 0.5, **extra}
    init = build_model(frozen_until=None, pretrained=False)  # the init train_fold starts from: the pack's fp16 BVLC
    init.backbone.load_state_dict({k: v.float() for k, v in torch.load(tmp_path / "backbone.pt").items()})
    before = init.backbone.stem[0].conv.weight.detach()
    out, _, emb, hist, _ = train_fold(pk, torch.from_numpy(pk["images"]), cfg, 5, torch.device("cpu"), lambda m: None)
    assert emb.shape == (n, 256)
    assert np.allclose(np.linalg.norm(emb, axis=1), 1.0, atol=1e-4)
    assert hist[0]["epoch"] == 0 and np.isfinite(hist[0]["loss"])
    # full fine-tune: one optimizer step moved conv1 away from its (fp16) BVLC init
    assert (out.backbone.stem[0].conv.weight.detach() - before).abs().max() > 1e-6


def test_bf16_on_the_cpu_is_deterministic_and_really_changes_the_arithmetic(tmp_path, datasets_root):
    """--bf16 on a CPU: two runs agree bit for bit (the CPU path stays reproducible), and the
    run differs from the float32 one, so the switch reaches the backbone."""
    from device_train import train_fold

    mini_pack(tmp_path, datasets_root)
    pk = load_pack(tmp_path)
    cfg = {"tag": "t", "pack": str(tmp_path), "seed": 1, "dim": 256, "pool": "gem", "scale": 64.0, "margin": 0.5,
           "lr": 1e-4, "head_lr": 1e-3, "weight_decay": 1e-4, "warmup_epochs": 0.0, "epochs": 1, "batch_size": 3,
           "max_steps": 2}
    imgs = torch.from_numpy(pk["images"])
    runs = {}
    for name, bf16 in (("bf16", True), ("bf16 again", True), ("fp32", False)):
        _, _, emb, hist, _ = train_fold(pk, imgs, dict(cfg, bf16=bf16), 5, torch.device("cpu"), lambda m: None)
        assert np.isfinite(hist[0]["loss"])
        runs[name] = emb
    assert np.array_equal(runs["bf16"], runs["bf16 again"])
    assert np.abs(runs["bf16"] - runs["fp32"]).max() > 1e-4


@needs_datasets
def test_a_checkpointed_fold_paused_and_resumed_matches_the_uninterrupted_run(tmp_path, datasets_root):
    """--checkpoint for CPU runs that take hours: a fold paused after one epoch and resumed by the
    same command ends bit for bit where the uninterrupted run does; finished folds are skipped, the
    checkpoint goes once its fold is scored, and a checkpoint of other settings is refused."""
    from device_train import main as device_main

    mini_pack(tmp_path, datasets_root)
    base = ["--pack", str(tmp_path), "--tag", "c", "--folds", "5", "--epochs", "3", "--max-steps", "2",
            "--batch-size", "3", "--warmup-epochs", "0", "--n-boot", "10", "--threads", "2", "--bf16", "off",
            "--balance", "0.5"]
    device_main(base + ["--out", str(tmp_path / "whole")])
    cut = base + ["--out", str(tmp_path / "cut"), "--checkpoint"]
    device_main(cut + ["--stop-after-epochs", "1"])
    ck = torch.load(tmp_path / "cut" / "ckpt-c-f5.pt", weights_only=False)
    assert ck["epoch"] == 0 and not (tmp_path / "cut" / "results-c.jsonl").exists()
    with pytest.raises(SystemExit, match=r"differing settings: epochs 3 -> 4"):
        device_main([*base[:base.index("--epochs")], "--epochs", "4", *base[base.index("--epochs") + 2:],
                     "--out", str(tmp_path / "cut"), "--checkpoint"])
    device_main(cut + ["--n-boot", "20"])  # run-only settings may change between calls
    assert not (tmp_path / "cut" / "ckpt-c-f5.pt").exists()
    whole = np.load(tmp_path / "whole" / "emb-c-f5.npy")
    resumed = np.load(tmp_path / "cut" / "emb-c-f5.npy")
    assert np.array_equal(whole, resumed)
    (a,) = [json.loads(ln) for ln in (tmp_path / "whole" / "results-c.jsonl").read_text().splitlines()]
    (b,) = [json.loads(ln) for ln in (tmp_path / "cut" / "results-c.jsonl").read_text().splitlines()]
    assert [h["loss"] for h in a["history"]] == [h["loss"] for h in b["history"]] and len(b["history"]) == 3
    device_main(cut)  # fold 5 is done: nothing is trained or appended
    assert len((tmp_path / "cut" / "results-c.jsonl").read_text().splitlines()) == 1
    # A fold cut by --budget-s (its deadline, budget - 20 s, is already past after epoch 0) is
    # recorded as truncated, keeps its checkpoint, and the next call finishes it.
    budget = base + ["--out", str(tmp_path / "budget"), "--checkpoint"]
    device_main(budget + ["--budget-s", "20.001"])
    (first,) = [json.loads(ln) for ln in (tmp_path / "budget" / "results-c.jsonl").read_text().splitlines()]
    assert first["truncated"] and (tmp_path / "budget" / "ckpt-c-f5.pt").exists()
    device_main(budget)
    recs = [json.loads(ln) for ln in (tmp_path / "budget" / "results-c.jsonl").read_text().splitlines()]
    assert [r["truncated"] for r in recs] == [True, False] and len(recs[1]["history"]) == 3
    assert np.array_equal(np.load(tmp_path / "budget" / "emb-c-f5.npy"), whole)
    with pytest.raises(SystemExit):
        device_main(base + ["--out", str(tmp_path / "x"), "--stop-after-epochs", "1"])  # needs --checkpoint


def test_auto_bf16_follows_the_cpu_flags():
    from device_train import cpu_has_native_bf16, resolve_bf16

    genoa = "processor\t: 0\nflags\t\t: fpu sse2 avx2 avx512f avx512_bf16 avx512_vnni\nbugs\t\t: sysret_ss_attrs\n"
    sapphire = "flags\t\t: avx512f amx_bf16 amx_tile amx_int8\n"
    skylake = "flags\t\t: fpu avx2 avx512f avx512bw avx512_vnni\nbugs\t\t: avx512_bf16_is_not_a_flag_here\n"
    assert cpu_has_native_bf16(genoa) and cpu_has_native_bf16(sapphire)
    assert not cpu_has_native_bf16(skylake) and not cpu_has_native_bf16("")
    assert resolve_bf16("on", torch.device("cpu")) and not resolve_bf16("off", torch.device("cuda"))
    assert resolve_bf16("auto", torch.device("cuda"))
    assert resolve_bf16("auto", torch.device("cpu")) == cpu_has_native_bf16()


def test_truncated_folds_do_not_count_and_prior_runs_do(tmp_path):
    from device_collect import read_results, result_files

    cut = dict(_result("e", 1, 0.99), truncated=True)
    (tmp_path / "results-e.jsonl").write_text(json.dumps(cut) + "\n" + json.dumps(_result("e", 2, 0.95)) + "\n")
    prior = tmp_path / "prior.jsonl"
    prior.write_text("".join(json.dumps(_result("b", f, 0.96)) + "\n" for f in (1, 2, 5)))
    res = read_results([prior, *result_files(tmp_path)])
    assert sorted(res) == ["b", "e"] and sorted(res["e"]) == [2] and sorted(res["b"]) == [1, 2, 5]
    winner, folds, _, _ = choose(res)
    assert folds == [2] and winner == "b"


@needs_datasets
def test_device_run_sweeps_jobs_in_parallel_and_keeps_only_the_winner(tmp_path, datasets_root):
    """device_run.sh end to end on the CPU: one process per (config, fold), the
    choice on fold 1 against a prior run, the loser's fold-5 model deleted."""
    import os
    import subprocess
    from pathlib import Path

    here = Path(__file__).resolve().parents[1]
    mini_pack(tmp_path / "pack", datasets_root)
    tiny = f"--epochs 1 --max-steps 1 --batch-size 3 --warmup-epochs 0 --n-boot 10 --pack {tmp_path / 'pack'}"
    conf = tmp_path / "sweep.conf"
    conf.write_text(f"# comment\n\nx {tiny} --seed 1\ny {tiny} --seed 2 --ema 0.9 --balance 0.5 --tta-sizes 224,256\n")
    prior = tmp_path / "prior.jsonl"
    prior.write_text(json.dumps(_result("old", 1, 0.0)) + "\n")  # a prior run that loses
    out = tmp_path / "out"
    env = dict(os.environ, FOLDS="5 1", MIN_JOB_S="0")
    p = subprocess.run(["bash", str(here / "device_run.sh"), str(out), str(conf), "600", "2", "--", "--prior", str(prior)],
                       env=env, capture_output=True, text=True, timeout=600)
    assert p.returncode == 0, p.stdout[-3000:] + p.stderr[-3000:]
    assert "ran 4 jobs" in p.stdout
    summary = json.loads((out / "summary.json").read_text())
    assert summary["compared_on_folds"] == [1]
    assert set(summary["mean_3class_map_on_those"]) == {"old", "x", "y"}
    winner = summary["winner"]
    assert winner in ("x", "y") and summary["winner_from_prior_run"] is False
    lines = [json.loads(ln) for ln in (out / "results.jsonl").read_text().splitlines()]
    assert sorted((r["tag"], r["fold"]) for r in lines) == [("x", 1), ("x", 5), ("y", 1), ("y", 5)]
    y = [r for r in lines if r["tag"] == "y"]
    assert y[0]["config"]["ema"] == 0.9 and y[0]["config"]["balance"] == 0.5
    # test-time augmentation scored per fold where asked: its plain view is the fold's own figure
    assert all("tta" not in r for r in lines if r["tag"] == "x")
    for r in y:
        assert set(r["tta"]) == {"224", "224+flip", "256", "256+flip", "224 + flip", "all sizes", "all sizes + flips"}
        assert abs(r["tta"]["224"]["map"] - r["summary"]["3class"]["map"]) <= 1e-3
    assert "tta" not in summary["cv_all_folds"]["x"]
    # test-time augmentation is summarised over the folds other than the test fold; fold 5 apart
    assert summary["cv_all_folds"]["y"]["tta"]["all sizes + flips"]["map"] == pytest.approx(
        np.mean([r["tta"]["all sizes + flips"]["map"] for r in y if r["fold"] != 5]), abs=1e-4)
    assert summary["cv_all_folds"]["y"]["tta_test_fold"]["all sizes + flips"]["map"] == pytest.approx(
        next(r["tta"]["all sizes + flips"]["map"] for r in y if r["fold"] == 5), abs=1e-4)
    models = sorted(q.name for q in out.glob("model-*.pt"))
    assert models == [f"model-{winner}-f5.a.pt", f"model-{winner}-f5.b.pt"]
    assert sorted(q.name for q in out.glob("emb-*")) == ["emb-x.npz", "emb-y.npz"]


def test_prior_runs_may_not_reuse_a_tag_and_cut_folds_are_never_exported(tmp_path):
    from device_collect import main as collect

    (tmp_path / "results-b.jsonl").write_text(json.dumps(_result("b", 1, 0.9)) + "\n")
    prior = tmp_path / "prior.jsonl"
    prior.write_text(json.dumps(_result("b", 1, 0.96)) + "\n")
    with pytest.raises(SystemExit, match=r"tags \['b'\] are also in this run"):
        collect(["--out", str(tmp_path), "--prior", str(prior)])
    cut = tmp_path / "cut"
    cut.mkdir()
    (cut / "results-e.jsonl").write_text(json.dumps(dict(_result("e", 5, 0.99), truncated=True)) + "\n")
    for s in ("a", "b"):
        (cut / f"model-e-f5.{s}.pt").write_bytes(b"")
    with pytest.raises(SystemExit, match="no finished"):
        collect(["--out", str(cut), "--to-ckpt", str(tmp_path / "x.pt")])
    # the cut fold's embeddings are kept apart, never bundled with the recipe's
    (cut / "results-e.jsonl").write_text(
        json.dumps(dict(_result("e", 5, 0.99), truncated=True)) + "\n" + json.dumps(_result("e", 1, 0.9)) + "\n")
    for k in (1, 5):
        np.save(cut / f"emb-e-f{k}.npy", np.zeros((2, 3), np.float32))
    collect(["--out", str(cut)])
    assert sorted(np.load(cut / "emb-e.npz").files) == ["f1"]
    assert (cut / "emb-e-f5.truncated.npy").exists()
    collect(["--out", str(cut)])  # run again over the same folder: the cut fold stays apart
    assert (cut / "emb-e-f5.truncated.npy").exists()


def test_device_tree_holds_the_onnx_files_out_of_the_tree_and_restores_them(tmp_path):
    import subprocess
    from pathlib import Path

    script = Path(__file__).resolve().parents[1] / "device_tree.sh"
    repo = tmp_path / "repo"
    (repo / "models").mkdir(parents=True)

    def git(*a):
        return subprocess.run(["git", "-c", "user.name=t", "-c", "user.email=t@t", *a], cwd=repo, check=True,
                              capture_output=True, text=True).stdout

    git("init", "-q")
    payload = np.random.default_rng(0).bytes(4096)
    (repo / "models" / "m-1.0.onnx").write_bytes(payload)
    (repo / "models" / "keep.json").write_text("{}")
    git("add", "-A")
    git("commit", "-qm", "x")
    hold = tmp_path / "hold"
    subprocess.run(["bash", str(script), "hold", str(hold)], cwd=repo, check=True, capture_output=True)
    assert not (repo / "models" / "m-1.0.onnx").exists() and (repo / "models" / "keep.json").exists()
    assert git("ls-files") == "models/keep.json\n"
    assert git("status", "--porcelain", "--untracked-files=all") == "D  models/m-1.0.onnx\n"
    again = subprocess.run(["bash", str(script), "hold", str(hold)], cwd=repo, capture_output=True, text=True)
    assert again.returncode != 0  # nothing tracked left to hold, and never overwrite a hold
    subprocess.run(["bash", str(script), "restore", str(hold)], cwd=repo, check=True, capture_output=True)
    assert (repo / "models" / "m-1.0.onnx").read_bytes() == payload
    assert git("status", "--porcelain", "--untracked-files=all") == ""
    assert "device_tree" not in (repo / ".git" / "info" / "exclude").read_text()


@needs_datasets
def test_a_pack_at_another_size_trains_at_that_size(tmp_path, datasets_root):
    """The resolution experiment's GPU path: a 320 pack decodes at 320, a fold trains on it,
    and its test-time augmentation starts from the 320 input (which must be one of the views)."""
    from device_train import main as device_main
    from device_train import train_fold

    mini_pack(tmp_path, datasets_root, per=1, size=320)
    pk = load_pack(tmp_path)
    assert pk["images"].shape[1:] == (320, 320)
    cfg = {"tag": "t", "pack": str(tmp_path), "seed": 1, "dim": 256, "pool": "gem", "scale": 64.0, "margin": 0.5,
           "lr": 1e-4, "head_lr": 1e-3, "weight_decay": 1e-4, "warmup_epochs": 0.0, "epochs": 1, "batch_size": 3,
           "max_steps": 1}
    _, _, emb, hist, _ = train_fold(pk, torch.from_numpy(pk["images"]), cfg, 5, torch.device("cpu"), lambda m: None)
    assert emb.shape == (len(pk["labels"]), 256) and np.isfinite(hist[0]["loss"])
    with pytest.raises(SystemExit, match="must include 320"):
        device_main(["--pack", str(tmp_path), "--out", str(tmp_path / "o"), "--tta-sizes", "224,317"])
    device_main(["--pack", str(tmp_path), "--out", str(tmp_path / "o"), "--tag", "r", "--folds", "5", "--epochs", "1",
                 "--max-steps", "1", "--batch-size", "3", "--warmup-epochs", "0", "--n-boot", "10", "--threads", "2",
                 "--tta-sizes", "320,256"])
    (rec,) = [json.loads(ln) for ln in (tmp_path / "o" / "results-r.jsonl").read_text().splitlines()]
    assert rec["config"]["input_size"] == 320
    assert set(rec["tta"]) == {"320", "320+flip", "256", "256+flip", "320 + flip", "all sizes", "all sizes + flips"}
    assert abs(rec["tta"]["320"]["map"] - rec["summary"]["3class"]["map"]) <= 1e-3  # the plain view is the fold's own


def test_a_pack_of_mixed_sizes_is_refused():
    blobs = [_jpeg(np.zeros((224, 224), np.float32), 90), _jpeg(np.zeros((320, 320), np.float32), 90)]
    offsets = np.concatenate([[0], np.cumsum([len(b) for b in blobs])])
    with pytest.raises(ValueError, match="rebuild the pack"):
        decode_images(np.frombuffer(b"".join(blobs), np.uint8), offsets)


@pytest.mark.parametrize("conf", sorted((Path(__file__).resolve().parents[1] / "sweeps").glob("*.conf")),
                         ids=lambda p: p.name)
def test_every_sweep_line_is_a_valid_device_train_command(conf):
    """Sweep files are run on scarce device time: a typo there would cost a whole call."""
    from device_train import build_parser
    from posthoc import parse_tta_sizes

    lines = [ln for ln in conf.read_text().splitlines() if ln.strip() and not ln.lstrip().startswith("#")]
    assert lines, f"{conf.name} has no jobs"
    tags = [ln.split()[0] for ln in lines]
    assert len(set(tags)) == len(tags), f"{conf.name}: repeated tag"
    for ln in lines:
        tag, *args = ln.split()
        a = build_parser().parse_args(args + ["--out", "x", "--tag", tag])  # argparse exits on an unknown option
        if a.tta_sizes:  # must include the model's own size: .pack<size> by pack.py's convention, else 224
            size = Path(a.pack).name.removeprefix(".pack")
            parse_tta_sizes(a.tta_sizes, int(size) if size.isdigit() else 224)
        if a.pack != build_parser().get_default("pack"):
            # relative to models/train, where device_run.sh starts each job; pack.py's --out for it
            assert not Path(a.pack).is_absolute() and Path(a.pack).name.startswith(".pack")
