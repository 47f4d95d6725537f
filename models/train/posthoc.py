"""Post-hoc retrieval tricks measured on finished embeddings (no training).

For each fold's embeddings (as device_train.py returns them: emb-<tag>.npz with
keys f1..f5, cache row order of the pack), query = fold k, database = the other
folds, 3-class protocol, and for each method the mAP / P@10:

  aqe<n>        alpha-query expansion: the query plus its n nearest database
                vectors weighted by similarity^alpha, re-normalised
  dba<n>+aqe<n> the same expansion applied to every database vector first
  diff<k>       one-step diffusion: a database item's score is the similarity-
                weighted mean of its similarity to the query's k nearest items
  pcaw<p>       PCA whitening fit on the database (eigenvalues^-p, shrunk)
  lw            whitening by the database's within-class covariance (Radenovic's
                learned whitening without the pair mining)
  pull<l>       every vector moved towards its soft-assigned class centre (the
                normalised class means of the training folds) by l, re-normalised

and a diagnosis of where the mAP is lost: the queries whose nearest class centre
is of another class ("off-centre") against the rest.

--ensemble a+b scores the concatenation of tags a's and b's normalised vectors.
With --tta CKPT@FOLD it also scores test-time augmentation of that checkpoint on
its test fold: horizontal flip and the model's input (224, or the size of a
pack made with pack.py --size) resized inside the graph to each of --tta-sizes,
alone and averaged. --gallery b=misses.jpg draws
tag b's off-centre queries (what the diagnosis counts) as one contact sheet.

Usage: python3 models/train/posthoc.py --emb runs/gpu-cv/call1/emb-b.npz [--emb ...] [--ensemble a+b] --out results/posthoc.json
"""
from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

import metrics
from data import CLASS_NAMES
from evaluate import embed, load_ckpt_net, protocols


def normalise(x: np.ndarray) -> np.ndarray:
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def ensemble(parts: list[np.ndarray]) -> np.ndarray:
    """Concatenated normalised vectors: cosine of the result = mean of the parts' cosines."""
    return np.concatenate([normalise(p.astype(np.float64)) for p in parts], 1) / np.sqrt(len(parts))


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


def _whitener(mu: np.ndarray, C: np.ndarray, power: float, shrink: float):
    """X -> normalised (X - mu) C^-power, C's eigenvalues shrunk by shrink x their mean."""
    w, V = np.linalg.eigh(C)
    P = V @ np.diag((w + shrink * w.mean()) ** -power) @ V.T
    return lambda X: normalise((X - mu) @ P)


def pca_whiten(D: np.ndarray, power: float = 0.5, shrink: float = 1.0):
    mu = D.mean(0)
    return _whitener(mu, np.cov((D - mu).T), power, shrink)


def within_class_whiten(D: np.ndarray, y: np.ndarray, shrink: float = 1.0):
    big = [c for c in np.unique(y) if (y == c).sum() > 1]  # a lone item has no spread to measure
    C = sum(np.cov(D[y == c].T) * (y == c).sum() for c in big) / sum((y == c).sum() for c in big)
    return _whitener(D.mean(0), C, 0.5, shrink)


def class_centres(emb: np.ndarray, labels: np.ndarray, n_classes: int) -> np.ndarray:
    """Row c = the normalised mean of class c's vectors; NaN where class c has none
    (a fold without that class), which centre_pull skips."""
    W = np.full((n_classes, emb.shape[1]), np.nan)
    for c in range(n_classes):
        if (labels == c).any():
            W[c] = emb[labels == c].mean(0)
    return normalise(W)


def centre_pull(X: np.ndarray, W: np.ndarray, lam: float, s: float = 64.0) -> np.ndarray:
    W = W[~np.isnan(W).any(1)]
    c = X @ W.T
    p = np.exp(s * (c - c.max(1, keepdims=True)))
    return normalise(X + lam * (p / p.sum(1, keepdims=True)) @ W)


