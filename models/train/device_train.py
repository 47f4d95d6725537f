"""Full fine-tuning and patient-wise cross-validation on a GPU, from the pack.

Reads models/train/.pack (pack.py), so it runs where ../shared is absent. For
each test fold (in the order given) it trains the whole network (conv1 ..
head + ArcFace) from the BVLC initialisation with on-device augmentation,
then embeds the eval view and scores the fold protocols of evaluate.py
(query = test fold, database = the other folds). Results go to --out as they
come, so a run cut short still reports its finished folds:

  results.jsonl            one line per finished fold (config, timings, figures)
  emb-<tag>-f<k>.npy        float16 embeddings of the eval view (cache row order)
  model-<tag>-f<k>.{a,b}.pt model + ArcFace state dict, float32, in two shards
                           (device file transfers are capped at 16 MB each),
                           only for folds named in --save-folds

With --checkpoint (for a CPU, where a fold takes hours) the run also keeps
  ckpt-<tag>-f<k>.pt        the fold's whole training state after every epoch;
                           the same command run again resumes there (bit for bit
                           on a CPU), skips folds already in results-<tag>.jsonl
                           and deletes the checkpoint once its fold is scored.
--stop-after-epochs N ends a call after N epochs, leaving the checkpoint.

Figures here come from the pack's 8-bit JPEG copy of the images, not from the
original files; the shipped model is scored again with eval_onnx.py.

Seeds are fixed (batch order, augmentation parameters, noise), but cuDNN
autotuning and atomic reductions make a GPU rerun agree only to within run-to-run
noise, not bit for bit; the CPU path is deterministic.

Usage (a GPU machine; several configs can share one GPU as separate processes):
  python3 models/train/device_train.py --tag a --folds 5,1,2,3,4 --epochs 40 --out $OUT
"""
from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

import data
from device_collect import RUN_ONLY  # settings that steer a run, not the training
from evaluate import embed, evaluate_embeddings
from losses import ArcFaceLoss, mix_batch, mixed_loss
from model import build_model
from pack import PACK_DIR, load_pack
from posthoc import parse_tta_sizes, tta_scores, tta_views
from train import epoch_batches, lr_lambda_factory, make_ema, param_groups, set_seed


def save_sharded(state: dict, base: Path):
    """Two torch.save shards of about equal size (<16 MB each for this model)."""
    keys = sorted(state, key=lambda k: -state[k].numel())
    a, b, sa, sb = {}, {}, 0, 0
    for k in keys:  # greedy balance
        if sa <= sb:
            a[k], sa = state[k], sa + state[k].numel()
        else:
            b[k], sb = state[k], sb + state[k].numel()
    torch.save(a, f"{base}.a.pt")
    torch.save(b, f"{base}.b.pt")


def load_sharded(base: str) -> dict:
    out = {}
    for s in ("a", "b"):
        out.update(torch.load(f"{base}.{s}.pt", map_location="cpu", weights_only=True))
    return out


def cpu_has_native_bf16(cpuinfo: str | None = None) -> bool:
    """True where the CPU computes bfloat16 in hardware (AVX-512 BF16 or AMX). Without
    it oneDNN emulates bf16 and autocast is slower than float32, not faster."""
    if cpuinfo is None:
        try:
            cpuinfo = Path("/proc/cpuinfo").read_text()
        except OSError:
            return False
    flags = set()
    for line in cpuinfo.splitlines():
        if line.startswith("flags"):
            flags.update(line.split(":", 1)[1].split())
            break
    return bool(flags & {"avx512_bf16", "amx_bf16"})


def resolve_bf16(choice: str, dev: torch.device) -> bool:
    """--bf16 auto|on|off -> whether the backbone runs under bfloat16 autocast."""
    if choice == "auto":
        return dev.type == "cuda" or cpu_has_native_bf16()
    return choice == "on"


class Paused(Exception):
    """A --stop-after-epochs call ended inside a fold; its checkpoint holds the rest."""


def save_checkpoint(path: Path, state: dict):
    tmp = path.with_suffix(".tmp")
    torch.save(state, tmp)
    tmp.replace(path)  # atomic: a kill mid-write leaves the previous epoch's checkpoint


def load_checkpoint(path: Path, cfg: dict, test_fold: int) -> dict:
    ck = torch.load(path, map_location="cpu", weights_only=False)
    diff = sorted(k for k in set(cfg) | set(ck["config"]) if k not in RUN_ONLY and cfg.get(k) != ck["config"].get(k))
    if ck["test_fold"] != test_fold or diff:
        changes = ", ".join(f"{k} {ck['config'].get(k)!r} -> {cfg.get(k)!r}" for k in diff) or "none"
        raise SystemExit(f"{path} was written by another run (fold {ck['test_fold']}; differing settings: {changes}); "
                         "delete it or use another --out/--tag")
    return ck


