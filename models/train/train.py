"""Train the GoogLeNet-GeM-ArcFace retrieval model.

Two modes:
  --mode cached (default; the 2-core CPU path) trains inception_5a/5b + GeM + head +
      ArcFace on precomputed pool4 activations (features.py: views h0..hK, one
      random view per image per epoch). conv1..inception_4e stay at BVLC weights.
  --mode online trains from images with on-the-fly augmentation (GPU path);
      stages up to --frozen-until run under no_grad.
  --size S (default 224, the model's input) trains and evaluates on S x S inputs
      (features.py --size S first): the resolution probe. export.py exports
      such a model at S (the manifest declares it; the worker reads it there).

Deterministic: seeds fixed; the epoch's permutation and view choice come from a
generator seeded with (seed, epoch), so a resumed run replays the same batches.
Checkpoints: <run-dir>/last.pt after every epoch (model, ArcFace W, optimizer,
scheduler, epoch); `--resume` continues from it.

Usage:
  python3 models/train/train.py --run-dir models/train/runs/ship --epochs 14
  python3 models/train/train.py --run-dir ... --resume
"""
from __future__ import annotations

import argparse
import json
import math
import random
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

import data
from losses import ArcFaceLoss, MultiSimilarityAux, mix_batch, mixed_loss
from model import build_model

DEFAULTS = dict(mode="cached", epochs=14, batch_size=64, lr=3e-4, head_lr=3e-3, weight_decay=1e-4,
                warmup_epochs=1.0, margin=0.5, scale=64.0, dim=256, pool="gem", test_fold=5, seed=1,
                views="h0,h1,h2,h3,h4", frozen_until="pool4", classes=4, threads=2,
                feat_dropout=0.1, size=224, subcenters=1, label_smoothing=0.0, balance=0.0, ema=0.0, ms_weight=0.0,
                mixup=0.0, fuse_pool4=0)


def set_seed(seed: int):
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def lr_lambda_factory(total_steps: int, warmup_steps: int):
    def f(step):
        if step < warmup_steps:
            return (step + 1) / warmup_steps
        t = (step - warmup_steps) / max(1, total_steps - warmup_steps)
        return 0.5 * (1 + math.cos(math.pi * min(1.0, t)))
    return f


def make_ema(net, decay: float):
    """Exponential moving average of the weights, or None when decay is 0.

    The recipes overfit (train accuracy ~1.0 well before the end), and an average of
    late weights often generalises better than the last iterate (on the CPU recipe it
    did not: results/probe-cached-ema0995.json). BatchNorm running
    stats are averaged too (use_buffers), so the EMA model is used as is, without a
    recalibration pass."""
    if not decay:
        return None
    if not 0 < decay < 1:
        raise SystemExit(f"--ema must be in (0, 1), got {decay}")
    from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn

    return AveragedModel(net, multi_avg_fn=get_ema_multi_avg_fn(decay), use_buffers=True)


def epoch_batches(labels, cfg, g: torch.Generator):
    """One epoch's index batches: shuffled, or class-balanced when cfg['balance'] > 0.

    Meningioma, the smallest tumour class, is where held-out queries land in the
    wrong class's cluster most often (11.6 % vs 4-5 %; posthoc.py's diagnosis), so
    a run can draw it more often."""
    if cfg.get("balance"):
        return list(data.balanced_batches(labels, cfg["batch_size"], g, cfg["balance"]))
    return list(data.batches(len(labels), cfg["batch_size"], g))


def param_groups(net, loss_fn, cfg):
    pre, new = [], []
    for p in net.trainable_parameters():
        (pre if any(p is q for q in net.backbone.parameters()) else new).append(p)
    return [
        {"params": pre, "lr": cfg["lr"], "weight_decay": cfg["weight_decay"]},
        {"params": new + list(loss_fn.parameters()), "lr": cfg["head_lr"], "weight_decay": cfg["weight_decay"]},
    ]


