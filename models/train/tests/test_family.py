"""Patient families on the training side: the family-clean protocol's CIs resample families (the
protocol's own unit), the published-fold protocols keep patients, and folds.csv is read once for
data.py and eval_onnx.py (families.py)."""
import numpy as np
import pytest

import data
import metrics
from evaluate import evaluate_embeddings, protocols
from families import family_clean, read_families
from paired import compare


def _meta():
    """Figshare rows, 3 classes x folds 1 and 5, 2 slices per patient, 2 patients per family."""
    labels, fold, pat, fam = [], [], [], []
    for k in (1, 5):
        for c in (1, 2, 3):
            for i in range(16):
                labels.append(c)
                fold.append(k)
                pat.append(f"fig:{k}-{c}-{i // 2}")
                fam.append(f"fig:{k}-{c}-{i // 4}")
    n = len(labels)
    return {"labels": np.array(labels), "folds": np.array(fold), "patients": np.array(pat),
            "families": np.array(fam), "sources": np.array([data.FIGSHARE] * n)}


def _emb(meta, seed=0):
    rng = np.random.default_rng(seed)
    return (np.eye(8)[meta["labels"]] + 0.9 * rng.standard_normal((len(meta["labels"]), 8))).astype(np.float32)


def test_family_protocol_ci_resamples_families_and_the_published_folds_keep_patients():
    meta, n_boot = _meta(), 200
    emb = _emb(meta)
    res = evaluate_embeddings(emb, meta, 5, n_boot=n_boot)
    for name, groups in (("3class_family", meta["families"]), ("3class", meta["patients"])):
        q, db = protocols(meta, 5)[name]
        ap = metrics.rank_metrics(metrics.pairwise_sqdist(emb[q], emb[db]), meta["labels"][q], meta["labels"][db])["ap"]
        assert res[name]["map_ci95"] == pytest.approx(list(metrics.bootstrap_ci(ap, groups[q], n_boot)))
    # the two groupings give different intervals here, so the check above tells them apart
    assert res["3class_family"]["map_ci95"] != pytest.approx(res["3class"]["map_ci95"])
    assert (res["3class_family"]["ci_clusters"], res["3class"]["ci_clusters"]) == ("families", "patients")


def test_paired_family_protocol_resamples_families():
    meta = _meta()
    # both arms query each fold against the other, so folds 1 and 5 are both query folds here
    a, b = _emb(meta, 1), _emb(meta, 2)
    res = compare({1: a, 5: a}, {1: b, 5: b}, meta, n_boot=200, protocol="3class_family")
    d = []
    for k in (1, 5):
        q, db = protocols(meta, k)["3class_family"]
        aps = [metrics.rank_metrics(metrics.pairwise_sqdist(e[q], e[db]), meta["labels"][q], meta["labels"][db])["ap"]
               for e in (a, b)]
        d.append((q, aps[1] - aps[0]))
    rows = np.concatenate([q for q, _ in d])
    diff = np.concatenate([x for _, x in d])
    assert res["pooled"]["d_map_ci95"] == pytest.approx(list(metrics.bootstrap_ci(diff, meta["families"][rows], 200)))


def test_read_families_and_family_clean(tmp_path):
    assert read_families(tmp_path) == {}
    (tmp_path / "folds.csv").write_text("\ufefffile,patient_id,patient_family\nimages/1.jpg,MR1B,MR1\n"
                                        "images/2.jpg,7,\n")
    assert read_families(tmp_path) == {"images/1.jpg": "MR1"}  # an empty family falls back to the patient
    keep = family_clean(np.array(["a", "b", "c"]), np.array(["b", "d"]))
    assert keep.tolist() == [True, False, True]


def test_read_labels_finds_the_family_of_a_padded_file_name(tmp_path):
    # read_families trims its keys; a labels.csv cell with spaces must still find its family.
    (tmp_path / "folds.csv").write_text("file,patient_id,patient_family\nimages/1.jpg,MR1B,MR1\n")
    (tmp_path / "labels.csv").write_text("file,label,class_name,patient_id,fold\n images/1.jpg ,1,glioma,MR1B,5\n")
    assert [r["patient_family"] for r in data.read_labels(tmp_path)] == ["MR1"]