def train_fold(pk, imgs_dev, cfg, test_fold, dev, log, deadline=None, ckpt: Path | None = None, stop_after: int = 0):
    """Train and embed one fold. With ckpt: resume from it when it exists and write it after every
    epoch; with stop_after as well, raise Paused after that many epochs of this call."""
    set_seed(cfg["seed"])
    train_rows = np.flatnonzero(pk["folds"] != test_fold)
    test_rows = np.flatnonzero(pk["folds"] == test_fold)
    leak = data.check_patient_disjoint(pk["patients"][train_rows], pk["patients"][test_rows])
    assert not leak, f"patients in both train and test: {sorted(leak)[:5]}"
    x_rows = torch.as_tensor(pk["train_row"][train_rows], device=dev)
    labels = torch.as_tensor(pk["labels"][train_rows], device=dev)

    net = build_model(dim=cfg["dim"], pool=cfg["pool"], frozen_until=None, pretrained=False)
    init = torch.load(Path(cfg["pack"]) / "backbone.pt", map_location="cpu", weights_only=True)
    net.backbone.load_state_dict({k: v.float() for k, v in init.items()})
    net = net.to(dev).to(memory_format=torch.channels_last)
    loss_fn = ArcFaceLoss.from_config(4, cfg).to(dev)
    opt = torch.optim.AdamW(param_groups(net, loss_fn, cfg))
    spe = len(train_rows) // cfg["batch_size"]
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lr_lambda_factory(spe * cfg["epochs"],
                                                                     int(cfg["warmup_epochs"] * spe)))
    noise_gen = torch.Generator(device=dev).manual_seed(cfg["seed"])
    ema = make_ema(net, cfg.get("ema"))
    use_amp = cfg.get("bf16", dev.type == "cuda")
    t0 = time.time()
    hist = []
    start = 0
    if ckpt is not None and ckpt.exists():
        ck = load_checkpoint(ckpt, cfg, test_fold)
        net.load_state_dict(ck["net"])
        loss_fn.load_state_dict(ck["loss_fn"])
        opt.load_state_dict(ck["opt"])
        sched.load_state_dict(ck["sched"])
        noise_gen.set_state(ck["noise_gen"])
        torch.set_rng_state(ck["torch_rng"])
        if ema is not None:
            ema.load_state_dict(ck["ema"])
        hist, start = ck["hist"], ck["epoch"] + 1
        t0 -= ck["train_s"]  # train_s counts every call's training time
        log(f"[{cfg['tag']} f{test_fold}] resumed after epoch {ck['epoch']} from {ckpt}")
    for epoch in range(start, cfg["epochs"]):
        net.train()
        g = torch.Generator().manual_seed(cfg["seed"] * 1000 + epoch)
        mix_rng = np.random.default_rng([cfg["seed"], epoch]) if cfg.get("mixup") else None
        tot = torch.zeros((), device=dev)
        correct = torch.zeros((), device=dev)
        seen = 0
        for step, idx in enumerate(epoch_batches(pk["labels"][train_rows], cfg, g)):
            idx = idx.to(dev)
            x = imgs_dev[x_rows[idx]].float().div_(255.0).unsqueeze(1)
            x = data.augment(x, g, noise_gen=noise_gen).contiguous(memory_format=torch.channels_last)
            y = labels[idx]
            with torch.autocast(dev.type, dtype=torch.bfloat16, enabled=use_amp):
                if mix_rng is None:
                    fmap = net.forward_features(x)
                else:  # manifold mixup at pool4, where train.py's cached recipe mixes too
                    f, y_partner, lam = mix_batch(net.pool4_features(x), y, cfg["mixup"], mix_rng)
                    fmap = net.backbone.forward_from(f, "pool4")
            # GeM (cubes), the head and the margin maths stay in float32
            e = net.head(net.pool(fmap.float()))
            loss = loss_fn(e, y) if mix_rng is None else mixed_loss(loss_fn, e, y, y_partner, lam)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
            if ema is not None:
                ema.update_parameters(net)
            with torch.no_grad():
                pred = F.linear(F.normalize(e.float(), dim=1), F.normalize(loss_fn.W, dim=1)).argmax(1)
                correct += (pred == y).sum()
                tot += loss.detach() * len(y)
            seen += len(y)
            if cfg.get("max_steps") and step + 1 >= cfg["max_steps"]:
                break
        hist.append({"epoch": epoch, "loss": round(float(tot) / seen, 4), "acc": round(float(correct) / seen, 4),
                     "t": round(time.time() - t0, 1)})
        # every epoch on a CPU (minutes each); every fifth on a GPU, where they take seconds
        if dev.type == "cpu" or epoch % 5 == 4 or epoch == cfg["epochs"] - 1:
            log(f"[{cfg['tag']} f{test_fold}] {json.dumps(hist[-1])}")
        if ckpt is not None:
            save_checkpoint(ckpt, {"config": cfg, "test_fold": test_fold, "epoch": epoch, "hist": hist,
                                   "train_s": time.time() - t0, "net": net.state_dict(),
                                   "loss_fn": loss_fn.state_dict(), "opt": opt.state_dict(),
                                   "sched": sched.state_dict(), "noise_gen": noise_gen.get_state(),
                                   "torch_rng": torch.get_rng_state(),
                                   "ema": ema.state_dict() if ema is not None else None})
            if stop_after and epoch + 1 - start >= stop_after and epoch < cfg["epochs"] - 1:
                log(f"[{cfg['tag']} f{test_fold}] paused after epoch {epoch}; the same command resumes from {ckpt}")
                raise Paused
        if deadline and time.time() > deadline and epoch < cfg["epochs"] - 1:
            # out of time: keep what there is, marked, rather than lose the fold
            log(f"[{cfg['tag']} f{test_fold}] deadline: schedule cut after epoch {epoch}")
            hist[-1]["truncated"] = True
            break
    train_s = time.time() - t0
    if ema is not None:
        net = ema.module
    net = net.to(memory_format=torch.contiguous_format)
    emb = embed(net, imgs_dev[torch.as_tensor(pk["eval_row"], device=dev)])
    return net, loss_fn, emb, hist, train_s


