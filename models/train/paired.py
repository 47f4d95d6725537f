"""Paired comparison of two training recipes over the same test folds.

Each arm gives one run per test fold: a train.py run directory (its
embeddings_eval.npy), a .npy (device_train.py's emb-<tag>-f<k>.npy), or a .npz
with one array per fold named f<k> (device_collect's emb-<tag>.npz); rows in
cache order. A fold given
more than once in an arm means several runs of it (seeds): their per-query AP and
P@10 are averaged before the arms are compared, so seed noise is averaged too.
RUN1+RUN2 is an ensemble of runs: their L2-normalised vectors concatenated (the
mean of their cosine similarities, as posthoc.py --ensemble), e.g. to ask whether a
second model adds to the first.
Both arms are scored on exactly the same queries (3-class Figshare protocol of evaluate.py:
query = the fold, database = the other folds), so the difference is measured
query by query:

  per fold    mAP and P@10 of each arm and B - A
  pooled      all folds' queries together: mean AP / P@10 of each arm, and the
              mean per-query difference B - A with a 95 % CI that resamples
              patients (a patient's slices move together, as in metrics.py;
              families under --protocol 3class_family, evaluate.cluster_key)
  per class   the pooled difference per tumour class

Why pooled and paired: with five folds, fold-to-fold spread (1-2 mAP points for
this model) hides a real difference of a point; pairing each query with itself
removes the spread that comes from which patients a fold holds.

Usage:
  python3 models/train/paired.py --a 5=runs/ship-v1 --a 1=runs/cv-fold1 \\
      --b 5=runs/res320/f5 --b 1=runs/res320/f1 --names 224,320 --out results/x.json
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

import data
import metrics
from evaluate import cache_meta, cluster_key, protocols
from posthoc import ensemble


Run = tuple[Path, ...]  # one run, or the parts of an ensemble


def parse_runs(items: list[str], flag: str) -> dict[int, list[Run]]:
    """["5=runs/x", "5=runs/x-s2", "1=a.npy+b.npy"] -> {5: [(runs/x/embeddings_eval.npy,), (runs/x-s2/...,)],
    1: [(a.npy, b.npy)]}; ValueError naming the item."""
    out: dict[int, list[Run]] = {}
    for it in items:
        fold, sep, paths = it.partition("=")
        parts = paths.split("+")
        if not sep or not fold.strip().isdigit() or not all(parts):
            raise ValueError(f"{flag} {it!r}: expected FOLD=RUN_DIR (or RUN+RUN for an ensemble), e.g. 5=runs/ship-v1")
        run = tuple(p / "embeddings_eval.npy" if p.is_dir() else p for p in map(Path, parts))
        if len(set(run)) < len(run):
            raise ValueError(f"{flag} {it!r}: an ensemble of a run with itself is that run")
        runs = out.setdefault(int(fold), [])
        if run in runs:
            raise ValueError(f"{flag}: {'+'.join(map(str, run))} given twice for fold {fold}")
        runs.append(run)
    return out


def load_embeddings(path: Path, fold: int) -> np.ndarray:
    if path.suffix == ".npz":
        z = np.load(path)
        if f"f{fold}" not in z.files:
            raise KeyError(f"{path} has no array f{fold} (it has {', '.join(z.files)})")
        return z[f"f{fold}"].astype(np.float32)
    return np.load(path).astype(np.float32)


def load_run(run: Run, fold: int) -> np.ndarray:
    """One run's embeddings; an ensemble's as posthoc.py --ensemble makes them."""
    if len(run) == 1:
        return load_embeddings(run[0], fold)
    parts = [load_embeddings(p, fold) for p in run]
    if len({len(e) for e in parts}) > 1:
        raise ValueError(f"the ensemble {'+'.join(map(str, run))} has parts of {[len(e) for e in parts]} rows")
    return ensemble(parts).astype(np.float32)


def per_query(embs, meta: dict, fold: int, protocol: str = "3class") -> dict:
    """Per-query AP and P@10 of one run's embeddings, or their mean over several runs."""
    q, db = protocols(meta, fold)[protocol]
    runs = [embs] if isinstance(embs, np.ndarray) else list(embs)
    pqs = [metrics.rank_metrics(metrics.pairwise_sqdist(e[q], e[db]), meta["labels"][q], meta["labels"][db])
           for e in runs]
    return {"rows": q, "runs": len(runs), "ap": np.mean([p["ap"] for p in pqs], 0),
            "p10": np.mean([p["p10"] for p in pqs], 0)}


