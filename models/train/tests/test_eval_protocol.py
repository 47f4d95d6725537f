"""eval_onnx's protocol: a patient on both sides of the fold split never retrieves their own images,
the CI method is named for what it resamples, every CI summarise computes reaches the JSON, and
a folds.csv beside labels.csv adds the family-clean figures of evaluate.py's 3class_family."""
import csv
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import eval_onnx
import metrics

REPO = Path(__file__).resolve().parents[3]
SAMPLE = REPO / "test" / "fixtures" / "figshare-sample"
TINY = REPO / "test" / "fixtures" / "models" / "tiny32-0.0.1.onnx"


def write(folder, header, rows):
    folder.mkdir(exist_ok=True)
    with open(folder / "labels.csv", "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(header)
        w.writerows(rows)
    for r in rows:
        Image.fromarray(np.full((8, 8), 100, np.uint8)).save(folder / r[0])


def run(folder, model, capsys, *extra):
    assert eval_onnx.main(["--dataset", str(folder), "--model", str(model), "--n-boot", "50", "--no-cache",
                           *extra]) == 0
    cap = capsys.readouterr()
    return json.loads(cap.out.strip().splitlines()[-1]), cap


@pytest.fixture
def model(tmp_path):
    m = tmp_path / "m.onnx"  # embed_cached is replaced where this stands in for a model
    m.write_bytes(b"x")
    return m


def fake_embeddings(monkeypatch, vectors):
    monkeypatch.setattr(eval_onnx, "embed_cached", lambda m, paths, *a, **k: np.array(vectors, np.float32))


def test_a_patient_in_both_folds_never_retrieves_their_own_images(tmp_path, model, monkeypatch, capsys):
    # P1's query a sits next to P1's own b in fold 1; P2's c (same class) is farther than P3's d
    write(tmp_path / "d", ["file", "label", "class_name", "patient_id", "fold"],
          [["a.png", 1, "x", "P1", 5], ["b.png", 1, "x", "P1", 1], ["c.png", 1, "x", "P2", 1],
           ["d.png", 2, "y", "P3", 1]])
    fake_embeddings(monkeypatch, [[0, 0], [0.1, 0], [2, 0], [1, 0]])
    res, cap = run(tmp_path / "d", model, capsys)
    assert res["n_patients_in_both"] == 1
    assert "1 patient(s) appear in both" in cap.err and "left out of its ranking" in cap.err
    # ranking d, c: the one relevant item at rank 2 (with b ranked it would be 1 and 2/3 -> 0.83)
    assert res["map"] == pytest.approx(0.5) and res["p1"] == 0.0
    assert res["n_database"] == 3


def test_no_patient_in_both_folds_is_counted_as_zero(tmp_path, model, monkeypatch, capsys):
    write(tmp_path / "d", ["file", "label", "class_name", "patient_id", "fold"],
          [["a.png", 1, "x", "P1", 5], ["c.png", 1, "x", "P2", 1], ["d.png", 2, "y", "P3", 1]])
    fake_embeddings(monkeypatch, [[0, 0], [2, 0], [1, 0]])
    res, cap = run(tmp_path / "d", model, capsys)
    assert res["n_patients_in_both"] == 0 and "appear in both" not in cap.err


@pytest.mark.parametrize("header,method", [
    (["file", "label", "class_name", "patient_id", "fold"], "patient-cluster bootstrap"),
    (["file", "label", "class_name", "fold"], "per-image bootstrap"),
    (["file", "label", "class_name", "patient_id"], "patient-cluster bootstrap"),
    (["file", "label", "class_name"], "per-image bootstrap"),
])
def test_the_ci_method_is_named_for_what_it_resamples(tmp_path, model, monkeypatch, capsys, header, method):
    cells = {"file": None, "label": None, "class_name": None, "patient_id": None, "fold": None}
    rows = []
    for i, (lab, pid, fold) in enumerate([(1, "P1", 5), (1, "P2", 1), (2, "P3", 5), (2, "P4", 1)]):
        cells.update(file=f"{i}.png", label=lab, class_name=f"c{lab}", patient_id=pid, fold=fold)
        rows.append([cells[h] for h in header])
    write(tmp_path / "d", header, rows)
    fake_embeddings(monkeypatch, [[0, 0], [0.1, 0], [1, 0], [1.1, 0]])
    res, cap = run(tmp_path / "d", model, capsys)
    assert res["ci_method"] == method
    assert f"95% CI: {method})" in cap.out


def test_the_json_carries_every_ci_summarise_computes(tmp_path, model, monkeypatch, capsys):
    write(tmp_path / "d", ["file", "label", "class_name", "patient_id"],
          [[f"{i}.png", 1 + i % 2, f"c{1 + i % 2}", f"P{i // 2}"] for i in range(8)])
    rng = np.random.default_rng(0)
    vecs = rng.standard_normal((8, 4))
    fake_embeddings(monkeypatch, vecs)
    res, _ = run(tmp_path / "d", model, capsys)
    labels = np.array([1 + i % 2 for i in range(8)])
    patients = np.array([f"d:P{i // 2}" for i in range(8)])
    pq = metrics.rank_metrics(metrics.pairwise_sqdist(vecs, vecs), labels, labels,
                              patients[:, None] == patients[None, :])
    want = metrics.summarise(pq, labels, {1: "c1", 2: "c2"}, patients, 50)
    for k in ("map", "p10", "p1", "p5"):
        assert res[f"{k}_ci95"] == pytest.approx(want[f"{k}_ci95"])
        for c in ("c1", "c2"):
            assert res["per_class"][c][f"{k}_ci95"] == pytest.approx(want["per_class"][c][f"{k}_ci95"])


@pytest.fixture
def sample(tmp_path):
    """figshare-sample's real slices (fold 5: 5 patients, fold 1: 4) with a hand-made folds.csv:
    fold-5 meningioma 100360 shares a family with fold-1 102420, and fold-5 pituitary 103478 and
    103670 are one family."""
    d = tmp_path / "figshare-sample"
    shutil.copytree(SAMPLE, d)
    fam = {"100360": "MR100360", "102420": "MR100360", "103478": "MR103478", "103670": "MR103478"}
    with open(d / "labels.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    with open(d / "folds.csv", "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["file", "index", "patient_id", "patient_family"])
        for i, r in enumerate(rows):
            w.writerow([r["file"], i + 1, r["patient_id"], fam.get(r["patient_id"], r["patient_id"])])
    return d, rows, fam


def test_family_clean_figures_from_a_folds_csv(tmp_path, sample, capsys):
    d, rows, fam = sample
    emb_file = tmp_path / "emb.npy"
    res, cap = run(d, TINY, capsys, "--query-fold", "5", "--save-embeddings", str(emb_file))
    f = res["family"]
    # 100360's 4 queries are dropped (its family is in fold 1); 103478+103670 stay, as one family
    assert (f["n_queries"], f["n_queries_dropped"], f["n_database"]) == (16, 4, 16)
    assert f["ci_method"] == "family-cluster bootstrap"
    assert "family-clean: the 16 of 20 fold 5 queries" in cap.out
    # the same queries as evaluate.py's 3class_family, on the same database
    from evaluate import protocols
    meta = {"folds": np.array([int(r["fold"]) for r in rows]),
            "sources": np.array(["figshare-cheng"] * len(rows)),
            "families": np.array([fam.get(r["patient_id"], r["patient_id"]) for r in rows])}
    q, db = protocols(meta, 5)["3class_family"]
    emb = np.load(emb_file)
    labels = np.array([int(r["label"]) for r in rows])
    ap = metrics.rank_metrics(metrics.pairwise_sqdist(emb[q], emb[db]), labels[q], labels[db])["ap"]
    assert len(q) == 16 and f["map"] == pytest.approx(float(np.nanmean(ap)))
    # its CI resamples families: 103478 and 103670 move together
    groups = meta["families"][q]
    assert f["map_ci95"] == pytest.approx(list(metrics.bootstrap_ci(ap, groups, 50)))
    assert res["n_queries"] == 20 and res["n_patients_in_both"] == 0


def test_no_folds_csv_no_family_figures(tmp_path, capsys):
    d = tmp_path / "figshare-sample"
    shutil.copytree(SAMPLE, d)
    res, cap = run(d, TINY, capsys, "--query-fold", "5")
    assert res["family"] is None and "family-clean" not in cap.out


def test_a_class_of_one_query_patient_has_no_ci(tmp_path, capsys):
    # figshare-sample's fold-5 glioma slices are all patient 102075: resampling one patient gives [x, x]
    d = tmp_path / "figshare-sample"
    shutil.copytree(SAMPLE, d)
    res, cap = run(d, TINY, capsys, "--query-fold", "5")
    glioma = res["per_class"]["glioma"]
    assert glioma["n_queries"] == 4
    for k in ("map", "p10", "p1", "p5"):
        assert glioma[f"{k}_ci95"] is None
    assert res["per_class"]["meningioma"]["map_ci95"] is not None and res["map_ci95"] is not None
    line = next(l for l in cap.out.splitlines() if l.startswith("glioma"))
    assert line.count("n/a (1 patient)") == 2


@pytest.fixture
def models_dir(tmp_path, monkeypatch):
    """A models/ folder as the repository's: a manifest naming the model (held-out fold 5) and its INT8
    variant, both files the tiny fixture model."""
    m = tmp_path / "models"
    m.mkdir()
    for name in ("net-1.0.0.onnx", "net-1.0.0-int8.onnx"):
        shutil.copyfile(TINY, m / name)
    (m / "manifest.json").write_text(json.dumps({
        "file": "net-1.0.0.onnx", "version": "1.0.0", "evaluation": {"query_fold": 5, "database_folds": [1, 2, 3, 4]},
        "variants": {"int8": {"file": "net-1.0.0-int8.onnx", "version": "1.0.0-int8"}}}))
    monkeypatch.setattr(eval_onnx, "MODELS_DIR", m)
    d = tmp_path / "figshare-sample"
    shutil.copytree(SAMPLE, d)
    return m, d


def test_a_query_fold_the_model_was_trained_on_is_flagged(models_dir, capsys):
    m, d = models_dir
    res, cap = run(d, m / "net-1.0.0.onnx", capsys)
    assert res["held_out"] is True and "WARNING" not in cap.err
    assert res["protocol"] == "fold 5 queries vs other folds database"
    res, cap = run(d, m / "net-1.0.0.onnx", capsys, "--query-fold", "5")
    assert res["held_out"] is True and "WARNING" not in cap.err
    res, cap = run(d, m / "net-1.0.0.onnx", capsys, "--query-fold", "1")
    assert res["held_out"] is False
    assert "WARNING: fold 1 is not the held-out fold of net-1.0.0.onnx (its held-out fold is 5)" in cap.err
    # a model the manifest does not describe: unknown, not false
    res, cap = run(d, TINY, capsys, "--query-fold", "1")
    assert res["held_out"] is None and "WARNING: fold" not in cap.err
    # a model trained on every fold: no fold is held out
    man = json.loads((m / "manifest.json").read_text())
    man["evaluation"] = {"query_fold": None, "database_folds": None}
    (m / "manifest.json").write_text(json.dumps(man))
    res, cap = run(d, m / "net-1.0.0.onnx", capsys, "--query-fold", "5")
    assert res["held_out"] is False and "(it was trained on every fold)" in cap.err


def test_the_int8_variant_is_the_shipped_model_s_variant(models_dir, capsys):
    m, d = models_dir
    res, cap = run(d, m / "net-1.0.0-int8.onnx", capsys)
    assert res["model"] == {"file": "net-1.0.0-int8.onnx", "version": "1.0.0-int8"}
    assert res["held_out"] is True and "held-out fold is unknown" not in cap.err
    res, cap = run(d, m / "net-1.0.0-int8.onnx", capsys, "--query-fold", "1")
    assert res["held_out"] is False and "not the held-out fold of net-1.0.0-int8.onnx" in cap.err


def test_a_copy_of_the_shipped_model_is_known_by_its_sha256(models_dir, capsys):
    m, d = models_dir
    man = json.loads((m / "manifest.json").read_text())
    man["sha256"] = eval_onnx._sha256(m / "net-1.0.0.onnx")
    (m / "manifest.json").write_text(json.dumps(man))
    (m.parent / "elsewhere").mkdir()
    copy = m.parent / "elsewhere" / "net-1.0.0.onnx"
    shutil.copyfile(m / "net-1.0.0.onnx", copy)
    res, _ = run(d, copy, capsys)
    assert res["model"]["version"] == "1.0.0" and res["held_out"] is True
    copy.write_bytes(copy.read_bytes() + b"\0")  # the same name, another file: not the shipped model
    assert eval_onnx.model_entry(copy, man) is None and eval_onnx.model_entry(m / "net-1.0.0.onnx", man)