def build_parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--pack", default=str(PACK_DIR))
    ap.add_argument("--out", required=True)
    ap.add_argument("--tag", default="a")
    ap.add_argument("--folds", default="5,1,2,3,4")
    ap.add_argument("--save-folds", default="5")
    ap.add_argument("--epochs", type=int, default=40)
    ap.add_argument("--batch-size", type=int, default=64)
    ap.add_argument("--lr", type=float, default=1e-4)
    ap.add_argument("--head-lr", type=float, default=1e-3)
    ap.add_argument("--weight-decay", type=float, default=1e-4)
    ap.add_argument("--warmup-epochs", type=float, default=2.0)
    ap.add_argument("--margin", type=float, default=0.5)
    ap.add_argument("--scale", type=float, default=64.0)
    ap.add_argument("--subcenters", type=int, default=1, help="ArcFace sub-centres per class (1 = plain ArcFace)")
    ap.add_argument("--label-smoothing", type=float, default=0.0, help="of the ArcFace cross-entropy (0 = off)")
    ap.add_argument("--dim", type=int, default=256)
    ap.add_argument("--pool", default="gem")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--mixup", type=float, default=0.0,
                    help="manifold mixup at pool4, lam ~ Beta(a, a) per sample (0 = off; losses/mixup.py)")
    ap.add_argument("--ema", type=float, default=0.0, help="weight EMA decay (0 = off); the EMA model is scored and saved")
    ap.add_argument("--balance", type=float, default=0.0,
                    help="class-balanced sampling power (0 = off, 0.5 = square-root, 1 = uniform over classes)")
    ap.add_argument("--tta-sizes", default="",
                    help="also score test-time augmentation (flip, these input sizes, e.g. 224,317,158) per fold")
    ap.add_argument("--bf16", choices=("auto", "on", "off"), default="auto",
                    help="bfloat16 autocast for the backbone (auto: on a GPU, and on a CPU with native bf16, "
                         "where a training step took 0.77-0.82x the float32 time on a 2-core AMD EPYC)")
    ap.add_argument("--budget-s", type=float, default=0, help="skip a fold that would not finish in this time")
    ap.add_argument("--checkpoint", action="store_true",
                    help="keep each fold's training state in --out after every epoch; rerunning the same command "
                         "resumes it and skips finished folds (for CPU runs that take hours)")
    ap.add_argument("--stop-after-epochs", type=int, default=0,
                    help="with --checkpoint: end this call after N epochs (0 = run to the end)")
    ap.add_argument("--max-steps", type=int, default=0, help="(smoke test) steps per epoch cap")
    ap.add_argument("--n-boot", type=int, default=1000)
    ap.add_argument("--threads", type=int, default=6, help="CPU threads (bootstrap, decode)")
    return ap