class CachedFeatures:
    """Training rows' pool4 activations for several views, loaded into RAM (fp16)."""

    def __init__(self, views, rows: np.ndarray, size: int = 224):
        from features import feat_path, skipped_fold_marker

        from evaluate import cache_meta

        self.views, self.view_names = [], []
        folds = None
        for v in views:
            p = feat_path(v, size)
            if p.exists():
                arr = np.load(p, mmap_mode="r")[rows]
                marker = skipped_fold_marker(v, size)
                if marker.exists():  # augmented view computed without one fold: use clean h0 rows there
                    folds = cache_meta()["folds"][rows] if folds is None else folds
                    miss = np.flatnonzero(folds == int(marker.read_text()))
                    if len(miss):
                        arr[miss] = np.load(feat_path("h0", size), mmap_mode="r")[rows[miss]]
                        print(f"view {v}: {len(miss)} rows of fold {marker.read_text()} taken from h0", flush=True)
                self.views.append(torch.from_numpy(arr))
                self.view_names.append(v)
            else:
                print(f"warning: view {v} missing ({p}), skipped", flush=True)
        if not self.views:
            raise SystemExit("no feature views found; run features.py first")

    def batch(self, idx: torch.Tensor, view_choice: torch.Tensor) -> torch.Tensor:
        out = torch.empty((len(idx),) + tuple(self.views[0].shape[1:]), dtype=torch.float32)
        for v in range(len(self.views)):
            m = view_choice == v
            if m.any():
                out[m] = self.views[v][idx[m]].float()
        return out


