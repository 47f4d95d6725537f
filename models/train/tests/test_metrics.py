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


def test_one_cluster_has_no_ci_rather_than_a_zero_width_one():
    # one patient: every resample draws that patient, so [x, x] would claim certainty the data do not have
    v = np.array([1.0, 0.5, 0.0])
    assert metrics.bootstrap_ci(v, np.array(["a", "a", "a"]), n_boot=100) is None
    assert metrics.bootstrap_ci(np.array([0.7]), None, n_boot=100) is None
    assert metrics.bootstrap_ci(np.array([np.nan, np.nan]), None, n_boot=100) is None
    # two patients, one of them with NaN only: one cluster holds a value
    assert metrics.bootstrap_ci(np.array([1.0, np.nan]), np.array(["a", "b"]), n_boot=100) is None
    assert metrics.bootstrap_ci(v, np.array(["a", "a", "b"]), n_boot=100) is not None


def test_summarise_and_the_table_say_n_a_for_a_class_of_one_patient():
    pq = {"ap": np.array([1.0, 0.5, 0.8, 0.2]), "p1": np.array([1.0, 0.0, 1.0, 0.0]),
          "p5": np.array([0.6, 0.4, 0.2, 0.2]), "p10": np.array([0.5, 0.4, 0.3, 0.2])}
    res = metrics.summarise(pq, np.array([1, 1, 2, 2]), {1: "a", 2: "b"}, np.array(["P1", "P1", "P2", "P3"]), 50)
    assert res["per_class"]["a"]["map_ci95"] is None and res["per_class"]["a"]["p10_ci95"] is None
    assert res["per_class"]["b"]["map_ci95"] is not None and res["map_ci95"] is not None
    table = metrics.format_table(res, unit="patient")
    line = next(l for l in table.splitlines() if l.startswith("a "))
    assert line.count("n/a (1 patient)") == 2 and "nan" not in line
    assert "n/a" not in next(l for l in table.splitlines() if l.startswith("b "))
    res = metrics.summarise(pq, np.array([1, 2, 2, 2]), {1: "a", 2: "b"}, None, 50)
    assert "n/a (1 image)" in metrics.format_table(res, unit="image")
