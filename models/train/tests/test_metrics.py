import numpy as np
import pytest

import metrics


def test_ap_and_precision_on_hand_ranking():
    # one query (class 1); database distances make the order d0, d1, d2, d3, d4
    dist = np.array([[0.1, 0.2, 0.3, 0.4, 0.5]])
    db = np.array([1, 0, 1, 0, 1])
    r = metrics.rank_metrics(dist, np.array([1]), db, ks=(1, 2, 5))
    # relevant at ranks 1, 3, 5: AP = (1/1 + 2/3 + 3/5) / 3
    assert r["ap"][0] == pytest.approx((1 + 2 / 3 + 3 / 5) / 3)
    assert r["p1"][0] == 1.0
    assert r["p2"][0] == 0.5
    assert r["p5"][0] == pytest.approx(0.6)


def test_order_follows_distance_not_index():
    dist = np.array([[0.9, 0.1, 0.5]])
    db = np.array([0, 1, 0])
    r = metrics.rank_metrics(dist, np.array([0]), db, ks=(1,))
    # order: d1 (irrelevant), d2 (rel), d0 (rel): AP = (1/2 + 2/3) / 2
    assert r["ap"][0] == pytest.approx((1 / 2 + 2 / 3) / 2)
    assert r["p1"][0] == 0.0


def test_exclusion_removes_items_from_ranking_and_from_R():
    dist = np.array([[0.0, 0.1, 0.2, 0.3]])
    db = np.array([1, 0, 1, 1])
    ex = np.array([[True, False, False, False]])  # same patient: must not count
    r = metrics.rank_metrics(dist, np.array([1]), db, exclude=ex, ks=(1,))
    # remaining order: d1 (irr), d2 (rel), d3 (rel) -> AP = (1/2 + 2/3) / 2
    assert r["ap"][0] == pytest.approx((1 / 2 + 2 / 3) / 2)
    assert r["p1"][0] == 0.0


def test_no_relevant_items_gives_nan_and_is_skipped():
    r = metrics.rank_metrics(np.array([[0.1, 0.2]]), np.array([3]), np.array([0, 1]))
    assert np.isnan(r["ap"][0])
    s = metrics.summarise({"ap": np.array([np.nan, 1.0]), "p1": np.array([0.0, 1.0])}, np.array([3, 1]),
                          {1: "a", 3: "b"}, n_boot=50)
    assert s["map"] == 1.0


def test_euclidean_distance_and_perfect_retrieval():
    rng = np.random.default_rng(0)
    centres = np.eye(3) * 10
    db_lab = np.repeat([0, 1, 2], 20)
    q_lab = np.repeat([0, 1, 2], 5)
    db = centres[db_lab] + rng.normal(size=(60, 3))
    q = centres[q_lab] + rng.normal(size=(15, 3))
    d = metrics.pairwise_sqdist(q, db)
    np.testing.assert_allclose(d, ((q[:, None] - db[None]) ** 2).sum(-1), atol=1e-9)
    res = metrics.evaluate_split(q, q_lab, db, db_lab, {0: "a", 1: "b", 2: "c"}, n_boot=100)
    assert res["map"] == 1.0 and res["p10"] == 1.0 and res["n_queries"] == 15
    assert set(res["per_class"]) == {"a", "b", "c"}


def test_bootstrap_ci_is_patient_clustered_and_brackets_mean():
    v = np.array([1.0, 1.0, 1.0, 0.0, 0.0, 0.0])
    lo, hi = metrics.bootstrap_ci(v, np.array(["a", "a", "a", "b", "b", "b"]), n_boot=500)
    # two patients only: resampled means can only be 0, 0.5 or 1
    assert lo == 0.0 and hi == 1.0
    lo, hi = metrics.bootstrap_ci(np.full(10, 0.7), None, n_boot=100)
    assert lo == pytest.approx(0.7) and hi == pytest.approx(0.7)