def ci_list(ci):
    """bootstrap_ci's interval as JSON keeps it: a list, or None where there is none (one patient)."""
    return None if ci is None else list(ci)


def compare(emb_a: dict, emb_b: dict, meta: dict, n_boot: int = 2000, protocol: str = "3class") -> dict:
    """emb_a / emb_b: fold -> embeddings [N,D] (cache rows), or a list of them (several runs)."""
    if sorted(emb_a) != sorted(emb_b):
        raise ValueError(f"the arms cover different folds: {sorted(emb_a)} vs {sorted(emb_b)}")
    folds = sorted(emb_a)
    per_fold, pooled = {}, {"rows": [], "a_ap": [], "b_ap": [], "a_p10": [], "b_p10": []}
    for k in folds:
        a, b = per_query(emb_a[k], meta, k, protocol), per_query(emb_b[k], meta, k, protocol)
        per_fold[str(k)] = {"n_queries": int(len(a["rows"])), "a_runs": a["runs"], "b_runs": b["runs"],
                            "a_map": float(np.nanmean(a["ap"])), "b_map": float(np.nanmean(b["ap"])),
                            "a_p10": float(np.nanmean(a["p10"])), "b_p10": float(np.nanmean(b["p10"]))}
        per_fold[str(k)]["d_map"] = per_fold[str(k)]["b_map"] - per_fold[str(k)]["a_map"]
        per_fold[str(k)]["d_p10"] = per_fold[str(k)]["b_p10"] - per_fold[str(k)]["a_p10"]
        pooled["rows"].append(a["rows"])
        for arm, r in (("a", a), ("b", b)):
            pooled[f"{arm}_ap"].append(r["ap"])
            pooled[f"{arm}_p10"].append(r["p10"])
    rows = np.concatenate(pooled["rows"])
    cat = {k: np.concatenate(v) for k, v in pooled.items() if k != "rows"}
    groups, labels = meta[cluster_key(protocol)][rows], meta["labels"][rows]

    def block(mask):
        d_ap = cat["b_ap"][mask] - cat["a_ap"][mask]
        d_p10 = cat["b_p10"][mask] - cat["a_p10"][mask]
        return {"n_queries": int(mask.sum()),
                "a_map": float(np.nanmean(cat["a_ap"][mask])), "b_map": float(np.nanmean(cat["b_ap"][mask])),
                "d_map": float(np.nanmean(d_ap)),
                "d_map_ci95": ci_list(metrics.bootstrap_ci(d_ap, groups[mask], n_boot)),
                "a_p10": float(np.nanmean(cat["a_p10"][mask])), "b_p10": float(np.nanmean(cat["b_p10"][mask])),
                "d_p10": float(np.nanmean(d_p10)),
                "d_p10_ci95": ci_list(metrics.bootstrap_ci(d_p10, groups[mask], n_boot)),
                "queries_better": int((d_ap > 1e-12).sum()), "queries_worse": int((d_ap < -1e-12).sum())}

    out = {"protocol": protocol, "folds": folds, "per_fold": per_fold,
           "pooled": block(np.ones(len(rows), bool)), "per_class": {}}
    for c in sorted(set(labels.tolist())):
        out["per_class"][data.CLASS_NAMES[c]] = block(labels == c)
    return out


