"""paired.py: the query-by-query comparison of two recipes over the same folds."""
from pathlib import Path

import numpy as np
import pytest

import data
import metrics
from paired import compare, main, parse_runs


def _meta(n_per=12, folds=(1, 2)):
    """Figshare-only rows: 3 tumour classes x folds, 2 slices per patient."""
    labels, fold, pat = [], [], []
    for k in folds:
        for c in (1, 2, 3):
            for i in range(n_per):
                labels.append(c)
                fold.append(k)
                pat.append(f"fig:{k}-{c}-{i // 2}")
    n = len(labels)
    return {"labels": np.array(labels), "folds": np.array(fold), "patients": np.array(pat),
            "families": np.array(pat), "sources": np.array([data.FIGSHARE] * n)}


def _noisy(meta, noise, seed):
    rng = np.random.default_rng(seed)
    centres = np.eye(8)[meta["labels"]]
    return (centres + noise * rng.standard_normal(centres.shape)).astype(np.float32)


def test_an_arm_against_itself_differs_by_exactly_zero():
    meta = _meta()
    e = _noisy(meta, 0.8, 0)
    res = compare({1: e, 2: e}, {1: e, 2: e}, meta, n_boot=200)
    p = res["pooled"]
    assert p["d_map"] == 0 and p["d_map_ci95"] == [0.0, 0.0]
    assert p["queries_better"] == p["queries_worse"] == 0
    assert p["n_queries"] == len(meta["labels"])


def test_difference_is_the_per_query_gain_of_b_over_a():
    meta = _meta()
    a = _noisy(meta, 0.9, 1)
    b = _noisy(meta, 0.0, 2)  # every class a point: perfect retrieval
    res = compare({1: a, 2: a}, {1: b, 2: b}, meta, n_boot=200)
    # A's pooled mAP computed directly: query = fold k, database = the other fold
    aps = []
    for k, other in ((1, 2), (2, 1)):
        q, d = meta["folds"] == k, meta["folds"] == other
        aps.append(metrics.rank_metrics(metrics.pairwise_sqdist(a[q], a[d]), meta["labels"][q], meta["labels"][d])["ap"])
    a_map = float(np.mean(np.concatenate(aps)))
    p = res["pooled"]
    assert p["b_map"] == pytest.approx(1.0) and p["a_map"] == pytest.approx(a_map)
    assert p["d_map"] == pytest.approx(1.0 - a_map)
    assert 0 < p["d_map_ci95"][0] <= p["d_map"] <= p["d_map_ci95"][1]
    assert p["queries_worse"] == 0 and p["queries_better"] > 0
    assert res["per_fold"]["1"]["d_map"] == pytest.approx(1.0 - float(np.mean(aps[0])))
    assert set(res["per_class"]) == {"meningioma", "glioma", "pituitary"}


def test_arms_must_cover_the_same_folds():
    meta = _meta()
    e = _noisy(meta, 0.5, 0)
    with pytest.raises(ValueError, match="different folds"):
        compare({1: e, 2: e}, {1: e}, meta)


@pytest.mark.parametrize("item,msg", [("5", "FOLD=RUN_DIR"), ("x=runs/a", "FOLD=RUN_DIR"), ("5=", "FOLD=RUN_DIR"),
                                      ("5=a+", "FOLD=RUN_DIR"), ("5=a.npy+a.npy", "with itself")])
def test_run_arguments_are_checked(item, msg):
    with pytest.raises(ValueError, match=msg):
        parse_runs([item], "--a")
    with pytest.raises(ValueError, match="twice"):
        parse_runs(["5=a", "5=a"], "--a")
    assert parse_runs(["5=a.npy", "5=b.npy", "1=c.npy", "1=a.npy+b.npy"], "--a") == {
        5: [(Path("a.npy"),), (Path("b.npy"),)], 1: [(Path("c.npy"),), (Path("a.npy"), Path("b.npy"))]}


def test_a_run_directory_means_its_embeddings(tmp_path):
    assert parse_runs([f"3={tmp_path}"], "--a") == {3: [(tmp_path / "embeddings_eval.npy",)]}
    f = tmp_path / "e.npy"
    assert parse_runs([f"3={f}"], "--a") == {3: [(f,)]}
    assert parse_runs([f"3={tmp_path}+{f}"], "--a") == {3: [(tmp_path / "embeddings_eval.npy", f)]}