RESUMABLE = {"epochs", "threads"}  # the settings a --resume may change


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--run-dir", required=True)
    ap.add_argument("--resume", action="store_true")
    for k, v in DEFAULTS.items():
        ap.add_argument(f"--{k.replace('_', '-')}", type=type(v), default=None)
    ap.add_argument("--no-eval", action="store_true")
    ap.add_argument("--init-from", default=None,
                    help="warm start: load model + ArcFace weights (not optimizer/schedule) from this checkpoint")
    ap.add_argument("--max-steps", type=int, default=None, help="stop after this many steps (timing)")
    a = ap.parse_args(argv)
    run = Path(a.run_dir)
    run.mkdir(parents=True, exist_ok=True)
    ck_path = run / "last.pt"
    ck = torch.load(ck_path, map_location="cpu", weights_only=False) if a.resume and ck_path.exists() else None
    cfg = dict(DEFAULTS)
    if ck:
        cfg.update(ck["config"])
    for k in DEFAULTS:
        v = getattr(a, k)
        if v is not None:
            # A resumed run keeps its recipe and split: another test fold would continue training a
            # model that has already seen that fold (device_train.load_checkpoint refuses the same).
            # ("none" is how --frozen-until says None, as the checkpoint stores it.)
            same = v == cfg.get(k) or (k == "frozen_until" and str(v).lower() in ("none", "") and cfg.get(k) is None)
            if ck and k not in RESUMABLE and not same:
                raise SystemExit(f"--resume: --{k.replace('_', '-')} {v} differs from the checkpoint's {cfg.get(k)!r}; "
                                 f"a resumed run can only change {', '.join('--' + r for r in sorted(RESUMABLE))}")
            cfg[k] = v
    if cfg["classes"] not in (3, 4):
        raise SystemExit(f"--classes must be 3 (tumours) or 4 (with normal), got {cfg['classes']}")
    if str(cfg["frozen_until"]).lower() in ("none", ""):
        cfg["frozen_until"] = None  # full fine-tune (online mode)
    if cfg.get("fuse_pool4") and cfg["mode"] != "cached":
        raise SystemExit("--fuse-pool4 is a CPU-recipe probe: use --mode cached")
    if cfg.get("mixup") and cfg["mode"] != "cached":
        raise SystemExit("--mixup mixes cached pool4 activations: use --mode cached (device_train.py has it for a full fine-tune)")
    if cfg.get("mixup", 0) < 0:
        raise SystemExit(f"--mixup must be > 0 (0 = off), got {cfg['mixup']}")
    if cfg.get("mixup") and cfg.get("ms_weight"):
        raise SystemExit("--mixup and --ms-weight do not combine: the pairwise term has no mixed labels")
    torch.set_num_threads(cfg["threads"])
    set_seed(cfg["seed"])
    dev = torch.device("cuda" if torch.cuda.is_available() else "cpu")

    from evaluate import cache_meta

    meta = cache_meta()
    keep = meta["labels"] < cfg["classes"] if cfg["classes"] == 4 else (meta["labels"] >= 1)
    train_rows = np.flatnonzero((meta["folds"] != cfg["test_fold"]) & keep)
    test_rows = np.flatnonzero(meta["folds"] == cfg["test_fold"])
    if len(test_rows) == 0:
        raise SystemExit(f"--test-fold {cfg['test_fold']} has no rows (folds: {sorted(set(meta['folds'].tolist()))}); "
                         "a model trained on every fold has no honest evaluation")
    leak = data.check_patient_disjoint(meta["patients"][train_rows], meta["patients"][test_rows])
    assert not leak, f"patients in both train and test: {sorted(leak)[:5]}"
    labels = torch.from_numpy(meta["labels"][train_rows])
    n_cls = 4  # class ids are fixed (0 normal .. 3 pituitary) even if a class is absent
    print(f"train rows {len(train_rows)} (test fold {cfg['test_fold']} held out), classes "
          f"{np.bincount(labels.numpy(), minlength=4).tolist()}", flush=True)

    net = build_model(dim=cfg["dim"], pool=cfg["pool"], frozen_until=cfg["frozen_until"],
                      fuse_pool4=bool(cfg.get("fuse_pool4"))).to(dev)
    loss_fn = ArcFaceLoss.from_config(n_cls, cfg).to(dev)
    aux = MultiSimilarityAux.from_config(cfg)
    opt = torch.optim.AdamW(param_groups(net, loss_fn, cfg))
    steps_per_epoch = len(train_rows) // cfg["batch_size"]
    total = steps_per_epoch * cfg["epochs"]
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lr_lambda_factory(total, int(cfg["warmup_epochs"] * steps_per_epoch)))
    ema = make_ema(net, cfg["ema"])
    start_epoch = 0
    history = []
    if a.init_from and not ck:
        init = torch.load(a.init_from, map_location="cpu", weights_only=False)
        held = (init.get("config") or {}).get("test_fold")
        if held is not None and int(held) != int(cfg["test_fold"]):  # it has trained on this run's test fold
            raise SystemExit(f"--init-from {a.init_from}: that model was trained without fold {held}, "
                             f"not this run's test fold {cfg['test_fold']}")
        net.load_state_dict(init["model"])
        loss_fn.load_state_dict(init["arcface"])
        cfg["init_from"] = str(a.init_from)
        print(f"warm start from {a.init_from}", flush=True)
    if ck:
        # a finished EMA run's "model" is the average; training goes on from the last iterate
        net.load_state_dict(ck.get("raw_model", ck["model"]))
        loss_fn.load_state_dict(ck["arcface"])
        opt.load_state_dict(ck["optimizer"])
        sched.load_state_dict(ck["scheduler"])
        start_epoch = ck["epoch"] + 1
        history = ck.get("history", [])
        if ema is not None:
            ema.load_state_dict(ck["ema"])
        print(f"resumed from epoch {ck['epoch']}", flush=True)

    if cfg["mode"] == "cached":
        feats = CachedFeatures(cfg["views"].split(","), train_rows, cfg["size"])
        cfg["views_used"] = ",".join(feats.view_names)
        print(f"views: {feats.view_names}", flush=True)
    else:
        cache = data.build_cache(harmonise_inputs=True, size=cfg["size"]).subset(train_rows)

    from tqdm import tqdm

    t_start = time.time()
    step = start_epoch * steps_per_epoch
    for epoch in range(start_epoch, cfg["epochs"]):
        net.train()
        g = torch.Generator().manual_seed(cfg["seed"] * 1000 + epoch)
        mix_rng = np.random.default_rng([cfg["seed"], epoch]) if cfg.get("mixup") else None
        t0 = time.time()
        tot, correct, seen = 0.0, 0, 0
        bar = tqdm(epoch_batches(labels, cfg, g), desc=f"epoch {epoch}", mininterval=15)
        for idx in bar:
            y = labels[idx].to(dev)
            if cfg["mode"] == "cached":
                vc = torch.randint(0, len(feats.views), (len(idx),), generator=g)
                f = feats.batch(idx, vc).to(dev)
                if cfg["feat_dropout"] > 0:  # channel dropout on the cached pool4 activations
                    keep_mask = (torch.rand(f.shape[:2], generator=g) >= cfg["feat_dropout"]).to(f.dtype)
                    f = f * keep_mask[:, :, None, None] / (1 - cfg["feat_dropout"])
                if mix_rng is not None:
                    f, y_partner, lam = mix_batch(f, y, cfg["mixup"], mix_rng)
                emb = net.embed_from_pool4(f, normalize=False)
            else:
                x = data.augment(cache.images[idx].float().unsqueeze(1), g).to(dev)
                emb = net.forward_head(net.forward_features(x), normalize=False)
            loss = loss_fn(emb, y) if mix_rng is None else mixed_loss(loss_fn, emb, y, y_partner, lam)
            if aux is not None:
                loss = loss + aux(emb, y)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
            if ema is not None:
                ema.update_parameters(net)
            step += 1
            with torch.no_grad():
                pred = F.linear(F.normalize(emb, dim=1), F.normalize(loss_fn.W, dim=1)).argmax(1)
            correct += int((pred == y).sum())
            seen += len(y)
            tot += loss.item() * len(y)
            bar.set_postfix(loss=f"{tot / seen:.3f}", acc=f"{correct / seen:.3f}", refresh=False)
            if a.max_steps and step >= a.max_steps:
                print(f"max-steps reached: {(time.time() - t0) / (step - epoch * steps_per_epoch):.2f} s/step", flush=True)
                return
        dt = time.time() - t0
        history.append({"epoch": epoch, "loss": tot / seen, "train_acc": correct / seen, "seconds": dt,
                        "lr": sched.get_last_lr()})
        print(json.dumps(history[-1]), flush=True)
        state = {"config": cfg, "epoch": epoch, "model": net.state_dict(), "arcface": loss_fn.state_dict(),
                 "optimizer": opt.state_dict(), "scheduler": sched.state_dict(), "history": history}
        if ema is not None:
            state["ema"] = ema.state_dict()
            if epoch == cfg["epochs"] - 1:  # finished: the average is the model export and posthoc read
                state.update(model=ema.module.state_dict(), raw_model=state["model"])
        torch.save(state, run / "last.tmp.pt")
        (run / "last.tmp.pt").replace(ck_path)
    train_seconds = sum(h["seconds"] for h in history)
    print(f"training done: {len(history)} epochs, {train_seconds:.0f}s of epoch time "
          f"({time.time() - t_start:.0f}s this invocation)", flush=True)
    (run / "config.json").write_text(json.dumps({"config": cfg, "history": history,
                                                 "train_seconds": train_seconds}, indent=2))
    if ema is not None:
        net = ema.module  # the averaged weights are the model that is scored and exported
    if not a.no_eval:
        from evaluate import embed_eval_view, evaluate_embeddings, print_report

        net = net.cpu()
        emb = embed_eval_view(net, cfg)  # from images when layers before pool4 were trained
        res = evaluate_embeddings(emb, meta, cfg["test_fold"])
        print_report(res, run.name)
        (run / "eval.json").write_text(json.dumps(res, indent=2))
        np.save(run / "embeddings_eval.npy", emb)


if __name__ == "__main__":
    main()