def diagnose(Q, D, q_lab, db_lab, q_pat, W, q_rows=None) -> dict:
    """Split the queries by whether their nearest class centre (among the classes
    present in the database) is their own class, and say where the AP is lost.
    With q_rows (the queries' pack rows) it also lists the off-centre queries as
    [row, true class, nearest centre's class], which gallery() draws."""
    cls = np.unique(db_lab)
    pred = cls[(Q @ W[cls].T).argmax(1)]
    off = pred != q_lab
    ap = np.asarray(metrics.rank_metrics(-(Q @ D.T), q_lab, db_lab)["ap"])
    loss = 1 - ap
    _, per_patient = np.unique(q_pat[off], return_counts=True)
    return {"queries": int(len(ap)), "off_centre": int(off.sum()), "off_centre_rate": round(float(off.mean()), 4),
            "map_on_centre": round(float(ap[~off].mean()), 4),
            "map_off_centre": round(float(ap[off].mean()), 4) if off.any() else None,
            "loss_share_off_centre": round(float(loss[off].sum() / loss.sum()), 4) if loss.sum() else 0.0,
            "patients_off_centre": int(len(per_patient)), "patients": int(len(np.unique(q_pat))),
            "off_centre_share_of_top3_patients": round(float(np.sort(per_patient)[::-1][:3].sum() / off.sum()), 4)
            if off.any() else 0.0,
            # true class -> nearest centre's class -> queries
            "confusion": {int(t): {int(c): int(((q_lab == t) & (pred == c)).sum()) for c in cls}
                          for t in np.unique(q_lab)},
            **({"off_centre_rows": [[int(r), int(t), int(c)] for r, t, c in zip(q_rows[off], q_lab[off], pred[off])]}
               if q_rows is not None else {})}