def test_an_ensemble_is_its_parts_normalised_and_concatenated(tmp_path):
    from paired import load_run

    a = np.array([[3.0, 4.0], [0.0, 2.0]], np.float16)
    b = np.array([[1.0, 0.0, 0.0], [0.0, 0.0, 5.0]], np.float16)
    np.save(tmp_path / "a.npy", a)
    np.savez(tmp_path / "b.npz", f2=b)
    e = load_run((tmp_path / "a.npy", tmp_path / "b.npz"), 2)
    np.testing.assert_allclose(e * np.sqrt(2), [[0.6, 0.8, 1, 0, 0], [0, 1, 0, 0, 1]], atol=1e-6)
    # so the ensemble's similarity is the mean of its parts' cosine similarities
    np.testing.assert_allclose(e[0] @ e[1], (0.8 + 0.0) / 2, atol=1e-6)
    np.testing.assert_array_equal(load_run((tmp_path / "a.npy",), 2), a.astype(np.float32))  # one part: as stored
    np.save(tmp_path / "c.npy", np.ones((3, 2), np.float16))
    with pytest.raises(ValueError, match=r"parts of \[2, 3\] rows"):
        load_run((tmp_path / "a.npy", tmp_path / "c.npy"), 2)


def test_cli_names_missing_embeddings(tmp_path, capsys):
    with pytest.raises(SystemExit) as e:
        main(["--a", f"1={tmp_path}", "--b", f"1={tmp_path}"])
    assert e.value.code == 2
    assert "no embeddings at" in capsys.readouterr().err


def test_a_comparison_leaves_the_test_fold_out_unless_told(tmp_path, capsys):
    with pytest.raises(SystemExit) as e:
        main(["--a", f"1={tmp_path}", "--a", f"5={tmp_path}", "--b", f"1={tmp_path}", "--b", f"5={tmp_path}"])
    assert e.value.code == 2 and "fold 5 is the shipped model's test fold" in capsys.readouterr().err
    with pytest.raises(SystemExit) as e:  # told: it goes on (to the missing embeddings here)
        main(["--a", f"5={tmp_path}", "--b", f"5={tmp_path}", "--include-test-fold"])
    assert "no embeddings at" in capsys.readouterr().err


def test_embeddings_come_from_npy_or_from_a_per_fold_npz(tmp_path):
    from paired import load_embeddings

    e = np.arange(12, dtype=np.float16).reshape(3, 4)
    np.save(tmp_path / "e.npy", e)
    np.savez(tmp_path / "e.npz", f1=e, f2=e + 1)
    assert load_embeddings(tmp_path / "e.npy", 5).dtype == np.float32
    np.testing.assert_array_equal(load_embeddings(tmp_path / "e.npz", 2), e.astype(np.float32) + 1)
    with pytest.raises(KeyError, match="no array f3"):
        load_embeddings(tmp_path / "e.npz", 3)


def test_several_runs_of_a_fold_are_averaged_query_by_query():
    meta = _meta()
    a1, a2, b = _noisy(meta, 0.9, 1), _noisy(meta, 0.9, 3), _noisy(meta, 0.0, 2)
    two = compare({1: [a1, a2], 2: [a1, a2]}, {1: b, 2: b}, meta, n_boot=200)
    one = [compare({1: a, 2: a}, {1: b, 2: b}, meta, n_boot=200) for a in (a1, a2)]
    assert two["per_fold"]["1"]["a_runs"] == 2 and two["per_fold"]["1"]["b_runs"] == 1
    # AP is averaged per query, so the pooled mAP is the mean of the single-run mAPs
    assert two["pooled"]["a_map"] == pytest.approx(np.mean([o["pooled"]["a_map"] for o in one]))
    assert two["pooled"]["d_map"] == pytest.approx(np.mean([o["pooled"]["d_map"] for o in one]))


def test_a_class_of_one_patient_has_no_ci_and_the_report_says_so():
    meta = _meta()
    meta["patients"] = np.where(meta["labels"] == 3, "fig:one", meta["patients"])
    meta["families"] = meta["patients"]
    a, b = _noisy(meta, 0.9, 1), _noisy(meta, 0.3, 2)
    res = compare({1: a, 2: a}, {1: b, 2: b}, meta, n_boot=100)
    assert res["per_class"]["pituitary"]["d_map_ci95"] is None and res["per_class"]["pituitary"]["d_p10_ci95"] is None
    assert res["pooled"]["d_map_ci95"] is not None
    from paired import format_report
    line = next(l for l in format_report(res, ("A", "B")).splitlines() if l.startswith("pituitary"))
    assert line.count("n/a") == 2