def format_report(res: dict, names: tuple[str, str]) -> str:
    a, b = names
    pct = lambda x: f"{100 * x:6.2f}"  # noqa: E731
    lines = [f"{'fold':<12}{'n':>6}  {'mAP ' + a:>12}{'mAP ' + b:>12}{'diff':>8}  {'P@10 ' + a:>12}{'P@10 ' + b:>12}{'diff':>8}"]
    for k, r in res["per_fold"].items():
        lines.append(f"{k:<12}{r['n_queries']:>6}  {pct(r['a_map']):>12}{pct(r['b_map']):>12}{pct(r['d_map']):>8}  "
                     f"{pct(r['a_p10']):>12}{pct(r['b_p10']):>12}{pct(r['d_p10']):>8}")
    for name, r in [("pooled", res["pooled"])] + list(res["per_class"].items()):
        ci = lambda k: "n/a" if r[k] is None else f"[{100 * r[k][0]:.2f}, {100 * r[k][1]:.2f}]"  # noqa: E731
        lines.append(f"{name:<12}{r['n_queries']:>6}  {pct(r['a_map']):>12}{pct(r['b_map']):>12}{pct(r['d_map']):>8} "
                     f"{ci('d_map_ci95')}  {pct(r['a_p10']):>12}{pct(r['b_p10']):>12}{pct(r['d_p10']):>8} "
                     f"{ci('d_p10_ci95')}")
    return "\n".join(lines)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--a", action="append", default=[], metavar="FOLD=RUN", help="arm A, one per fold")
    ap.add_argument("--b", action="append", default=[], metavar="FOLD=RUN", help="arm B, one per fold")
    ap.add_argument("--names", default="A,B", help="labels of the two arms, comma-separated")
    ap.add_argument("--protocol", default="3class", choices=("3class", "3class_family", "4class"))
    ap.add_argument("--n-boot", type=int, default=2000)
    ap.add_argument("--out", help="write the result JSON here")
    ap.add_argument("--test-fold", type=int, default=5, help="the shipped model's held-out fold (default 5)")
    ap.add_argument("--include-test-fold", action="store_true",
                    help="allow the test fold: a choice between recipes must not look at it (models/train/README.md)")
    a = ap.parse_args(argv)
    names = tuple(a.names.split(","))
    if len(names) != 2 or not all(names):
        ap.error(f"--names {a.names!r}: expected two labels, e.g. 224,320")
    try:
        runs = {"a": parse_runs(a.a, "--a"), "b": parse_runs(a.b, "--b")}
    except ValueError as e:
        ap.error(str(e))
    if not runs["a"]:
        ap.error("give each arm at least one fold (--a FOLD=RUN --b FOLD=RUN)")
    if not a.include_test_fold and any(a.test_fold in r for r in runs.values()):
        ap.error(f"fold {a.test_fold} is the shipped model's test fold: a comparison that chooses a recipe leaves it out "
                 "(pass --include-test-fold to report it anyway, knowing that)")
    missing = sorted({str(p) for arm in runs.values() for rs in arm.values() for r in rs for p in r if not p.exists()})
    if missing:
        ap.error("no embeddings at " + ", ".join(missing))
    meta = cache_meta()
    try:
        emb = {arm: {k: [load_run(run, k) for run in rs] for k, rs in r.items()} for arm, r in runs.items()}
    except (KeyError, ValueError) as e:
        ap.error(str(e.args[0]))
    for arm, r in emb.items():
        for k, es in r.items():
            for run, e in zip(runs[arm][k], es):
                if e.shape[0] != len(meta["labels"]):
                    ap.error(f"{'+'.join(map(str, run))}: {e.shape[0]} rows, the cache has {len(meta['labels'])}")
    try:
        res = compare(emb["a"], emb["b"], meta, a.n_boot, a.protocol)
    except ValueError as e:
        ap.error(str(e))
    res["arms"] = {names[i]: {k: ["+".join(map(str, run)) for run in rs] for k, rs in runs[arm].items()}
                   for i, arm in enumerate("ab")}
    print(format_report(res, names))
    if a.out:
        Path(a.out).write_text(json.dumps(res, indent=2))
    print(json.dumps({"d_map": res["pooled"]["d_map"], "d_map_ci95": res["pooled"]["d_map_ci95"],
                      "d_p10": res["pooled"]["d_p10"], "d_p10_ci95": res["pooled"]["d_p10_ci95"]}))


if __name__ == "__main__":
    main()