def gallery(off_rows: list, pk: dict, path: Path, cols: int = 14, size: int = 96) -> int:
    """A contact sheet of the off-centre queries (diagnose's off_centre_rows, any
    folds), a patient's slices side by side, each tile labelled true class >
    nearest centre's class and an anonymous patient number (never the dataset's
    ids). Images are the pack's eval view. Returns the number of patients."""
    from PIL import Image, ImageDraw

    rows = sorted((str(pk["patients"][row]), row, true, nearest) for row, true, nearest in off_rows)
    patient_no = {}
    for patient, *_ in rows:
        patient_no.setdefault(patient, len(patient_no) + 1)
    sheet = Image.new("L", (cols * size, max(1, -(-len(rows) // cols)) * size), 0)
    draw = ImageDraw.Draw(sheet)
    for n, (patient, row, true, nearest) in enumerate(rows):
        tile = Image.fromarray(pk["images"][pk["eval_row"][row]]).resize((size, size), Image.BILINEAR)
        x, y = (n % cols) * size, (n // cols) * size
        sheet.paste(tile, (x, y))
        draw.text((x + 2, y + 1), f"{CLASS_NAMES[true][:4]}>{CLASS_NAMES[nearest][:4]}", fill=255)
        draw.text((x + 2, y + size - 11), f"P{patient_no[patient]}", fill=255)
    path.parent.mkdir(parents=True, exist_ok=True)
    sheet.save(path, **({"quality": 85} if path.suffix.lower() in (".jpg", ".jpeg") else {}))
    return len(patient_no)


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


def class_aware(Q, D, db_lab, W):
    for p in (0.25, 0.5):
        f = pca_whiten(D, p)
        yield f"pcaw{p}", f(Q) @ f(D).T
    f = within_class_whiten(D, db_lab)
    yield "lw", f(Q) @ f(D).T
    for lam in (0.5, 1.0, 2.0):
        yield f"pull{lam}", centre_pull(Q, W, lam) @ centre_pull(D, W, lam).T


def fold_table(emb: np.ndarray, pk: dict, fold: int) -> tuple[dict, dict]:
    """(method -> figures, diagnosis). The class centres come from the training
    folds (all four classes), i.e. what the model was trained on."""
    emb = normalise(emb.astype(np.float64))
    q, db = protocols(pk, fold)["3class"]
    lab = pk["labels"]
    train = np.flatnonzero(pk["folds"] != fold)
    W = class_centres(emb[train], lab[train], int(lab.max()) + 1)
    Q, D = emb[q], emb[db]
    table = {name: score(S, lab[q], lab[db]) for name, S in methods(Q, D)}
    table.update({name: score(S, lab[q], lab[db]) for name, S in class_aware(Q, D, lab[db], W)})
    return table, diagnose(Q, D, lab[q], lab[db], pk["patients"][q], W, q_rows=np.asarray(q))


class View(torch.nn.Module):
    """The net on a mirrored and/or resized copy of its input (the model's own size,
    224 for 0.4.0). Resizing that tensor (not the original image) is what a Resize
    node in the exported graph would do, so the input contract stays as it is."""

    def __init__(self, net, size: int = 224, flip: bool = False):
        super().__init__()
        self.net, self.size, self.flip = net, size, flip

    def forward(self, x):
        x = x.flip(-1) if self.flip else x
        if self.size != x.shape[-1]:
            x = F.interpolate(x, size=(self.size, self.size), mode="bilinear", align_corners=False,
                              antialias=self.size < x.shape[-1])
        return self.net(x)


def tta_views(net, images_u8: torch.Tensor, sizes: list[int], log=lambda msg: None) -> dict[str, np.ndarray]:
    """"<size>" and "<size>+flip" -> L2-normalised float64 embeddings."""
    out = {}
    for size in sizes:
        for flip in (False, True):
            t0 = time.time()
            name = f"{size}{'+flip' if flip else ''}"
            out[name] = normalise(embed(View(net, size, flip), images_u8).astype(np.float64))
            log(f"view {name}: {len(out[name])} images in {time.time() - t0:.0f}s ({len(out)}/{2 * len(sizes)})")
    return out


def parse_tta_sizes(text: str, native: int | None = None) -> list[int]:
    """"224,317,158" -> [224, 317, 158]; ValueError naming the problem otherwise.
    native: the input size the model was trained at (the pack's), which must be one
    of the views because every average is compared with it; None checks the syntax only
    (before the pack, and so its size, is known)."""
    try:
        sizes = [int(x) for x in text.split(",")]
    except ValueError:
        raise ValueError(f"--tta-sizes {text}: expected whole numbers, e.g. 224,317,158") from None
    if any(n < 1 for n in sizes):
        raise ValueError(f"--tta-sizes {text}: expected sizes in pixels, e.g. 224,317,158")
    if native is not None and native not in sizes:
        raise ValueError(f"--tta-sizes {text} must include {native}, the model's own input size "
                         f"(the size of the pack's images)")
    return sizes


def tta_scores(views: dict[str, np.ndarray], pk: dict, fold: int) -> dict:
    """3-class figures of each view alone, then of the averages: plain+flip at the
    model's own size (the pack's), all sizes, all sizes with their flips."""
    sizes = [n for n in views if "+" not in n]
    native = pk["images"].shape[-1]

    def avg(names):
        return normalise(sum(views[n] for n in names))

    combos = dict(views)
    combos[f"{native} + flip"] = avg([f"{native}", f"{native}+flip"])
    if len(sizes) > 1:
        combos["all sizes"] = avg(sizes)
        combos["all sizes + flips"] = avg(list(views))
    q, db = protocols(pk, fold)["3class"]
    lab = pk["labels"]
    return {name: score(e[q] @ e[db].T, lab[q], lab[db]) for name, e in combos.items()}


def tta(ckpt: str, pk: dict, fold: int, sizes: list[int], save_dir: Path | None = None) -> dict:
    net, _ = load_ckpt_net(ckpt)
    views = tta_views(net, torch.from_numpy(pk["images"])[torch.as_tensor(pk["eval_row"])], sizes,
                      lambda m: print(f"tta {Path(ckpt).parent.name} fold {fold}: {m}", flush=True))
    if save_dir:  # as emb-v<size>[f]-f<fold>.npy, which --emb reads back as tag v<size>[f]
        save_dir.mkdir(parents=True, exist_ok=True)
        for name, e in views.items():
            np.save(save_dir / f"emb-v{name.replace('+flip', 'f')}-f{fold}.npy", e.astype(np.float16))
    return tta_scores(views, pk, fold)


def main(argv=None):
    from export import input_size
    from pack import PACK_DIR, load_pack

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--emb", action="append", default=[], help="emb-<tag>.npz (keys f1..f5) or emb-<tag>-f<k>.npy")
    ap.add_argument("--ensemble", action="append", default=[], help="tags joined by +, e.g. a+b")
    ap.add_argument("--tta", action="append", default=[], metavar="CKPT@FOLD",
                    help="score test-time augmentation of this checkpoint on its test fold (repeatable)")
    ap.add_argument("--tta-sizes", default="",
                    help="input sizes, comma-separated, including the pack's own (default: that size alone)")
    ap.add_argument("--save-views", help="write each TTA view's embeddings here (emb-v<size>[f]-f<fold>.npy), "
                    "e.g. to score an ensemble with another run via --emb")
    ap.add_argument("--gallery", metavar="TAG=IMAGE",
                    help="draw that tag's off-centre queries, all its folds, as a contact sheet (.png or .jpg)")
    ap.add_argument("--pack", default=str(PACK_DIR))
    ap.add_argument("--out")
    a = ap.parse_args(argv)
    gallery_tag, _, gallery_path = (a.gallery or "").partition("=")
    if a.gallery and (not gallery_tag or Path(gallery_path).suffix.lower() not in (".png", ".jpg", ".jpeg")):
        raise SystemExit(f"--gallery {a.gallery}: expected TAG=IMAGE with a .png or .jpg image, e.g. b=gallery.jpg")
    if a.tta_sizes:  # the syntax now; the pack's own size once the pack is loaded
        try:
            parse_tta_sizes(a.tta_sizes)
        except ValueError as e:
            raise SystemExit(str(e)) from None
    ttas = []
    for spec in a.tta:  # checked before the (long) scoring starts
        ckpt, _, fold = spec.rpartition("@")
        if not ckpt or not fold.isdigit():
            raise SystemExit(f"--tta {spec}: expected CKPT@FOLD, e.g. runs/gpu-b-f5/last.pt@5")
        if not Path(ckpt).is_file():
            raise SystemExit(f"--tta {spec}: no checkpoint at {ckpt}")
        ttas.append({"ckpt": ckpt, "fold": int(fold)})
    pk = load_pack(Path(a.pack))
    native = int(pk["images"].shape[-1])
    try:
        sizes = parse_tta_sizes(a.tta_sizes or str(native), native)
    except ValueError as e:
        raise SystemExit(str(e)) from None
    for t in ttas:
        cfg = torch.load(t["ckpt"], map_location="cpu", weights_only=False)["config"]
        held = cfg.get("test_fold")
        if held is not None and int(held) != t["fold"]:  # scored on a fold it was trained on: a leak
            raise SystemExit(f"--tta {t['ckpt']}@{t['fold']}: that model was trained without fold {held}, "
                             f"so fold {t['fold']} is in its training data")
        trained = input_size(cfg)
        if trained != native:  # the views would start from images of another size: plausible, wrong figures
            raise SystemExit(f"--tta {t['ckpt']}: the model was trained at {trained}, the pack holds "
                             f"{native}x{native} images (pack.py --size {trained} makes one at its size)")
    per_tag: dict[str, dict[int, np.ndarray]] = {}
    for p in map(Path, a.emb):
        if p.suffix == ".npz":
            z = np.load(p)
            per_tag.setdefault(p.stem.split("-")[1], {}).update({int(k[1:]): z[k] for k in z.files})
        else:  # emb-<tag>-f<k>.npy
            _, tag, f = p.stem.split("-")
            per_tag.setdefault(tag, {})[int(f[1:])] = np.load(p)
    for combo in a.ensemble:
        tags = combo.split("+")
        missing = [t for t in tags if t not in per_tag]
        if missing:
            raise SystemExit(f"--ensemble {combo}: no embeddings for {missing} (have {sorted(per_tag)})")
        common = set.intersection(*(set(per_tag[t]) for t in tags))
        per_tag[combo] = {k: ensemble([per_tag[t][k] for t in tags]) for k in sorted(common)}
    if a.gallery and gallery_tag not in per_tag:
        raise SystemExit(f"--gallery {a.gallery}: no embeddings for tag {gallery_tag} (have {sorted(per_tag)})")
    out = {"protocol": "3class, query = fold k, database = the other folds", "tags": {}}
    for tag, folds in per_tag.items():
        tables, diags = {}, {}
        for k in sorted(folds):
            tables[k], diags[k] = fold_table(folds[k], pk, k)
        mean = {m: {x: round(float(np.mean([t[m][x] for t in tables.values()])), 4) for x in ("map", "p10")}
                for m in next(iter(tables.values()))}
        out["tags"][tag] = {"folds": tables, "mean": mean, "diagnosis": diags}
        print(tag, json.dumps(mean), flush=True)
        print(tag, "off-centre queries per fold:", {k: (d["off_centre"], d["queries"]) for k, d in diags.items()},
              flush=True)
        if tag == gallery_tag:
            rows = [r for d in diags.values() for r in d["off_centre_rows"]]
            n_pat = gallery(rows, pk, Path(gallery_path))
            print(f"gallery: {len(rows)} off-centre queries of {n_pat} patients -> {gallery_path}", flush=True)
    for t in ttas:
        out.setdefault("tta", []).append({**t, **tta(t["ckpt"], pk, t["fold"], sizes,
                                                                Path(a.save_views) if a.save_views else None)})
        print("tta", json.dumps(out["tta"][-1]), flush=True)
    if a.out:
        Path(a.out).write_text(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
