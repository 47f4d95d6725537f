"""After device_train.py runs: pick the configuration and shrink what comes back.

The configuration is chosen on the cross-validation folds other than the
shipped model's test fold (mean 3-class mAP over the folds every tag
finished), so the held-out fold never takes part in the choice. Tags that
differ only in their seed are one recipe, scored by the mean of its seeds; the
winner's lowest seed is the tag shipped. The losers'
model shards are deleted (a device call returns at most 64 MB), and each tag's
embeddings are bundled into one compressed npz.

Usage: python3 models/train/device_collect.py --out $OUT [--test-fold 5] [--prior results.jsonl ...]
(--prior: an earlier run's per-fold results, e.g. results/cv-gpu-0.4.0-results.jsonl,
 so new candidates are compared with the shipped recipe without rerunning it)
Then, here (after the files came back), make a training checkpoint for export.py:
       python3 models/train/device_collect.py --out <files dir> --to-ckpt runs/<name>/last.pt
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np


def result_files(out: Path) -> list[Path]:
    return sorted(out.glob("results*.jsonl"))


def result_lines(paths: list[Path]) -> list[str]:
    return [ln for p in paths for ln in p.read_text().splitlines() if ln.strip()]


def parse_results(lines: list[str]) -> dict:
    """tag -> fold -> record. A fold whose schedule was cut by the deadline is
    left out: its figures describe a different (shorter) recipe."""
    res = {}
    for line in lines:
        r = json.loads(line)
        if not r.get("truncated"):
            res.setdefault(r["tag"], {})[r["fold"]] = r
    return res


def read_results(paths: list[Path]) -> dict:
    return parse_results(result_lines(paths))


def tta_means(folds: dict, test_fold: int = 5) -> dict:
    """{"tta": view -> mean 3-class mAP / P@10 over the folds other than the test fold} when every
    fold scored test-time augmentation; the test fold's own figures apart ("tta_test_fold"), so a
    decision on test-time augmentation is never read off the held-out fold."""
    if not folds or not all("tta" in r for r in folds.values()):
        return {}
    views = next(iter(folds.values()))["tta"]
    cv = [r for k, r in folds.items() if k != test_fold]
    out = {}
    if cv:
        out["tta"] = {v: {m: round(float(np.mean([r["tta"][v][m] for r in cv])), 4) for m in ("map", "p10")} for v in views}
    if test_fold in folds:
        out["tta_test_fold"] = {v: {m: round(float(folds[test_fold]["tta"][v][m]), 4) for m in ("map", "p10")} for v in views}
    return out


# Settings that may change between the calls of a resumed fold (device_train.py): they steer the
# run, not the training. Here, where torch is not loaded, so that both files share one list.
RUN_ONLY = frozenset({"folds", "save_folds", "budget_s", "n_boot", "threads", "tta_sizes", "pack",
                      "checkpoint", "stop_after_epochs"})
# Settings that make a recipe; a seed is one draw of it.
NOT_RECIPE = RUN_ONLY | {"tag", "seed"}


def recipe_of(folds: dict) -> str:
    cfg = next(iter(folds.values())).get("config") or {}
    return json.dumps({k: v for k, v in cfg.items() if k not in NOT_RECIPE}, sort_keys=True)


def seed_of(folds: dict) -> int:
    return int((next(iter(folds.values())).get("config") or {}).get("seed", 1))


def choose(res: dict, test_fold: int = 5):
    """(winning tag, the folds compared, mean 3-class mAP per tag, recipes).

    Tags that differ only in their seed are one recipe: the recipe is scored by the mean over its
    seeds, so that seeds of one recipe do not compete with each other (the best of several noisy
    draws would be chosen for its luck). The tag shipped for the winning recipe is named in advance:
    its lowest seed (then its first tag)."""
    common = None
    for folds in res.values():
        f = {k for k in folds if k != test_fold}
        common = f if common is None else common & f
    common = sorted(common or [])
    if not common:
        return None, [], {}, {}
    means = {t: float(np.mean([folds[k]["summary"]["3class"]["map"] for k in common])) for t, folds in res.items()}
    groups: dict[str, list[str]] = {}
    for t, folds in res.items():
        groups.setdefault(recipe_of(folds), []).append(t)
    recipes = {"+".join(sorted(tags)): {"tags": sorted(tags), "mean": float(np.mean([means[t] for t in tags]))}
               for tags in groups.values()}
    best = max(recipes.values(), key=lambda r: r["mean"])
    winner = min(best["tags"], key=lambda t: (seed_of(res[t]), t))
    return winner, common, means, recipes


def to_ckpt(out: Path, dest: Path, fold: int):
    """model-<tag>-f<fold>.{a,b}.pt + its results line -> {"config", "model", "arcface", "epoch"}."""
    import torch

    from device_train import load_sharded

    shards = sorted(out.glob(f"model-*-f{fold}.a.pt"))
    if len(shards) != 1:
        raise SystemExit(f"expected one model-*-f{fold}.a.pt in {out}, found {[p.name for p in shards]}")
    tag = shards[0].name.split("-")[1]
    rec = read_results(result_files(out)).get(tag, {}).get(fold)
    if rec is None:
        raise SystemExit(f"{tag} fold {fold}: no finished (untruncated) result in {out}; not exporting a cut-short model")
    state = load_sharded(str(shards[0])[: -len(".a.pt")])
    cfg = dict(rec["config"], mode="device", frozen_until=None, test_fold=fold, classes=4)
    ck = {"config": cfg, "epoch": len(rec["history"]) - 1, "history": rec["history"],
          "model": {k[len("model."):]: v for k, v in state.items() if k.startswith("model.")},
          "arcface": {k[len("arcface."):]: v for k, v in state.items() if k.startswith("arcface.")}}
    dest.parent.mkdir(parents=True, exist_ok=True)
    torch.save(ck, dest)
    print(json.dumps({"ckpt": str(dest), "tag": tag, "fold": fold, "epochs": ck["epoch"] + 1,
                      "pack_figures": rec["summary"]}))


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", required=True)
    ap.add_argument("--test-fold", type=int, default=5)
    ap.add_argument("--to-ckpt", help="write the winner's saved model as a train.py-style checkpoint here")
    ap.add_argument("--prior", action="append", default=[],
                    help="results jsonl of an earlier run to compare against (its tags must differ from this run's)")
    a = ap.parse_args(argv)
    out = Path(a.out)
    if not out.is_dir():
        raise SystemExit(f"--out {out}: no such directory")
    if a.to_ckpt:
        return to_ckpt(out, Path(a.to_ckpt), a.test_fold)
    # this run's lines go back as they are (cut folds included), so read them once
    lines = result_lines(result_files(out))
    fresh, earlier = parse_results(lines), read_results([Path(p) for p in a.prior])
    clash = set(fresh) & set(earlier)
    if clash:
        raise SystemExit(f"--prior: tags {sorted(clash)} are also in this run; rename them in the sweep file")
    res = earlier | fresh
    winner, common, means, recipes = choose(res, a.test_fold)
    cut = {(r["tag"], r["fold"]) for r in map(json.loads, lines) if r.get("truncated")}
    for tag in res | {t: {} for t, _ in cut}:
        # a second run over the same folder finds the first's .truncated.npy: not a fold of the recipe
        embs = sorted(p for p in out.glob(f"emb-{tag}-f*.npy") if not p.name.endswith(".truncated.npy"))
        # A fold cut by the deadline is another (shorter) recipe: its embeddings are kept apart,
        # named so, and never bundled where posthoc.py / paired.py would score them as the recipe.
        keep = [p for p in embs if (tag, int(p.stem.split("-f")[-1])) not in cut]
        for p in embs:
            if p not in keep:
                p.rename(p.with_name(p.stem + ".truncated.npy"))
        if keep:
            np.savez_compressed(out / f"emb-{tag}.npz", **{p.stem.split("-")[-1]: np.load(p) for p in keep})
            for p in keep:
                p.unlink()
        if winner is not None and tag != winner:
            for p in out.glob(f"model-{tag}-f*.pt"):
                p.unlink()
    cv = {t: {m: float(np.mean([r["summary"]["3class"][m] for r in folds.values()])) for m in ("map", "p10")}
          | {"folds": sorted(folds)} | tta_means(folds, a.test_fold) for t, folds in res.items()}
    # one file back instead of one per tag
    for p in out.glob("results-*.jsonl"):
        p.unlink()
    (out / "results.jsonl").write_text("".join(ln + "\n" for ln in lines))
    summary = {"winner": winner, "winner_from_prior_run": winner is not None and winner not in fresh,
               "compared_on_folds": common, "mean_3class_map_on_those": means, "recipes_on_those": recipes,
               "cv_all_folds": cv}
    (out / "summary.json").write_text(json.dumps(summary, indent=2))
    print(json.dumps(summary))


if __name__ == "__main__":
    main()
