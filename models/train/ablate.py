"""Cheap ablations and cross-validation on frozen features (CPU protocol "head-only").

Protocol (stated in the model card): the whole BVLC backbone (conv1..inception_5b) is
frozen; its inception_5b output is computed once per cached view (features.py views
-> feat5b-<tag>.npy). Only pooling + FC + BN + PReLU + ArcFace are trained (AdamW,
cosine, --epochs, one random augmented view per image per epoch). Evaluation as in
evaluate.py (query = held-out fold, database = the other folds; eval view).
This ranks the design choices relative to each other; absolute figures are lower than
the shipped model's (which also fine-tunes inception_5a/5b).

  python3 models/train/ablate.py --what pool,dim --fold 1 --epochs 25 --out models/train/runs/ablation.json
  python3 models/train/ablate.py --what cv --epochs 25 --include-test-fold --out models/train/runs/cv_headonly.json

An ablation chooses between designs, so it refuses to score the shipped model's test fold
(--test-fold, 5) unless --include-test-fold is given, as paired.py does; --what cv scores
every fold, that one included, so it needs the flag too.
"""
from __future__ import annotations

import argparse
import json
import math
import time
from pathlib import Path

import numpy as np
import torch

import data
from evaluate import cache_meta, evaluate_embeddings
from features import feat_path
from googlenet import GoogLeNetBackbone, load_bvlc
from layers import create_pool
from losses import ArcFaceLoss
from model import EmbeddingHead


def feat5b(tag: str, bb) -> np.ndarray:
    p = data.CACHE_DIR / f"feat5b-{tag}.npy"
    if p.exists():
        return np.load(p)
    src = np.load(feat_path(tag), mmap_mode="r")
    out = np.zeros((len(src), 1024, 7, 7), np.float16)
    with torch.inference_mode():
        for i in range(0, len(src), 128):
            out[i:i + 128] = bb.forward_from(torch.from_numpy(src[i:i + 128]).float(), "pool4").numpy()
    np.save(p, out)
    return out


class Head(torch.nn.Module):
    def __init__(self, pool: str, dim: int):
        super().__init__()
        self.pool = create_pool(pool)
        self.head = EmbeddingHead(1024, dim)

    def forward(self, f, normalize=True):
        e = self.head(self.pool(f))
        return torch.nn.functional.normalize(e, dim=1) if normalize else e


def run_variant(views, eval_feats, meta, pool="gem", dim=256, test_fold=5, epochs=25, seed=1, bs=64,
                lr=3e-3, margin=0.5, scale=64.0, classes=4):
    torch.manual_seed(seed)
    keep = meta["labels"] >= (0 if classes == 4 else 1)
    tr = np.flatnonzero((meta["folds"] != test_fold) & keep)
    y_all = torch.from_numpy(meta["labels"][tr])
    model = Head(pool, dim)
    lf = ArcFaceLoss(4, dim, scale, margin)
    opt = torch.optim.AdamW(list(model.parameters()) + list(lf.parameters()), lr=lr, weight_decay=1e-4)
    steps = epochs * (len(tr) // bs)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: min(1.0, (s + 1) / 50) * 0.5 * (1 + math.cos(math.pi * s / steps)))
    vt = torch.from_numpy(np.stack(views)) if isinstance(views, list) else views  # [V,N,1024,7,7]
    for ep in range(epochs):
        model.train()
        g = torch.Generator().manual_seed(seed * 1000 + ep)
        for idx in data.batches(len(tr), bs, g):
            vc = torch.randint(0, vt.shape[0], (len(idx),), generator=g)
            rows = torch.from_numpy(tr)[idx]
            f = vt[vc, rows].float()
            loss = lf(model(f, normalize=False), y_all[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
            sched.step()
    model.eval()
    with torch.inference_mode():
        emb = torch.cat([model(torch.from_numpy(eval_feats[i:i + 256]).float()) for i in range(0, len(eval_feats), 256)]).numpy()
    res = evaluate_embeddings(emb, meta, test_fold, n_boot=300)
    return {k: {"map": v["map"], "p10": v["p10"], "p1": v["p1"], "map_ci95": v["map_ci95"], "n_queries": v["n_queries"],
                "per_class_map": {c: b["map"] for c, b in v["per_class"].items()}} for k, v in res.items()}


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--what", default="pool,dim")
    ap.add_argument("--views", default="h0,h1,h2,h3,h4")
    ap.add_argument("--epochs", type=int, default=25)
    ap.add_argument("--out", required=True)
    ap.add_argument("--dims", default="64,128,512")
    ap.add_argument("--fold", type=int, default=5, help="query fold of the pool and dim ablations (default 5)")
    ap.add_argument("--test-fold", type=int, default=5, help="the shipped model's held-out fold (default 5)")
    ap.add_argument("--include-test-fold", action="store_true",
                    help="allow the test fold: a choice between designs must not look at it (models/train/README.md)")
    a = ap.parse_args(argv)
    variants = []
    if "pool" in a.what:
        variants += [dict(pool=p, dim=256, test_fold=a.fold) for p in ("avg", "max", "gem")]
    if "dim" in a.what:
        variants += [dict(pool="gem", dim=int(d), test_fold=a.fold) for d in a.dims.split(",")]
    if "cv" in a.what:
        variants += [dict(pool="gem", dim=256, test_fold=f) for f in (1, 2, 3, 4, 5)]
    if any(v["test_fold"] == a.test_fold for v in variants) and not a.include_test_fold:
        # Checked before the backbone loads: the refusal costs nothing, a run on the wrong fold minutes.
        ap.error(f"fold {a.test_fold} is the shipped model's test fold: an ablation that chooses a design leaves it out "
                 "(use --fold 1..4, or pass --include-test-fold to score it anyway, knowing that)")
    torch.set_num_threads(2)
    bb = GoogLeNetBackbone()
    load_bvlc(bb)
    bb.eval()
    meta = cache_meta()
    tags = [t for t in a.views.split(",") if feat_path(t).exists()]
    t0 = time.time()
    views = [feat5b(t, bb) for t in tags]
    ev = feat5b("eval", bb)
    # augmented views computed with --skip-fold lack that fold's rows: use the clean h0 rows there
    for t, v in zip(tags, views):
        marker = data.CACHE_DIR / f"feat-{t}.skipped-fold"
        if marker.exists() and "h0" in tags:
            rows = np.flatnonzero(meta["folds"] == int(marker.read_text()))
            v[rows] = views[tags.index("h0")][rows]
    print(f"5b features for {tags} + eval in {time.time() - t0:.0f}s", flush=True)
    views = torch.from_numpy(np.stack(views))
    out = {"protocol": "head-only on frozen BVLC inception_5b features", "epochs": a.epochs, "views": tags, "runs": []}
    for v in variants:
        t = time.time()
        r = run_variant(views, ev, meta, epochs=a.epochs, **v)
        r.update(v)
        r["seconds"] = time.time() - t
        out["runs"].append(r)
        print(json.dumps({**v, "3class_map": r["3class"]["map"], "3class_p10": r["3class"]["p10"],
                          "4class_map": r["4class"]["map"], "4class_p10": r["4class"]["p10"], "s": round(r["seconds"])}),
              flush=True)
        Path(a.out).write_text(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
