"""Retrieval metrics (numpy only), as published for this benchmark.

A query is each test image, the database the training images, relevant = same
class. Ranking by Euclidean distance, ascending; ties broken by database order
(stable sort). AP = (1/R) * sum over ranks k holding a relevant item of P@k,
R = number of relevant items in the (non-excluded) database; queries with R = 0
get AP = NaN and are left out of means. P@k = relevant among the first k / k.

95% CIs: percentile bootstrap (default 1000 resamples, fixed seed) that
resamples *patients* of the query set with replacement (cluster bootstrap),
because slices of one patient are not independent. Falls back to resampling
single queries when no patient ids are given. Over fewer than two clusters there is
no interval (None): resampling one patient only ever draws that patient, and its
[x, x] would claim a certainty the data do not have.
"""
from __future__ import annotations

import numpy as np

KS = (1, 5, 10)


def pairwise_sqdist(q: np.ndarray, d: np.ndarray) -> np.ndarray:
    q = q.astype(np.float64)
    d = d.astype(np.float64)
    dist = (q * q).sum(1)[:, None] + (d * d).sum(1)[None, :] - 2.0 * q @ d.T
    return np.maximum(dist, 0.0)


def rank_metrics(dist: np.ndarray, q_lab: np.ndarray, db_lab: np.ndarray, exclude: np.ndarray | None = None,
                 ks=KS) -> dict:
    """Per-query AP and P@k. dist [Q,D]; exclude [Q,D] bool marks database items that
    must not be ranked for that query (e.g. same patient in leave-one-patient-out)."""
    dist = np.array(dist, dtype=np.float64, copy=True)
    q_lab = np.asarray(q_lab)
    db_lab = np.asarray(db_lab)
    rel = q_lab[:, None] == db_lab[None, :]
    valid = np.ones_like(rel) if exclude is None else ~np.asarray(exclude, bool)
    dist[~valid] = np.inf
    order = np.argsort(dist, axis=1, kind="stable")
    rel_sorted = np.take_along_axis(rel & valid, order, axis=1)
    n_valid = valid.sum(1)
    ranks = np.arange(1, dist.shape[1] + 1)
    hits = np.cumsum(rel_sorted, axis=1)
    R = rel_sorted.sum(1)
    with np.errstate(invalid="ignore", divide="ignore"):
        ap = (rel_sorted * hits / ranks[None, :]).sum(1) / R
    ap = np.where(R > 0, ap, np.nan)
    out = {"ap": ap}
    for k in ks:
        kk = np.minimum(k, n_valid)
        pk = np.array([hits[i, kk[i] - 1] / k if kk[i] > 0 else np.nan for i in range(len(ap))])
        out[f"p{k}"] = pk
    return out


def n_clusters(groups: np.ndarray) -> int:
    return int(len(np.unique(np.asarray(groups)))) if len(groups) else 0


def bootstrap_ci(values: np.ndarray, groups: np.ndarray | None = None, n_boot: int = 1000, seed: int = 0,
                 alpha: float = 0.05):
    """Percentile CI of the mean of `values` (NaNs dropped), resampling groups (patients);
    None when fewer than two groups hold a value (n_clusters counts them)."""
    values = np.asarray(values, np.float64)
    ok = ~np.isnan(values)
    values = values[ok]
    groups = np.arange(values.size) if groups is None else np.asarray(groups)[ok]
    if n_clusters(groups) < 2:
        return None
    rng = np.random.default_rng(seed)
    uniq, inv = np.unique(groups, return_inverse=True)
    sums = np.bincount(inv, weights=values, minlength=len(uniq))
    cnts = np.bincount(inv, minlength=len(uniq)).astype(np.float64)
    G = len(uniq)
    idx = rng.integers(0, G, size=(n_boot, G))
    means = sums[idx].sum(1) / cnts[idx].sum(1)
    lo, hi = np.quantile(means, [alpha / 2, 1 - alpha / 2])
    return (float(lo), float(hi))


def summarise(per_query: dict, q_lab: np.ndarray, class_names: dict, groups: np.ndarray | None = None,
              n_boot: int = 1000, seed: int = 0) -> dict:
    """Overall + per-class means (fractions in [0,1]) with 95% bootstrap CIs."""
    q_lab = np.asarray(q_lab)
    keys = ["ap"] + [k for k in per_query if k.startswith("p")]

    def block(mask):
        # AP is undefined for a query with no relevant item in its database: such a query is left
        # out of mAP (trec_eval's convention) but counts in P@k, so both counts are reported.
        b = {"n_queries": int(mask.sum()), "n_map_queries": int((~np.isnan(per_query["ap"][mask])).sum())}
        for k in keys:
            v = per_query[k][mask]
            name = "map" if k == "ap" else k
            b[name] = float(np.nanmean(v)) if np.any(~np.isnan(v)) else float("nan")
            g = np.arange(int(mask.sum())) if groups is None else np.asarray(groups)[mask]
            ci = bootstrap_ci(v, g, n_boot, seed)
            b[name + "_ci95"] = None if ci is None else list(ci)
            if ci is None:  # format_table's "n/a (1 patient)"
                b[name + "_clusters"] = n_clusters(g[~np.isnan(v)])
        return b

    res = block(np.ones(len(q_lab), bool))
    res["per_class"] = {}
    for c in sorted(set(q_lab.tolist())):
        res["per_class"][class_names.get(c, str(c))] = block(q_lab == c)
    return res


def evaluate_split(q_emb, q_lab, db_emb, db_lab, class_names, q_groups=None, exclude=None, n_boot=1000):
    pq = rank_metrics(pairwise_sqdist(q_emb, db_emb), q_lab, db_lab, exclude)
    return summarise(pq, q_lab, class_names, q_groups, n_boot)


def format_ci(ci, n: int | None = None, unit: str = "patient") -> str:
    """"[lo, hi]" in %, or "n/a (1 patient)" where there is no interval (bootstrap_ci's None)."""
    if ci is None:
        return "n/a" if n is None else f"n/a ({n} {unit}{'' if n == 1 else 's'})"
    return f"[{100*ci[0]:5.2f},{100*ci[1]:6.2f}]"


def format_table(res: dict, title: str = "", unit: str = "patient") -> str:
    """The per-class and overall table; `unit` names what the CIs resample (patient, image, family)."""
    lines = [title] if title else []
    lines.append(f"{'class':<12}{'n':>6}  {'mAP':>16}  {'P@1':>7}  {'P@5':>7}  {'P@10':>16}")

    def row(name, b):
        def ci(k):
            return format_ci(b[f"{k}_ci95"], b.get(f"{k}_clusters"), unit)
        return (f"{name:<12}{b['n_queries']:>6}  {100*b['map']:6.2f} {ci('map')}"
                f"  {100*b.get('p1', float('nan')):7.2f}  {100*b.get('p5', float('nan')):7.2f}"
                f"  {100*b['p10']:6.2f} {ci('p10')}")

    for name, b in res["per_class"].items():
        lines.append(row(name, b))
    lines.append(row("overall", res))
    return "\n".join(lines)
