"""Post-hoc retrieval tricks measured on finished embeddings (no training).

For each fold's embeddings (as device_train.py returns them: emb-<tag>.npz with
keys f1..f5, cache row order of the pack), query = fold k, database = the other
folds, 3-class protocol, and for each method the mAP / P@10:

  aqe<n>        alpha-query expansion: the query plus its n nearest database
                vectors weighted by similarity^alpha, re-normalised
  dba<n>+aqe<n> the same expansion applied to every database vector first
  diff<k>       one-step diffusion: a database item's score is the similarity-
                weighted mean of its similarity to the query's k nearest items

With --flip-ckpt it also scores horizontal-flip test-time augmentation of that
checkpoint (its test fold from --flip-fold) on the pack's eval view.

Usage: python3 models/train/posthoc.py --emb runs/gpu-cv/call1/emb-b.npz [--emb ...] --out results/posthoc.json
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

import metrics
from evaluate import protocols


def normalise(x: np.ndarray) -> np.ndarray:
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def aqe(Q: np.ndarray, D: np.ndarray, n: int, alpha: float = 3.0) -> np.ndarray:
    S = Q @ D.T
    idx = np.argsort(-S, 1)[:, :n]
    w = np.take_along_axis(S, idx, 1).clip(0) ** alpha
    return normalise(Q + (w[:, :, None] * D[idx]).sum(1))


def dba(D: np.ndarray, n: int, alpha: float = 3.0) -> np.ndarray:
    S = D @ D.T
    idx = np.argsort(-S, 1)[:, :n]  # each item's own vector is its first neighbour
    w = np.take_along_axis(S, idx, 1).clip(0) ** alpha
    return normalise((w[:, :, None] * D[idx]).sum(1))


def diffusion(Q: np.ndarray, D: np.ndarray, k: int, alpha: float = 3.0) -> np.ndarray:
    S = Q @ D.T
    idx = np.argsort(-S, 1)[:, :k]
    w = np.take_along_axis(S, idx, 1).clip(0) ** alpha
    return np.einsum("qk,qkd->qd", w, (D @ D.T)[idx]) / w.sum(1, keepdims=True)


def score(S: np.ndarray, q_lab: np.ndarray, db_lab: np.ndarray) -> dict:
    r = metrics.rank_metrics(-S, q_lab, db_lab)
    return {"map": round(float(np.nanmean(r["ap"])), 4), "p10": round(float(np.nanmean(r["p10"])), 4)}


def methods(Q, D):
    yield "base", Q @ D.T
    for n in (1, 3, 5, 10):
        yield f"aqe{n}", aqe(Q, D, n) @ D.T
    for n in (3, 5, 10):
        Dd = dba(D, n)
        yield f"dba{n}+aqe{n}", aqe(Q, Dd, n) @ Dd.T
    for k in (5, 10, 20, 50):
        yield f"diff{k}", diffusion(Q, D, k)


def fold_table(emb: np.ndarray, pk: dict, fold: int) -> dict:
    emb = normalise(emb.astype(np.float64))
    q, db = protocols(pk, fold)["3class"]
    return {name: score(S, pk["labels"][q], pk["labels"][db]) for name, S in methods(emb[q], emb[db])}


def flip_tta(ckpt: str, pk: dict, fold: int) -> dict:
    import torch

    from device_train import embed
    from evaluate import load_ckpt_net

    net, _ = load_ckpt_net(ckpt)
    imgs = torch.from_numpy(pk["images"])[torch.as_tensor(pk["eval_row"])]
    plain = normalise(embed(net, imgs).astype(np.float64))
    mirror = normalise(embed(net, imgs.flip(-1)).astype(np.float64))
    q, db = protocols(pk, fold)["3class"]
    lab = pk["labels"]
    return {name: score(e[q] @ e[db].T, lab[q], lab[db])
            for name, e in (("plain", plain), ("flip", mirror), ("plain+flip", normalise(plain + mirror)))}


def main(argv=None):
    from pack import PACK_DIR, load_pack

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--emb", action="append", default=[], help="emb-<tag>.npz (keys f1..f5) or emb-<tag>-f<k>.npy")
    ap.add_argument("--flip-ckpt", help="checkpoint for the flip test-time augmentation")
    ap.add_argument("--flip-fold", type=int, default=5)
    ap.add_argument("--pack", default=str(PACK_DIR))
    ap.add_argument("--out")
    a = ap.parse_args(argv)
    pk = load_pack(Path(a.pack))
    per_tag: dict[str, dict[int, np.ndarray]] = {}
    for p in map(Path, a.emb):
        if p.suffix == ".npz":
            z = np.load(p)
            per_tag.setdefault(p.stem.split("-")[1], {}).update({int(k[1:]): z[k] for k in z.files})
        else:  # emb-<tag>-f<k>.npy
            _, tag, f = p.stem.split("-")
            per_tag.setdefault(tag, {})[int(f[1:])] = np.load(p)
    out = {"protocol": "3class, query = fold k, database = the other folds", "tags": {}}
    for tag, folds in per_tag.items():
        tables = {k: fold_table(folds[k], pk, k) for k in sorted(folds)}
        mean = {m: {x: round(float(np.mean([t[m][x] for t in tables.values()])), 4) for x in ("map", "p10")}
                for m in next(iter(tables.values()))}
        out["tags"][tag] = {"folds": tables, "mean": mean}
        print(tag, json.dumps(mean), flush=True)
    if a.flip_ckpt:
        out["flip_tta"] = {"ckpt": a.flip_ckpt, "fold": a.flip_fold, **flip_tta(a.flip_ckpt, pk, a.flip_fold)}
        print("flip", json.dumps(out["flip_tta"]), flush=True)
    if a.out:
        Path(a.out).write_text(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