def main(argv=None):
    ap = build_parser()
    a = ap.parse_args(argv)
    try:
        tta_sizes = parse_tta_sizes(a.tta_sizes) if a.tta_sizes else []
    except ValueError as e:
        ap.error(str(e))
    if a.mixup < 0:
        ap.error(f"--mixup {a.mixup}: expected > 0 (0 = off)")
    if a.stop_after_epochs < 0 or (a.stop_after_epochs and not a.checkpoint):
        ap.error("--stop-after-epochs N needs --checkpoint and N >= 0")
    cfg = {k: v for k, v in vars(a).items() if k not in ("out",)}
    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    t_start = time.time()

    def log(msg):
        print(f"{time.time() - t_start:7.1f}s {msg}", flush=True)

    torch.set_num_threads(a.threads)
    dev = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if dev.type == "cuda":
        torch.backends.cudnn.benchmark = True
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True
    cfg["bf16"] = resolve_bf16(a.bf16, dev)
    pk = load_pack(a.pack)
    cfg["input_size"] = int(pk["images"].shape[-1])  # export.py exports the model at the size it was trained at
    try:
        tta_sizes = parse_tta_sizes(a.tta_sizes, cfg["input_size"]) if a.tta_sizes else []
    except ValueError as e:
        raise SystemExit(str(e)) from None
    imgs_dev = torch.from_numpy(pk["images"]).to(dev)
    log(f"pack: {len(pk['images'])} images on {dev} ({torch.cuda.get_device_name() if dev.type == 'cuda' else 'cpu'}), "
        f"backbone in {'bfloat16' if cfg['bf16'] else 'float32'}")
    save = {int(f) for f in a.save_folds.split(",") if f}
    results = out / f"results-{a.tag}.jsonl"
    # A fold cut by --budget-s is recorded (marked truncated) but not done: its checkpoint resumes it.
    done = ({rec["fold"] for rec in map(json.loads, filter(str.strip, results.read_text().splitlines()))
             if not rec.get("truncated")}
            if a.checkpoint and results.exists() else set())
    fold_s = None
    for k in [int(f) for f in a.folds.split(",")]:
        if k in done:
            log(f"[{a.tag}] fold {k} already in {results}, skipped")
            continue
        elapsed = time.time() - t_start
        if a.budget_s and fold_s and elapsed + fold_s > a.budget_s:
            log(f"[{a.tag}] fold {k} skipped: {elapsed:.0f}s used, a fold takes ~{fold_s:.0f}s, budget {a.budget_s:.0f}s")
            continue
        t0 = time.time()
        # leave time to embed and score (six TTA views take a few seconds each on a shared GPU)
        deadline = t_start + a.budget_s - (45 if tta_sizes else 20) if a.budget_s else None
        ckpt = out / f"ckpt-{a.tag}-f{k}.pt" if a.checkpoint else None
        try:
            net, loss_fn, emb, hist, train_s = train_fold(pk, imgs_dev, cfg, k, dev, log, deadline,
                                                          ckpt=ckpt, stop_after=a.stop_after_epochs)
        except Paused:
            return
        res = evaluate_embeddings(emb, pk, k, n_boot=a.n_boot)  # the pack carries evaluate's metadata keys
        np.save(out / f"emb-{a.tag}-f{k}.npy", emb.astype(np.float16))
        tta = {}
        if tta_sizes:
            net.eval()
            views = tta_views(net, imgs_dev[torch.as_tensor(pk["eval_row"], device=dev)],
                              tta_sizes, lambda m: log(f"[{a.tag} f{k}] {m}"))
            tta = tta_scores(views, pk, k)
        if k in save:
            state = {f"model.{n}": v.detach().float().cpu() for n, v in net.state_dict().items()}
            state.update({f"arcface.{n}": v.detach().float().cpu() for n, v in loss_fn.state_dict().items()})
            save_sharded(state, out / f"model-{a.tag}-f{k}")
        fold_s = time.time() - t0
        summary = {n: {m: round(r[m], 4) for m in ("map", "p10", "p1")} for n, r in res.items()}
        per_class = {n: {c: round(v["map"], 4) for c, v in r["per_class"].items()} for n, r in res.items()}
        rec = {"tag": a.tag, "fold": k, "config": cfg, "train_s": round(train_s, 1), "truncated": bool(hist[-1].get("truncated")), "fold_s": round(fold_s, 1),
               "history": hist, "summary": summary, "per_class_map": per_class,
               "ci": {n: {m: r.get(f"{m}_ci95") for m in ("map", "p10")} for n, r in res.items()}}
        if tta:
            rec["tta"] = tta
        with open(results, "a") as f:
            f.write(json.dumps(rec) + "\n")
        if ckpt is not None and not rec["truncated"]:
            ckpt.unlink(missing_ok=True)
        log(f"[{a.tag}] fold {k} done in {fold_s:.0f}s: {json.dumps(summary)}")


if __name__ == "__main__":
    main()
